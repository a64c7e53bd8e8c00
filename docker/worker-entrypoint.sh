#!/bin/sh
# sweep-worker: one sweep worker in the compose topology (docker/compose.yaml).
#
#   sweep-worker [OPTIONS] [OVERRIDES...]
#     -> python train.py [OPTIONS] [OVERRIDES...] <storage> [<study name>] $SWEEP_ARGS
#
# Hydra's options (-m, --cfg ...) must come before the overrides, as with `python train.py`.
# The storage and study-name overrides are added only when the arguments do not set them; the
# overrides in SWEEP_ARGS come last and win over everything.
#
# The Optuna storage URL carries the PostgreSQL password, so it is built here, at start, from the
# secret file and handed to Hydra through the environment: the override Hydra sees (and writes
# into multirun/**/.hydra/*.yaml) is the literal `${oc.env:OPTUNA_STORAGE}`, never the password,
# and the password is in no process's argument list. The driver is named (postgresql+psycopg2):
# SQLAlchemy 2.1 maps a bare postgresql:// to psycopg 3, which the project does not install.
#
# Environment:
#   OPTUNA_STORAGE     a complete Optuna storage URL; wins over everything below
#   PG_PASSWORD_FILE   file holding the PostgreSQL password (default /run/secrets/pg_password)
#   OPTUNA_DB_USER, OPTUNA_DB_HOST, OPTUNA_DB_PORT, OPTUNA_DB_NAME
#                      defaults optuna, postgres, 5432, optuna
#   OPTUNA_CREATE_SCHEMA  1 (default): create Optuna's tables in PostgreSQL before starting, one
#                      worker at a time (a PostgreSQL advisory lock): workers that open a fresh
#                      database at the same moment otherwise race in CREATE TABLE / CREATE TYPE
#                      and all but one fail (UniqueViolation on pg_type_typname_nsp_index)
#   STUDY_NAME         Optuna study (default: the MLflow experiment name, e.g. minilm-synthetic)
#   SWEEP_ARGS         more Hydra overrides, split at spaces (values with spaces: use the command)
#   GPU_SLOTS_DIR      a folder every replica shares (docker/compose.gpu.yaml): the worker runs
#                      through gpu-slot.py, which claims this replica's slot there and pins it to
#                      one GPU (slots: GPUs x hydra.sweeper.trials_per_gpu; see gpu-slot.py)
#   GPU_SLOT           this replica's slot by number instead (a service per GPU); no lock
set -eu

PG_PASSWORD_FILE="${PG_PASSWORD_FILE:-/run/secrets/pg_password}"

has_storage=no
has_study=no
for arg in "$@"; do
    case "$arg" in
        *hydra.sweeper.storage=*) has_storage=yes ;;
        *hydra.sweeper.study_name=*) has_study=yes ;;
    esac
done

if [ "$has_storage" = no ]; then
    if [ -z "${OPTUNA_STORAGE:-}" ]; then
        if [ ! -r "$PG_PASSWORD_FILE" ]; then
            echo "sweep-worker: cannot read $PG_PASSWORD_FILE and OPTUNA_STORAGE is not set" >&2
            exit 2
        fi
        # percent-encode the password (and user) so that any character works inside the URL
        OPTUNA_STORAGE="$(python "$(dirname "$0")/pg-url.py" sweep-worker \
            "$PG_PASSWORD_FILE" "${OPTUNA_DB_USER:-optuna}" "${OPTUNA_DB_HOST:-postgres}" \
            "${OPTUNA_DB_PORT:-5432}" "${OPTUNA_DB_NAME:-optuna}")"
    fi
    export OPTUNA_STORAGE
    # single quotes on purpose: Hydra, not the shell, resolves ${oc.env:...} (no password in argv)
    # shellcheck disable=SC2016
    set -- "$@" 'hydra.sweeper.storage=${oc.env:OPTUNA_STORAGE}'

    case "$OPTUNA_STORAGE" in
        postgresql*)
            if [ "${OPTUNA_CREATE_SCHEMA:-1}" = 1 ]; then
                python - <<'PY'
import os
import sys

import optuna
import sqlalchemy

url = os.environ["OPTUNA_STORAGE"]
LOCK = 7_304_512_034_117  # any constant: the advisory lock all workers of this setup take
try:
    engine = sqlalchemy.create_engine(url, connect_args={"connect_timeout": 10})
    with engine.connect() as conn:
        conn.execute(sqlalchemy.text("SELECT pg_advisory_lock(:k)"), {"k": LOCK})
        try:
            optuna.storages.RDBStorage(url).remove_session()  # creates the tables if missing
        finally:
            conn.execute(sqlalchemy.text("SELECT pg_advisory_unlock(:k)"), {"k": LOCK})
    engine.dispose()
except Exception as e:  # noqa: BLE001 - say what failed in one line, without the password
    first = (str(e).strip().splitlines() or [type(e).__name__])[0][:300]
    sys.exit(f"sweep-worker: cannot prepare the Optuna database: {first}")
PY
            fi
            ;;
    esac
fi
if [ "$has_study" = no ] && [ -n "${STUDY_NAME:-}" ]; then
    set -- "$@" "hydra.sweeper.study_name=$STUDY_NAME"
fi

# GPU workers: gpu-slot.py picks this replica's GPU and execs `python train.py ...` in its place,
# holding the slot's lock for as long as the worker runs
if [ -n "${GPU_SLOT:-}${GPU_SLOTS_DIR:-}" ]; then
    set -- python "$(dirname "$0")/gpu-slot.py" python train.py "$@"
else
    set -- python train.py "$@"
fi
# shellcheck disable=SC2086  # SWEEP_ARGS is split at spaces on purpose
exec "$@" ${SWEEP_ARGS:-}
