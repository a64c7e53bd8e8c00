"""The Optuna-driven Hydra sweeper: ask/tell, pruning, failures, heartbeats, resume, workers.

Budget: `n_trials` is the number of finished trials the study must hold (COMPLETE + PRUNED + FAIL,
a FAIL that was retried counting once, through its retry). Any number of `python train.py -m`
processes on one storage cooperate: a trial is only started, under a lock, while finished +
running trials are fewer than `n_trials`, so together they stop at exactly `n_trials`.

Stale trials: every running trial gets a heartbeat (a system attribute) from the process that runs
it. A RUNNING trial whose heartbeat is older than `grace_period`, or whose process on this host is
gone, is failed and re-enqueued with the same parameters (at most `max_retries` times).
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import logging
import math
import os
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import (
    ChoiceSweep,
    IntervalSweep,
    Override,
    RangeSweep,
)
from hydra.core.plugins import Plugins
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)

from sweep.core import devices, internals, metrics, trial_env
from sweep.core.bad_input import describe
from sweep.core.config import (
    ConfigError,
    check_constraints,
    check_sweeper,
    mask_files,
    mask_uri,
    redact,
    secret_values,
    strip_uri_password,
    uri_has_password,
    validate,
)
from sweep.core.errors import JobLost, UserError
from sweep.core.overrides import to_override
from sweep.search import (
    advice,
    confirm_stage,
    front,
    grid,
    identity,
    interrupts,
    refit,
    remote,
    warm,
    workers,
)
from sweep.search import study as study_mod
from sweep.search.parent import ParentRun
from sweep.train.runner import TrialContext, TrialOutcome, set_trial_context

log = logging.getLogger(__name__)
_ABSENT = object()


@dataclass
class SweepResult:
    """How a sweep command ended: the process's exit code (1: the failure limit stopped it) and,
    for the main worker, the summary it wrote."""

    exit_code: int
    summary: Any = None


class SweepError(UserError, RuntimeError):
    """The sweep cannot run or had to stop; one line saying why."""


# --------------------------------------------------------------------------- search space


@dataclass
class SearchSpace:
    distributions: dict[str, BaseDistribution] = field(default_factory=dict)
    fixed: dict[str, Any] = field(default_factory=dict)
    conditions: dict[str, dict[str, list]] = field(default_factory=dict)
    given: dict[str, Any] = field(default_factory=dict)  # plain command-line values

    def suggest(self, trial: optuna.Trial) -> dict[str, Any]:
        """Sample every active parameter; a conditional one only when its condition holds."""
        values: dict[str, Any] = {}
        pending = list(self.distributions)
        while pending:  # conditions may refer to params declared later
            progressed = False
            for name in list(pending):
                cond = self.conditions.get(name, {})
                if any(dep in pending for dep in cond):
                    continue
                pending.remove(name)
                progressed = True
                known = {**self.given, **self.fixed, **values}
                if all(str(known.get(dep)) in map(str, ok) for dep, ok in cond.items()):
                    values[name] = _suggest(trial, name, self.distributions[name])
            if not progressed:
                raise SweepError(f"hydra.sweeper.conditions form a cycle among {pending}")
        return values


def _suggest(trial: optuna.Trial, name: str, dist: BaseDistribution) -> Any:
    if isinstance(dist, FloatDistribution):
        return trial.suggest_float(name, dist.low, dist.high, log=dist.log, step=dist.step)
    if isinstance(dist, IntDistribution):
        return trial.suggest_int(name, dist.low, dist.high, log=dist.log, step=dist.step)
    assert isinstance(dist, CategoricalDistribution)
    return trial.suggest_categorical(name, dist.choices)


def distribution_of(override: Override) -> BaseDistribution:
    """Hydra's sweep grammar -> an Optuna distribution.

    choice(a, b)            -> categorical
    range(1, 10, 2)         -> int with step (float range: categorical of its values)
    interval(0.1, 1)        -> float uniform; int(interval(1, 8)) -> int
    tag(log, interval(...)) -> log scale
    """
    value = override.value()
    is_log = "log" in getattr(value, "tags", set())
    if isinstance(value, ChoiceSweep):
        return CategoricalDistribution([c for c in value.list])
    if isinstance(value, RangeSweep):
        start, stop, step = value.start, value.stop, value.step
        if all(isinstance(x, int) for x in (start, stop, step)) and step > 0:
            last = start + ((stop - start - 1) // step) * step
            return IntDistribution(int(start), int(last), step=int(step))
        return CategoricalDistribution(list(override.sweep_iterator()))
    if isinstance(value, IntervalSweep):
        if isinstance(value.start, int) and isinstance(value.end, int):
            return IntDistribution(int(value.start), int(value.end), log=is_log)
        return FloatDistribution(float(value.start), float(value.end), log=is_log)
    raise SweepError(f"cannot search {override.input_line!r}: use choice, range or interval")


def build_space(
    params: dict[str, Any], arguments: list[str], conditions: dict
) -> tuple[SearchSpace, list[str]]:
    """Search space from `hydra.sweeper.params` + command-line sweeps; other overrides stay fixed.

    Returns the space and the plain (non-sweep) command-line overrides every trial gets.
    """
    parser = OverridesParser.create()
    lines = [f"{k}={v}" for k, v in params.items()]
    space = SearchSpace(conditions={k: dict(v) for k, v in (conditions or {}).items()})
    passthrough: list[str] = []
    try:
        parsed_cfg = parser.parse_overrides(lines)
        parsed_cli = parser.parse_overrides(arguments)
    except Exception as e:  # hydra's OverrideParseException
        raise SweepError(f"bad search-space override: {str(e).splitlines()[0]}") from None
    for ov in parsed_cfg + parsed_cli:
        key = ov.get_key_element()
        if ov.is_sweep_override():
            if ov.is_discrete_sweep() and not isinstance(ov.value(), ChoiceSweep | RangeSweep):
                raise SweepError(f"cannot search {ov.input_line!r}")
            space.fixed.pop(key, None)
            space.distributions[key] = distribution_of(ov)
        elif ov in parsed_cli:  # a plain command-line value wins over the search config
            space.distributions.pop(key, None)
            space.fixed.pop(key, None)
            space.given[key] = ov.value()
            passthrough.append(ov.input_line)
        else:
            space.fixed[key] = ov.value()
    for name, cond in list(space.conditions.items()):
        if name not in space.distributions:
            if name in space.given:  # fixed on the command line: nothing left to condition
                del space.conditions[name]
                continue
            raise SweepError(f"hydra.sweeper.conditions names {name!r}, which is not searched")
        for dep in cond:
            if dep not in space.distributions and dep not in space.fixed and dep not in space.given:
                raise SweepError(f"condition of {name!r} refers to {dep!r}, which is not a param")
    return space, passthrough


def _pin_experiment(fixed: list[str], experiment: str) -> None:
    """Every trial logs into the sweep's MLflow experiment, beside its parent run: the default
    name `${model.name}-${data.name}` would otherwise follow a searched group into another
    experiment per option (`model=choice(tiny,minilm)`). A command-line value is kept. Quoted,
    so that any name parses (`#`, `!`, non-ASCII); one Hydra cannot quote is left unpinned."""
    if any(f.lstrip("+~").startswith("tracking.experiment=") for f in fixed):
        return
    quote = next((q for q in ("'", '"') if q not in experiment), None)
    if quote and not experiment.endswith("\\"):
        fixed.append(f"tracking.experiment={quote}{experiment}{quote}")


# --------------------------------------------------------------------------- heartbeats


class Heartbeat:
    """Writes a heartbeat into every trial this process runs, from a background thread."""

    def __init__(self, storage, interval: float):
        self.storage = storage
        self.interval = interval
        self.trial_ids: set[int] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sweep-heartbeat", daemon=True)
        self._thread.start()

    def add(self, trial_id: int) -> None:
        with self._lock:
            self.trial_ids.add(trial_id)
        study_mod.beat(self.storage, trial_id)

    def discard(self, trial_id: int) -> None:
        with self._lock:
            self.trial_ids.discard(trial_id)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            with self._lock:
                ids = list(self.trial_ids)
            for tid in ids:
                try:
                    study_mod.beat(self.storage, tid)
                except Exception as e:  # noqa: BLE001 - keep beating the others
                    log.debug("heartbeat of trial %s failed: %s", tid, e)

    def stop(self) -> None:
        self._stop.set()


# --------------------------------------------------------------------------- the sweeper


@dataclass
class Launched:
    trial: optuna.Trial
    params: dict[str, Any]
    overrides: list[str]
    started: float


def _timing_note(goals: front.Objectives, placement: workers.Placement, n_jobs: int) -> None:
    """A timed cost (latency, training seconds) as an objective or a bound, with trials side by
    side on the CPU: each is measured under the others' load, so say so once."""
    timed = [m for m in (*goals.names, *goals.bounds) if m in metrics.TIMED]
    at_once = len(placement.devices) * n_jobs
    if timed and at_once > 1 and not placement.gpus:
        print(
            f"note: {', '.join(dict.fromkeys(timed))} is timed while {at_once} trials run side "
            "by side on this machine's cores, each under the others' load; for comparable "
            "timings set hydra.sweeper.n_workers=1 (and n_jobs=1)",
            file=sys.stderr,
        )


def front_table(summary) -> str:
    """The Pareto front printed under the trial table (several objectives)."""
    lines = [f"Pareto front ({', '.join(summary.objectives or [])}), feasible trials only:"]
    for r in summary.front:
        params = " ".join(f"{k}={v}" for k, v in r["params"].items())
        lines.append(f"  trial {r['number']:<4} {r['values']}  {params}")
    return "\n".join(lines)


@dataclass
class _Run:
    """One sweep command's state, filled in step by step from its checks to its summary."""

    secrets: set[str]
    space: SearchSpace
    fixed: list[str]  # overrides every trial gets
    helper: bool  # a helper process started by a main worker (sweep/search/workers.py)
    base: DictConfig
    objective: str  # the metric that picks the winner (the first objective by default)
    direction: str  # its direction
    storage_url: str
    tracker_uri: str | None
    storage: Any = None
    study_name: str = ""
    sweep_dir: Path = Path()
    spec: Any = None  # study_mod.StudySpec
    study: Any = None  # optuna.Study
    lock: Any = None  # study_mod.StudyLock
    helpers: Any = None  # workers.Helpers
    parent: Any = None  # ParentRun
    heartbeat: Any = None  # Heartbeat
    exit_code: int = 0
    objectives: Any = None  # front.Objectives: every objective, direction and bound
    reason: str = ""  # why the sweep stopped before its budget, printed last
    launched: list[Launched] = field(default_factory=list)  # asked for, not yet told
    job_context: Any = None  # the TrialContext every job is told (trial_env.TRIAL), less number
    placement: Any = None  # workers.Placement (main worker only)
    grid: list[dict[str, Any]] | None = None  # sampler=grid: its points (sweep/search/grid.py)
    warm: Any = None  # warm.Source: hydra.sweeper.warm_start's study (sweep/search/warm.py)


class SweepRunner:
    def __init__(self, **kwargs: Any) -> None:
        self.opts = OmegaConf.create(kwargs)
        self.config: DictConfig | None = None
        self.launcher = None
        self.local = False

    def setup(
        self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig
    ) -> None:
        self.hydra_context = hydra_context
        self.config = config
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config
        )

    # ---- preparation: everything that can fail fast, before any trial

    def _job_config(self, overrides: list[str]) -> DictConfig:
        cfg = self.hydra_context.config_loader.load_sweep_config(self.config, overrides)
        with contextlib.suppress(Exception):
            OmegaConf.set_struct(cfg, False)
        cfg.pop("hydra", None)
        return cfg

    def _check_space(self, space: SearchSpace, fixed: list[str]) -> DictConfig:
        """Compose and validate the base config and each end of every searched range."""
        base = self._job_config(fixed)
        validate(base)
        refit.check_search(base, space.distributions, self.opts)  # no trial on the test split
        for name, dist in space.distributions.items():
            if isinstance(dist, CategoricalDistribution):
                ends = list(dist.choices)
            else:
                ends = [dist.low, dist.high]
            for v in ends:
                try:
                    known = OmegaConf.select(base, name, default=_ABSENT) is not _ABSENT
                    plain = isinstance(v, int | float) and not isinstance(v, bool)
                    if plain and known and "/" not in name:
                        # a numeric end of a plain key: set it on the base (composing costs ~0.5s)
                        cfg = copy.deepcopy(base)
                        OmegaConf.update(cfg, name, v, merge=False)
                    else:  # a config group choice (scheduler=cosine), or a key the config lacks
                        # (a typo: Hydra's composition names it), needs Hydra's composition
                        cfg = self._job_config([*fixed, to_override(name, v)])
                    validate(cfg, check_device=False)
                except ConfigError as e:
                    raise SweepError(f"search space {name}={v}: {e}") from None
                except Exception as e:  # noqa: BLE001 - a composition error
                    raise SweepError(f"search space {name}={v}: {describe(e)}") from None
        return base

    def sweep(self, arguments: list[str]) -> SweepResult:
        """Run one sweep command. Bad input raises a UserError, Ctrl-C a KeyboardInterrupt (after
        the trials in flight are failed and re-enqueued); the Hydra shim turns both, and a
        non-zero `exit_code`, into the process's exit."""
        run = self._prepare(arguments)
        if run is None:
            return SweepResult(0)
        self._open_study(run)
        self._start(run)
        self._loop(run)
        return self._summarise(run)

    # ---- the steps of one sweep command, in order

    def _prepare(self, arguments: list[str]) -> _Run | None:
        """Redact secrets, build and check the search space and the options; no storage yet.
        None: a helper whose main worker never got the sweep started, so nothing to do."""
        o = self.opts
        # secrets on the command line or in the config stay out of logs and Hydra's files
        secrets = secret_values(OmegaConf.to_container(self.config, resolve=False))
        secrets |= secret_values(list(arguments))
        redact(secrets)
        space, passthrough = build_space(o.params or {}, arguments, o.conditions or {})
        fixed = passthrough + [to_override(k, v) for k, v in space.fixed.items()]
        helper = workers.is_helper()
        points, o.n_trials = grid.plan(o, space, quiet=helper)  # n_trials null: 12 or the grid's
        # a helper runs the very command the main worker checked
        base = self._job_config(fixed) if helper else self._check_space(space, fixed)
        # a helper was placed by its main worker (its own CUDA_VISIBLE_DEVICES)
        placement = None if helper else self._placement(base)

        from sweep.track import tracking

        goals = self._objectives(base, quiet=helper)
        if placement is not None:
            _timing_note(goals, placement, self.opts.n_jobs)
        experiment = base.tracking.experiment
        _pin_experiment(fixed, experiment)
        storage_url = o.storage or study_mod.default_storage(experiment, o.study_name)
        warm_from = warm.parse(o.get("warm_start"), storage_url)  # its spelling; no store yet
        tracker_uri = tracking.resolve_uri(base.tracking.uri) if base.tracking.enabled else None
        if helper and not workers.await_main():
            log.info("the main worker did not get the sweep started: nothing to do")
            return None
        if tracker_uri:
            tracking.check_reachable(tracker_uri, base.tracking.connect_timeout)
        remote.check(self.launcher, storage_url, tracker_uri, base)  # before any job is submitted
        return _Run(
            secrets=secrets,
            space=space,
            fixed=fixed,
            helper=helper,
            base=base,
            objective=goals.winner_metric,
            direction=goals.winner_direction,
            storage_url=storage_url,
            tracker_uri=tracker_uri,
            placement=placement,
            grid=points,
            objectives=goals,
            warm=warm_from,
        )

    def _objectives(self, base: DictConfig, quiet: bool) -> front.Objectives:
        """trainer.objective (one or several), their directions, the constraints and the winner
        rule, checked (one error line each); with several objectives a note that Optuna's
        pruners, which take one, are off (sweep/search/front.py)."""
        o = self.opts
        names = metrics.objectives(base.trainer.objective)
        directions = metrics.directions(o.direction, names)
        check_sweeper(o, directions, names)
        goals = front.Objectives(
            names=names,
            directions=directions,
            bounds=check_constraints(o.constraints or {}),
            winner_by=getattr(o.confirm, "winner_by", None),
        )
        if goals.several and o.pruner != "none" and not quiet:
            print(
                f"note: pruning is off: Optuna's pruners take one objective and this sweep has "
                f"{len(names)} ({', '.join(names)}); every trial trains to the end",
                file=sys.stderr,
            )
        return goals

    def _open_study(self, run: _Run) -> None:
        """Open the storage, choose the study by identity, create or load it, record it."""
        o = self.opts
        run.storage = study_mod.open_storage(run.storage_url)
        ident_doc = self._identity_doc(run)
        ident = identity.digest(ident_doc)
        run.study_name, note = identity.choose_study(
            run.storage,
            o.study_name,
            run.base.tracking.experiment,
            ident,
            ident_doc,
            run.space.distributions,
        )
        if note and not run.helper:
            print(f"note: {note}", file=sys.stderr)

        run.sweep_dir = Path(self.config.hydra.sweep.dir)
        run.sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.config, run.sweep_dir / "multirun.yaml")
        if run.secrets:
            mask_files([run.sweep_dir / "multirun.yaml"], run.secrets)

        run.spec = spec = self._study_spec(run)
        for make in (study_mod.make_sampler, study_mod.make_pruner):
            try:
                make(spec)
            except (ValueError, ImportError) as e:
                raise SweepError(str(e)) from None
        # a warm start's source is read and checked before the study is made (a helper's main
        # worker imported it before starting it)
        todo = None
        if not run.helper:
            todo = warm.plan(
                run.warm, run.storage, run.study_name, run.space, spec.directions, ident_doc
            )
        try:
            run.study = study_mod.create_or_load(spec, run.storage)
        except ValueError as e:  # e.g. the stored study optimises the other direction
            raise SweepError(str(e)) from None
        run.lock = study_mod.StudyLock(run.storage_url, run.study_name)
        with run.lock:
            identity.record(run.study, ident, ident_doc)
            study_mod.enqueue_known(run.study, [dict(e) for e in o.enqueue])
            if run.grid is not None:
                grid.enqueue(run.study, run.grid)
            if warm.apply(run.study, todo):  # once per study, after the queued trials
                for line in todo.notes:
                    print(f"note: {line}", file=sys.stderr)

    def _identity_doc(self, run: _Run) -> dict:
        o = self.opts
        return identity.describe(
            run.base,
            run.space.distributions,
            o.conditions or {},
            {
                "direction": run.objectives.directions
                if run.objectives.several
                else run.objectives.directions[0],
                "sampler": o.sampler,
                "seed": o.seed,
                "n_startup_trials": o.n_startup_trials,
                "pruner": o.pruner,
                "pruner_startup_trials": o.pruner_startup_trials,
                "pruner_warmup_steps": o.pruner_warmup_steps,
                "prune_on": o.prune_on or run.objectives.names[0],
                "warm_start": run.warm.spelled() if run.warm else None,
                # only when set: a sweep without constraints keeps the identity it had before
                **({"constraints": run.objectives.bounds} if run.objectives.bounds else {}),
            },
            pinned={f.split("=", 1)[0].lstrip("+~") for f in run.fixed},
        )

    def _study_spec(self, run: _Run) -> study_mod.StudySpec:
        o = self.opts
        return study_mod.StudySpec(
            name=run.study_name,
            storage_url=run.storage_url,
            direction=run.objectives.directions
            if run.objectives.several
            else run.objectives.directions[0],
            sampler=o.sampler,
            seed=o.seed,
            n_startup_trials=o.n_startup_trials,
            pruner=o.pruner,
            pruner_startup_trials=o.pruner_startup_trials,
            pruner_warmup_steps=o.pruner_warmup_steps,
            constraints=run.objectives.bounds,
        )

    def _start(self, run: _Run) -> None:
        """Start the local helpers, open the MLflow parent run, set the trials' environment."""
        o = self.opts
        run.helpers = helpers = workers.Helpers()
        if not run.helper:
            self._start_helpers(run)
        run.parent = ParentRun(
            run.study, run.base, run.tracker_uri, run.spec, run.space, run.lock, run.objectives
        )
        try:
            run.parent.open()
        except BaseException:
            helpers.ready(ok=False)
            helpers.stop()
            raise
        helpers.ready()
        log.info(
            "study %r on %s: %d/%d trials finished; MLflow parent run %s",
            run.study_name,
            mask_uri(run.storage_url),
            study_mod.count(run.study).finished,
            o.n_trials,
            run.parent.run_id,
        )
        self.local = bool(helpers.procs)  # it started helpers: it shows their trials too
        # what every job of this sweep is told (its trial number is added per job): in its
        # overrides, never through this process's environment, and without the password
        spec = dataclasses.replace(run.spec, storage_url=strip_uri_password(run.storage_url))
        run.job_context = TrialContext(
            study_name=run.study_name,
            number=-1,  # each job's own, in _ask
            parent_run_id=run.parent.run_id,
            objective=run.objective,
            prune_on=o.prune_on,
            spec_json=spec.to_json(),
        )
        if uri_has_password(run.storage_url):
            os.environ[trial_env.STORAGE_URL] = run.storage_url  # jobs on this machine only

    def _loop(self, run: _Run) -> None:
        """Ask and run trials until the budget, the timeout or the failure limit is reached."""
        o = self.opts
        run.heartbeat = Heartbeat(run.storage, o.heartbeat_interval)
        self.progress = study_mod.SweepProgress(run.study, o.n_trials)
        started = time.time()
        unwatch = interrupts.watch()
        try:
            while True:
                interrupts.check()
                if o.timeout and time.time() - started > o.timeout:
                    run.reason = f"timeout of {o.timeout}s reached; re-run the command to continue"
                    break
                # every trial asked for is in `launched` at once: a Ctrl-C from here on fails
                # and re-enqueues it instead of leaving it RUNNING until it goes stale
                batch: list[Launched] = []
                run.launched = batch
                c = self._ask(run, batch)
                if c is None:
                    break
                if not batch:
                    if c.running and not run.helper:
                        # other workers hold the last trials; watch them for staleness (a helper
                        # leaves that, and the summary, to the main worker and exits)
                        if self.local:
                            self.progress.others_done(run.study)
                        time.sleep(min(o.heartbeat_interval, 1.0 if self.local else 5.0))
                        continue
                    break
                self._run_batch(batch, run.study, run.parent, run.objective, run.heartbeat)
                run.launched = []
        except KeyboardInterrupt:
            self._interrupted(run)
            raise
        except BaseException as e:
            run.helpers.stop()
            if isinstance(e, UserError) and not run.helper:
                run.parent.finish(status="FAILED")
            raise
        finally:
            unwatch()
            run.heartbeat.stop()
            if self.local:
                with contextlib.suppress(Exception):
                    self.progress.others_done(run.study)
            self.progress.close()

    def _ask(self, run: _Run, batch: list[Launched]) -> study_mod.Counts | None:
        """Under the study lock: fail stale trials, then ask for as many trials as the budget
        leaves, appending each to `batch` as soon as it exists. None: too many failures."""
        o = self.opts
        study = run.study
        with run.lock:
            study_mod.fail_stale(study, o.grace_period, o.max_retries, run.parent)
            c = study_mod.count(study)
            if c.failures > math.floor(o.max_failure_rate * o.n_trials):
                run.exit_code = 1
                run.reason = (
                    f"{c.failures} failed trials exceed max_failure_rate="
                    f"{o.max_failure_rate} of n_trials={o.n_trials}"
                )
                return None
            free = o.n_trials - c.finished - c.running
            if run.grid is not None:  # a grid runs its enqueued points only, each once
                free = min(free, c.waiting)
            for _ in range(max(0, min(o.n_jobs, free))):
                study.sampler = study_mod.make_sampler(run.spec, seed_offset=len(study.trials))
                item = Launched(study.ask(), {}, [], time.time())
                batch.append(item)
                trial = item.trial
                study_mod.claim(run.storage, internals.trial_id(trial))
                run.heartbeat.add(internals.trial_id(trial))
                item.params = run.space.suggest(trial)
                item.overrides = run.fixed + [to_override(k, v) for k, v in item.params.items()]
                job = dataclasses.replace(run.job_context, number=trial.number)
                item.overrides.append(trial_env.override(trial_env.TRIAL, job.token()))
        return c

    def _interrupted(self, run: _Run) -> None:
        """Ctrl-C: fail and re-enqueue the trials in flight, stop the helpers (the caller
        re-raises the interrupt)."""
        for item in run.launched:
            study_mod.interrupt(run.study, item.trial, run.parent)
        run.helpers.stop()
        if not run.helper:
            run.parent.finish(status="KILLED")
        print(
            "\ninterrupted: unfinished trials were failed and re-enqueued; "
            "re-run the same command to resume",
            file=sys.stderr,
        )

    def _summarise(self, run: _Run) -> SweepResult:
        """Confirm the best configurations (every worker takes part), wait for the helpers; the
        main worker finishes the parent run and prints the table. Exit code 1 when the failure
        limit stopped the sweep."""
        choice = None
        stage = confirm_stage.Stage(run, self.opts, self.launcher, self._job_config)
        try:
            choice = stage.confirm()
        except KeyboardInterrupt:
            run.helpers.stop()
            if not run.helper:
                run.parent.finish(status="KILLED")
                print(
                    "\ninterrupted during confirmation: the finished confirmation runs are kept; "
                    "re-run the same command to complete it",
                    file=sys.stderr,
                )
            raise
        for problem in run.helpers.wait():
            log.warning(problem)
        if run.helper:
            if run.reason:
                print(("error: " if run.exit_code else "note: ") + run.reason, file=sys.stderr)
            return SweepResult(run.exit_code)  # the main worker summarises the sweep
        # a note where the best trials sit at an edge of a numeric range (sweep/search/advice.py)
        notes = advice.notes(run.study, run.space.distributions, self._job_config, run.fixed)
        status = "FAILED" if run.exit_code else "FINISHED"
        summary = run.parent.finish(status=status, choice=choice, advice=notes)
        study_mod.write_results(run.study, run.sweep_dir, summary, run.direction, run.objectives.by)
        print(summary.table)
        if summary.front:
            print(front_table(summary))
        self._none_feasible(run)
        if choice is not None:
            print(choice.table())
            for note in choice.notes:
                print(f"note: {note}", file=sys.stderr)
            if choice.error and not run.reason:
                run.exit_code, run.reason = 1, choice.error
        for note in notes:
            print(f"note: {note}", file=sys.stderr)
        tied = study_mod.tied_value(run.study)
        if tied is not None:
            print(
                f"note: every complete trial scored {run.objective}={tied:.4g}: the search found "
                "nothing to tell them apart (each learnt nothing, or predicts one class); try "
                "another optimizer.lr range or more trials",
                file=sys.stderr,
            )
        if run.reason:
            print(("error: " if run.exit_code else "note: ") + run.reason, file=sys.stderr)
        return SweepResult(run.exit_code, summary)

    def _none_feasible(self, run: _Run) -> None:
        """Constraints that no complete trial met: no winner, one line, exit 1."""
        bounds = run.objectives.bounds
        trials = run.study.get_trials(deepcopy=False)
        complete = [t for t in trials if t.state.name == "COMPLETE"]
        if not bounds or not complete or front.candidates(trials):
            return
        wanted = ", ".join(
            f"{m} {'<=' if metrics.direction(m) == 'minimize' else '>='} {b:g}"
            for m, b in bounds.items()
        )
        run.exit_code = 1
        run.reason = run.reason or (
            f"no trial met hydra.sweeper.constraints ({wanted}) in {len(complete)} complete "
            "trial(s): no winner; loosen a bound or search where the cost is lower"
        )

    def _placement(self, base: DictConfig) -> workers.Placement:
        """The local workers and the GPU each sees (sweep/search/workers.py); bad GPU settings
        fail here, before any store is opened."""
        o = self.opts
        return workers.place(
            o.gpus,
            o.trials_per_gpu,
            o.n_workers,
            visible=devices.visible_gpus(),
            device=base.trainer.device,
            in_process=isinstance(self.launcher, internals.basic_launcher()),
            cores_here=workers.cores(),
        )

    def _start_helpers(self, run: _Run) -> None:
        """Pin this process to its GPU and start the other local workers (sweep/search/
        workers.py). Without `trainer.threads`, trials that run side by side (several workers,
        or a parallel launcher's `n_jobs`) get an equal share of the cores each: torch's default
        of one thread per core in every process oversubscribes them, and training slowed ~8x
        (BENCHMARKS.md, "The test suite")."""
        c = study_mod.count(run.study)
        placement = run.placement.trimmed(self.opts.n_trials - c.finished - c.running)
        workers.pin_self(placement.devices[0])
        in_process = isinstance(self.launcher, internals.basic_launcher())
        n = len(placement.devices)
        side_by_side = n * (1 if in_process else self.opts.n_jobs)  # trials at once, here
        threads = None
        if side_by_side > 1 and run.base.trainer.get("threads") is None:
            threads = workers.threads_each(side_by_side)
            run.fixed.append(f"trainer.threads={threads}")
        if n > 1:
            run.helpers.start(placement.devices, run.sweep_dir, threads)

    def _run_batch(
        self, batch: list[Launched], study, parent, objective: str, heartbeat: Heartbeat
    ) -> None:
        in_process = isinstance(self.launcher, internals.basic_launcher())
        idx = len(study.trials) - len(batch)
        if in_process:
            # trials run one by one in this process: hand each its trial object in memory
            returns = []
            for item in batch:
                set_trial_context(
                    TrialContext(
                        study_name=study.study_name,
                        number=item.trial.number,
                        trial_id=internals.trial_id(item.trial),
                        parent_run_id=parent.run_id,
                        trial=item.trial,
                        objective=objective,
                        prune_on=self.opts.prune_on,
                    )
                )
                try:
                    returns.extend(
                        self.launcher.launch([item.overrides], initial_job_idx=item.trial.number)
                    )
                finally:
                    set_trial_context(None)
                self._tell(study, item, returns[-1], parent, heartbeat)
            return
        try:
            returns = self.launcher.launch([b.overrides for b in batch], initial_job_idx=idx)
        except UserError:
            # the engine refused the jobs (bad launcher options): nothing ran; the trials go back
            # to the queue as after Ctrl-C, and the sweep stops with the engine's one line
            for item in batch:
                heartbeat.discard(internals.trial_id(item.trial))
                study_mod.interrupt(study, item.trial, parent, "its job was not submitted")
            raise
        except Exception as e:  # noqa: BLE001 - e.g. a worker process or a cluster job was killed
            # the jobs that did finish left their outcome on their trial; the rest are lost
            log.error("the launcher failed (%s): reading each trial's outcome from the study", e)
            returns = [internals.failed_job(JobLost(f"{type(e).__name__}: {e}")) for _ in batch]
        for item, ret in zip(batch, returns, strict=True):
            self._tell(study, item, ret, parent, heartbeat)

    def _tell(self, study, item: Launched, ret, parent, heartbeat: Heartbeat) -> None:
        from hydra.core.utils import JobStatus

        interrupts.check()  # a trial that failed because Ctrl-C was swallowed is interrupted
        trial = item.trial
        outcome: TrialOutcome | None = None
        error = ""
        value = internals.job_value(ret)
        if ret.status == JobStatus.COMPLETED and isinstance(value, TrialOutcome):
            outcome = value
        elif ret.status == JobStatus.COMPLETED:
            error = f"the task returned {type(value).__name__}, not a trial outcome"
        else:
            exc = value
            error = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        heartbeat.discard(internals.trial_id(trial))
        if isinstance(value, JobLost):
            stored = study_mod.recorded_outcome(study, trial)
            if stored is None:
                study_mod.lost(study, trial, f"job lost: {value}", self.opts.max_retries, parent)
                self.progress.trial_done(study, trial.number)
                return
            outcome, error = TrialOutcome(**stored), ""
        bounds = check_constraints(self.opts.constraints or {})
        study_mod.tell(study, trial, outcome, error, time.time() - item.started, bounds)
        parent.after_trial(trial.number, outcome, error)
        self.progress.trial_done(study, trial.number)
        if self.local:
            self.progress.others_done(study)
