"""One job from a composed config: checks, MLflow run, training, the objective.

`train.py` calls `run_job` for `python train.py` and for every trial of a sweep; `reproduce` calls
it with a logged config. In a sweep the sweeper hands the trial over through `TrialContext`
(in memory when the trial runs in the sweeper's process, through $SWEEP_TRIAL otherwise).
"""

from __future__ import annotations

import json
import logging
import math
import os
from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig, OmegaConf

from sweep.core import trial_env
from sweep.core.config import (
    MASK,
    is_secret_key,
    mask_tree,
    mask_uri,
    resolved,
    validate,
)
from sweep.core.metrics import direction as metric_direction
from sweep.core.metrics import objectives
from sweep.train import oom
from sweep.train.gpu import device_tags, keep_one_gpu
from sweep.train.oom import OutOfMemory, free_memory

log = logging.getLogger(__name__)

FAIL_REASON = "sweep.fail_reason"  # tag of a FAILED run, user attr of its FAIL trial


@dataclass
class TrialContext:
    """What a trial's job needs from the sweeper."""

    study_name: str
    number: int
    trial_id: int | None = None
    parent_run_id: str | None = None
    trial: Any = None  # optuna.Trial (in the sweeper's process, or rebuilt from the storage)
    objective: str = "eval_f1"
    prune_on: str | None = None  # the metric the pruner sees; None: the objective
    spec_json: str | None = None  # the study's StudySpec, for jobs in another process
    # (the entry point attaches the live trial: sweep.search.study.attach_trial)

    def token(self) -> dict[str, Any]:
        """What a job in another process is given (sweep.core.trial_env): no live objects."""
        return {
            "spec": self.spec_json,
            "number": self.number,
            "parent": self.parent_run_id,
            "objective": self.objective,
            "prune_on": self.prune_on,
        }

    @classmethod
    def from_env(cls) -> TrialContext | None:
        """A job launched in another process (joblib, SLURM, Ray) finds its trial in its own
        overrides: `hydra.job.env_set.SWEEP_TRIAL`, set per job by the sweeper."""
        data = trial_env.from_env(trial_env.TRIAL)
        if not data:
            return None
        return cls(
            study_name=json.loads(data["spec"])["name"],
            number=int(data["number"]),
            parent_run_id=data.get("parent") or None,
            objective=data.get("objective") or "eval_f1",
            prune_on=data.get("prune_on") or None,
            spec_json=data["spec"],
        )


_current: TrialContext | None = None


def set_trial_context(ctx: TrialContext | None) -> None:
    global _current
    _current = ctx


def current_trial_context() -> TrialContext | None:
    if _current is not None:
        return _current
    return TrialContext.from_env()


@dataclass
class TrialOutcome:
    """What a trial's job returns to the sweeper (picklable, for process launchers)."""

    state: str  # COMPLETE | PRUNED | FAIL
    objective: float
    status: str  # completed | pruned | diverged
    steps: int
    total_steps: int
    seconds: float
    run_id: str | None
    final: dict[str, float]
    # every objective's value in trainer.objective's order (several objectives); None: only
    # `objective`
    values: list[float] | None = None
    # the evaluation the objectives came from, with the run's costs: what constraints bound
    measured: dict[str, float] | None = None


def optuna_state(status: str, objective: float) -> str:
    """Our mapping of a run's end to Optuna: divergence (NaN/inf loss) is PRUNED, because it says
    the hyperparameters are bad, not that the infrastructure broke; a finished run whose objective
    is not finite is FAIL, as Optuna itself treats it."""
    if status in ("pruned", "diverged"):
        return "PRUNED"
    return "COMPLETE" if math.isfinite(objective) else "FAIL"


def run_name(cfg: DictConfig, ctx: TrialContext | None = None) -> str:
    name = (
        cfg.tracking.run_name or f"{cfg.model.name} lr={cfg.optimizer.lr:.3g} {cfg.scheduler.name}"
    )
    return f"trial-{ctx.number} {name}" if ctx else name


def config_yaml(cfg: DictConfig) -> str:
    """The fully resolved config with secrets masked: what `reproduce` re-runs."""
    return OmegaConf.to_yaml(OmegaConf.create(mask_tree(resolved(cfg))))


def make_tracker(cfg: DictConfig, check: bool = True):
    from sweep.track import tracking

    if not cfg.tracking.enabled:
        return tracking.NullTracker()
    uri = tracking.resolve_uri(cfg.tracking.uri)
    if check:
        tracking.check_reachable(uri, cfg.tracking.connect_timeout)
    return tracking.Tracker(
        uri, cfg.tracking.experiment, system_metrics=cfg.tracking.get("system_metrics", False)
    )


def mask_override(override: str) -> str:
    """`x.hf_token=abc` -> `x.hf_token=***`; credentials inside URIs masked too."""
    key, sep, value = override.partition("=")
    if sep and is_secret_key(key.lstrip("+~")):
        return f"{key}={MASK}"
    return mask_uri(override)


def _hydra_overrides() -> list[str]:
    try:
        from hydra.core.hydra_config import HydraConfig

        task = HydraConfig.get().overrides.task
    except ValueError:  # not under Hydra (reproduce)
        return []
    # the sweeper's per-job context (trial_env) is not configuration: left out
    return [mask_override(o) for o in task if not trial_env.is_context(o)]


def protect_secrets(cfg: DictConfig) -> None:
    """Mask this job's secrets (secret-keyed values, URI passwords) in its log lines and in the
    config files Hydra wrote for it (.hydra/config.yaml, hydra.yaml, overrides.yaml)."""
    from pathlib import Path

    from sweep.core.config import mask_files, redact, secret_values

    secrets = secret_values(OmegaConf.to_container(cfg, resolve=False))
    try:
        from hydra.core.hydra_config import HydraConfig

        hc = HydraConfig.get()
    except ValueError:  # not under Hydra
        hc = None
    if hc is not None:
        secrets |= secret_values(OmegaConf.to_container(hc, resolve=False), "hydra")
    if not secrets:
        return
    redact(secrets)
    if hc is not None and hc.output_subdir:
        d = Path(hc.runtime.output_dir) / hc.output_subdir
        mask_files([d / "config.yaml", d / "hydra.yaml", d / "overrides.yaml"], secrets)


def run_job(
    cfg: DictConfig,
    ctx: TrialContext | None = None,
    *,
    extra_tags: dict[str, str] | None = None,
    check_tracking: bool = True,
    want_outcome: bool = False,
    confirm=None,
):
    """Run one job. Returns the objective (a float) for a plain run, a TrialOutcome in a trial
    (or whenever `want_outcome`: its run_id and final metrics are what `reproduce` compares).
    `confirm` (sweep.search.confirm.ConfirmContext): a confirmation run, a child of the sweep's
    parent run that trains to the end and saves its model for the winner's registration; or
    a refit run (sweep.search.refit.RefitContext), the same with its own tags and name."""
    validate(cfg)
    # before anything starts CUDA in this process (check_compile, the model): one GPU per run,
    # never a silent nn.DataParallel over all that the machine shows (sweep/train/gpu.py)
    keep_one_gpu(cfg)
    if confirm is not None:
        extra_tags = {**confirm.tags(), **(extra_tags or {})}
        want_outcome = True
    tracker = make_tracker(cfg, check=check_tracking and ctx is None and confirm is None)

    # heavy imports only once the cheap checks passed
    from sweep.train import loop

    loop.check_compile(cfg)
    loop.settle_precision(cfg)
    # A plain run with bad data fails before it creates an MLflow run; a trial always gets its
    # child run, so a sweep's failures are visible next to its successes.
    prepared = None if ctx is not None else loop.prepare(cfg)
    tags = _start_tags(cfg, ctx, extra_tags)
    prune_hook = _prune_hook(cfg, ctx)
    parent = confirm.parent_run_id if confirm is not None else ctx and ctx.parent_run_id
    name = run_name(cfg, ctx)
    if confirm is not None:
        name = confirm.run_name(name)
    save_to = confirm.save_dir if confirm is not None else None
    try:
        result = _train_in_run(
            cfg, ctx, tracker, prepared, prune_hook, save_to, start=(name, tags, parent)
        )
        return _finish(cfg, ctx, tracker, result, want_outcome)
    finally:
        # an in-process worker's next trial starts from what this one gave back (an out of
        # memory's tensors were dropped with its traceback in _train_in_run)
        free_memory()


def _start_tags(
    cfg: DictConfig, ctx: TrialContext | None, extra_tags: dict[str, str] | None
) -> dict[str, str]:
    """The tags the job's MLflow run starts with: environment, the device it trains on and its
    effective batch, seed, overrides, objective, the caller's extras, and the trial's study and
    number in a sweep."""
    from sweep.track.tracking import environment_tags

    tags = environment_tags()
    tags.update(trial_env.node_tags())
    tags.update(device_tags(cfg))
    tags.update(
        {
            "sweep.seed": str(cfg.trainer.seed),
            "sweep.overrides": " ".join(_hydra_overrides()),
            "sweep.objective": objectives(cfg.trainer.objective)[0],
        }
    )
    tags.update(extra_tags or {})
    if ctx is not None:
        tags.update(
            {
                "optuna.study": ctx.study_name,
                "optuna.trial_number": str(ctx.number),
                "optuna.state": "RUNNING",
            }
        )
    return tags


def _prune_hook(cfg: DictConfig, ctx: TrialContext | None):
    """The hook that reports the pruned-on metric to the live trial; None without one."""
    trial = ctx.trial if ctx is not None else None
    if trial is None:
        return None
    if len(trial.study.directions) > 1:  # Optuna prunes single-objective studies only
        return None
    metric = ctx.prune_on or objectives(cfg.trainer.objective)[0]
    sign = prune_sign(metric, trial.study.direction.name.lower())

    def prune_hook(metrics: dict[str, float], step: int) -> bool:
        value = metrics.get(metric)
        if value is None or not math.isfinite(value):
            return False
        trial.report(sign * value, step)
        return trial.should_prune()

    return prune_hook


def _train_in_run(
    cfg: DictConfig, ctx: TrialContext | None, tracker, prepared, prune_hook, save_to, start
):
    """Start the run (`start`: name, tags, parent run id), log the config and data into it and
    train; any error closes the run (KILLED on an interrupt, FAILED with its `sweep.fail_reason`
    otherwise) before it propagates. The start is inside the guard: a Ctrl-C held back during
    the run's creation arrives as soon as the store call returns, and must not leave the new run
    RUNNING. Running out of memory is raised as OutOfMemory, its one line (sweep/train/oom.py)."""
    try:
        return _start_and_train(cfg, ctx, tracker, prepared, prune_hook, save_to, start)
    except KeyboardInterrupt:
        _close_interrupted(tracker, ctx)
        raise
    except BaseException as e:
        reason = oom.OUT_OF_MEMORY if oom.is_out_of_memory(e) else "error"
        line = oom.advice(cfg, e) if reason == oom.OUT_OF_MEMORY else str(e)
        _fail_reason(ctx, reason)
        tags = {FAIL_REASON: reason, "sweep.error": line[:500]}
        _close(tracker, "FAILED", {**tags, **({"optuna.state": "FAIL"} if ctx else {})})
        if reason != oom.OUT_OF_MEMORY:
            raise
    # out of memory: raised anew out here, where the original error is gone: its traceback held
    # the frames of the failed step, and with them the model, its optimizer and the activations
    raise OutOfMemory(line)


def _start_and_train(cfg: DictConfig, ctx, tracker, prepared, prune_hook, save_to, start):
    from sweep.track.tracking import dataset_records, params_of
    from sweep.train import loop

    name, tags, parent = start
    tracker.start(name, tags=tags, parent_run_id=parent)
    trial = ctx.trial if ctx is not None else None
    if trial is not None and tracker.run_id:
        trial.set_user_attr("mlflow_run_id", tracker.run_id)
    tracker.log_params(params_of(resolved(cfg)))
    tracker.log_text(config_yaml(cfg), "config.yaml")
    prepared = prepared or loop.prepare(cfg)
    # what eval_f1 means (binary F1 of which label, or macro), known once the data are loaded
    tracker.log_params(prepared.f1_params())
    tracker.set_tags(
        {
            "sweep.data_fingerprint": prepared.raw.fingerprint,
            "sweep.data_source": prepared.raw.source,
        }
    )
    # with data.train_on_validation: the train split (validation in it) and the test split
    tracker.log_datasets(dataset_records(prepared.raw, dataset_name(cfg.data), prepared.test))
    return loop.run_training(
        cfg, tracker, prune_hook=prune_hook, prepared=prepared, save_to=save_to
    )


def _fail_reason(ctx: TrialContext | None, reason: str) -> None:
    """The trial records why it failed (user attr `sweep.fail_reason`, as the run's tag), for
    the tables and `best`; the sweeper adds the error's line as its system attr."""
    trial = ctx.trial if ctx is not None else None
    if trial is not None:
        try:
            trial.set_user_attr(FAIL_REASON, reason)
        except Exception as e:  # noqa: BLE001 - the failure itself matters more
            log.warning("could not record the trial's fail reason: %s", e)


def dataset_name(d: DictConfig) -> str:
    """The name of a run's data set in MLflow's Dataset column: `synthetic`, the hub id, or the
    train file's name."""
    if d.name == "files" and d.get("train_file"):
        return os.path.basename(str(d.train_file))
    if d.name == "imdb" and d.get("hub_id"):
        return str(d.hub_id)
    return str(d.name)


def _finish(cfg: DictConfig, ctx: TrialContext | None, tracker, result, want_outcome: bool):
    """Tag and end the run with the training's outcome, log it, and build run_job's return."""
    names = objectives(cfg.trainer.objective)
    values = result.values or [result.objective]
    # a trial with any objective NaN or infinite is FAIL, as Optuna treats it
    state = optuna_state(result.status, next((v for v in values if not math.isfinite(v)), 0.0))
    if state == "FAIL" and cfg.data.get("train_on_validation"):
        state = "COMPLETE"  # no validation split, so no objective: its test_* metrics instead
    end_tags = {
        "sweep.status": result.status,
        "sweep.steps": str(result.steps),
        **{f"sweep.objective.{m}": str(v) for m, v in zip(names, values, strict=False)},
    }
    if len(names) > 1:
        end_tags["sweep.objectives"] = ",".join(names)
    if ctx is not None:
        end_tags["optuna.state"] = state
    if state == "FAIL":  # it trained to the end, but its objective is NaN or infinite
        end_tags[FAIL_REASON] = "objective_not_finite"
    try:
        tracker.set_tags(end_tags)
        tracker.end("FAILED" if state == "FAIL" else "FINISHED")
    except KeyboardInterrupt:  # the outcome is not returned, so the run must not say FINISHED
        _close_interrupted(tracker, ctx)
        raise
    log.info(
        "%s: %s=%.4f after %d/%d steps (%s) in %.1fs",
        run_name(cfg, ctx),
        names[0],
        result.objective,
        result.steps,
        result.total_steps,
        result.status,
        result.seconds,
    )
    if ctx is None and not want_outcome:
        return result.objective
    return TrialOutcome(
        state=state,
        objective=result.objective,
        status=result.status,
        steps=result.steps,
        total_steps=result.total_steps,
        seconds=result.seconds,
        run_id=tracker.run_id,
        final=result.final,
        values=list(values),
        measured=dict(result.measured or {}),
    )


def prune_sign(metric: str, direction: str) -> int:
    """+1, or -1 when the pruned-on metric improves the other way than the study (eval_loss in a
    study that maximises eval_f1): the pruner sees -eval_loss, so higher is better for both."""
    return -1 if metric_direction(metric) != direction else 1


def _close_interrupted(tracker, ctx: TrialContext | None) -> None:
    _close(tracker, "KILLED", ctx and {"optuna.state": "FAIL", "sweep.interrupted": "true"})


def _close(tracker, status: str, tags: dict | None) -> None:
    if tracker.run_id is None:  # interrupted before the run existed (or no tracking)
        return
    try:
        if tags:
            tracker.set_tags(tags)
        tracker.end(status)
    except Exception as e:  # noqa: BLE001 - the original error matters more
        log.warning("could not close the MLflow run: %s", e)
    finally:
        tracker.stop_system_metrics()  # even when the store refused the tags or the end
