-- Run once by the postgres image on a new data volume: the task store gets a database of its own,
-- next to Airflow's metadata database.
CREATE DATABASE scheduled_jobs;
