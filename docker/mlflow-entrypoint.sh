#!/bin/sh
# mlflow-server: the MLflow tracking server of the compose topology (docker/compose.yaml).
#
#   mlflow-server [MORE mlflow server OPTIONS...]
#
# The backend-store URL carries the PostgreSQL password, so it is built here, at start, from the
# secret file and handed to MLflow in MLFLOW_BACKEND_STORE_URI (which `mlflow server` reads in
# place of --backend-store-uri): the password is in no process's argument list. The driver is
# named (postgresql+psycopg2): SQLAlchemy 2.1 maps a bare postgresql:// to psycopg 3, which is
# not installed.
#
# Environment:
#   MLFLOW_BACKEND_STORE_URI  a complete backend store URL; wins over everything below
#   PG_PASSWORD_FILE          file holding the password (default /run/secrets/pg_password)
#   MLFLOW_DB_USER, MLFLOW_DB_HOST, MLFLOW_DB_PORT, MLFLOW_DB_NAME
#                             defaults mlflow, postgres, 5432, mlflow
#   MLFLOW_ARTIFACTS_DESTINATION  default /mlartifacts (a volume)
#   MLFLOW_SERVER_ALLOWED_HOSTS   Host headers accepted; default: the compose service name and
#                             loopback (MLflow's own default rejects `Host: mlflow:5000`)
set -eu

PG_PASSWORD_FILE="${PG_PASSWORD_FILE:-/run/secrets/pg_password}"

if [ -z "${MLFLOW_BACKEND_STORE_URI:-}" ]; then
    if [ ! -r "$PG_PASSWORD_FILE" ]; then
        echo "mlflow-server: cannot read $PG_PASSWORD_FILE and MLFLOW_BACKEND_STORE_URI is not set" >&2
        exit 2
    fi
    MLFLOW_BACKEND_STORE_URI="$(python "$(dirname "$0")/pg-url.py" mlflow-server \
        "$PG_PASSWORD_FILE" "${MLFLOW_DB_USER:-mlflow}" "${MLFLOW_DB_HOST:-postgres}" \
        "${MLFLOW_DB_PORT:-5432}" "${MLFLOW_DB_NAME:-mlflow}")"
fi
export MLFLOW_BACKEND_STORE_URI
export MLFLOW_SERVER_ALLOWED_HOSTS="${MLFLOW_SERVER_ALLOWED_HOSTS:-mlflow,mlflow:*,localhost,localhost:*,127.0.0.1,127.0.0.1:*}"

exec mlflow server \
    --serve-artifacts \
    --artifacts-destination "${MLFLOW_ARTIFACTS_DESTINATION:-/mlartifacts}" \
    --host 0.0.0.0 \
    --port "${MLFLOW_PORT:-5000}" \
    "$@"
