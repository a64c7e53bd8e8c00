"""MLflow tracking: the store, runs (top-level, parent, nested child), params, metrics, artifacts.

We own the run lifecycle through `MlflowClient` (no fluent global state), so a sweep can hold its
parent run and a trial's child run at once, and nothing depends on transformers' MLflowCallback.
`NullTracker` stands in when tracking is off, so the training code never asks whether it is on.

The store: `tracking.uri`, else $MLFLOW_TRACKING_URI, else `sqlite:///mlflow.db` in the working
directory, whose artifacts go to `mlartifacts/` beside the database file.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import math
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from sweep.core.config import flatten, mask_tree, mask_uri
from sweep.core.errors import UserError

log = logging.getLogger(__name__)

PARAM_VALUE_MAX = 6000  # MLflow's cap on a param value
PACKAGES = ("torch", "transformers", "datasets", "accelerate", "mlflow", "optuna", "hydra-core")


class TrackingError(UserError, RuntimeError):
    """The tracking store cannot be used; one line naming the URI."""


# --------------------------------------------------------------------------- the store


def resolve_uri(uri: str | None, cwd: str | None = None, *, option: str = "tracking.uri") -> str:
    """The store to use; a URI whose scheme MLflow cannot use is refused here (TrackingError),
    before MLflow is imported. `option` names where the URI came from, for that message."""
    if uri:
        check_scheme(str(uri), option)
        return str(uri)
    env = os.environ.get("MLFLOW_TRACKING_URI")
    if env:
        check_scheme(env, "MLFLOW_TRACKING_URI")
        return env
    return f"sqlite:///{Path(cwd or os.getcwd()).resolve() / 'mlflow.db'}"


# MLflow's own tracking-store schemes (a SQLAlchemy URL may name its driver: postgresql+psycopg2);
# `file` and plain paths pass here and are refused by check_reachable, which says why
_SCHEMES = ("sqlite", "http", "https", "postgresql", "mysql", "mssql")
_OTHER_SCHEMES = ("databricks", "databricks-uc", "uc", "file", "")


def check_scheme(uri: str, option: str = "tracking.uri") -> None:
    """Refuse a tracking URI whose scheme no MLflow tracking store serves (ftp://, s3://, a
    typo): one line naming the option, credentials masked."""
    scheme = urlparse(uri).scheme.lower()
    if scheme.split("+")[0] in _SCHEMES or scheme in _OTHER_SCHEMES:
        return
    if len(scheme) == 1 and sys.platform == "win32":  # C:\path: a drive letter, not a scheme
        return
    if scheme in _plugin_schemes():
        return
    raise TrackingError(
        f"{option} {mask_uri(uri)}: unsupported scheme {scheme!r} (use sqlite:///path/mlflow.db, "
        "http(s)://host:port, postgresql://..., mysql://..., mssql://... or databricks)"
    )


def _plugin_schemes() -> set[str]:
    """Schemes that installed MLflow plugins register (entry points, read without MLflow)."""
    try:
        return {ep.name for ep in metadata.entry_points(group="mlflow.tracking_store")}
    except Exception:  # noqa: BLE001 - broken package metadata: no plugin schemes
        return set()


def sqlite_path(uri: str) -> Path | None:
    if uri.startswith("sqlite:///"):
        return Path(uri[len("sqlite:///") :])
    return None


def artifact_root(uri: str) -> str | None:
    """Artifacts of a SQLite store live in `mlartifacts/` beside the database file."""
    db = sqlite_path(uri)
    return str(db.parent / "mlartifacts") if db else None


def check_reachable(uri: str, timeout: float = 5.0) -> None:
    """Fail in seconds (not MLflow's minutes of retries) when the store cannot be used."""
    scheme = urlparse(uri).scheme
    shown = mask_uri(uri)
    if scheme in ("http", "https"):
        url = uri.rstrip("/") + "/health"
        try:
            with urllib.request.urlopen(url, timeout=timeout) as resp:
                if resp.status != 200:
                    raise TrackingError(f"MLflow tracking server {shown} answered {resp.status}")
        except urllib.error.HTTPError as e:
            raise TrackingError(f"MLflow tracking server {shown} answered HTTP {e.code}") from None
        except (urllib.error.URLError, OSError, TimeoutError) as e:
            reason = getattr(e, "reason", e)
            raise TrackingError(
                f"MLflow tracking server {shown} is unreachable ({reason}); "
                "start it or pass tracking.uri=..."
            ) from None
    elif scheme == "sqlite":
        db = sqlite_path(uri)
        if db is None:  # sqlite://x.db, Sqlite:///x.db: no path MLflow would open
            raise TrackingError(
                f"MLflow store {shown}: write it sqlite:///relative/path.db or "
                "sqlite:////absolute/path.db"
            )
        if not db.parent.is_dir():
            raise TrackingError(f"MLflow store {shown}: directory {db.parent} does not exist")
    elif scheme in ("file", ""):
        raise TrackingError(
            f"MLflow store {shown}: the file store is refused by MLflow 3.13+; "
            "use sqlite:///path/mlflow.db or a server URI"
        )
    elif scheme.startswith(("postgresql", "mysql", "mssql")):
        _check_db_url(uri, timeout)
    else:
        check_scheme(uri)


def _check_db_url(url: str, timeout: float) -> None:
    import sqlalchemy

    args = {"connect_timeout": int(max(1, timeout))} if url.startswith("postgresql") else {}
    try:
        engine = sqlalchemy.create_engine(url, connect_args=args)
        with engine.connect():
            pass
        engine.dispose()
    except Exception as e:  # noqa: BLE001 - any driver error means "cannot use it"
        first = str(e).strip().splitlines()[0][:200]
        raise TrackingError(f"database {mask_uri(url)} is unreachable ({first})") from None


_STORE_LOCK_TIMEOUT = 300


_CLIENTS: dict[str, Any] = {}


def client(uri: str):
    """An MlflowClient on `uri`, one per process and store (a sweep's trials in one process share
    it: a new client costs a schema check). A new SQLite store is created once, under a file lock,
    so that several processes starting together do not race in MLflow's schema migration."""
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "20")
    from mlflow import MlflowClient

    db = sqlite_path(uri)
    if db is not None and not db.is_file():
        _CLIENTS.pop(uri, None)  # the store was deleted or moved: start over
    if uri in _CLIENTS:
        return _CLIENTS[uri]
    if db is not None:
        from filelock import FileLock

        with FileLock(str(db) + ".lock", timeout=_STORE_LOCK_TIMEOUT):
            c = MlflowClient(uri)
            c.search_experiments(max_results=1)  # creates / migrates the schema now
    else:
        c = MlflowClient(uri)
    _CLIENTS[uri] = c
    return c


# --------------------------------------------------------------------------- what a run records


def environment_tags(cwd: str | None = None, source: str = "train.py") -> dict[str, str]:
    """What is needed to repeat a run: git commit + dirty flag, package versions, python; and
    MLflow's own source tags (the entry point, its type, the user and the commit), which fill the
    runs table's Source and User columns as a fluent-API run's are."""
    tags: dict[str, str] = {
        "sweep.python": sys.version.split()[0],
        "mlflow.source.name": source,
        "mlflow.source.type": "LOCAL",
    }
    with contextlib.suppress(Exception):  # no user name (a container's uid without a passwd entry)
        import getpass

        tags["mlflow.user"] = getpass.getuser()
    for pkg in PACKAGES:
        with contextlib.suppress(metadata.PackageNotFoundError):
            tags[f"sweep.version.{pkg}"] = metadata.version(pkg)
    root = cwd or str(Path(__file__).resolve().parents[2])
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=5
        )
        if commit.returncode == 0:
            tags["sweep.git_commit"] = commit.stdout.strip()
            tags["mlflow.source.git.commit"] = commit.stdout.strip()
            status = subprocess.run(
                ["git", "status", "--porcelain", "--untracked-files=no"],
                cwd=root,
                capture_output=True,
                text=True,
                timeout=5,
            )
            tags["sweep.git_dirty"] = str(bool(status.stdout.strip())).lower()
    except (OSError, subprocess.SubprocessError):
        pass
    return tags


def params_of(config: dict[str, Any]) -> dict[str, str]:
    """The resolved config flattened with dots, secrets masked, values capped at MLflow's limit."""
    out = {}
    for k, v in flatten(mask_tree(config)).items():
        s = "None" if v is None else str(v)
        out[k] = s if len(s) <= PARAM_VALUE_MAX else s[: PARAM_VALUE_MAX - 3] + "..."
    return out


# --------------------------------------------------------------------------- trackers


class NullTracker:
    """Does nothing; stands in when tracking is off."""

    run_id: str | None = None
    experiment_id: str | None = None
    uri: str | None = None

    def start(self, name: str, tags: dict | None = None, parent_run_id: str | None = None) -> None:
        pass

    def log_params(self, params: dict[str, Any]) -> None:
        pass

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        pass

    def set_tags(self, tags: dict[str, Any]) -> None:
        pass

    def log_text(self, text: str, artifact_file: str) -> None:
        pass

    def log_artifacts(self, local_dir: str, artifact_path: str | None = None) -> None:
        pass

    def log_datasets(self, datasets: list[DatasetRecord]) -> None:
        pass

    def stop_system_metrics(self) -> None:
        pass

    def end(self, status: str = "FINISHED") -> None:
        pass


@dataclass
class DatasetRecord:
    """One split as an MLflow dataset input: what fills the runs table's Dataset column."""

    name: str  # the data set: synthetic, a file's stem, a hub id
    split: str  # train | validation | test (MLflow's `mlflow.data.context` input tag)
    digest: str
    source_type: str  # local | hugging_face | code
    source: str  # JSON: {"uri": path} | {"path": hub id, "split": ...} | {"generated": ...}
    rows: int


def dataset_records(raw, name: str, test=None) -> list[DatasetRecord]:
    """The records of a loaded RawData's splits (and a TestSplit's), for `log_datasets`."""
    out = []
    for split, data in (("train", raw.train), ("validation", raw.validation)):
        if not len(data):  # data.train_on_validation: the validation split is in the train split
            continue
        kind, source = raw.origin.get(split, ("code", "{}"))
        out.append(DatasetRecord(name, split, raw.digests.get(split, ""), kind, source, len(data)))
    if test is not None:
        kind, source = test.origin
        out.append(DatasetRecord(name, "test", test.digest, kind, source, len(test.data)))
    return out


@contextlib.contextmanager
def uninterrupted():
    """A Ctrl-C during the block takes effect when it ends. MLflow rolls a store session back on
    an Exception only: a KeyboardInterrupt inside a write leaves its SQLite transaction open,
    holding the write lock, and closing the run as KILLED then waits for that lock in vain. An
    inherited "ignore", and any thread but the main one, are left as they are."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGINT)
    if previous in (signal.SIG_IGN, None):
        yield
        return
    caught: list[int] = []
    signal.signal(signal.SIGINT, lambda signum, frame: caught.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if caught:
            signal.raise_signal(signal.SIGINT)  # now, through the handler it would have met


class _Uninterrupted:
    """An MlflowClient whose every call runs `uninterrupted` (the SQLite stores: see there)."""

    def __init__(self, inner):
        self._inner = inner

    def __getattr__(self, name: str):
        attr = getattr(self._inner, name)
        if not callable(attr):
            return attr

        @functools.wraps(attr)
        def call(*args, **kwargs):
            with uninterrupted():
                return attr(*args, **kwargs)

        return call


class Tracker(NullTracker):
    """One MLflow run, driven through MlflowClient (on SQLite, each call safe from a Ctrl-C).

    `system_metrics` (tracking.system_metrics): while the run is open, MLflow's own monitor
    samples CPU, memory, disk, network and (through nvidia-ml-py) GPU utilisation and memory into
    it as `system/*` metrics. MLflow starts that monitor only for runs of its fluent API; ours
    are client runs, so the tracker starts it with the run and stops it at every end of it."""

    def __init__(self, uri: str, experiment: str, *, mlflow_client=None, system_metrics=False):
        self.uri = uri
        self.client = mlflow_client or client(uri)
        if uri.startswith("sqlite:"):  # a server's client holds no lock; its retries stay
            self.client = _Uninterrupted(self.client)  # interruptible during an outage
        self.experiment_id = get_or_create_experiment(self.client, uri, experiment)
        self.run_id = None
        self.pending: list[tuple[int, list]] = []  # metric batches not yet accepted by the store
        self._warned = False
        self.system_metrics = bool(system_metrics)
        self._monitor = None
        if self.system_metrics:
            _system_metrics_monitor()  # a missing psutil is said now, before any run starts

    def start(self, name: str, tags: dict | None = None, parent_run_id: str | None = None) -> None:
        tags = {k: str(v) for k, v in (tags or {}).items()}
        if parent_run_id:
            tags["mlflow.parentRunId"] = parent_run_id
        # on SQLite, a Ctrl-C held back during create_run is raised when it returns: only once
        # the run's id is kept, so the caller can close the run it made
        sqlite = isinstance(self.client, _Uninterrupted)
        with uninterrupted() if sqlite else contextlib.nullcontext():
            run = self.client.create_run(self.experiment_id, run_name=name, tags=tags)
            self.run_id = run.info.run_id
        if self.system_metrics:
            # MLflow's sampling interval (10 s) and samples per logged point (1) apply: its
            # MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL / _SAMPLES_BEFORE_LOGGING change them
            self._monitor = _system_metrics_monitor()(self.run_id, tracking_uri=self.uri)
            self._monitor.start()

    def attach(self, run_id: str) -> None:
        """Continue an existing run (a resumed checkpointed run, a sweep's parent)."""
        self.run_id = run_id
        self.client.update_run(run_id, status="RUNNING")

    def log_params(self, params: dict[str, Any]) -> None:
        from mlflow.entities import Param

        items = [Param(k, str(v)) for k, v in params.items()]
        for i in range(0, len(items), 100):
            self.client.log_batch(self.run_id, params=items[i : i + 100])

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        """Log now; if the store is down, keep the batch and send it with the next one, so an
        outage of the tracking server loses nothing once it is back."""
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [
            Metric(k, float(v), now, int(step))
            for k, v in metrics.items()
            if isinstance(v, int | float) and not isinstance(v, bool)
        ]
        if items:
            self.pending.append((int(step), items))
        self.flush()

    def flush(self) -> bool:
        """Send buffered metric batches in order; False while the store is unreachable."""
        while self.pending:
            step, items = self.pending[0]
            try:
                self.client.log_batch(self.run_id, metrics=items)
            except Exception as e:  # noqa: BLE001 - tracking must not kill training
                if not self._warned:
                    log.warning(
                        "MLflow unreachable, buffering metrics from step %s: %s", step, str(e)[:200]
                    )
                    self._warned = True
                return False
            self.pending.pop(0)
            if self._warned and not self.pending:
                log.warning("MLflow is back: buffered metrics were sent")
                self._warned = False
        return True

    def set_tags(self, tags: dict[str, Any]) -> None:
        from mlflow.entities import RunTag

        items = [RunTag(k, str(v)) for k, v in tags.items()]
        if items:
            self.client.log_batch(self.run_id, tags=items)

    def log_text(self, text: str, artifact_file: str) -> None:
        self.client.log_text(self.run_id, text, artifact_file)

    def log_artifacts(self, local_dir: str, artifact_path: str | None = None) -> None:
        self.client.log_artifacts(self.run_id, local_dir, artifact_path)

    def log_datasets(self, datasets: list[DatasetRecord]) -> None:
        from mlflow.entities import Dataset, DatasetInput, InputTag

        schema = json.dumps(
            {
                "mlflow_colspec": [
                    {"type": "string", "name": "text", "required": True},
                    {"type": "long", "name": "label", "required": True},
                ]
            }
        )
        inputs = [
            DatasetInput(
                Dataset(
                    name=d.name,
                    digest=d.digest,
                    source_type=d.source_type,
                    source=d.source,
                    schema=schema,
                    profile=json.dumps({"num_rows": d.rows}),
                ),
                tags=[InputTag("mlflow.data.context", d.split)],
            )
            for d in datasets
        ]
        if not inputs:
            return
        for attempt in range(3):
            try:
                self.client.log_inputs(self.run_id, datasets=inputs)
                return
            except Exception as e:
                # the store looks a data set up, then inserts it: runs that log the same new data
                # set at once (a sweep's workers starting together) race, and all but one get
                # "duplicate key" with nothing written. Again, the data set is found and reused
                if attempt == 2 or not _lost_insert_race(e):
                    raise
                time.sleep(0.2 * (attempt + 1))

    def stop_system_metrics(self) -> None:
        """Stop sampling into the run (its last samples are sent); does nothing when not on."""
        monitor, self._monitor = self._monitor, None
        if monitor is not None:
            monitor.finish()

    def end(self, status: str = "FINISHED") -> None:
        if self.run_id is None:
            return
        self.stop_system_metrics()  # first: its last samples belong to the open run
        for wait in (0, 2, 5, 10):  # give a restarting server a little time
            time.sleep(wait)
            if self.flush():
                break
        if self.pending:
            steps = ",".join(str(step) for step, _ in self.pending)
            log.error("metrics of steps %s never reached MLflow (run %s)", steps, self.run_id)
            with contextlib.suppress(Exception):  # the store is still down; said in the log
                self.set_tags({"sweep.missing_metric_steps": steps})
        self.client.set_terminated(self.run_id, status=status)


def _system_metrics_monitor():
    """MLflow's SystemMetricsMonitor class; it needs psutil (a dependency of this project), and
    for GPUs nvidia-ml-py (the `gpu` extra: without it MLflow logs no GPU metrics, and says so)."""
    try:
        from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor
    except ImportError as e:
        raise TrackingError(
            f"tracking.system_metrics=true needs psutil ({e}): pip install psutil"
        ) from None
    return SystemMetricsMonitor


def _lost_insert_race(e: Exception) -> bool:
    """A store's unique-key violation as MLflow passes it on (PostgreSQL, MySQL, SQLite)."""
    text = str(e).lower()
    return any(s in text for s in ("duplicate key", "unique constraint", "duplicate entry"))


def get_or_create_experiment(c, uri: str, name: str) -> str:
    exp = c.get_experiment_by_name(name)
    if exp is not None:
        if exp.lifecycle_stage == "deleted":
            c.restore_experiment(exp.experiment_id)
        return exp.experiment_id
    root = artifact_root(uri)
    location = f"{root}/{name}" if root else None
    try:
        return c.create_experiment(name, artifact_location=location)
    except Exception:  # another process created it in between
        exp = c.get_experiment_by_name(name)
        if exp is None:
            raise
        return exp.experiment_id


def finite(x: float | None) -> bool:
    return x is not None and isinstance(x, int | float) and math.isfinite(x)
