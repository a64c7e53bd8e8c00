"""Range advice (sweep/search/advice.py): a note when a sweep's best trials sit at an edge of a
numeric range, with the widened range as the override to paste.

The unit tests rank hand-made trials in real Optuna studies (in memory, and one journal file);
the slow one runs a real 6-trial sweep whose best trials sit at the top of a too-low lr range.

    .venv/bin/python -m pytest tests/test_advice.py -m "not slow"    # the fast ones, ~2 s
    .venv/bin/python -m pytest tests/test_advice.py                  # with the real sweep
"""

from __future__ import annotations

import optuna
import pytest
from conftest import TINY, compose, mlflow_client, run_train, runs_of, sweep_study
from hydra.core.override_parser.overrides_parser import OverridesParser
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState, create_trial

from sweep.search import advice
from sweep.search.sweeper import distribution_of

LR = "optimizer.lr"
LOG_LR = FloatDistribution(1e-6, 1e-4, log=True)


def study_of(
    name: str, dist, points, direction="maximize", state=TrialState.COMPLETE, storage=None
):
    """A real study holding one finished trial per (param value, objective value)."""
    study = optuna.create_study(direction=direction, storage=storage)
    for x, value in points:
        study.add_trial(
            create_trial(
                params={name: x},
                distributions={name: dist},
                value=value if state == TrialState.COMPLETE else None,
                state=state,
                intermediate_values={} if state == TrialState.COMPLETE else {1: value},
            )
        )
    return study


def parsed(override: str):
    """The override as the sweeper reads it back: the user gets what the note says."""
    return distribution_of(OverridesParser.create().parse_overrides([override])[0])


# the lr values of six trials: three in the bottom tenth of 1e-6..1e-4 (lr <= 1.58e-6), three
# in the top tenth (lr >= 6.3e-5)
SIX = [1e-6, 1.2e-6, 1.5e-6, 7e-5, 8.5e-5, 1e-4]


def test_top_edge_of_a_log_range_widens_by_one_decade():
    # the objective rises with the lr: the three best are the three highest
    study = study_of(LR, LOG_LR, [(x, i / 10) for i, x in enumerate(SIX)])
    (a,) = advice.for_study(study, {LR: LOG_LR})
    assert a.edge == "top" and a.name == LR
    assert a.best == (1e-4, 8.5e-5, 7e-5) and a.complete == 6
    assert a.new == FloatDistribution(1e-6, 1e-3, log=True)
    assert a.override == "optimizer.lr=tag(log, interval(1e-6, 1e-3))"
    assert parsed(a.override) == a.new
    note = a.note
    assert "\n" not in note and note.startswith("optimizer.lr: the 3 best of 6 complete trials")
    assert "top tenth of its range tag(log, interval(1e-6, 1e-4))" in note
    assert note.endswith("may lie above it: try 'optimizer.lr=tag(log, interval(1e-6, 1e-3))'")


def test_bottom_edge_of_a_narrow_log_range_widens_by_its_own_width():
    # minimised: lower is better, and the lowest lrs score lowest
    dist = FloatDistribution(1e-4, 2e-4, log=True)
    xs = [1e-4, 1.02e-4, 1.05e-4, 1.4e-4, 1.7e-4, 2e-4]
    study = study_of(LR, dist, [(x, i) for i, x in enumerate(xs)], direction="minimize")
    (a,) = advice.for_study(study, {LR: dist})
    assert a.edge == "bottom" and a.best == (1e-4, 1.02e-4, 1.05e-4)
    assert a.new == FloatDistribution(5e-5, 2e-4, log=True)  # a factor 2 down, like the range
    assert "may lie below it" in a.note and parsed(a.override) == a.new


def test_the_direction_decides_which_trials_are_best():
    # the same trials, maximised: the best sit at the bottom (value falls with the lr)
    study = study_of(LR, LOG_LR, [(x, -i) for i, x in enumerate(SIX)])
    (a,) = advice.for_study(study, {LR: LOG_LR})
    assert a.edge == "bottom" and a.new.low == pytest.approx(1e-7)
    # minimised, the very same values put the best at the top
    study = study_of(LR, LOG_LR, [(x, -i) for i, x in enumerate(SIX)], direction="minimize")
    assert advice.for_study(study, {LR: LOG_LR})[0].edge == "top"


def test_linear_range_widens_by_half_its_width():
    dist = FloatDistribution(0.0, 0.2)
    xs = [0.0, 0.05, 0.1, 0.185, 0.19, 0.2]
    study = study_of("scheduler.warmup_ratio", dist, [(x, i) for i, x in enumerate(xs)])
    (a,) = advice.for_study(study, {"scheduler.warmup_ratio": dist})
    assert a.new == FloatDistribution(0.0, 0.3) and not a.held
    assert a.override == "scheduler.warmup_ratio=interval(0.0, 0.3)"
    assert parsed(a.override) == a.new


def test_int_ranges_widen_by_whole_steps_and_spell_back():
    # int(interval(8, 64)), best at the top: 64 + 28
    dist = IntDistribution(8, 64)
    xs = [8, 16, 24, 60, 62, 64]
    study = study_of("data.max_length", dist, [(x, i) for i, x in enumerate(xs)])
    (a,) = advice.for_study(study, {"data.max_length": dist})
    assert a.new == IntDistribution(8, 92)
    assert a.override == "data.max_length=int(interval(8, 92))" and parsed(a.override) == a.new
    # range(2, 11, 2) is 2..10 by 2: widened by half (4), it stays on the grid of 2
    dist = IntDistribution(2, 10, step=2)
    xs = [2, 4, 6, 10, 10, 10]
    study = study_of("model.num_layers", dist, [(x, i) for i, x in enumerate(xs)])
    (a,) = advice.for_study(study, {"model.num_layers": dist})
    assert a.new == IntDistribution(2, 14, step=2)
    assert a.override == "model.num_layers=range(2, 16, 2)" and parsed(a.override) == a.new
    # an int log range: one decade up at most
    dist = IntDistribution(1, 64, log=True)
    xs = [1, 2, 4, 50, 60, 64]
    study = study_of("trainer.train_batch_size", dist, [(x, i) for i, x in enumerate(xs)])
    (a,) = advice.for_study(study, {"trainer.train_batch_size": dist})
    assert a.new == IntDistribution(1, 640, log=True) and parsed(a.override) == a.new


def test_no_advice_when_the_best_are_spread_out():
    # the best three at the top, the middle and the bottom of the range
    xs = [1e-6, 3e-6, 1e-5, 3e-5, 1e-4, 5e-5]
    values = [0.9, 0.1, 0.2, 0.8, 0.85, 0.3]
    study = study_of(LR, LOG_LR, list(zip(xs, values, strict=True)))
    assert advice.for_study(study, {LR: LOG_LR}) == []
    # two of three at the top is not all of them
    values = [0.1, 0.2, 0.3, 0.4, 0.9, 0.8]  # 1e-4 and 5e-5 (u = 0.85, not the top tenth)
    study = study_of(LR, LOG_LR, list(zip(xs, values, strict=True)))
    assert advice.for_study(study, {LR: LOG_LR}) == []


def test_too_few_complete_trials_say_nothing():
    five = [(x, i) for i, x in enumerate(SIX)][1:]
    assert advice.for_study(study_of(LR, LOG_LR, five), {LR: LOG_LR}) == []
    # pruned trials are not ranked: five complete plus three pruned are still five
    study = study_of(LR, LOG_LR, five)
    for x in (1e-6, 2e-6, 4e-6):
        study.add_trial(
            create_trial(
                params={LR: x},
                distributions={LR: LOG_LR},
                state=TrialState.PRUNED,
                intermediate_values={1: 0.0},
            )
        )
    assert advice.for_study(study, {LR: LOG_LR}) == []
    # a sixth complete one: advice (MIN_TRIALS is 6)
    study.add_trial(create_trial(params={LR: 1e-6}, distributions={LR: LOG_LR}, value=-1.0))
    assert [a.edge for a in advice.for_study(study, {LR: LOG_LR})] == ["top"]


def test_ties_across_the_top_k_cut_say_nothing():
    # every trial scored 0 (each predicts one class): which three are best is arbitrary
    study = study_of(LR, LOG_LR, [(x, 0.0) for x in SIX])
    assert advice.for_study(study, {LR: LOG_LR}) == []
    # the 3rd and 4th best tie
    study = study_of(LR, LOG_LR, list(zip(SIX, [0.0, 0.1, 0.5, 0.5, 0.8, 0.9], strict=True)))
    assert advice.for_study(study, {LR: LOG_LR}) == []


def test_a_range_inside_zero_one_stays_inside_it():
    # a probability searched over 0.5..0.9, best at the top: 0.9 + 0.2 would pass 1
    dist = FloatDistribution(0.5, 0.9)
    xs = [0.5, 0.6, 0.7, 0.87, 0.89, 0.9]
    study = study_of("model.dropout", dist, [(x, i) for i, x in enumerate(xs)])
    (a,) = advice.for_study(study, {"model.dropout": dist})
    assert a.new == FloatDistribution(0.5, 1.0)
    assert a.note.endswith(
        "(held at 1.0: a range inside [0, 1] (a probability, a ratio) stays inside it)"
    )
    # a non-negative range stays non-negative
    dist = FloatDistribution(0.5, 3.0)
    xs = [0.5, 0.55, 0.7, 1.5, 2.0, 3.0]
    study = study_of("scheduler.power", dist, [(x, -i) for i, x in enumerate(xs)])
    (a,) = advice.for_study(study, {"scheduler.power": dist})
    assert a.new == FloatDistribution(0.0, 3.0) and "stays >= 0" in a.held


def test_an_edge_at_its_bound_says_nothing():
    # warm-up from 0: the best without warm-up is a finding, not a range to widen
    dist = FloatDistribution(0.0, 0.2)
    xs = [0.0, 0.005, 0.01, 0.1, 0.15, 0.2]
    study = study_of("scheduler.warmup_ratio", dist, [(x, -i) for i, x in enumerate(xs)])
    assert advice.for_study(study, {"scheduler.warmup_ratio": dist}) == []


def test_the_projects_own_checks_hold_the_new_end():
    """scheduler.warmup_ratio must be < 1 and scheduler.power > 0 (sweep/core/config.py): the
    widened end is pulled back to the furthest value those checks accept, on the real composed
    configuration of each top trial."""
    check = advice.project_check(compose, ["model=tiny"])
    dist = FloatDistribution(0.5, 0.95)
    xs = [0.5, 0.6, 0.7, 0.93, 0.94, 0.95]
    name = "scheduler.warmup_ratio"
    study = study_of(name, dist, [(x, i) for i, x in enumerate(xs)])
    (a,) = advice.for_study(study, {name: dist}, check)
    assert a.new == FloatDistribution(0.5, 0.99)  # not 1.0: the check wants < 1
    assert "scheduler.warmup_ratio must be in [0, 1), got 1.0" in a.held
    # power only matters with the polynomial schedule: the top trials' own configurations
    dists = {
        "scheduler": CategoricalDistribution(["polynomial"]),
        "scheduler.power": FloatDistribution(0.5, 3.0),
    }
    study = optuna.create_study(direction="minimize")
    for i, x in enumerate([0.5, 0.55, 0.7, 1.5, 2.0, 3.0]):
        study.add_trial(
            create_trial(
                params={"scheduler": "polynomial", "scheduler.power": x},
                distributions=dists,
                value=float(i),
            )
        )
    (a,) = advice.for_study(study, dists, check)  # the categorical one gets none
    assert a.name == "scheduler.power"
    assert a.new == FloatDistribution(0.1, 3.0) and "scheduler.power must be > 0" in a.held
    assert a.override == "scheduler.power=interval(0.1, 3.0)"
    # an int range: 8 - 28 stops at 0 (the range is >= 0), and the check wants a batch > 0
    dist = IntDistribution(8, 64)
    xs = [8, 9, 10, 30, 50, 64]
    name = "trainer.train_batch_size"
    study = study_of(name, dist, [(x, -i) for i, x in enumerate(xs)])
    (a,) = advice.for_study(study, {name: dist}, check)
    assert a.new == IntDistribution(1, 64) and "train_batch_size must be > 0" in a.held
    assert a.override == "trainer.train_batch_size=int(interval(1, 64))"


def test_conditional_parameters_count_the_trials_that_sampled_them():
    dists = {
        "scheduler": CategoricalDistribution(["constant", "polynomial"]),
        "scheduler.power": FloatDistribution(0.5, 3.0),
    }
    study = optuna.create_study(direction="maximize")
    for i in range(6):  # the best trials overall: constant, no power
        study.add_trial(
            create_trial(
                params={"scheduler": "constant"},
                distributions={"scheduler": dists["scheduler"]},
                value=10.0 + i,
            )
        )
    for i, x in enumerate([0.5, 1.0, 1.5, 2.9, 2.95, 3.0]):
        study.add_trial(
            create_trial(
                params={"scheduler": "polynomial", "scheduler.power": x},
                distributions=dists,
                value=float(i),
            )
        )
    (a,) = advice.for_study(study, dists)
    assert a.name == "scheduler.power" and a.complete == 6 and a.best == (3.0, 2.95, 2.9)
    assert a.new == FloatDistribution(0.5, 4.0)  # 3.0 + 1.25, to one digit (a move of 1.0)


def test_several_objectives_get_no_advice():
    study = optuna.create_study(directions=["maximize", "minimize"])
    for i, x in enumerate(SIX):
        study.add_trial(create_trial(params={LR: x}, distributions={LR: LOG_LR}, values=[i, i]))
    assert advice.for_study(study, {LR: LOG_LR}) == []


def test_a_journal_study_and_the_notes_of_the_sweeps_end(tmp_path):
    from sweep.search.study import open_storage

    storage = open_storage(f"journal://{tmp_path / 's.journal'}")
    study_of(LR, LOG_LR, [(x, i / 10) for i, x in enumerate(SIX)], storage=storage)
    study = optuna.load_study(study_name=optuna.get_all_study_names(storage)[0], storage=storage)
    notes = advice.notes(study, {LR: LOG_LR}, compose, ["model=tiny"])
    assert len(notes) == 1 and notes[0].startswith("optimizer.lr: the 3 best of 6")
    assert notes[0].endswith("try 'optimizer.lr=tag(log, interval(1e-6, 1e-3))'")


def test_number_spelling_reads_back_as_the_same_kind():
    assert advice._num(1e-5) == "1e-5"
    assert advice._num(1.0) == "1.0"
    assert advice._num(0.3) == "0.3"
    assert advice._num(64) == "64"
    assert advice._num(2.5e6) == "2.5e6"
    assert advice._num(0.004000000000000001) == "4e-3"
    assert advice._num(1.5e-3) == "1.5e-3"
    assert advice._num(0.05) == "0.05"


def test_a_log_range_inside_zero_one_stays_inside_it_and_an_int_log_one_above_one():
    dist = FloatDistribution(1e-3, 0.5, log=True)  # a log ratio: up a decade would be 5.0
    xs = [1e-3, 2e-3, 1e-2, 0.4, 0.45, 0.5]
    study = study_of("data.label_noise", dist, [(x, i) for i, x in enumerate(xs)])
    (a,) = advice.for_study(study, {"data.label_noise": dist})
    assert a.new == FloatDistribution(1e-3, 1.0, log=True) and "[0, 1]" in a.held
    dist = IntDistribution(1, 64, log=True)  # best at 1: nothing below 1 in a log range
    xs = [1, 1, 1, 30, 50, 64]
    study = study_of("trainer.train_batch_size", dist, [(x, -i) for i, x in enumerate(xs)])
    assert advice.for_study(study, {"trainer.train_batch_size": dist}) == []


@pytest.mark.slow  # ~5 s alone (MLflow's store and the parent's plots), 20 s on a busy machine
def test_the_parent_run_holds_the_latest_advice(workdir):
    """On a real MLflow store: the tag and the description carry the notes; a summary that did
    not work them out (an interrupted sweep) leaves them; one that found none removes them."""
    from sweep.search.parent import ParentRun
    from sweep.search.study import StudyLock, StudySpec, create_or_load
    from sweep.search.sweeper import SearchSpace

    storage = f"journal://{workdir / 'advice.journal'}"
    spec = StudySpec(name="advice", storage_url=storage)
    study = create_or_load(spec)
    for i, x in enumerate(SIX):
        study.add_trial(create_trial(params={LR: x}, distributions={LR: LOG_LR}, value=i / 10))
    base = compose(["model=tiny", "tracking.experiment=advice"])
    space = SearchSpace(distributions={LR: LOG_LR})

    def finish(notes) -> dict:
        parent = ParentRun(
            study,
            base,
            f"sqlite:///{workdir / 'mlflow.db'}",
            spec,
            space,
            StudyLock(storage, "advice"),
        )
        parent.open()
        parent.finish(advice=notes)
        return mlflow_client(workdir).get_run(parent.run_id).data.tags

    notes = advice.notes(study, {LR: LOG_LR})
    tags = finish(notes)
    assert tags[advice.TAG] == notes[0] and notes[0].startswith("optimizer.lr: the 3 best")
    assert f"Range advice:\n- {notes[0]}" in tags["mlflow.note.content"]
    tags = finish(None)
    assert tags[advice.TAG] == notes[0]
    assert tags["mlflow.note.content"].count("Range advice") == 1
    tags = finish([])
    assert advice.TAG not in tags and "Range advice" not in tags["mlflow.note.content"]


# a sweep over a deliberately too-low lr range: six enqueued trials, three spread over the low end
# and three in the top tenth of 1e-6..1e-4 (lr >= 6.3e-5). On the tiny model's 10 steps every one
# of them is too small to learn much, and the eval loss falls as the lr grows (fp32: the loss moves
# smoothly with the lr; bf16 could round neighbours to one value), so the best three are the top
# three and the note says to go higher
TOO_LOW = [
    *TINY,
    "trainer.precision=fp32",
    "scheduler=constant",
    "trainer.objective=eval_loss",
    "optimizer.lr=tag(log, interval(1e-6, 1e-4))",
    "hydra.sweeper.enqueue=[{optimizer.lr:1e-6},{optimizer.lr:2e-6},{optimizer.lr:4e-6},"
    "{optimizer.lr:7e-5},{optimizer.lr:8.5e-5},{optimizer.lr:1e-4}]",
    "hydra.sweeper.n_trials=6",
    "hydra.sweeper.pruner=none",
]


@pytest.mark.slow
def test_a_sweep_whose_best_sit_at_the_top_of_its_range_says_so(workdir):
    proc = run_train(["-m", *TOO_LOW], workdir, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:]
    study = sweep_study(workdir, "tiny-synthetic")
    loss = {t.params[LR]: t.value for t in study.trials if t.state == TrialState.COMPLETE}
    print("eval_loss by lr:", loss)
    # the premise: in this range a larger lr gives a lower eval loss
    # (measured: 0.693240 at 1e-6 down to 0.693213 at 1e-4, 2e-5 between 4e-6 and 7e-5)
    assert len(loss) == 6 and set(sorted(loss, key=loss.get)[:3]) == {1e-4, 8.5e-5, 7e-5}, loss
    notes = [line for line in proc.stdout.splitlines() if line.startswith("note:")]
    about = [line for line in notes if LR in line]
    assert len(about) == 1, notes
    (note,) = about
    assert "the 3 best of 6 complete trials lie in the top tenth" in note
    assert note.endswith("try 'optimizer.lr=tag(log, interval(1e-6, 1e-3))'"), note
    # the parent run carries it, as a tag and in its description
    client = mlflow_client(workdir)
    (parent,) = [
        r for r in runs_of(client, "tiny-synthetic") if r.data.tags.get("sweep.role") == "parent"
    ]
    assert parent.data.tags[advice.TAG] == note.removeprefix("note: ")
    assert f"- {parent.data.tags[advice.TAG]}" in parent.data.tags["mlflow.note.content"]
    # re-running the finished sweep runs nothing and says it once more, logged once
    again = run_train(["-m", *TOO_LOW], workdir, timeout=600)
    assert again.returncode == 0, again.stdout[-3000:]
    assert [
        line for line in again.stdout.splitlines() if line.startswith("note:") and LR in line
    ] == [note]
    runs = runs_of(client, "tiny-synthetic")
    assert len(runs) == 7  # the parent and its six trials
    parent = client.get_run(parent.info.run_id)
    assert parent.data.tags[advice.TAG] == note.removeprefix("note: ")
    assert parent.data.tags["mlflow.note.content"].count("Range advice") == 1
