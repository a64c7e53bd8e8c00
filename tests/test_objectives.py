"""Several objectives and constraints (sweep/search/front.py): the Pareto front, feasibility, the
winner rule, and their bad input.

One real two-objective sweep on the tiny model (eval_loss against trainable parameters, the
model's width searched, so the cost is exact and the front has a real trade-off) with a bound
on the parameters and confirmation, checked in the Optuna study, the MLflow runs, the console,
`python -m sweep best`, the HTML report and the sweep's results file; the rules themselves on
Optuna trials made in memory.
"""

from __future__ import annotations

import csv
import io
import math
import subprocess
import sys

import optuna
import pytest
from conftest import TINY, TRAIN, compose, mlflow_client, run_train, runs_of, sweep_cli, sweep_study
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial

from sweep.core.config import ConfigError, SweeperConfig, check_sweeper
from sweep.search import front

EXPERIMENT = "tiny-synthetic"
NAMES = ["eval_loss", "perf.params"]


def trainable_params(hidden: int) -> int:
    """The tiny model's trainable parameters at width `hidden`, built as a run builds it."""
    from sweep.train.model import build_model

    cfg = compose(["model=tiny", f"model.hidden_size={hidden}"])
    model = build_model(cfg.model, num_labels=2, seed=0)
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def dominated(a: list[float], b: list[float]) -> bool:
    """b is at least as good as a on both (minimised) objectives and better on one."""
    return all(y <= x for x, y in zip(a, b, strict=True)) and any(
        y < x for x, y in zip(a, b, strict=True)
    )


@pytest.mark.slow
def test_a_two_objective_sweep_with_a_bound_tags_its_front_and_confirms_only_it(workdir):
    small, large = trainable_params(16), trainable_params(32)
    assert small < large
    bound = (small + large) // 2  # the wide model is infeasible
    proc = run_train(
        [
            "-m",
            *TINY,
            "trainer.objective=[eval_loss,perf.params]",
            "model.hidden_size=choice(16,32)",
            "optimizer.lr=tag(log,interval(1e-4,3e-3))",
            "scheduler=constant",
            f"hydra.sweeper.constraints={{perf.params:{bound}}}",
            "hydra.sweeper.n_trials=6",
            "hydra.sweeper.confirm.top_k=2",
            "hydra.sweeper.confirm.seeds=1",
        ],
        workdir,
        timeout=600,
    )
    out = proc.stdout
    assert proc.returncode == 0, out[-4000:]
    # Optuna's pruners take one objective: said once, and nothing was pruned
    assert out.count("note: pruning is off") == 1, out[-3000:]
    study = sweep_study(workdir, EXPERIMENT)
    assert [d.name for d in study.directions] == ["MINIMIZE", "MINIMIZE"]
    trials = study.get_trials(deepcopy=False)
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 6
    widths = {t.params["model.hidden_size"] for t in trials}
    assert widths == {16, 32}, widths  # both sides of the bound were tried

    client = mlflow_client(workdir)
    runs = {r.info.run_id: r for r in runs_of(client, EXPERIMENT)}
    for t in trials:
        run = runs[t.user_attrs["mlflow_run_id"]]
        # each value is the metric the run logged, in trainer.objective's order
        assert t.values[0] == pytest.approx(run.data.metrics["eval_loss"])
        assert t.values[1] == run.data.metrics["perf.params"]
        assert t.values[1] == (small if t.params["model.hidden_size"] == 16 else large)
        ok = t.values[1] <= bound
        assert t.user_attrs[front.FEASIBLE] is ok
        assert t.constraints == {"perf.params": pytest.approx(t.values[1] - bound)}
        assert run.data.tags["sweep.feasible"] == str(ok).lower()
        assert run.data.tags["sweep.objectives"] == ",".join(NAMES)

    # the front, worked out here: feasible trials no other feasible trial dominates
    feasible = [t for t in trials if t.values[1] <= bound]
    expected = {
        t.number for t in feasible if not any(dominated(t.values, o.values) for o in feasible)
    }
    tagged = {
        t.number
        for t in trials
        if runs[t.user_attrs["mlflow_run_id"]].data.tags.get("sweep.pareto") == "true"
    }
    assert tagged == expected and expected
    for t in trials:  # every complete trial run says whether it is on the front
        assert runs[t.user_attrs["mlflow_run_id"]].data.tags["sweep.pareto"] in ("true", "false")

    confirmed = [r for r in runs.values() if r.data.tags.get("sweep.role") == "confirm"]
    by_number = {t.user_attrs["mlflow_run_id"]: t.number for t in trials}
    confirmed_trials = {by_number[r.data.tags["sweep.confirms"]] for r in confirmed}
    # confirmation takes the front's best on the first objective, up to top_k, never another
    ranked = sorted(expected, key=lambda n: (trials[n].values[0], n))
    assert confirmed_trials == set(ranked[:2])
    parent = next(r for r in runs.values() if r.data.tags.get("sweep.role") == "parent")
    winner = parent.data.tags["sweep.winner_trial"]
    means = {
        by_number[r.data.tags["sweep.confirms"]]: r.data.metrics["eval_loss"] for r in confirmed
    }
    assert int(winner) == min(means, key=lambda n: (means[n], n))
    assert "winner rule: lowest eval_loss (the first objective) among the feasible" in out
    assert "Pareto front (eval_loss, perf.params)" in out
    assert parent.data.params["sweeper.objectives"] == ",".join(NAMES)
    assert parent.data.params["sweeper.constraints"] == f"perf.params:{bound}"
    assert "Pareto front" in parent.data.tags["mlflow.note.content"]

    check_artifacts(client, parent, expected, trials)
    check_best_and_report(workdir, expected, trials)


def check_artifacts(client, parent, expected: set[int], trials) -> None:
    """The parent's plots include the Pareto front; trials.csv has each objective's column."""
    plots = {a.path.split("/")[-1] for a in client.list_artifacts(parent.info.run_id, "plots")}
    assert {"pareto_front.html", "pareto_front.png"} <= plots, plots
    path = client.download_artifacts(parent.info.run_id, "trials.csv")
    with open(path, encoding="utf-8") as f:
        rows = list(csv.DictReader(io.StringIO(f.read())))
    assert {"values.eval_loss", "values.perf.params", "feasible"} <= set(rows[0])
    for r in rows:
        t = trials[int(r["number"])]
        assert float(r["values.perf.params"]) == t.values[1]
        assert r["feasible"] == str(t.user_attrs[front.FEASIBLE])


def check_best_and_report(workdir, expected: set[int], trials) -> None:
    best = sweep_cli(["best", "--experiment", EXPERIMENT], workdir)
    assert best.returncode == 0, best.stderr[-2000:]
    assert f"pareto front (eval_loss,perf.params): {len(expected)} feasible trial(s)" in best.stdout
    for n in expected:
        assert f"  trial {n}: eval_loss=" in best.stdout, best.stdout
    report = sweep_cli(["report", "--experiment", EXPERIMENT, "--out", "r.html"], workdir)
    assert report.returncode == 0, report.stderr[-2000:]
    html = (workdir / "r.html").read_text(encoding="utf-8")
    assert 'id="pareto-front"' in html and 'id="pareto"' in html
    table = html.split('id="pareto-front"', 1)[1].split("</table>", 1)[0]
    assert table.count("<tr>") == len(expected) + 1  # the header and one row per member
    results = (next(workdir.glob("multirun/**/optimization_results.yaml"))).read_text()
    assert "front:" in results and "objectives:" in results


# --------------------------------------------------------------------------- the rules


def trial(number: int, values: list[float], feasible: bool | None = None, **attrs):
    user = dict(attrs)
    if feasible is not None:
        user[front.FEASIBLE] = feasible
    t = create_trial(
        values=values,
        params={"x": 0.5},
        distributions={"x": FloatDistribution(0, 1)},
        user_attrs=user,
    )
    t.number = number
    return t


def test_the_front_keeps_feasible_non_dominated_trials_only():
    trials = [
        trial(0, [0.90, 5.0]),
        trial(1, [0.85, 2.0]),
        trial(2, [0.80, 3.0]),  # dominated by 1
        trial(3, [0.95, 1.0], feasible=False),  # would dominate all, but breaks a bound
        trial(4, [0.92, 9.0], **{front.IMPORTED: "old-study"}),  # imported: never chosen
        trial(5, [0.90, 5.0]),  # ties 0: neither dominates the other
    ]
    got = [t.number for t in front.pareto(trials, ["maximize", "minimize"])]
    assert got == [0, 1, 5]
    goals = front.Objectives(["eval_f1", "perf.latency_ms"], ["maximize", "minimize"])
    assert [t.number for t in front.ranked(trials, goals)] == [0, 5, 1]
    by_latency = front.Objectives(goals.names, goals.directions, winner_by="perf.latency_ms")
    assert [t.number for t in front.ranked(trials, by_latency)] == [1, 0, 5]
    assert "lowest perf.latency_ms (confirm.winner_by)" in by_latency.rule()


def test_constraint_values_are_met_at_the_bound_and_missing_metrics_violate():
    bounds = {"perf.latency_ms": 5.0, "eval_f1": 0.8}
    assert front.constraint_values(bounds, {"perf.latency_ms": 5.0, "eval_f1": 0.8}) == [0, 0]
    assert front.constraint_values(bounds, {"perf.latency_ms": 7.0, "eval_f1": 0.9}) == [
        2.0,
        pytest.approx(-0.1),
    ]
    missing = front.constraint_values(bounds, {"eval_f1": math.nan})
    assert all(v > 0 for v in missing)  # never measured: not met, and never NaN for Optuna


def test_one_objective_with_a_bound_ranks_feasible_trials_only():
    study = optuna.create_study(direction="maximize")
    for value, latency in ((0.9, 9.0), (0.8, 2.0), (0.7, 1.0)):
        t = study.ask()
        front.record(t, {"perf.latency_ms": 3.0}, {"perf.latency_ms": latency})
        study.tell(t, value)
    from sweep.search.study import best_trial

    assert best_trial(study).number == 1  # 0 scores higher but is too slow
    assert [t.user_attrs[front.FEASIBLE] for t in study.trials] == [False, True, True]


@pytest.mark.parametrize(
    ("direction", "names", "message"),
    [
        ("maximize", ["eval_f1", "perf.latency_ms"], "has 1 direction(s) for 2 objective(s)"),
        (["maximize", "up"], ["eval_f1", "perf.latency_ms"], "must be minimize or maximize"),
    ],
)
def test_directions_must_match_the_objectives(direction, names, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        check_sweeper(SweeperConfig(), direction, names)


def bad(args: list[str], workdir) -> str:
    proc = subprocess.run(
        [sys.executable, str(TRAIN), "-m", *TINY, *args],
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=180,
    )
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert proc.returncode == 2 and len(errors) == 1, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    assert "Launching" not in proc.stdout + proc.stderr  # no trial was started
    return errors[0]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["trainer.objective=[eval_f1,perf.latency_ms]", "hydra.sweeper.direction=maximize"],
            "hydra.sweeper.direction has 1 direction(s) for 2 objective(s)",
        ),
        (["trainer.objective=[eval_f1,perf.latncy]"], "got 'perf.latncy'"),
        (
            ["trainer.objective=[eval_f1,eval_loss]", "hydra.sweeper.direction=[maximize,lower]"],
            "must be minimize or maximize, got 'lower'",
        ),
        (["trainer.objective=[eval_f1,eval_f1]"], "names a metric twice"),
        (["hydra.sweeper.constraints={perf.latncy_ms:5}"], "unknown metric 'perf.latncy_ms'"),
        (["hydra.sweeper.constraints={perf.latency_ms:fast}"], "must be a finite number"),
        (
            ["trainer.objective=[eval_f1,perf.params]", "hydra.sweeper.sampler=cmaes"],
            "cmaes optimises one objective",
        ),
        (
            [
                "trainer.objective=[eval_f1,perf.params]",
                "hydra.sweeper.confirm.winner_by=eval_loss",
            ],
            "winner_by must be one of trainer.objective",
        ),
    ],
)
def test_bad_objectives_and_constraints_are_one_error_line_before_any_trial(args, message, workdir):
    assert message in bad(args, workdir)


def test_constraints_are_part_of_the_identity_only_when_set():
    from sweep.search import identity

    base = compose(["model=tiny"])
    plain = identity.describe(base, {}, {}, {"direction": "maximize"})
    unset = identity.describe(base, {}, {}, {"direction": "maximize", "constraints": None})
    bounded = identity.describe(
        base, {}, {}, {"direction": "maximize", "constraints": {"perf.latency_ms": 5.0}}
    )
    # a sweep without constraints keeps the digest it had before they existed
    assert identity.digest(plain) == identity.digest(unset)
    assert "constraints" not in plain["sweeper"]
    assert identity.digest(bounded) != identity.digest(plain)
    assert bounded["sweeper"]["constraints"] == {"perf.latency_ms": 5.0}


def test_a_timed_cost_with_trials_side_by_side_on_the_cpu_gets_one_note(capsys):
    from sweep.search.sweeper import _timing_note
    from sweep.search.workers import Placement

    latency = front.Objectives(["eval_f1", "perf.latency_ms"], ["maximize", "minimize"])
    bounded = front.Objectives(["eval_f1"], ["maximize"], bounds={"perf.train_seconds": 60.0})
    _timing_note(latency, Placement([None, None], []), 1)
    _timing_note(bounded, Placement([None], []), 2)  # two jobs at once through a launcher
    notes = capsys.readouterr().err.splitlines()
    assert len(notes) == 2
    assert "perf.latency_ms is timed while 2 trials run side by side" in notes[0]
    assert "perf.train_seconds" in notes[1]
    _timing_note(latency, Placement([None], []), 1)  # one at a time
    _timing_note(latency, Placement(["0", "1"], ["0", "1"]), 1)  # one GPU each
    _timing_note(front.Objectives(["eval_f1"], ["maximize"]), Placement([None, None], []), 1)
    assert capsys.readouterr().err == ""
