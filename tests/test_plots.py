"""The learning-rate plot has one builder (`sweep.track.plots.lr_figure`): the end-of-sweep files
and the `python -m sweep report` page both draw it, from Optuna trials and from report rows alike.

    .venv/bin/python -m pytest tests/test_plots.py

Everything runs in-process on in-memory Optuna studies and a throw-away SQLite MLflow store.
"""

from __future__ import annotations

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.trial import TrialState

from sweep.cli import report
from sweep.search.study import trial_rows
from sweep.track import plots

SPACE = {
    "optimizer.lr": FloatDistribution(1e-5, 1e-3, log=True),
    "scheduler": CategoricalDistribution(["cosine", "linear"]),
}
# (lr, schedule, value, state)
TRIALS = [
    (1e-4, "linear", 0.5, TrialState.COMPLETE),
    (3e-4, "cosine", 0.7, TrialState.COMPLETE),
    (2e-5, "linear", 0.6, TrialState.COMPLETE),
    (5e-4, "cosine", None, TrialState.PRUNED),
]
POINTS = {"cosine": [(3e-4, 0.7, 1)], "linear": [(1e-4, 0.5, 0), (2e-5, 0.6, 2)]}


def small_study(direction: str = "maximize") -> optuna.Study:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction=direction)
    for lr, sched, value, state in TRIALS:
        study.add_trial(
            optuna.trial.create_trial(
                params={"optimizer.lr": lr, "scheduler": sched},
                distributions=SPACE,
                value=value,
                state=state,
            )
        )
    return study


def test_by_schedule_keeps_finite_points_grouped_and_sorted():
    groups = plots.by_schedule(
        [
            (1e-4, "linear", 0.5, 0),
            (3e-4, "cosine", 0.7, 1),
            (2e-5, None, 0.6, 2),  # no schedule: fixed
            (None, "linear", 0.9, 3),  # no lr
            ("fast", "linear", 0.9, 4),  # not a number
            (1e-4, "linear", float("nan"), 5),
            (float("inf"), "linear", 0.1, 6),
            (True, "linear", 0.1, 7),  # a bool is no learning rate
        ]
    )
    assert groups == {
        "cosine": [(3e-4, 0.7, 1)],
        "fixed": [(2e-5, 0.6, 2)],
        "linear": [(1e-4, 0.5, 0)],
    }
    assert list(groups) == ["cosine", "fixed", "linear"]
    assert plots.by_schedule([]) == {}


def test_points_of_a_study_are_its_complete_trials():
    assert plots.lr_by_schedule_points(small_study()) == POINTS


def test_lr_figure_one_marker_trace_per_schedule_on_a_log_axis():
    fig = plots.lr_figure(POINTS, "eval_loss", "minimize", height=333)
    assert [t.name for t in fig.data] == ["cosine", "linear"]
    linear = fig.data[1]
    assert list(linear.x) == [1e-4, 2e-5] and list(linear.y) == [0.5, 0.6]
    assert list(linear.text) == ["trial 0", "trial 2"]
    assert linear.mode == "markers" and linear.marker.size == 10
    layout = fig.layout
    assert layout.title.text == "Learning rate vs. eval_loss, by schedule (minimize)"
    assert layout.xaxis.type == "log" and layout.xaxis.title.text == "optimizer.lr"
    assert layout.yaxis.title.text == "eval_loss"
    assert layout.height == 333  # extra layout is passed on


def test_write_all_writes_the_lr_plot_as_html_and_png(tmp_path):
    written = plots.write_all(small_study(), tmp_path, objective="eval_f1")
    assert tmp_path / "lr_vs_objective.html" in written
    assert tmp_path / "lr_vs_objective.png" in written
    page = (tmp_path / "lr_vs_objective.html").read_text()
    assert "Learning rate vs. eval_f1, by schedule (maximize)" in page
    assert (tmp_path / "lr_vs_objective.png").stat().st_size > 1000
    # the study does not know its metric's name: without one the axis says "objective"
    plots.write_all(small_study(), tmp_path / "plain")
    page = (tmp_path / "plain" / "lr_vs_objective.html").read_text()
    assert "Learning rate vs. objective, by schedule (maximize)" in page


def test_write_all_skips_the_lr_plot_without_a_learning_rate(tmp_path):
    study = optuna.create_study()
    for x in (0.1, 0.2):
        study.add_trial(
            optuna.trial.create_trial(
                params={"x": x}, distributions={"x": FloatDistribution(0, 1)}, value=x
            )
        )
    names = {p.name for p in plots.write_all(study, tmp_path)}
    assert "optimization_history.html" in names and "lr_vs_objective.html" not in names


def _sweep(rows, objective="eval_f1", direction="maximize") -> report.Sweep:
    return report.Sweep(
        experiment="e",
        experiment_id="1",
        uri="sqlite:///x.db",
        study="s",
        parent=None,
        objective=objective,
        direction=direction,
        rows=rows,
        source="test",
    )


def test_report_draws_the_same_lr_figure_from_its_rows():
    study = small_study()
    sweep = _sweep(trial_rows(study))
    fid, caption, fig = report.lr_figure(sweep, report._completed(sweep))
    assert (fid, caption) == ("lr-vs-objective", "Each COMPLETE trial, coloured by LR schedule")
    same = plots.lr_figure(POINTS, "eval_f1", "maximize", **report.LAYOUT)
    assert fig.to_plotly_json() == same.to_plotly_json()
    assert "lr-vs-objective" in [f[0] for f in report.figures(sweep)]


def test_report_has_no_lr_figure_without_a_learning_rate():
    rows = [{"number": 0, "state": "COMPLETE", "value": 0.5, "params.x": 1.0}]
    sweep = _sweep(rows)
    assert report.lr_figure(sweep, report._completed(sweep)) is None
    assert [f[0] for f in report.figures(sweep)] == ["optimization-history"]


@pytest.mark.parametrize(
    ("objective", "logged", "direction"),
    [
        ("eval_loss", None, "minimize"),
        ("eval_f1", None, "maximize"),
        ("eval_loss", "maximize", "maximize"),
    ],
)
def test_report_direction_is_the_logged_one_else_the_objectives(
    tmp_path, objective, logged, direction
):
    from sweep.track.tracking import client as mlflow_client

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = mlflow_client(uri)
    exp = client.create_experiment("old", artifact_location=str(tmp_path / "mlartifacts"))
    parent = client.create_run(exp, tags={"sweep.role": "parent", "optuna.study": "s"})
    client.log_param(parent.info.run_id, "sweeper.objective", objective)
    if logged:
        client.log_param(parent.info.run_id, "sweeper.direction", logged)
    client.set_terminated(parent.info.run_id)
    sweep = report.collect("old", uri, use_optuna=False)
    assert (sweep.objective, sweep.direction) == (objective, direction)
