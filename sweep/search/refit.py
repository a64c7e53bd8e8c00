"""Refit (`hydra.sweeper.confirm.refit=true`): once confirmation has chosen, scored and registered
the winner (sweep/search/confirm.py), its configuration is trained once more on train +
validation, scored once on the test split, and its model registered as the champion.

Why: the search and the confirmation need a validation split to choose on; once the choice is
made, nothing is left to choose, and the validation examples can teach the final model instead.

What the refit run is, decided here:

- **Its config**: the winner run's, with `data.train_on_validation=true` and nothing else
  changed: the data layer appends the validation split, as the run held it out (after
  `data.max_eval_samples`), to the train split (sweep/train/data.py). The refit run logs that
  config, so `python -m sweep reproduce <refit run id>` re-runs it like any run.
- **Its steps**: what the config says on the larger set: the same `trainer.epochs` over more
  examples (more steps), or the same `trainer.max_steps` where the config fixes the steps. Not
  the winner's number of steps: in the default search (one epoch of 640 examples, 80 steps)
  that would train on a random 640 of the 840 examples, leaving a quarter of them, validation
  included, unseen; the same epochs show every example as often as the search did. The LR
  schedule is relative to the run's length (warm-up ratio, decay over the run), so it stretches.
- **Its seed**: the winner run's (`trainer.seed`): it differs from the winner run by its data
  alone (and the steps they bring; the batch order changes with the data).
- **Its evaluations**: none on validation (it trains on it: nothing is left to validate on): one
  evaluation at its last step, on the test split (`test_loss`, `test_accuracy`, `test_f1`,
  logged once, under the run's precision). It has no objective value (`sweep.objective.*` NaN).
- **Its MLflow run**: a child of the sweep's parent, tags `sweep.role=refit`, `sweep.refit=true`,
  `sweep.refit_of=<winner run id>`, `optuna.study`; the parent is tagged `sweep.refit_run_id`
  and logs `refit_test_*`; the registered version carries `sweep.refit=true`,
  `sweep.refit_of` and a description naming it a refit.
- **The test split chooses nothing**: the winner (scored and registered first, as without a
  refit) and the refit are both scored on it, and the refit becomes the champion because the
  config asked for it, whatever the two scores: choosing between them by their test scores
  would make the test split a validation split.
- **A re-run** finds the FINISHED refit run of this winner under the parent and trains nothing
  (registering it, if that had failed); an interrupted or failed refit left no FINISHED run and
  is trained again.
- **A failed refit** is one `error:` line and exit 1; the winner stays scored, registered and
  the champion, as without a refit; the same command refits again.

`data.train_on_validation` is refused in a sweep's trials (their evaluation would be on the test
split, steering the search), and `confirm.refit=true` without a test split is refused before
any trial (`check_search`): one `error:` line, exit 2.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from sweep.core import internals, trial_env
from sweep.core.bad_input import describe
from sweep.core.config import NO_TEST_SPLIT, ConfigError, has_test_split
from sweep.core.metrics import TEST_METRICS, finite
from sweep.search import confirm as cf

log = logging.getLogger(__name__)

ROLE = "refit"  # sweep.role of a refit run
TAG = "sweep.refit"  # "true" on a refit run and on its registered model version
OF = "sweep.refit_of"  # the winner run a refit run refits
PARENT_TAG = "sweep.refit_run_id"  # on the parent: the refit run of its winner
KEY = "data.train_on_validation"
OVERRIDE = f"{KEY}=true"
JOB_INDEX = 20_000  # Hydra's job number of a refit job (confirmation jobs start at 10 000)


class RefitError(RuntimeError):
    """The refit could not be finished; one line."""


# --------------------------------------------------------------------------- the job's context


@dataclass
class RefitContext:
    """What the refit job needs: whose child it is, which winner run it refits, its trial and
    seed, and where it saves its model. It reaches the job through the job's own overrides
    (hydra.job.env_set, sweep/core/trial_env.py), like a confirmation run's context."""

    study_name: str
    parent_run_id: str
    refit_of: str  # the winner run's id
    trial: int  # the winner's trial number
    seed: int  # the winner run's trainer.seed
    model_dir: str  # the job saves its final model in model_dir/refit-<trial>-seed<seed>

    @classmethod
    def from_env(cls) -> RefitContext | None:
        data = trial_env.from_env(trial_env.REFIT)
        return cls(**data) if data else None

    def override(self) -> str:
        return trial_env.override(trial_env.REFIT, dict(self.__dict__))

    @property
    def save_dir(self) -> str:
        return os.path.join(self.model_dir, f"refit-{self.trial}-seed{self.seed}")

    def tags(self) -> dict[str, str]:
        return {
            "sweep.role": ROLE,
            TAG: "true",
            OF: self.refit_of,
            "sweep.refit.trial": str(self.trial),
            "sweep.refit.seed": str(self.seed),
            "optuna.study": self.study_name,
        }

    def run_name(self, name: str) -> str:
        return f"refit trial-{self.trial} seed={self.seed} {name}"


# --------------------------------------------------------------------------- checks, the job


def check_search(base, searched: Iterable[str], opts) -> None:
    """Before any trial (ConfigError, exit 2): no trial trains on its validation split (it would
    be evaluated on the test split, which must never steer a search), and a refit, when asked
    for, has a test split to be scored on."""
    if base.data.get("train_on_validation") or KEY in set(searched):
        raise ConfigError(
            f"{KEY} cannot be set in a sweep: a trial that trains on its validation split is "
            "evaluated on the test split, which must never steer a search; "
            "hydra.sweeper.confirm.refit=true trains the winner on train + validation once the "
            "search is done"
        )
    confirm = opts.confirm
    if (
        confirm.get("refit")
        and int(confirm.get("top_k") or 0) > 0
        and not has_test_split(base.data)
    ):
        raise ConfigError(
            "hydra.sweeper.confirm.refit=true scores the refit on the test split, and these data "
            f"have none: {NO_TEST_SPLIT}"
        )


def config_overrides(overrides: list[str], seed: int, threads: int | None) -> list[str]:
    """The refit's config: the winner's overrides, its seed, the validation split trained on.
    `threads` replaces a `trainer.threads` in them (the sweeper's share of the cores for trials
    side by side: the refit runs alone); None keeps them as they are."""
    keep = [o for o in overrides if threads is None or not o.startswith("trainer.threads=")]
    extra = [f"trainer.threads={threads}"] if threads is not None else []
    return [*keep, *extra, f"trainer.seed={seed}", OVERRIDE]


def job_line(config: list[str], ctx: RefitContext) -> list[str]:
    """The refit job: its config overrides, its own output folder, its context."""
    return [*config, f"hydra.sweep.subdir=refit-{ctx.trial}-seed{ctx.seed}", ctx.override()]


def launch(launcher, line: list[str]) -> str | None:
    """Run the refit job with the sweep's launcher; its failure in one line, or None."""
    for ret in launcher.launch([line], initial_job_idx=JOB_INDEX):
        value = internals.job_value(ret)
        if isinstance(value, BaseException):
            return describe(value)
    return None


# --------------------------------------------------------------------------- the refit


@dataclass
class Refit:
    """What the refit left: its run, test metrics and registered model, or its error."""

    refit_of: str
    trial: int
    seed: int
    winner_model: str = ""  # the winner's own registered model, registered before
    run_id: str = ""
    examples: int = 0  # training examples: train + validation
    steps: int = 0
    test: dict[str, float] = field(default_factory=dict)
    model: str = ""  # models:/<name>/<version>: the champion, once registered
    error: str = ""

    def lines(self) -> list[str]:
        """The refit's lines of the confirmation table."""
        head = f"refit of trial {self.trial} seed {self.seed} on train + validation"
        if self.run_id:
            head += f" ({self.examples} examples, {self.steps} steps)"
        lines = [
            f"{head} on the test split: "
            + "  ".join(f"{k}={v:.4f}" for k, v in sorted(self.test.items()))
            if self.test
            else f"{head}: not done"
        ]
        if self.model:
            lines.append(f"champion: {self.model} (the refit, run {self.run_id})")
        if self.winner_model:
            alias = "" if self.model else f" (alias {cf.CHAMPION})"
            lines.append(f"winner's model: {self.winner_model}{alias}")
        return lines

    def description(self) -> str:
        """The registered version's description (and the parent's line about it)."""
        test = ", ".join(f"{k} {v:.4f}" for k, v in sorted(self.test.items()))
        return (
            f"Refit of the sweep's winner (run `{self.refit_of}`: trial {self.trial}, seed "
            f"{self.seed}) on train + validation ({self.examples} examples, {self.steps} "
            f"steps), run `{self.run_id}`. On the test split: {test}."
        )


def refit_winner(
    choice: cf.Choice,
    *,
    uri: str,
    experiment: str,
    experiment_id: str,
    parent_run_id: str,
    context: RefitContext,
    train: Callable[[RefitContext], str | None],
    config: Callable[[], Any],
) -> None:
    """After `confirm.finalize`: the refit run of `choice`'s winner (found FINISHED under the
    parent, or trained now by `train`, which returns its failure in one line or None), its
    model logged and registered as the champion, the parent tagged. On a failure
    `choice.error` says so in one line and the winner stays as finalize left it. `config`: the
    refit's config, to train its model again if its saved folder is gone."""
    from sweep.track import tracking

    if choice.winner_run is None or choice.error:
        return
    client = tracking.client(uri)
    ctx = context
    out = Refit(ctx.refit_of, ctx.trial, ctx.seed, winner_model=choice.model)
    choice.refit = out
    try:
        run = find(client, experiment_id, parent_run_id, ctx.refit_of)
        if run is None:
            log.info("refit: trial %d seed %d on train + validation", ctx.trial, ctx.seed)
            problem = train(ctx)
            run = find(client, experiment_id, parent_run_id, ctx.refit_of)
            if run is None:
                raise RefitError(problem or "its run did not finish")
        _read(out, run)
        out.model = run.data.tags.get("sweep.model", "")
        if not out.model:
            _register(client, uri, run, experiment, out, _Saved(ctx.save_dir, config, choice))
        _tag_parent(client, parent_run_id, out)
    except Exception as e:  # noqa: BLE001 - the job, the artifact store or the registry
        line = str(e).splitlines()[0] if str(e) else ""
        out.error = line if isinstance(e, RefitError) else f"{type(e).__name__}: {line}"
        keeps = f" ({choice.model})" if choice.model else ""
        choice.error = (
            f"the refit of the winner failed ({out.error}): the winner's model stays the "
            f"champion{keeps}; re-run the same command to refit it again"
        )
        return
    choice.model = out.model  # the champion: what the parent's sweep.model names
    shutil.rmtree(ctx.model_dir, ignore_errors=True)


def find(client, experiment_id: str, parent_run_id: str, winner_run_id: str):
    """The newest FINISHED refit run of `winner_run_id` under the parent; None when there is
    none (never made, interrupted or failed: it is made again)."""
    runs = client.search_runs(
        [experiment_id],
        filter_string=(
            f"tags.`sweep.role` = '{ROLE}' and tags.`mlflow.parentRunId` = '{parent_run_id}' "
            f"and tags.`{OF}` = '{winner_run_id}' and attributes.status = 'FINISHED'"
        ),
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    return runs[0] if runs else None


def _read(out: Refit, run) -> None:
    """The refit run's outcome into `out`; RefitError when it did not train to the end."""
    tags, metrics = run.data.tags, run.data.metrics
    status = tags.get("sweep.status", "")
    if status != "completed":
        raise RefitError(f"its run {run.info.run_id} ended {status or 'without a status'}")
    test = {k: metrics[k] for k in TEST_METRICS if k in metrics}
    if len(test) != len(TEST_METRICS) or not all(finite(v) for v in test.values()):
        raise RefitError(f"its run {run.info.run_id} has no finite test metrics")
    out.run_id, out.test = run.info.run_id, test
    out.steps = int(tags.get("sweep.steps", "0"))
    out.examples = train_examples(run)


def train_examples(run) -> int:
    """The training examples a run logged (its `train` dataset input's rows); 0 if none."""
    for i in run.inputs.dataset_inputs if run.inputs else []:
        if any(t.key == "mlflow.data.context" and t.value == "train" for t in i.tags):
            return int(json.loads(i.dataset.profile or "{}").get("num_rows", 0))
    return 0


@dataclass
class _Saved:
    """Where the refit job left its model, and how to train it again when it is gone (the job
    ran on another machine, or the folder was removed)."""

    path: str
    config: Callable[[], Any]
    choice: cf.Choice

    def ready(self) -> str:
        if not os.path.isfile(os.path.join(self.path, "serving.json")):
            self.choice.notes.append(
                f"the refit's model was not found in {self.path} (its run was on another "
                "machine, or the folder was removed): trained again with its config"
            )
            from sweep.train import loop

            loop.run_training(self.config(), save_to=self.path)
        return self.path


def _register(client, uri: str, run, experiment: str, out: Refit, saved: _Saved) -> None:
    """The refit's model logged once (`sweep.logged_model`), registered as the champion
    (`sweep.model`), its version tagged and described as a refit."""
    run_id = run.info.run_id
    logged = run.data.tags.get("sweep.logged_model")
    if not logged:
        logged = cf.log_model(uri, run_id, saved.ready())
        client.set_tag(run_id, "sweep.logged_model", logged)
    model = cf.register_model(uri, logged, cf.registry_name(experiment))
    name, version = model.removeprefix("models:/").rsplit("/", 1)
    for key, value in {TAG: "true", OF: out.refit_of, "sweep.refit_run_id": run_id}.items():
        client.set_model_version_tag(name, version, key, value)
    client.update_model_version(name, version, description=out.description())
    client.set_tag(run_id, "sweep.model", model)
    out.model = model


def _tag_parent(client, parent_run_id: str, out: Refit) -> None:
    """The parent names its refit run and logs its test metrics (`refit_test_*`, step 0: one
    value per sweep; a re-run logs only what changed)."""
    from mlflow.entities import Metric

    client.set_tag(parent_run_id, PARENT_TAG, out.run_id)
    logged = client.get_run(parent_run_id).data.metrics
    now = int(time.time() * 1000)
    metrics = [
        Metric(f"refit_{k}", v, now, 0)
        for k, v in out.test.items()
        if logged.get(f"refit_{k}") != v
    ]
    if metrics:
        client.log_batch(parent_run_id, metrics=metrics)
