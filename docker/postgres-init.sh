#!/bin/sh
# Run once by the official postgres image on an empty data directory (mounted into
# /docker-entrypoint-initdb.d/): one role and one database each for the Optuna study storage and
# the MLflow backend store. Both roles get the password of the superuser, read from the Docker
# secret (POSTGRES_PASSWORD_FILE); psql passes it as a variable, so no shell or SQL quoting of the
# password is involved. Later starts with a populated volume skip this script. (No `set -u`:
# without its executable bit the image *sources* this file into its own entrypoint.)
set -e

password_file="${POSTGRES_PASSWORD_FILE:-/run/secrets/pg_password}"
password="$(cat "$password_file")"

psql -v ON_ERROR_STOP=1 --no-psqlrc --username "${POSTGRES_USER:-postgres}" --dbname postgres \
    -v pw="$password" <<'SQL'
CREATE ROLE optuna LOGIN PASSWORD :'pw';
CREATE ROLE mlflow LOGIN PASSWORD :'pw';
CREATE DATABASE optuna OWNER optuna;
CREATE DATABASE mlflow OWNER mlflow;
REVOKE ALL ON DATABASE optuna FROM PUBLIC;
REVOKE ALL ON DATABASE mlflow FROM PUBLIC;
SQL
