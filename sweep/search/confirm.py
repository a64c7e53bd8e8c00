"""Confirmation: re-run the K best complete configurations of a sweep with S new training seeds,
choose the winner by its mean over those seeds alone, score it once on the test split, and
register its model.

Why: the best trial of a search is chosen by one noisy number, and the spread of a configuration
over training seeds is as large as the differences between configurations (BENCHMARKS.md). So the
winner is chosen on runs it was not selected on, and only the winner ever sees the test split.

The stages, shared by the sweeper (`hydra.sweeper.confirm.top_k` / `.seeds`, after the budget is
met) and by `python -m sweep confirm`:

1. `plan`: the top K COMPLETE trials by value, each with S seeds (`seeds_for`: never the seed the
   trial trained with).
2. The confirmation runs: full runs (no pruning) of a candidate's config with `trainer.seed` set,
   each an MLflow child of the sweep's parent run tagged `sweep.role=confirm`,
   `sweep.confirms=<trial run id>` and `sweep.confirm.seed`. They are not Optuna trials: no sampler,
   pruner or budget sees them. A job learns that it is one from `ConfirmContext`, which reaches it
   through what it is given (Hydra's `hydra.job.env_set` in its overrides), never through the
   submitting process's environment. Each saves its final model under the context's `model_dir`.
3. Progress lives in MLflow: a FINISHED confirmation run of (trial run id, seed) under the parent
   is done (`finished`). A killed or failed stage, re-run, runs only what is missing.
4. `choose`: mean and std of the objective per configuration over its confirmation runs; the winner
   is the best mean (ties: the better search value). Its run is the confirmation run of the winning
   configuration with the best value.
5. `finalize`: the test split scored once with the served model on the winner run (`test_loss`,
   `test_accuracy`, `test_f1`), `sweep.winner=true` on that run and on no other run of the sweep,
   the pyfunc model logged on it (never re-opening the finished run) and registered under the
   experiment's name with alias `champion`. A failed registration is retried by the next run of
   the stage without scoring the test split again.
"""

from __future__ import annotations

import logging
import math
import os
import re
import shutil
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sweep.core import trial_env
from sweep.core.errors import UserError
from sweep.core.metrics import finite

log = logging.getLogger(__name__)

ROLE = "confirm"
CHAMPION = "champion"
TEST_METRICS = ("test_loss", "test_accuracy", "test_f1")
EVAL_METRICS = ("eval_loss", "eval_accuracy", "eval_f1")


class ConfirmError(UserError, RuntimeError):
    """Confirmation cannot run (no complete trial, no tracking); one line."""


# --------------------------------------------------------------------------- the job's context


@dataclass
class ConfirmContext:
    """What a confirmation job needs: whose child it is, which trial it confirms, its seed and
    where it saves its model."""

    study_name: str
    parent_run_id: str
    confirms: str  # the confirmed trial's MLflow run id
    trial: int  # its Optuna trial number
    seed: int
    model_dir: str  # the job saves its final model in model_dir/<trial>-seed<seed>

    @classmethod
    def from_env(cls) -> ConfirmContext | None:
        data = trial_env.from_env(trial_env.CONFIRM)
        return cls(**data) if data else None

    def override(self) -> str:
        return trial_env.override(trial_env.CONFIRM, dict(self.__dict__))

    @property
    def save_dir(self) -> str:
        return saved_model(self.model_dir, self.trial, self.seed)

    def run_name(self, name: str) -> str:
        return f"confirm trial-{self.trial} seed={self.seed} {name}"

    def tags(self) -> dict[str, str]:
        return {
            "sweep.role": ROLE,
            "sweep.confirms": self.confirms,
            "sweep.confirm.trial": str(self.trial),
            "sweep.confirm.seed": str(self.seed),
            "optuna.study": self.study_name,
        }


def seeds_for(trial_seed: int, n: int) -> list[int]:
    """`n` training seeds for confirmation, none of them the seed the trials trained with."""
    return [int(trial_seed) + 1000 + i for i in range(n)]


def saved_model(root: str, trial: int, seed: int) -> str:
    """The folder where the confirmation run of (trial, seed) leaves its model."""
    return os.path.join(root, f"{trial}-seed{seed}")


def model_dir(root: str | Path, study_name: str) -> str:
    """Where a sweep's confirmation runs keep their models until the winner's is logged."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", study_name)
    return str(Path(root).resolve() / ".sweep" / "models" / safe)


def registry_name(experiment: str) -> str:
    """The experiment's name made valid for the Model Registry (no `/` or `:`)."""
    name = re.sub(r"[/:]+", "-", experiment).strip("-")
    return name or "sweep"


# --------------------------------------------------------------------------- plan and progress


@dataclass
class Candidate:
    """One configuration to confirm: a COMPLETE trial."""

    number: int
    run_id: str
    value: float  # its search value (the objective of the trial run)
    params: dict[str, Any]  # the searched params
    overrides: list[str] = field(default_factory=list)  # (sweeper) what re-creates it


@dataclass
class Done:
    confirms: str
    seed: int
    run_id: str
    value: float
    steps: int


def rank_key(direction: str) -> Callable[[float], float]:
    """Sort key: best first, NaN last."""
    sign = -1.0 if direction == "maximize" else 1.0
    return lambda v: math.inf if not math.isfinite(v) else sign * v


def top(candidates: list[Candidate], k: int, direction: str) -> list[Candidate]:
    key = rank_key(direction)
    ok = [c for c in candidates if math.isfinite(c.value) and c.run_id]
    return sorted(ok, key=lambda c: (key(c.value), c.number))[:k]


def top_from_study(study, k: int, goals, fixed: list[str]) -> list[Candidate]:
    """The `k` best configurations to confirm, by the winner rule of `goals` (front.Objectives):
    the feasible complete trials of this sweep, or with several objectives the feasible Pareto
    front's members, best first on the winner's objective; never an imported trial."""
    from sweep.core.overrides import to_override
    from sweep.search import front
    from sweep.search.study import RUN_ID

    out = []
    for t in front.ranked(study.get_trials(deepcopy=False), goals):
        params = dict(t.params)
        out.append(
            Candidate(
                number=t.number,
                run_id=str(t.user_attrs.get(RUN_ID) or ""),
                value=float(t.values[goals.by]),
                params=params,
                overrides=list(fixed) + [to_override(n, v) for n, v in params.items()],
            )
        )
    return top(out, k, goals.winner_direction)


def finished(client, experiment_id: str, parent_run_id: str, objective: str) -> dict:
    """(confirmed run id, seed) -> Done, for the FINISHED confirmation runs under the parent."""
    runs = client.search_runs(
        [experiment_id],
        filter_string=(
            f"tags.`sweep.role` = '{ROLE}' and tags.`mlflow.parentRunId` = '{parent_run_id}'"
        ),
        max_results=5000,
    )
    out: dict[tuple[str, int], Done] = {}
    for r in runs:
        if r.info.status != "FINISHED":
            continue
        t = r.data.tags
        try:
            value = float(t.get(f"sweep.objective.{objective}", "nan"))
            key = (t["sweep.confirms"], int(t["sweep.confirm.seed"]))
        except (KeyError, ValueError):
            continue
        out[key] = Done(key[0], key[1], r.info.run_id, value, int(t.get("sweep.steps", "0")))
    return out


# --------------------------------------------------------------------------- the choice


@dataclass
class Confirmed:
    candidate: Candidate
    runs: list[Done]
    mean: float
    std: float

    @property
    def n(self) -> int:
        return len(self.runs)


@dataclass
class Choice:
    rows: list[Confirmed]  # best mean first
    winner: Confirmed | None
    winner_run: Done | None
    missing: list[tuple[int, int]]  # (trial number, seed) without a finished run
    test: dict[str, float] = field(default_factory=dict)
    model: str = ""  # models:/<name>/<version>, once registered
    notes: list[str] = field(default_factory=list)
    error: str = ""  # the winner could not be finished (its model not registered): one line
    rule: str = ""  # how the winner was chosen, in words (front.Objectives.rule)
    refit: Any = None  # sweep.search.refit.Refit, with hydra.sweeper.confirm.refit

    def table(self) -> str:
        lines = ["confirmation (mean +- std over new training seeds; * the winner)"]
        if self.rule:
            lines.append(f"  winner rule: {self.rule}")
        lines.append(f"  {'trial':<6} {'search':>8} {'mean':>8} {'std':>8} {'seeds':>6}")
        for r in self.rows:
            mark = "*" if self.winner is r else " "
            lines.append(
                f"{mark} {r.candidate.number:<6} {r.candidate.value:>8.4f} {r.mean:>8.4f} "
                f"{r.std:>8.4f} {r.n:>6}"
            )
        if self.test:
            lines.append(
                "winner on the test split: "
                + "  ".join(f"{k}={v:.4f}" for k, v in sorted(self.test.items()))
            )
        if self.refit is not None:  # the refit's lines name the champion
            lines += self.refit.lines()
        elif self.model:
            lines.append(f"winner's model: {self.model} (alias {CHAMPION})")
        return "\n".join(lines)

    def csv(self) -> str:
        out = ["trial,trial_run_id,search_value,seed,run_id,value,mean,std,winner"]
        for r in self.rows:
            for d in r.runs:
                win = self.winner_run is not None and d.run_id == self.winner_run.run_id
                out.append(
                    f"{r.candidate.number},{r.candidate.run_id},{r.candidate.value!r},{d.seed},"
                    f"{d.run_id},{d.value!r},{r.mean!r},{r.std!r},{str(win).lower()}"
                )
        return "\n".join(out) + "\n"


def choose(candidates: list[Candidate], seeds: list[int], done: dict, direction: str) -> Choice:
    key = rank_key(direction)
    rows, missing = [], []
    for c in candidates:
        runs = [done[(c.run_id, s)] for s in seeds if (c.run_id, s) in done]
        missing += [(c.number, s) for s in seeds if (c.run_id, s) not in done]
        if not runs:
            continue
        values = [d.value for d in runs]
        mean = statistics.fmean(values) if all(map(math.isfinite, values)) else math.nan
        std = statistics.stdev(values) if len(values) > 1 and math.isfinite(mean) else 0.0
        rows.append(Confirmed(c, runs, mean, std))
    rows.sort(key=lambda r: (key(r.mean), key(r.candidate.value), r.candidate.number))
    winner = rows[0] if rows and not missing and math.isfinite(rows[0].mean) else None
    notes = []
    if rows and not missing and winner is None:
        notes.append("every confirmed configuration diverged on some seed: no winner chosen")
    winner_run = None
    if winner is not None:
        winner_run = sorted(winner.runs, key=lambda d: (key(d.value), d.seed))[0]
    return Choice(rows, winner, winner_run, missing, notes=notes)


# --------------------------------------------------------------------------- the winner


def test_metrics(model_path: str, test, positive: int | None) -> dict[str, float]:
    """The served model's loss, accuracy and F1 on the test split (`eval_f1`'s definition)."""
    import numpy as np
    from transformers.utils import logging as hf_logging

    from sweep.track.served import Classifier
    from sweep.train.loop import f1

    hf_logging.disable_progress_bar()  # no "Loading weights" bar in the sweep's output
    clf = Classifier(model_path)
    texts, labels = list(test.data["text"]), np.asarray(test.data["label"])
    probs = clf.probabilities(texts)
    preds = probs.argmax(axis=1)
    picked = np.clip(probs[np.arange(len(labels)), labels], 1e-12, 1.0)
    return {
        "test_loss": float(-np.log(picked).mean()),
        "test_accuracy": float((preds == labels).mean()),
        "test_f1": f1(labels, preds, max(len(clf.labels), 2), positive),
    }


def log_model(uri: str, run_id: str, model_path: str) -> str:
    """Log the served pyfunc on the finished run `run_id` without re-opening it (a failure here
    leaves the run as it was: FINISHED, with its metrics). Returns the logged model's URI."""
    import mlflow
    from mlflow.models import Model

    from sweep.track import served

    signature, example = served.signature()
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    mlflow.set_tracking_uri(uri)
    # the logged model belongs to its run's experiment (without a run, MLflow takes the active one)
    mlflow.set_experiment(experiment_id=mlflow.MlflowClient(uri).get_run(run_id).info.experiment_id)
    versions = {
        pkg: _version(pkg) for pkg in ("mlflow", "torch", "transformers", "pandas", "numpy")
    }
    info = Model.log(
        artifact_path=None,
        name="model",
        flavor=mlflow.pyfunc,
        run_id=run_id,
        python_model=served.__file__,
        artifacts={"model": model_path},
        signature=signature,
        input_example=example,
        pip_requirements=[f"{pkg}=={v}" for pkg, v in versions.items() if v],
    )
    return info.model_uri


def register_model(uri: str, model_uri: str, name: str) -> str:
    """Register a logged model as `name` and point `champion` at the new version. Returns
    `models:/<name>/<version>`."""
    import mlflow

    mlflow.set_tracking_uri(uri)
    version = str(mlflow.register_model(model_uri, name).version)
    mlflow.MlflowClient(uri).set_registered_model_alias(name, CHAMPION, version)
    return f"models:/{name}/{version}"


def _version(pkg: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(pkg).split("+")[0]
    except metadata.PackageNotFoundError:
        return None


def mark_winner(client, experiment_id: str, study_name: str, run_id: str) -> None:
    """`sweep.winner=true` on `run_id` and on no other run of the study."""
    flagged = client.search_runs(
        [experiment_id],
        filter_string=f"tags.`optuna.study` = '{study_name}' and tags.`sweep.winner` = 'true'",
    )
    for r in flagged:
        if r.info.run_id != run_id:
            client.set_tag(r.info.run_id, "sweep.winner", "false")
    client.set_tag(run_id, "sweep.winner", "true")


def finalize(
    choice: Choice,
    *,
    uri: str,
    experiment: str,
    experiment_id: str,
    study_name: str,
    model_root: str,
    config_of: Callable[[str], Any],
) -> None:
    """Score the winner on the test split, tag it, log and register its model. Each step leaves
    its mark on the winner run (its test metrics, `sweep.logged_model`, `sweep.model`), so a
    re-run (after a failure or a Ctrl-C) does only what is missing, and the test split is scored
    once, ever. A failed registration leaves the run FINISHED with its test metrics and says so
    in `choice.error`; re-running the sweep or `python -m sweep confirm` registers it."""
    from sweep.track import tracking

    if choice.winner_run is None:
        return
    client = tracking.client(uri)
    d = choice.winner_run
    run = client.get_run(d.run_id)
    path = saved_model(model_root, choice.winner.candidate.number, d.seed)
    model = _Model(path, lambda: config_of(d.run_id), choice.notes)
    tested = {k: v for k, v in run.data.metrics.items() if k in TEST_METRICS}
    if tested:
        choice.test = tested
    else:
        _score_on_test(choice, model, client, uri, experiment)
    client.set_tag(d.run_id, "sweep.confirm.mean", repr(choice.winner.mean))
    client.set_tag(d.run_id, "sweep.confirm.std", repr(choice.winner.std))
    mark_winner(client, experiment_id, study_name, d.run_id)
    choice.model = run.data.tags.get("sweep.model", "")
    if not choice.model:
        try:
            _log_and_register(client, uri, run, model, registry_name(experiment), choice)
        except Exception as e:  # noqa: BLE001 - the artifact store or the registry refused
            choice.error = (
                f"the winner's model was not registered ({type(e).__name__}: "
                f"{str(e).splitlines()[0] if str(e) else ''}): its run keeps its test metrics; "
                "re-run the same command, or python -m sweep confirm, to register it"
            )
            return
    shutil.rmtree(model_root, ignore_errors=True)


def _log_and_register(client, uri: str, run, model: _Model, name: str, choice: Choice) -> None:
    """The winner's model logged once (`sweep.logged_model`), then registered (`sweep.model`)."""
    logged = run.data.tags.get("sweep.logged_model")
    if not logged:
        logged = log_model(uri, run.info.run_id, model.path_ready())
        client.set_tag(run.info.run_id, "sweep.logged_model", logged)
    choice.model = register_model(uri, logged, name)
    client.set_tag(run.info.run_id, "sweep.model", choice.model)


class _Model:
    """The winner's saved model folder, trained again from its logged config only when it is
    needed and missing (its run was on another machine, or the folder was removed)."""

    def __init__(self, path: str, config: Callable[[], Any], notes: list[str]):
        self.path, self._config, self._notes, self._cfg = path, config, notes, None

    @property
    def cfg(self):
        if self._cfg is None:
            self._cfg = self._config()
        return self._cfg

    def path_ready(self) -> str:
        if not os.path.isfile(os.path.join(self.path, "serving.json")):
            self._notes.append(
                f"the winner's model was not found in {self.path} (its run was on another "
                "machine, or the folder was removed): trained again with its logged config"
            )
            _train_again(self.cfg, self.path)
        return self.path


def _score_on_test(choice: Choice, model: _Model, client, uri: str, experiment: str) -> None:
    """The test split scored once with the winner's served model; metrics and the test
    dataset input logged on the winner run. A note when the data have no test split."""
    from mlflow.entities import Metric

    from sweep.track import tracking
    from sweep.train import data as data_mod
    from sweep.train.runner import dataset_name

    d, cfg = choice.winner_run, model.cfg
    raw = data_mod.load_raw(cfg.data)
    test = data_mod.load_test(cfg.data, raw.label_names)
    if test is None:
        choice.notes.append(
            "no test split (data=files without data.test_file, data.test_size=0, or a hub "
            "dataset without data.test_split): the winner has no test metrics"
        )
        return
    positive = data_mod.positive_index(raw.label_names, cfg.data.get("positive_label"))
    choice.test = test_metrics(model.path_ready(), test, positive)
    metrics = [Metric(k, v, _now(), d.steps) for k, v in choice.test.items()]
    client.log_batch(d.run_id, metrics=metrics)
    tracker = tracking.Tracker(uri, experiment)
    tracker.run_id = d.run_id
    tracker.log_datasets(tracking.dataset_records(raw, dataset_name(cfg.data), test)[-1:])


def _now() -> int:
    import time

    return int(time.time() * 1000)


def _train_again(cfg, path: str) -> None:
    from sweep.train import loop

    loop.run_training(cfg, save_to=path)


# --------------------------------------------------------------------------- reading it back


def confirmed_rows(confirms: list, objective: str, direction: str) -> list[dict[str, Any]]:
    """Per confirmed configuration: its trial, the values over its new seeds, their mean and
    standard deviation, and (on the winner's row) the winner run, its test metrics and model."""
    groups: dict[str, list] = {}
    for r in confirms:
        if r.info.status == "FINISHED":
            groups.setdefault(r.data.tags.get("sweep.confirms", ""), []).append(r)
    rows = []
    for trial_run, runs in groups.items():
        runs.sort(key=lambda r: int(r.data.tags.get("sweep.confirm.seed", 0)))
        values = [_as_float(r.data.tags.get(f"sweep.objective.{objective}")) for r in runs]
        ok = [v for v in values if finite(v)]
        won = [r for r in runs if r.data.tags.get("sweep.winner") == "true"]
        row = {
            "trial": _int(runs[0].data.tags.get("sweep.confirm.trial", "-1")),
            "trial_run_id": trial_run,
            "seeds": [int(r.data.tags.get("sweep.confirm.seed", 0)) for r in runs],
            "values": values,
            "mean": statistics.fmean(ok) if len(ok) == len(values) else float("nan"),
            "std": statistics.stdev(ok) if len(ok) == len(values) > 1 else 0.0,
            "winner": won[0].info.run_id if won else None,
        }
        if won:
            m = won[0].data.metrics
            row["test"] = {k: m[k] for k in ("test_loss", "test_accuracy", "test_f1") if k in m}
            row["model"] = won[0].data.tags.get("sweep.model", "")
        rows.append(row)
    sign = -1 if direction == "maximize" else 1
    rows.sort(key=lambda r: sign * r["mean"] if finite(r["mean"]) else float("inf"))
    return rows


def _as_float(v: Any) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return float("nan")


def _int(v: Any) -> int:
    try:
        return int(v)
    except (TypeError, ValueError):
        return -1
