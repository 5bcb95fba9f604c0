"""QA review web app, coaching export and reports on top of the Parquet results."""
