"""Checks for launchers whose jobs may run on other machines (SLURM, Ray), before any job is
submitted and before the cluster is contacted.

Such a launcher ships each job's config and overrides to other hosts (submitit's pickles and
sbatch scripts, Ray's task arguments), so a secret in them would travel with every job: a
password inside the storage or tracking URL, and any config value under a secret-like key
(`is_secret_key`: `model.hf_token`, `db.password`, ...) or holding a URL with a password. Each is
refused with one line naming the key and where the nodes take the credential from instead. A
store only this machine can reach (a journal or SQLite file, an address on 127.0.0.1 /
localhost) works while the cluster is this host, so it gets one line of warning, not an error.
"""

from __future__ import annotations

import logging
import re
from typing import Any
from urllib.parse import urlsplit

from omegaconf import DictConfig, OmegaConf

from sweep.core import tree
from sweep.core.config import is_secret_key, mask_uri, uri_has_password
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


# `${oc.env:NAME}` is resolved in the job, from the node's environment: only the name travels
# (with a default, `${oc.env:NAME,value}`, the value would travel too)
_FROM_NODE_ENV = re.compile(r"^\$\{oc\.env:[A-Za-z_][A-Za-z0-9_]*\}$")


def node_env_var(key: str) -> str:
    """The environment variable a node takes the secret at `key` from instead of the config:
    a token under `model` or `data` is the Hub's (`HF_TOKEN`, which huggingface_hub reads
    itself), `tracking.password` / `.token` are MLflow's (`MLFLOW_TRACKING_PASSWORD` /
    `_TOKEN`); any other key: its last segment upper-cased (`a.wandb_api_key` ->
    `WANDB_API_KEY`), the variable `python -m sweep reproduce` fills a masked value from."""
    section, last = key.split(".", 1)[0], key.rsplit(".", 1)[-1].replace("-", "_").lower()
    if section in ("model", "data") and "token" in last.split("_"):
        return "HF_TOKEN"
    if section == "tracking" and last in ("password", "token"):
        return f"MLFLOW_TRACKING_{last.upper()}"
    return last.upper()


def config_secrets(config: Any) -> list[str]:
    """The dotted keys of `config` (unresolved) whose value would carry a secret to a node: a
    value under a secret-like key (empty, null, a boolean flag or `${oc.env:NAME}` carry none),
    or a URL with a password under any key."""
    if config is None:
        return []
    if isinstance(config, DictConfig):
        config = OmegaConf.to_container(config, resolve=False)
    found: list[str] = []
    # a list's items are judged by the list's key: every item of `hf_token: [...]` is a secret
    for key, value in tree.leaves(config, index=False):
        if value in (None, "") or isinstance(value, bool) or key in found:
            continue
        if isinstance(value, str) and _FROM_NODE_ENV.match(value):
            continue
        if is_secret_key(key) or uri_has_password(str(value)):
            found.append(key)
    return found


def _way(key: str) -> str:
    """How a node gets the secret at `key` instead, in a few words."""
    if not is_secret_key(key):
        return f"{key} holds a URL with a password: drop the password and give it to the nodes"
    var = node_env_var(key)
    return (
        f"{key} is a secret: drop it and set {var} in the environment the jobs start with on "
        f"the nodes (or write {key}='${{oc.env:{var}}}' to read it there)"
    )


def _refuse_config_secrets(engine: str, config: Any) -> None:
    keys = config_secrets(config)
    if keys:
        raise UserError(
            f"hydra/launcher={engine}: its jobs carry their config to other machines, so no "
            "secret goes in it: " + "; ".join(_way(k) for k in keys)
        )


def check(launcher, storage_url: str, tracker_uri: str | None, config=None) -> None:
    """Refuse what would carry a secret to the nodes, warn about stores only this machine can
    reach, then let our engines reach their cluster (its own clear error when there is none).
    `config` is the job config the sweep composed (without Hydra's node)."""
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
    _refuse_config_secrets(engine, config)  # after the URLs: their lines say more
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
