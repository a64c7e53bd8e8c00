"""`python -m sweep confirm --experiment NAME [--top K --seeds S]`: confirm a finished sweep from
its MLflow records (sweep/search/confirm.py has the stages). The K best complete trials of the
sweep's parent run are re-run from their logged config.yaml, one after another in this process,
each with S new seeds, as child runs of the parent; then the winner is chosen, scored on the test
split once and registered. Runs already finished under the parent are not repeated."""

from __future__ import annotations

import math
import os

from sweep.cli import reproduce as rep
from sweep.core.config import mask_uri
from sweep.search import confirm as cf
from sweep.track.tracking import resolve_uri

SOURCE = "python -m sweep confirm"


def _parent_run(client, experiment_id: str, experiment: str, study: str | None, uri: str):
    of_study = f" and tags.`optuna.study` = '{study}'" if study else ""
    parents = client.search_runs(
        [experiment_id],
        filter_string="tags.`sweep.role` = 'parent'" + of_study,
        order_by=["attributes.start_time DESC"],
        max_results=50,
    )
    if not parents:
        what = f"study {study!r} of experiment" if study else "experiment"
        raise cf.ConfirmError(f"{what} {experiment!r} has no sweep (in {mask_uri(uri)})")
    return parents[0]


def candidates(client, experiment_id: str, parent) -> list[cf.Candidate]:
    """The parent's COMPLETE trial runs as candidates, by the value of the sweep's objective:
    only the feasible ones (tag sweep.feasible), and with several objectives only the Pareto
    front's members (tag sweep.pareto), as the sweep itself confirms (sweep/search/front.py)."""
    objective = parent.data.params.get("sweeper.objective", "eval_f1")
    several = "," in parent.data.params.get("sweeper.objectives", "")
    runs = client.search_runs(
        [experiment_id],
        filter_string=(
            f"tags.`mlflow.parentRunId` = '{parent.info.run_id}' "
            "and tags.`optuna.state` = 'COMPLETE'"
        ),
        max_results=5000,
    )
    keys = rep.searched_keys(parent)
    out = []
    for r in runs:
        tags = r.data.tags
        if tags.get("sweep.role") == cf.ROLE or tags.get("sweep.feasible") == "false":
            continue
        if several and tags.get("sweep.pareto") != "true":
            continue
        value = rep.objective_value(r, objective)
        out.append(
            cf.Candidate(
                number=int(r.data.tags.get("optuna.trial_number", "-1")),
                run_id=r.info.run_id,
                value=math.nan if value is None else float(value),
                params=rep.best_params(r, keys, rep.logged_overrides(r)),
            )
        )
    return out


def confirm(
    experiment: str,
    *,
    top: int = 2,
    seeds: int = 2,
    study: str | None = None,
    tracking_uri: str | None = None,
    out=rep._out,
) -> int:
    if top < 1 or seeds < 1:
        raise cf.ConfirmError(f"--top and --seeds must be >= 1, got {top} and {seeds}")
    uri = resolve_uri(tracking_uri, option="--tracking-uri")
    client = rep.open_store(uri)
    exp = rep.get_experiment(client, experiment, uri)
    parent = _parent_run(client, exp.experiment_id, experiment, study, uri)
    study_name = parent.data.tags.get("optuna.study", "")
    objective = parent.data.params.get("sweeper.objective", "eval_f1")
    direction = parent.data.params.get("sweeper.direction", "maximize")
    chosen = cf.top(candidates(client, exp.experiment_id, parent), top, direction)
    if not chosen:
        raise cf.ConfirmError(f"sweep {study_name!r} has no complete trial with a value to confirm")
    configs = {c.run_id: _config(client, c.run_id, uri) for c in chosen}  # bad configs fail here
    seed_list = cf.seeds_for(int(configs[chosen[0].run_id].trainer.seed), seeds)
    root = cf.model_dir(os.getcwd(), study_name)
    done = cf.finished(client, exp.experiment_id, parent.info.run_id, objective)
    todo = [(c, s) for c in chosen for s in seed_list if (c.run_id, s) not in done]
    out(
        f"sweep {study_name}: confirming trials {', '.join(str(c.number) for c in chosen)} with "
        f"seeds {', '.join(map(str, seed_list))} ({len(todo)} runs to do)"
    )
    _run_all(client, uri, todo, study_name, parent.info.run_id, root)
    done = cf.finished(client, exp.experiment_id, parent.info.run_id, objective)
    choice = cf.choose(chosen, seed_list, done, direction)
    choice.rule = _rule(parent, objective, direction)
    cf.finalize(
        choice,
        uri=uri,
        experiment=experiment,
        experiment_id=exp.experiment_id,
        study_name=study_name,
        model_root=root,
        config_of=lambda run_id: _config(client, run_id, uri),
    )
    from sweep.search.parent import log_winner
    from sweep.track.tracking import Tracker

    tracker = Tracker(uri, experiment)
    tracker.run_id = parent.info.run_id
    log_winner(tracker, choice)
    out(choice.table())
    for note in choice.notes:
        rep._warn(f"note: {note}")
    if choice.winner is None:
        rep._warn("error: no winner: some confirmation runs did not finish")
        return 1
    if choice.error:
        rep._warn(f"error: {choice.error}")
        return 1
    return 0


def _rule(parent, objective: str, direction: str) -> str:
    """How this command chose the winner, in words (the confirmation table shows it)."""
    how = "highest" if direction == "maximize" else "lowest"
    several = "," in parent.data.params.get("sweeper.objectives", "")
    pool = "feasible Pareto-front members" if several else "best feasible trials"
    return f"{how} mean {objective} among the {pool} over the confirmation seeds"


def _run_all(client, uri: str, todo: list, study_name: str, parent_id: str, root: str) -> None:
    """The confirmation runs, one after another in this process, each with every core."""
    from sweep.train.runner import run_job

    for c, seed in todo:
        cfg = _config(client, c.run_id, uri)
        cfg.trainer.seed = seed
        cfg.trainer.threads = None
        ctx = cf.ConfirmContext(study_name, parent_id, c.run_id, c.number, seed, root)
        run_job(cfg, None, confirm=ctx, extra_tags={"mlflow.source.name": SOURCE})


def _config(client, run_id: str, uri: str):
    run = rep.get_run(client, run_id, uri)
    cfg, _ = rep.prepare_config(rep.read_config_artifact(client, run, uri), uri)
    return cfg
