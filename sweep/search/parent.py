"""The sweep's MLflow parent run: created once per study (its id kept in the study), reused by
resumes and by every worker; holds the best value and params, the trial table and the plots."""

from __future__ import annotations

import contextlib
import logging
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import optuna
from omegaconf import DictConfig

from sweep.core import internals, metrics
from sweep.core.config import mask_uri
from sweep.search import front
from sweep.search import study as study_mod
from sweep.search.advice import TAG as ADVICE_TAG

log = logging.getLogger(__name__)

TRACKING_STORE = "sweep.tracking_uri"  # study user attr: the (masked) store of its parent run


@dataclass
class Summary:
    table: str
    counts: dict[str, int]
    best_value: float | None
    best_params: dict[str, Any]
    best_run_id: str | None
    confirm: Any = None  # sweep.search.confirm.Choice when confirmation ran
    advice: list[str] | None = None  # range notes (advice.py); None: not worked out this time
    # several objectives: the feasible Pareto front, one dict per member (front_rows)
    front: list[dict[str, Any]] | None = None
    objectives: list[str] | None = None  # their names, in order


class ParentRun:
    def __init__(
        self,
        study: optuna.Study,
        base: DictConfig,
        uri: str | None,
        spec,
        space,
        lock,
        goals: front.Objectives | None = None,
    ):
        self.study = study
        self.goals = goals or front.Objectives(
            names=metrics.objectives(base.trainer.objective), directions=spec.directions
        )
        self.base = base
        self.uri = uri
        self.spec = spec
        self.space = space
        self.lock = lock
        self.tracker = None
        self.run_id: str | None = None

    def open(self) -> None:
        if not self.uri:
            return
        from sweep.track import tracking

        self.tracker = tracking.Tracker(self.uri, self.base.tracking.experiment)
        with self.lock:
            attrs = internals.study_user_attrs(self.study)
            run_id = attrs.get(study_mod.PARENT_RUN)
            found = self._lifecycle(run_id) if run_id else None
            if run_id and found is None:
                self._refuse_other_store(run_id, attrs.get(TRACKING_STORE))
            if found == "active":
                self.tracker.attach(run_id)
            else:  # a new study, or its parent run was deleted in this store
                self.tracker.start(
                    f"sweep {self.study.study_name}",
                    tags={
                        "optuna.study": self.study.study_name,
                        "sweep.role": "parent",
                        "sweep.storage": mask_uri(self.spec.storage_url),
                        "sweep.identity": str(attrs.get("sweep.identity", "")),
                        **tracking.environment_tags(),
                    },
                )
                self.study.set_user_attr(study_mod.PARENT_RUN, self.tracker.run_id)
                self.study.set_user_attr(TRACKING_STORE, mask_uri(self.uri))
                self.tracker.log_params(self._params())
        self.run_id = self.tracker.run_id

    def _lifecycle(self, run_id: str) -> str | None:
        """`active` or `deleted` for a run of this store; None when this store has no such run.
        Any other failure (a server error, a timeout) is not an answer: one line, stop."""
        from mlflow.exceptions import MlflowException

        from sweep.track.tracking import TrackingError

        try:
            return self.tracker.client.get_run(run_id).info.lifecycle_stage
        except MlflowException as e:
            if e.error_code == "RESOURCE_DOES_NOT_EXIST":
                return None
            first = str(e).strip().splitlines()[0][:200] if str(e).strip() else e.error_code
            raise TrackingError(
                f"cannot read the sweep's parent run {run_id} from {mask_uri(self.uri)}: {first}"
            ) from None

    def _refuse_other_store(self, run_id: str, recorded: str | None) -> None:
        """The study's parent run is not in this tracking store: its trials live in another
        one, and a second parent here would split the sweep across two stores. Only a parent
        purged from the very store it was made in is made again."""
        from sweep.track.tracking import TrackingError

        here = mask_uri(self.uri)
        if recorded == here:
            return
        where = f"in {recorded}" if recorded else "in another tracking store"
        raise TrackingError(
            f"study {self.study.study_name!r} has its MLflow parent run {run_id} {where}, not in "
            f"{here}: use that tracking.uri to resume it, or another hydra.sweeper.study_name "
            "for a new sweep here"
        )

    def _params(self) -> dict[str, str]:
        s, g = self.spec, self.goals
        out = {
            "sweeper.sampler": s.sampler,
            "sweeper.pruner": s.pruner,
            # the objective that ranks trials and picks the winner, and its direction
            "sweeper.direction": g.winner_direction,
            "sweeper.seed": str(s.seed),
            "sweeper.objective": g.winner_metric,
            "model.name": str(self.base.model.name),
            "data.name": str(self.base.data.name),
        }
        if g.several:
            out["sweeper.objectives"] = ",".join(g.names)
            out["sweeper.directions"] = ",".join(g.directions)
        if g.bounds:
            out["sweeper.constraints"] = ",".join(f"{k}:{v:g}" for k, v in g.bounds.items())
        for name, dist in self.space.distributions.items():
            out[f"space.{name}"] = repr(dist)[:500]
        for name, value in self.space.fixed.items():
            out[f"fixed.{name}"] = str(value)
        return out

    # ---- per trial

    def close_child(
        self, run_id: str | None, state: str, tags: dict, status: str = "FAILED"
    ) -> None:
        if not (self.tracker and run_id):
            return
        with contextlib.suppress(Exception):
            c = self.tracker.client
            c.set_tag(run_id, "optuna.state", state)
            for k, v in tags.items():
                c.set_tag(run_id, k, v)
            if c.get_run(run_id).info.status == "RUNNING":
                c.set_terminated(run_id, status=status)

    def after_trial(self, number: int, outcome, error: str) -> None:
        if not self.tracker:
            return
        try:
            # the curves' step is the count of finished trials, not the trial number: with
            # several workers trials finish out of order, and by number the curves went down
            c = study_mod.count(self.study)
            best = study_mod.best_trial(self.study, self.goals.by)
            curves = {
                "trials_finished": c.finished,
                "trials_pruned": c.pruned,
                "trials_failed": c.failures,
            }
            if best is not None:
                curves["best_value"] = best.values[self.goals.by]
            self.tracker.log_metrics(curves, step=c.finished)
            self._mark_best(best)
            self._tag_feasible(number)
        except Exception as e:  # noqa: BLE001 - tracking never stops a sweep
            log.warning("could not update the parent run: %s", e)

    def _tag_feasible(self, number: int) -> None:
        """`sweep.feasible` on the trial's run, once constraints judged it (front.py)."""
        t = internals.storage(self.study).get_trial(internals.trial_id_of(self.study, number))
        run_id = t.user_attrs.get(study_mod.RUN_ID)
        if run_id and front.FEASIBLE in t.user_attrs:
            self.tracker.client.set_tag(
                run_id, "sweep.feasible", str(bool(t.user_attrs[front.FEASIBLE])).lower()
            )

    def _mark_front(self) -> list[dict[str, Any]] | None:
        """Several objectives: `sweep.pareto` true on the runs of the feasible Pareto front,
        false on this sweep's other complete runs (a resumed sweep's front moves)."""
        if not self.goals.several:
            return None
        trials = self.study.get_trials(deepcopy=False)
        members = front.pareto(trials, self.goals.directions)
        rows = front_rows(members, self.goals)
        if self.tracker is None:
            return rows
        on = {t.number for t in members}
        c = self.tracker.client
        for t in trials:
            run_id = t.user_attrs.get(study_mod.RUN_ID)
            if run_id and t.state == optuna.trial.TrialState.COMPLETE:
                c.set_tag(run_id, "sweep.pareto", "true" if t.number in on else "false")
        return rows

    def _mark_best(self, best) -> None:
        """Exactly one run of the study carries optuna.best=true."""
        c = self.tracker.client
        new = best.user_attrs.get(study_mod.RUN_ID) if best else None
        flagged = c.search_runs(
            [self.tracker.experiment_id],
            filter_string=(
                f"tags.`optuna.study` = '{self.study.study_name}' and tags.`optuna.best` = 'true'"
            ),
        )
        for run in flagged:
            if run.info.run_id != new:
                c.set_tag(run.info.run_id, "optuna.best", "false")
        if new:
            c.set_tag(new, "optuna.best", "true")

    # ---- end of a sweep (or of one worker's share of it)

    def finish(self, status: str = "FINISHED", choice=None, advice=None) -> Summary:
        c = study_mod.count(self.study)
        by = self.goals.by
        best = study_mod.best_trial(self.study, by)
        counts = {
            "finished": c.finished,
            "complete": c.complete,
            "pruned": c.pruned,
            "failed": c.failures,
            "running": c.running,
        }
        summary = Summary(
            table=study_mod.table(self.study, self.goals.names),
            counts=counts,
            best_value=best.values[by] if best else None,
            best_params=dict(best.params) if best else {},
            best_run_id=best.user_attrs.get(study_mod.RUN_ID) if best else None,
            confirm=choice,
            advice=advice,
            objectives=list(self.goals.names),
        )
        if not self.tracker:
            summary.front = self._mark_front()
            return summary
        try:
            summary.front = self._mark_front()
            self._mark_best(best)
            self._log_summary(summary)
        except Exception as e:  # noqa: BLE001
            log.warning("could not write the sweep summary to MLflow: %s", e)
        with contextlib.suppress(Exception):
            self.tracker.end(status if c.running == 0 else "RUNNING")
        return summary

    def _log_summary(self, s: Summary) -> None:
        from sweep.track import plots

        t = self.tracker
        tags = {f"sweep.count.{k}": v for k, v in s.counts.items()}
        if s.best_value is not None:
            t.log_metrics({"best_value": s.best_value}, step=s.counts["finished"])
            tags["sweep.best_value"] = s.best_value
            tags["sweep.best_run_id"] = s.best_run_id or ""
            for k, v in s.best_params.items():
                tags[f"best.{k}"] = v
        s = _range_advice(t, s)
        tags["mlflow.note.content"] = description(self.study.study_name, s)
        if s.advice:
            tags[ADVICE_TAG] = "\n".join(s.advice)[:5000]  # MLflow caps a tag's value
        t.set_tags(tags)
        if s.confirm is not None:
            log_winner(t, s.confirm)
        rows = study_mod.trial_rows(self.study, self.goals.names)
        t.log_text(study_mod.rows_csv(rows), "trials.csv")
        with tempfile.TemporaryDirectory() as tmp:
            plots.write_all(
                self.study,
                Path(tmp),
                objective=self.goals.winner_metric,
                objectives=self.goals.names,
                constraints_func=front.constraints_func if self.goals.bounds else None,
            )
            t.log_artifacts(tmp, "plots")


def _range_advice(tracker, s: Summary) -> Summary:
    """The summary with the range notes the parent should show (sweep/search/advice.py): this
    summary's, or, where it did not work them out (an interrupted sweep), the ones logged before.
    None found this time removes the old ones (a resumed sweep's best moved inwards)."""
    logged = tracker.client.get_run(tracker.run_id).data.tags.get(ADVICE_TAG)
    if s.advice is None:
        return replace(s, advice=logged.splitlines() if logged else [])
    if not s.advice and logged is not None:
        tracker.client.delete_tag(tracker.run_id, ADVICE_TAG)
    return s


def log_winner(tracker, choice) -> None:
    """The parent run carries the result: the winner's eval and test metrics as metrics (step 0:
    one value per sweep), its configuration as `winner.*` tags (params could not change when a
    later confirm moves the winner), and the confirmation table as an artifact."""
    tracker.log_text(choice.csv(), "confirm.csv")
    w, d = choice.winner, choice.winner_run
    if w is None or d is None:
        return
    run = tracker.client.get_run(d.run_id)
    keep = ("eval_loss", "eval_accuracy", "eval_f1", "test_loss", "test_accuracy", "test_f1")
    metrics = {k: v for k, v in run.data.metrics.items() if k in keep}
    metrics["confirm_mean"] = w.mean
    metrics["confirm_std"] = w.std
    # one value per sweep: a re-run (a registration retried, a resumed sweep) logs only changes
    logged = tracker.client.get_run(tracker.run_id).data.metrics
    changed = {k: v for k, v in metrics.items() if logged.get(k) != v}
    if changed:
        tracker.log_metrics(changed, step=0)
    tags = {f"winner.{k}": v for k, v in w.candidate.params.items()}
    tags.update(
        {
            "sweep.winner_run_id": d.run_id,
            "sweep.winner_trial": str(w.candidate.number),
            "sweep.winner_seed": str(d.seed),
            "sweep.winner_mean": f"{w.mean:.6g}",
            "sweep.winner_std": f"{w.std:.6g}",
            "sweep.model": choice.model,
        }
    )
    tracker.set_tags(tags)


def description(name: str, s: Summary) -> str:
    c = s.counts
    lines = [
        f"**Sweep `{name}`**: {c['finished']} trials finished "
        f"({c['complete']} complete, {c['pruned']} pruned, {c['failed']} failed).",
    ]
    if s.best_value is not None:
        params = ", ".join(f"`{k}={v}`" for k, v in s.best_params.items())
        lines.append(f"Best value **{s.best_value:.4f}** with {params} (run `{s.best_run_id}`).")
    ch = s.confirm
    if ch is not None and ch.winner is not None:
        w = ch.winner
        params = ", ".join(f"`{k}={v}`" for k, v in w.candidate.params.items())
        lines.append(
            f"Winner after confirmation: trial {w.candidate.number} ({params}), mean "
            f"**{w.mean:.4f}** +- {w.std:.4f} over {w.n} new seeds (run `{ch.winner_run.run_id}`)."
        )
        if ch.test:
            lines.append(
                "On the test split: "
                + ", ".join(f"{k} {v:.4f}" for k, v in sorted(ch.test.items()))
            )
        if ch.refit is not None and ch.refit.run_id:  # hydra.sweeper.confirm.refit
            lines.append(ch.refit.description())
        if ch.model:
            lines.append(f"Model: `{ch.model}` (alias `champion`).")
    if s.front:
        lines.append(
            f"Pareto front ({', '.join(s.objectives or [])}), {len(s.front)} trial(s):\n"
            + "\n".join(
                f"- trial {r['number']}: {r['values']} (run `{r['run_id']}`)" for r in s.front
            )
        )
    if s.advice:
        lines.append("Range advice:\n" + "\n".join(f"- {note}" for note in s.advice))
    return "\n\n".join(lines)


def front_rows(members: list, goals: front.Objectives) -> list[dict[str, Any]]:
    """The front's members as rows: number, values in words, params, run id."""
    return [
        {
            "number": t.number,
            "values": front.describe(t, goals.names),
            "params": dict(t.params),
            "run_id": t.user_attrs.get(study_mod.RUN_ID),
        }
        for t in members
    ]
