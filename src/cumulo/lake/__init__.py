"""The data lake: a catalog of databases and tables, versioned Delta tables, ingestion, a
crawler, and SQL over it all on DuckDB (Glue Data Catalog, Delta Lake and Athena's part)."""
