"""Plots of a study: HTML (plotly, interactive) and PNG (matplotlib; plotly's image export needs a
browser download that fails offline). Each plot is optional: too few trials skip it.

`lr_figure` is the one builder of the learning-rate plot: the end-of-sweep files here and the
`python -m sweep report` page both draw it from the same points."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from sweep.core import metrics

log = logging.getLogger(__name__)

# {schedule: [(learning rate, objective value, trial number), ...]}
LRPoints = dict[str, list[tuple[float, float, int]]]


def _complete(study: optuna.Study, by: int = 0):
    return [
        t
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if t.values and metrics.finite(t.values[by])
    ]


def by_schedule(trials: Iterable[tuple[Any, Any, Any, int]]) -> LRPoints:
    """(lr, schedule, value, trial number) of each trial -> the points of `lr_figure`. A trial
    without a finite lr or value is left out; one without a schedule is `fixed`."""
    groups: LRPoints = {}
    for lr, schedule, value, number in trials:
        if metrics.finite(lr) and metrics.finite(value):
            name = "fixed" if schedule is None else str(schedule)
            groups.setdefault(name, []).append((lr, value, number))
    return dict(sorted(groups.items()))


def lr_by_schedule_points(study: optuna.Study, by: int = 0) -> LRPoints:
    return by_schedule(
        (t.params.get("optimizer.lr"), t.params.get("scheduler"), t.values[by], t.number)
        for t in _complete(study, by)
    )


def lr_title(objective: str, direction: str) -> str:
    return f"Learning rate vs. {objective}, by schedule ({direction})"


def lr_figure(groups: LRPoints, objective: str, direction: str, **layout: Any):
    """Learning rate (log axis) against the objective, one marker trace per LR schedule, each
    point's hover naming its trial; `layout` is passed on to plotly's `update_layout`."""
    import plotly.graph_objects as go

    fig = go.Figure()
    for sched, pts in sorted(groups.items()):
        fig.add_trace(
            go.Scatter(
                x=[p[0] for p in pts],
                y=[p[1] for p in pts],
                text=[f"trial {p[2]}" for p in pts],
                mode="markers",
                marker={"size": 10},
                name=sched,
            )
        )
    fig.update_layout(
        title=lr_title(objective, direction),
        xaxis={"title": "optimizer.lr", "type": "log"},
        yaxis={"title": objective},
        **layout,
    )
    return fig


def write_all(
    study: optuna.Study,
    out: Path,
    objective: str = "objective",
    objectives: list[str] | None = None,
    constraints_func=None,
) -> list[Path]:
    """Write every plot the study supports into `out`; returns the files written. `objective`
    names the value axis (the study itself does not know its metric's name); with several
    `objectives` (their names in order) the history, importances and learning-rate plots show
    `objective` and a Pareto-front plot shows them all, infeasible trials greyed by
    `constraints_func`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    names = objectives or [objective]
    by = names.index(objective) if objective in names else 0
    complete = _complete(study, by)
    if not complete:
        return []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        written = _optuna_plots(
            study, out, plt, _jobs(study, complete, names, by, constraints_func)
        )
        groups = lr_by_schedule_points(study, by)
        if groups:
            direction = study.directions[by].name.lower()
            written += _lr_plots(groups, names[by], direction, out, plt)
    return written


def _jobs(study, complete, names: list[str], by: int, constraints_func) -> list:
    """(file name, plotly builder, matplotlib builder) of each Optuna plot the study supports."""
    from optuna import visualization as vis
    from optuna.visualization import matplotlib as vis_mpl

    several = len(study.directions) > 1
    pick = {"target": (lambda t: t.values[by]), "target_name": names[by]} if several else {}
    n_params = len({k for t in complete for k in t.params})
    jobs = [
        (
            "optimization_history",
            lambda s: vis.plot_optimization_history(s, **pick),
            lambda s: vis_mpl.plot_optimization_history(s, **pick),
        )
    ]
    if len(complete) >= 3 and n_params >= 2:
        jobs.append(
            (
                "param_importances",
                lambda s: vis.plot_param_importances(s, **pick),
                lambda s: vis_mpl.plot_param_importances(s, **pick),
            )
        )
    if several and len(names) <= 3:
        front = {"target_names": names, "constraints_func": constraints_func}
        jobs.append(
            (
                "pareto_front",
                lambda s: vis.plot_pareto_front(s, **front),
                lambda s: vis_mpl.plot_pareto_front(s, **front),
            )
        )
    return jobs


def _optuna_plots(study, out: Path, plt, jobs: list) -> list[Path]:
    written: list[Path] = []
    for name, html_fn, png_fn in jobs:
        try:
            html_fn(study).write_html(str(out / f"{name}.html"), include_plotlyjs="cdn")
            written.append(out / f"{name}.html")
            ax = png_fn(study)
            fig = ax.figure if hasattr(ax, "figure") else ax.flat[0].figure
            fig.set_size_inches(8, 5)
            fig.tight_layout()
            fig.savefig(out / f"{name}.png", dpi=100)
            plt.close(fig)
            written.append(out / f"{name}.png")
        except Exception as e:  # noqa: BLE001 - a plot must never fail a sweep
            log.info("skipped plot %s: %s", name, e)
    return written


def _lr_plots(groups: LRPoints, objective: str, direction: str, out: Path, plt) -> list[Path]:
    """The learning-rate plot as HTML (`lr_figure`) and as a PNG drawn alike with matplotlib."""
    fig = lr_figure(groups, objective, direction)
    fig.write_html(str(out / "lr_vs_objective.html"), include_plotlyjs="cdn")
    f, ax = plt.subplots(figsize=(8, 5))
    for sched, pts in sorted(groups.items()):
        ax.scatter([p[0] for p in pts], [p[1] for p in pts], label=sched)
    ax.set_xscale("log")
    ax.set_xlabel("optimizer.lr")
    ax.set_ylabel(objective)
    ax.set_title(lr_title(objective, direction))
    ax.legend()
    f.tight_layout()
    f.savefig(out / "lr_vs_objective.png", dpi=100)
    plt.close(f)
    return [out / "lr_vs_objective.html", out / "lr_vs_objective.png"]
