"""Plots of a study: HTML (plotly, interactive) and PNG (matplotlib; plotly's image export needs a
browser download that fails offline). Each plot is optional: too few trials skip it."""

from __future__ import annotations

import logging
import math
import warnings
from pathlib import Path

import optuna
from optuna.trial import TrialState

log = logging.getLogger(__name__)


def _complete(study: optuna.Study):
    return [
        t
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if t.value is not None and math.isfinite(t.value)
    ]


def lr_by_schedule_points(study: optuna.Study) -> dict[str, list[tuple[float, float, int]]]:
    groups: dict[str, list[tuple[float, float, int]]] = {}
    for t in _complete(study):
        lr = t.params.get("optimizer.lr")
        if lr is None:
            continue
        groups.setdefault(str(t.params.get("scheduler", "fixed")), []).append(
            (lr, t.value, t.number)
        )
    return groups


def write_all(study: optuna.Study, out: Path) -> list[Path]:
    """Write every plot the study supports into `out`; returns the files written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna import visualization as vis
    from optuna.visualization import matplotlib as vis_mpl

    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    complete = _complete(study)
    if not complete:
        return written
    n_params = len({k for t in complete for k in t.params})
    jobs = [
        ("optimization_history", vis.plot_optimization_history, vis_mpl.plot_optimization_history)
    ]
    if len(complete) >= 3 and n_params >= 2:
        jobs.append(
            ("param_importances", vis.plot_param_importances, vis_mpl.plot_param_importances)
        )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
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
        groups = lr_by_schedule_points(study)
        if groups:
            written += _lr_plots(groups, study.direction.name.lower(), out, plt)
    return written


def _lr_plots(groups, direction: str, out: Path, plt) -> list[Path]:
    import plotly.graph_objects as go

    fig = go.Figure()
    for sched, pts in sorted(groups.items()):
        fig.add_trace(
            go.Scatter(
                x=[p[0] for p in pts],
                y=[p[1] for p in pts],
                text=[f"trial {p[2]}" for p in pts],
                mode="markers",
                name=sched,
            )
        )
    fig.update_layout(
        title=f"Learning rate vs. objective by schedule ({direction})",
        xaxis={"title": "optimizer.lr", "type": "log"},
        yaxis={"title": "objective"},
    )
    fig.write_html(str(out / "lr_vs_objective.html"), include_plotlyjs="cdn")
    f, ax = plt.subplots(figsize=(8, 5))
    for sched, pts in sorted(groups.items()):
        ax.scatter([p[0] for p in pts], [p[1] for p in pts], label=sched)
    ax.set_xscale("log")
    ax.set_xlabel("optimizer.lr")
    ax.set_ylabel("objective")
    ax.set_title(f"Learning rate vs. objective by schedule ({direction})")
    ax.legend()
    f.tight_layout()
    f.savefig(out / "lr_vs_objective.png", dpi=100)
    plt.close(f)
    return [out / "lr_vs_objective.html", out / "lr_vs_objective.png"]
