"""How a trial's context reaches its job, stated once for both sides.

A job may run in another process or on another machine (joblib, SLURM, Ray), whose environment
is not the sweeper's. So the sweeper gives each job its context inside the job's own overrides:
`+hydra.job.env_set.SWEEP_TRIAL=<token>`, which Hydra sets in the job's environment wherever the
job runs. A token is URL-safe base64 of JSON (safe in a Hydra override, no padding). It never
holds a password: storage URLs travel without one, and a job finds the password in its own
environment (libpq's PGPASSWORD / ~/.pgpass on a cluster's nodes; for jobs on this machine, the
sweeper's STORAGE_URL below).
"""

from __future__ import annotations

import base64
import json
import os
from typing import Any

from sweep.core.config import strip_uri_password

TRIAL = "SWEEP_TRIAL"  # per job: its trial (study spec, number, parent run, objective)
CONFIRM = "SWEEP_CONFIRM"  # per job: a confirmation run's context (sweep/search/confirm.py)
REFIT = "SWEEP_REFIT"  # per job: a refit run's context (sweep/search/refit.py)
# set by the sweeper for jobs on this machine only: the storage URL with its password
STORAGE_URL = "SWEEP_STORAGE_URL"

# local helper workers (sweep/search/workers.py)
HELPER_OF = "SWEEP_HELPER_OF"  # set in a helper's environment: the main worker's pid
HELPER_READY = "SWEEP_HELPER_READY"  # the file the main worker writes once the stores exist
HELPER_KEY = "SWEEP_HELPER_KEY"  # the main worker's key: names its records in the study

JOB_CONTEXT = (TRIAL, CONFIRM, REFIT, STORAGE_URL)


def encode(data: dict[str, Any]) -> str:
    blob = json.dumps(data, sort_keys=True).encode()
    return base64.urlsafe_b64encode(blob).decode().rstrip("=")


def decode(token: str) -> dict[str, Any]:
    return json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))


def override(name: str, data: dict[str, Any]) -> str:
    """The job override that hands `data` to the job as the environment variable `name`."""
    return f"+hydra.job.env_set.{name}={encode(data)}"


def is_context(override: str) -> bool:
    """Whether `override` is one of these per-job context overrides (not configuration)."""
    return override.startswith(tuple(f"+hydra.job.env_set.{n}=" for n in JOB_CONTEXT))


def from_env(name: str) -> dict[str, Any] | None:
    token = os.environ.get(name)
    return decode(token) if token else None


def with_local_password(url: str) -> str:
    """The URL a job connects with: the sweeper's own (with its password) when the job runs on
    the sweeper's machine and it is the same URL; else `url` as given."""
    local = os.environ.get(STORAGE_URL)
    if local and strip_uri_password(local) == url:
        return local
    return url


NODE = "SWEEP_NODE"  # set by a launcher in its job: where the job runs (its engine's words)
# set by a launcher in its job: the GPUs its engine gave the job, and their share (`0 x0.25`)
NODE_GPUS = "SWEEP_NODE_GPUS"


def node_tags() -> dict[str, str]:
    """Where this job runs, for its MLflow run: the host, and the engine's node and job ids
    (SLURM sets its variables in every job; our Ray launcher sets NODE)."""
    import socket

    tags = {"sweep.host": socket.gethostname()}
    if os.environ.get(NODE):
        tags["sweep.node"] = os.environ[NODE]
    # the GPUs the engine gave the job (SLURM lists them in every job that has some), whether
    # or not this machine's torch can use them
    gpus = os.environ.get(NODE_GPUS) or os.environ.get("SLURM_JOB_GPUS")
    if gpus:
        tags["sweep.node.gpus"] = gpus
    job = os.environ.get("SLURM_JOB_ID")
    if job:
        array = os.environ.get("SLURM_ARRAY_TASK_ID")
        job_id = f"{os.environ.get('SLURM_ARRAY_JOB_ID', job)}_{array}" if array else job
        tags["sweep.slurm.job_id"] = job_id
        tags["sweep.slurm.node"] = os.environ.get("SLURMD_NODENAME", "")
        tags.setdefault("sweep.node", f"slurm {tags['sweep.slurm.node']} job {job_id}")
    return tags
