"""Optuna study bookkeeping shared by the sweeper and by trial processes.

Storages, samplers, pruners, the cross-process lock, trial counting against the budget, stale
trials and their retries, and the trial table. The sweep's MLflow parent run is in parent.py;
the study only keeps its id (user attr PARENT_RUN).
"""

from __future__ import annotations

import contextlib
import csv
import fcntl
import hashlib
import io
import json
import logging
import os
import socket
import time
import warnings
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from optuna.trial import FrozenTrial, TrialState

from sweep.core import internals, metrics, trial_env
from sweep.core.config import mask_uri
from sweep.core.errors import UserError
from sweep.search import front, grid

log = logging.getLogger(__name__)
optuna.logging.set_verbosity(optuna.logging.WARNING)
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)

HEARTBEAT = "sweep:heartbeat"
HOST = "sweep:host"
PID = "sweep:pid"
RETRY_OF = "sweep:retry_of"
OUTCOME = "sweep:outcome"  # a job's TrialOutcome, left by the job itself (record_outcome)
RETRIES = "sweep:retries"
FAIL_REASON = "sweep:fail_reason"
PARENT_RUN = "mlflow_parent_run_id"
RUN_ID = "mlflow_run_id"
OBJECTIVE_AT_PRUNE = "objective_at_prune"


# --------------------------------------------------------------------------- storage


class StorageError(UserError, RuntimeError):
    """The Optuna storage cannot be used; one line naming the (masked) URL."""


def default_storage(experiment: str, study_name: str | None = None) -> str:
    """A journal file in `.sweep/` of the working directory, one per experiment, holding the
    studies of its sweeps: stable across runs (Hydra's sweep dirs are timestamped), and safe for
    several local worker processes. Where a journal named after an explicit study name exists
    (older versions wrote one per study), that file is the study's."""

    def path(name: str) -> Path:
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
        return (Path.cwd() / ".sweep" / f"{safe}.journal").resolve()

    if study_name and path(study_name).is_file():
        return f"journal://{path(study_name)}"
    return f"journal://{path(experiment)}"


def journal_path(url: str) -> Path | None:
    if url.startswith("journal://"):
        return Path(url[len("journal://") :])
    if url.endswith((".journal", ".log")) and "://" not in url:
        return Path(url)
    return None


def open_storage(url: str):
    """An Optuna storage from a URL: sqlite:///, postgresql://, mysql://, or journal:///path."""
    path = journal_path(url)
    if path is not None:
        from optuna.storages import JournalStorage
        from optuna.storages.journal import JournalFileBackend

        path.parent.mkdir(parents=True, exist_ok=True)
        return JournalStorage(JournalFileBackend(str(path)))
    if url.startswith("sqlite:///"):
        Path(url[len("sqlite:///") :]).parent.mkdir(parents=True, exist_ok=True)
    try:
        kwargs = {}
        if url.startswith("postgresql"):
            kwargs = {"connect_args": {"connect_timeout": 5}, "pool_pre_ping": True}
            # workers starting together on a fresh database race creating Optuna's tables
            with _pg_lock(url, "optuna-schema"):
                return optuna.storages.RDBStorage(url, engine_kwargs=kwargs)
        if url.startswith("sqlite"):
            kwargs = {"connect_args": {"timeout": 60}}
        return optuna.storages.RDBStorage(url, engine_kwargs=kwargs)
    except Exception as e:  # noqa: BLE001 - any driver error
        first = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
        raise StorageError(f"Optuna storage {mask_uri(url)} cannot be opened ({first})") from None


@contextlib.contextmanager
def _pg_lock(url: str, name: str):
    """A PostgreSQL advisory lock held for the block (serialises processes on all machines)."""
    import sqlalchemy

    key = int(hashlib.sha1(name.encode()).hexdigest()[:15], 16)
    engine = sqlalchemy.create_engine(
        url, poolclass=sqlalchemy.pool.NullPool, connect_args={"connect_timeout": 5}
    )
    with engine.connect() as conn:
        conn.execute(sqlalchemy.text("SELECT pg_advisory_lock(:k)"), {"k": key})
        try:
            yield
        finally:
            conn.execute(sqlalchemy.text("SELECT pg_advisory_unlock(:k)"), {"k": key})
    engine.dispose()


@dataclass
class StudySpec:
    name: str
    storage_url: str
    direction: Any = "maximize"  # one per objective: a list for a multi-objective study
    sampler: str = "tpe"
    seed: int = 0
    n_startup_trials: int = 4
    pruner: str = "median"
    pruner_startup_trials: int = 3
    pruner_warmup_steps: int = 0
    constraints: dict[str, float] = field(default_factory=dict)  # metric -> bound (front.py)

    @property
    def directions(self) -> list[str]:
        return [self.direction] if isinstance(self.direction, str) else list(self.direction)

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, raw: str) -> StudySpec:
        return cls(**json.loads(raw))


def make_sampler(spec: StudySpec, seed_offset: int = 0) -> optuna.samplers.BaseSampler:
    """The sampler, reseeded per trial number: workers propose different points, and a sweep is
    repeatable trial by trial. The per-trial seed mixes the sweep's seed and the trial number
    through numpy's SeedSequence, so sweeps with different seeds draw independent points (with
    `seed + number`, seeds 0 and 1 would share all but one draw)."""
    seed = int(np.random.SeedSequence([spec.seed, seed_offset]).generate_state(1)[0])
    name = spec.sampler
    # TPE, NSGA-II and GP read each trial's constraints (front.record sets them); the others
    # ignore them, and the winner is still chosen among feasible trials only
    if name == "tpe":
        return optuna.samplers.TPESampler(
            seed=seed, n_startup_trials=spec.n_startup_trials, multivariate=True, group=True
        )
    if name == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "gp":
        return optuna.samplers.GPSampler(seed=seed, n_startup_trials=spec.n_startup_trials)
    if name == "cmaes":
        if len(spec.directions) > 1:
            raise ValueError(
                "hydra.sweeper.sampler=cmaes optimises one objective; with several use tpe, "
                "nsga2, gp, random, qmc or grid"
            )
        return optuna.samplers.CmaEsSampler(seed=seed, n_startup_trials=spec.n_startup_trials)
    if name == "qmc":
        return optuna.samplers.QMCSampler(seed=spec.seed)
    if name == grid.NAME:  # the points are enqueued, each once (sweep/search/grid.py)
        return grid.GridQueue()
    raise ValueError(
        f"hydra.sweeper.sampler must be tpe, nsga2, random, gp, cmaes, qmc or grid, got {name!r}"
    )


def tied_value(study: optuna.Study) -> float | None:
    """The objective value every complete trial shares, when at least two completed and all
    scored the same (e.g. eval_f1 0: each learnt nothing or predicts one class); else None."""
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    values = [front.first_value(t) for t in complete]
    return values[0] if len(values) >= 2 and len(set(values)) == 1 else None


class SignalGuard(optuna.pruners.BasePruner):
    """Optuna's pruner, held back while the complete trials carry no signal.

    When every complete trial scored the same, they all failed alike (a learning rate that
    collapses to one class, or one that learns nothing in the budget), and a median of their
    curves says nothing about a new trial: a trial still warming up in the good range looks
    worse than runs that never learn. Pruning it also ranks it below every finished trial for
    TPE, so the sweep could end with nothing complete (BENCHMARKS.md). Pruning resumes
    as soon as one complete trial scores differently."""

    def __init__(self, inner: optuna.pruners.BasePruner):
        self.inner = inner

    def prune(self, study: optuna.Study, trial: FrozenTrial) -> bool:
        if not self.inner.prune(study, trial):
            return False
        tied = tied_value(study)
        if tied is None:
            return True
        log.info(
            "trial %d not pruned: every complete trial scored %s, nothing to compare it with",
            trial.number,
            f"{tied:.4g}",
        )
        return False


def make_pruner(spec: StudySpec) -> optuna.pruners.BasePruner:
    name = spec.pruner
    if len(spec.directions) > 1:  # Optuna's pruners take one objective (the sweeper says so)
        return optuna.pruners.NopPruner()
    if name == "median":
        return SignalGuard(
            optuna.pruners.MedianPruner(
                n_startup_trials=spec.pruner_startup_trials,
                n_warmup_steps=spec.pruner_warmup_steps,
            )
        )
    if name == "successive_halving":
        return SignalGuard(optuna.pruners.SuccessiveHalvingPruner())
    if name == "hyperband":
        # not wrapped: Optuna's samplers look for a HyperbandPruner on the study to see each
        # trial's bracket only
        return optuna.pruners.HyperbandPruner()
    if name == "none":
        return optuna.pruners.NopPruner()
    raise ValueError(
        f"hydra.sweeper.pruner must be median, successive_halving, hyperband or none, got {name!r}"
    )


def create_or_load(spec: StudySpec, storage=None) -> optuna.Study:
    storage = storage or open_storage(spec.storage_url)
    study = optuna.create_study(
        study_name=spec.name,
        storage=storage,
        directions=spec.directions,
        sampler=make_sampler(spec),
        pruner=make_pruner(spec),
        load_if_exists=True,
    )
    stored = [d.name.lower() for d in study.directions]
    if stored != spec.directions:
        raise ValueError(
            f"study {spec.name!r} was created to {','.join(stored)}, "
            f"not {','.join(spec.directions)}; use another hydra.sweeper.study_name"
        )
    return study


def trial_in_other_process(spec: StudySpec, number: int) -> optuna.Trial:
    """The live trial object for a job that runs in another process (process launchers). The
    spec's URL has no password: the job's own environment supplies it (trial_env)."""
    url = trial_env.with_local_password(spec.storage_url)
    study = create_or_load(replace(spec, storage_url=url))
    return optuna.trial.Trial(study, internals.trial_id_of(study, number))


def record_outcome(trial: optuna.Trial, outcome: Any) -> None:
    """A job in another process leaves its outcome on its trial before it returns, so the
    sweeper can tell the trial even when the launcher loses the job's return value (a sibling
    job of the batch died and the launcher raised)."""
    store = internals.storage(trial.study)
    store.set_trial_system_attr(internals.trial_id(trial), OUTCOME, asdict(outcome))


def recorded_outcome(study: optuna.Study, trial: optuna.Trial) -> dict[str, Any] | None:
    frozen = internals.storage(study).get_trial(internals.trial_id(trial))
    return frozen.system_attrs.get(OUTCOME)


def lost(study: optuna.Study, trial: optuna.Trial, reason: str, max_retries: int, parent) -> None:
    """The job died without an outcome (its process, node or SLURM job was killed): FAIL the
    trial with `reason` and enqueue its params again, like a dead worker (bounded retries)."""
    store, tid = internals.storage(study), internals.trial_id(trial)
    with contextlib.suppress(Exception):  # fail_stale may have failed it first
        store.set_trial_system_attr(tid, FAIL_REASON, reason[:500])
        study.tell(trial, state=TrialState.FAIL)
        log.warning("trial %d: %s; marked FAIL", trial.number, reason)
        _retry_and_close(study, store.get_trial(tid), reason, max_retries, parent)


def _retry_and_close(study, t: FrozenTrial, reason: str, max_retries: int, parent) -> None:
    """After a trial's worker or job died: enqueue its params again (bounded retries) and close
    its MLflow run as failed."""
    retries = int(t.system_attrs.get(RETRIES, 0))
    if retries < max_retries:
        retry(study, t, retries + 1)
    if parent is not None:
        parent.close_child(t.user_attrs.get(RUN_ID), "FAIL", {"sweep.fail_reason": reason[:250]})


def attach_trial(ctx: Any) -> None:
    """Give a trial context read from the environment (a job in another process) its live
    Optuna trial, so the job reports intermediate values and can be pruned."""
    if ctx.trial is None and ctx.spec_json:
        ctx.trial = trial_in_other_process(StudySpec.from_json(ctx.spec_json), ctx.number)


# --------------------------------------------------------------------------- the lock


class StudyLock:
    """Serialises "count, then ask" across every process of one study.

    journal / sqlite: an flock on a file beside the storage; PostgreSQL: an advisory lock;
    other storages: a lock file in .sweep/ (one machine only; said in a warning).
    """

    def __init__(self, storage_url: str, study_name: str):
        self.url = storage_url
        self.key = int(hashlib.sha1(f"{storage_url}|{study_name}".encode()).hexdigest()[:15], 16)
        self._fh = None
        self._conn = None
        self._engine = None
        self._depth = 0
        path = journal_path(storage_url)
        if path is None and storage_url.startswith("sqlite:///"):
            path = Path(storage_url[len("sqlite:///") :])
        if path is None and not storage_url.startswith("postgresql"):
            path = Path.cwd() / ".sweep" / f"lock-{self.key:x}"
            log.warning(
                "no cross-machine lock for %s: workers must share this machine",
                mask_uri(storage_url),
            )
        self.path = Path(f"{path}.{study_name}.lock") if path is not None else None

    def __enter__(self):
        self._depth += 1
        if self._depth > 1:
            return self
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fh = open(self.path, "a+")  # noqa: SIM115 - held across __enter__/__exit__
            fcntl.flock(self._fh, fcntl.LOCK_EX)
        else:
            import sqlalchemy

            if self._engine is None:
                self._engine = sqlalchemy.create_engine(
                    self.url, poolclass=sqlalchemy.pool.NullPool
                )
            self._conn = self._engine.connect()
            self._conn.execute(sqlalchemy.text("SELECT pg_advisory_lock(:k)"), {"k": self.key})
        return self

    def __exit__(self, *exc):
        self._depth -= 1
        if self._depth > 0:
            return
        if self._fh is not None:
            fcntl.flock(self._fh, fcntl.LOCK_UN)
            self._fh.close()
            self._fh = None
        if self._conn is not None:
            import sqlalchemy

            with contextlib.suppress(Exception):
                self._conn.execute(
                    sqlalchemy.text("SELECT pg_advisory_unlock(:k)"), {"k": self.key}
                )
            self._conn.close()
            self._conn = None


# --------------------------------------------------------------------------- counting


@dataclass
class Counts:
    complete: int
    pruned: int
    failures: int  # FAILs that were not retried
    running: int
    waiting: int

    @property
    def finished(self) -> int:
        return self.complete + self.pruned + self.failures


def retried_numbers(trials: list[FrozenTrial]) -> set[int]:
    return {int(t.system_attrs[RETRY_OF]) for t in trials if RETRY_OF in t.system_attrs}


def imported(t: FrozenTrial) -> bool:
    """A warm start's trial (sweep/search/warm.py): it ran in an earlier sweep."""
    return bool(t.user_attrs.get(grid.IMPORTED))


def counted(trials: list[FrozenTrial]) -> list[FrozenTrial]:
    """Finished trials that count against the budget (a retried FAIL counts through its retry).
    Imported trials never do: n_trials, the failure rate and the progress are this sweep's own."""
    retried = retried_numbers(trials)
    return [
        t
        for t in trials
        if not imported(t)
        and (
            t.state in (TrialState.COMPLETE, TrialState.PRUNED)
            or (t.state == TrialState.FAIL and t.number not in retried)
        )
    ]


def count(study: optuna.Study) -> Counts:
    trials = study.get_trials(deepcopy=False)
    done = counted(trials)
    return Counts(
        complete=sum(t.state == TrialState.COMPLETE for t in done),
        pruned=sum(t.state == TrialState.PRUNED for t in done),
        failures=sum(t.state == TrialState.FAIL for t in done),
        running=sum(t.state == TrialState.RUNNING for t in trials),
        waiting=sum(t.state == TrialState.WAITING for t in trials),
    )


# --------------------------------------------------------------------------- trial life


def beat(storage, trial_id: int) -> None:
    storage.set_trial_system_attr(trial_id, HEARTBEAT, time.time())


def claim(storage, trial_id: int) -> None:
    """Record which process runs the trial (for stale detection on the same host)."""
    storage.set_trial_system_attr(trial_id, HOST, socket.gethostname())
    storage.set_trial_system_attr(trial_id, PID, os.getpid())


def _process_gone(t: FrozenTrial) -> bool:
    if t.system_attrs.get(HOST) != socket.gethostname() or PID not in t.system_attrs:
        return False
    pid = int(t.system_attrs[PID])
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def fail_stale(
    study: optuna.Study, grace_period: float, max_retries: int, parent=None
) -> list[int]:
    """Fail RUNNING trials whose worker died; re-enqueue each with its params (bounded retries).
    Call under the study lock. Returns the numbers failed."""
    now = time.time()
    failed = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        last = t.system_attrs.get(HEARTBEAT)
        if last is None and t.datetime_start is not None:
            last = t.datetime_start.timestamp()
        silent = now - float(last or now)
        if not (_process_gone(t) or silent > grace_period):
            continue
        try:  # the reason first: a finished trial takes no more attributes
            store, tid = internals.storage(study), internals.trial_id(t)
            store.set_trial_system_attr(tid, FAIL_REASON, "worker died")
            ok = store.set_trial_state_values(tid, TrialState.FAIL)
        except Exception:  # noqa: BLE001 - its worker (or another) finished it first
            continue
        if not ok:
            continue
        failed.append(t.number)
        log.warning("trial %d: its worker died (silent %.0fs); marked FAIL", t.number, silent)
        _retry_and_close(study, t, "worker died", max_retries, parent)
    return failed


def retry(study: optuna.Study, t: FrozenTrial, retries: int) -> None:
    """Enqueue `t`'s params again; the new trial stands in for `t` in the budget.

    One write: the WAITING trial is created with its params and its tags (what
    `study.enqueue_trial` stores, plus RETRY_OF / RETRIES), a single record in a journal and a
    single transaction in an RDB storage. No process ever sees it untagged, and processes that
    retry at the same moment cannot tag each other's trial, so no lock is needed. `study.ask()`
    pops it like an enqueued trial: each suggest_* returns `t`'s value (Optuna's
    "fixed_params"), and only the params the trial suggests again are recorded on it."""
    study.add_trial(
        optuna.trial.create_trial(
            state=TrialState.WAITING,
            system_attrs={
                "fixed_params": dict(t.params),
                RETRY_OF: t.number,
                RETRIES: retries,
            },
        )
    )


def enqueue_known(study: optuna.Study, configs: list[dict[str, Any]]) -> None:
    """`hydra.sweeper.enqueue`: known configurations run first (once per study)."""
    for params in configs:
        study.enqueue_trial(params, skip_if_exists=True)


def tell(
    study: optuna.Study,
    trial: optuna.Trial,
    outcome,
    error: str,
    seconds: float,
    bounds: dict[str, float] | None = None,
) -> None:
    """Tell the study how the trial ended: its value(s), or PRUNED / FAIL; with `bounds`
    (hydra.sweeper.constraints) its constraint values and feasibility first (front.py)."""
    trial.set_user_attr("duration_s", round(seconds, 2))
    if outcome is not None:
        trial.set_user_attr("steps", outcome.steps)
        trial.set_user_attr("status", outcome.status)
        if outcome.run_id:
            trial.set_user_attr(RUN_ID, outcome.run_id)
        front.record(trial, bounds or {}, outcome.measured or outcome.final)
    if error:
        internals.storage(study).set_trial_system_attr(
            internals.trial_id(trial), FAIL_REASON, error[:500]
        )
    if outcome is None or outcome.state == "FAIL":
        study.tell(trial, state=TrialState.FAIL)
        log.warning("trial %d FAILED: %s", trial.number, error or "objective is not finite")
    elif outcome.state == "PRUNED":
        # Optuna keeps the last value the pruner saw, which is another metric (maybe negated)
        # with hydra.sweeper.prune_on: tables and trials.csv show the objective's own value
        trial.set_user_attr(OBJECTIVE_AT_PRUNE, outcome.objective)
        study.tell(trial, state=TrialState.PRUNED)
    elif len(study.directions) > 1:
        study.tell(trial, list(outcome.values or [outcome.objective]))
    else:
        study.tell(trial, outcome.objective)


def interrupt(
    study: optuna.Study, trial: optuna.Trial, parent, reason: str = "interrupted (Ctrl-C)"
) -> None:
    """Ctrl-C during a trial (or a launcher that refused its job): FAIL it and enqueue it again,
    so a re-run resumes it.

    Needs no study lock: `retry` is one atomic write, and only the process whose FAIL lands
    retries the trial (a concurrent `fail_stale` that failed it first makes `tell` raise)."""
    with contextlib.suppress(Exception):
        store = internals.storage(study)
        store.set_trial_system_attr(internals.trial_id(trial), FAIL_REASON, reason)
        study.tell(trial, state=TrialState.FAIL)
        frozen = store.get_trial(internals.trial_id(trial))
        retry(study, frozen, int(frozen.system_attrs.get(RETRIES, 0)))
        parent.close_child(
            frozen.user_attrs.get(RUN_ID), "FAIL", {"sweep.interrupted": "true"}, "KILLED"
        )


# --------------------------------------------------------------------------- results


def best_trial(study: optuna.Study, by: int = 0) -> FrozenTrial | None:
    """The best complete, feasible trial of this sweep on objective `by` (the first by default);
    with several objectives, the best of the feasible Pareto front on it (front.py)."""
    trials = study.get_trials(deepcopy=False)
    directions = [d.name.lower() for d in study.directions]
    pool = front.pareto(trials, directions) if len(directions) > 1 else front.candidates(trials)
    if not pool:
        return None
    better = metrics.pick(directions[by])
    return better(pool, key=lambda t: (t.values[by], -t.number))


def shown_value(t: FrozenTrial) -> float | None:
    """A trial's value as the objective: a PRUNED trial's last objective value, not what the
    pruner was told (hydra.sweeper.prune_on may watch another metric)."""
    return t.user_attrs.get(OBJECTIVE_AT_PRUNE, front.first_value(t))


def trial_rows(study: optuna.Study, names: list[str] | None = None) -> list[dict[str, Any]]:
    """One row per trial. With several objectives (`names`, in order) each has its own
    `values.<name>` column; a trial judged by constraints has `feasible`."""
    rows = []
    retried = retried_numbers(study.get_trials(deepcopy=False))
    for t in study.get_trials(deepcopy=False):
        duration = t.user_attrs.get("duration_s")
        if duration is None and t.datetime_complete and t.datetime_start:
            duration = (t.datetime_complete - t.datetime_start).total_seconds()
        rows.append(
            {
                "number": t.number,
                "state": t.state.name
                + (" (retried)" if t.number in retried else "")
                + (" (imported)" if imported(t) else ""),
                "value": shown_value(t),
                **_values(t, names),
                **{f"params.{k}": v for k, v in t.params.items()},
                "duration_s": round(duration, 1) if duration is not None else None,
                "steps": t.user_attrs.get("steps"),
                "run_id": t.user_attrs.get(RUN_ID),
                "fail_reason": t.system_attrs.get(FAIL_REASON, ""),
            }
        )
    return rows


def _values(t: FrozenTrial, names: list[str] | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if names and len(names) > 1:
        values = t.values or [None] * len(names)
        out = {f"values.{n}": v for n, v in zip(names, values, strict=False)}
    if front.FEASIBLE in t.user_attrs:
        out["feasible"] = bool(t.user_attrs[front.FEASIBLE])
    return out


def rows_csv(rows: list[dict[str, Any]]) -> str:
    keys: list[str] = []
    for r in rows:
        keys += [k for k in r if k not in keys]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=keys)
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue()


def _fmt(v: Any, key: str = "") -> str:
    if v is None:
        return "-"
    if key == "duration_s":
        return f"{v:.1f}"
    if isinstance(v, float):
        return f"{v:.3g}" if abs(v) < 1e-2 and v != 0 else f"{v:.4f}"
    return str(v)


def table(study: optuna.Study, names: list[str] | None = None) -> str:
    """The end-of-sweep console table: number, state, lr, schedule, the objective (each of
    several, by name), feasibility under constraints, duration, steps."""
    rows = trial_rows(study, names)
    several = names is not None and len(names) > 1
    values = [(n, f"values.{n}") for n in names] if several else [("objective", "value")]
    cols = [
        ("#", "number"),
        ("state", "state"),
        ("lr", "params.optimizer.lr"),
        ("schedule", "params.scheduler"),
        *values,
        *([("feasible", "feasible")] if any("feasible" in r for r in rows) else []),
        ("seconds", "duration_s"),
        ("steps", "steps"),
    ]
    cells = [[_fmt(r.get(k), k) for _, k in cols] for r in rows]
    widths = [max([len(h)] + [len(c[i]) for c in cells]) for i, (h, _) in enumerate(cols)]
    line = "  ".join(h.ljust(w) for (h, _), w in zip(cols, widths, strict=True))
    out = [line, "-" * len(line)]
    out += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join(out)


def progress_line(study: optuna.Study, n_trials: int, number: int) -> str:
    """One plain line per finished trial: the sweep's overall progress and the best so far."""
    c = count(study)
    t = internals.storage(study).get_trial(internals.trial_id_of(study, number))
    value = shown_value(t)
    value = "" if value is None else f" value={value:.4f}"
    best = best_trial(study)
    best_s = f"; best {best.values[0]:.4f} (trial {best.number})" if best else ""
    return (
        f"sweep: trial {number} {t.state.name}{value} | {c.finished}/{n_trials} finished "
        f"({c.pruned} pruned, {c.failures} failed){best_s}"
    )


class SweepProgress:
    """The sweep's overall progress. On a terminal (and outside CI): a bar of finished trials
    with pruned / failed counts and the best value so far, above each trial's own step bar, the
    per-trial lines printed above it. Elsewhere: one plain line per finished trial."""

    def __init__(self, study: optuna.Study, n_trials: int):
        from sweep.core.config import interactive

        self.n_trials = n_trials
        self.bar = None
        # trials already finished when the sweep (re)started are not announced again
        self.shown = {t.number for t in study.get_trials(deepcopy=False) if t.state.is_finished()}
        if interactive():
            from tqdm.auto import tqdm

            c = count(study)
            self.bar = tqdm(
                total=n_trials,
                initial=min(c.finished, n_trials),
                desc="sweep",
                unit="trial",
                position=0,
                leave=True,
                dynamic_ncols=True,
            )
            self._postfix(study)

    def _postfix(self, study: optuna.Study) -> None:
        c = count(study)
        best = best_trial(study)
        best_s = f", best {best.values[0]:.4f} (#{best.number})" if best else ""
        self.bar.n = min(c.finished, self.n_trials)
        self.bar.set_postfix_str(f"{c.pruned} pruned, {c.failures} failed{best_s}")

    def trial_done(self, study: optuna.Study, number: int) -> None:
        self._print(study, progress_line(study, self.n_trials, number))
        self.shown.add(number)

    def others_done(self, study: optuna.Study) -> None:
        """Lines for the trials that this sweep's local worker processes finished meanwhile."""
        finished = [
            t.number
            for t in study.get_trials(deepcopy=False)
            if t.state.is_finished() and t.number not in self.shown
        ]
        for number in finished:
            self.trial_done(study, number)

    def _print(self, study: optuna.Study, line: str) -> None:
        if self.bar is None:
            print(line, flush=True)
            return
        self.bar.write(line)
        self._postfix(study)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def write_results(
    study: optuna.Study, sweep_dir: Path, summary, direction: str, by: int = 0
) -> None:
    """optimization_results.yaml in the sweep dir, with best params and value (on objective
    `by`), and with several objectives their names and the Pareto front."""
    from omegaconf import OmegaConf

    best = best_trial(study, by)
    data = {
        "name": "optuna",
        "study": study.study_name,
        "direction": direction,
        "best_value": best.values[by] if best else None,
        "best_params": dict(best.params) if best else {},
        "best_trial": best.number if best else None,
        "best_run_id": best.user_attrs.get(RUN_ID) if best else None,
        "counts": summary.counts if summary else {},
    }
    if summary is not None and summary.front is not None:
        data["objectives"] = list(summary.objectives or [])
        data["front"] = summary.front
    choice = getattr(summary, "confirm", None)
    if choice is not None and choice.winner is not None:
        w = choice.winner
        data["winner"] = {
            "trial": w.candidate.number,
            "params": dict(w.candidate.params),
            "mean": w.mean,
            "std": w.std,
            "seeds": [d.seed for d in w.runs],
            "run_id": choice.winner_run.run_id,
            "test": dict(choice.test),
            "model": choice.model,
        }
    OmegaConf.save(OmegaConf.create(data), sweep_dir / "optimization_results.yaml")
