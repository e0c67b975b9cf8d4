"""Notebooks: JupyterLab servers run as jobs, reached through Cumulo at ``/notebooks/NAME/``."""
