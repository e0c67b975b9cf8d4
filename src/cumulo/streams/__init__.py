"""Data streams (Kinesis Data Streams): cumulo streams, client.streams, the Kinesis API."""
