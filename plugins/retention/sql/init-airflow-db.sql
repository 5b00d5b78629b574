-- Runs once when the production Postgres volume is created: Airflow's metadata database
-- lives beside the warehouse database on the same server.
create database airflow owner retention;
