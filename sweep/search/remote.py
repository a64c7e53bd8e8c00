"""Checks for launchers whose jobs may run on other machines (SLURM, Ray), before any job is
submitted.

Such a launcher ships each job's config and overrides to other hosts (submitit's pickles and
sbatch scripts, Ray's task arguments), so a password inside a URL would travel with every job:
it is refused with one line saying where credentials go instead. A store only this machine can
reach (a journal or SQLite file, an address on 127.0.0.1 / localhost) works while the cluster is
this host, so it gets one line of warning, not an error.
"""

from __future__ import annotations

import logging
from urllib.parse import urlsplit

from sweep.core.config import mask_uri, uri_has_password
from sweep.core.errors import UserError

log = logging.getLogger(__name__)

_LOOPBACK = {"localhost", "127.0.0.1", "::1", "0.0.0.0", ""}


def engine_of(launcher) -> str | None:
    """The engine a launcher hands jobs to when those may run elsewhere, else None. Ours say so
    with `engine`; Hydra's submitit (SLURM) and Ray launchers are known by their module."""
    engine = getattr(launcher, "engine", None)
    if engine:
        return str(engine)
    module = type(launcher).__module__
    if "submitit" in module:
        return "slurm" if "Local" not in type(launcher).__name__ else None
    if "ray" in module:
        return "ray"
    return None


def this_host_only(url: str) -> bool:
    """Whether only this machine can reach the store at `url`: a file, or a loopback host."""
    if "://" not in url:
        return True  # a plain path
    parts = urlsplit(url)
    if parts.scheme in ("sqlite", "file") or parts.scheme.startswith("journal"):
        return True
    return (parts.hostname or "") in _LOOPBACK


def check(launcher, storage_url: str, tracker_uri: str | None, config=None) -> None:
    engine = engine_of(launcher)
    if engine is None:
        return
    if uri_has_password(storage_url):
        raise UserError(
            f"hydra.sweeper.storage has a password and {engine} jobs carry their config to other "
            "machines: drop it from the URL and give it to the nodes (PGPASSWORD or ~/.pgpass "
            "in the environment the jobs start with)"
        )
    if tracker_uri and uri_has_password(tracker_uri):
        raise UserError(
            f"tracking.uri has a password and {engine} jobs carry their config to other "
            "machines: drop it from the URL and set MLFLOW_TRACKING_USERNAME / "
            "MLFLOW_TRACKING_PASSWORD (or PGPASSWORD for a database) on the nodes"
        )
    local = [
        f"{what} {mask_uri(url)}"
        for what, url in (("the study storage", storage_url), ("the tracking URI", tracker_uri))
        if url and this_host_only(url)
    ]
    if local:
        log.warning(
            "%s jobs may run on other hosts, but %s reachable from this machine only",
            engine,
            " and ".join(local) + (" are" if len(local) > 1 else " is"),
        )
    connect = getattr(launcher, "check", None)
    if callable(connect):
        connect()  # our engines: reach the cluster now, with a clear error when there is none
