"""Metering: usage records from every service, priced by the sheet in the settings."""
