"""Customer-retention pipeline: importable logic behind the thin Airflow DAGs."""
