"""`hydra.sweeper.warm_start`: an earlier sweep's finished trials inside the new search space
start the new study, imported once, never counted in n_trials and never confirmed.

.venv/bin/python -m pytest tests/test_warm_start.py            # -m "not slow": in-process ones
"""

from __future__ import annotations

import json

import optuna
import pytest
from conftest import TINY, mlflow_client, run_train, runs_of, studies_made
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.trial import TrialState, create_trial
from test_bad_input import assert_one_error_line, bad_run

from sweep.search import identity, warm
from sweep.search import study as study_mod
from sweep.search.study import RUN_ID, counted, open_storage
from sweep.search.sweeper import build_space

EXPERIMENT = "tiny-synthetic"
LR = "optimizer.lr"
WIDE = FloatDistribution(1e-5, 1.0, log=True)  # the sources' own distribution of lr
SCHEDULES = CategoricalDistribution(["constant", "linear", "cosine", "polynomial"])
# the default search's conditions: warm-up for the decaying schedules, power for polynomial
CONDITIONS = {
    "scheduler.warmup_ratio": {"scheduler": ["linear", "cosine", "polynomial"]},
    "scheduler.power": {"scheduler": ["polynomial"]},
}
NEW_DOC = {"config": {"trainer.objective": "eval_f1"}, "sweeper": {"prune_on": "eval_loss"}}


def _space(cli=(), params=None):
    params = params or {
        LR: "tag(log, interval(1e-4, 1e-3))",
        "scheduler": "choice(constant,linear,cosine,polynomial)",
        "scheduler.warmup_ratio": "interval(0.0, 0.2)",
        "scheduler.power": "interval(0.5, 3.0)",
    }
    return build_space(params, list(cli), CONDITIONS)[0]


def _trial(params, value=0.7, state=TrialState.COMPLETE, **attrs):
    dists = {
        LR: WIDE,
        "scheduler": SCHEDULES,
        "scheduler.warmup_ratio": FloatDistribution(0.0, 0.5),
        "scheduler.power": FloatDistribution(0.1, 5.0),
        "trainer.seed": CategoricalDistribution([0, 1]),
    }
    return create_trial(
        state=state,
        values=None if value is None else [value],
        params=params,
        distributions={k: dists[k] for k in params},
        intermediate_values={5: value - 0.1, 10: value} if value is not None else None,
        user_attrs=attrs,
    )


def _source(url, name, trials, directions=("maximize",), doc=None):
    study = optuna.create_study(
        study_name=name, storage=open_storage(url), directions=list(directions)
    )
    if doc is not None:
        study.set_user_attr(identity.DOC, json.dumps(doc))
    study.add_trials(trials)
    return study


def _plan(url, source, space, directions=("maximize",), doc=NEW_DOC, own="new"):
    return warm.plan(warm.parse(source, url), open_storage(url), own, space, list(directions), doc)


# --------------------------------------------------------------------------- in-process


def test_spellings_of_the_source(tmp_path):
    own = f"journal://{tmp_path / 'own.journal'}"
    assert warm.parse(None, own) is None and warm.parse("", own) is None
    assert warm.parse("old-1234abcd", own) == warm.Source("old-1234abcd")
    other = warm.parse("sqlite:///old.db#old", own)
    assert other == warm.Source("old", "sqlite:///old.db")
    assert other.spelled() == "sqlite:///old.db#old"
    # the sweep's own storage spelled out is the same source as the name alone
    assert warm.parse(f"{own}#old", own) == warm.Source("old")
    secret = warm.parse("postgresql://u:hunter2@db/optuna#old", own)
    assert "hunter2" not in secret.spelled() and secret.study == "old"
    for bad in (
        "sqlite:///old.db#",
        "#old",
        "nope#old",
        "sqlite:///old.db",
        "postgresql://u:hunter2@db/x#",
    ):
        with pytest.raises(warm.WarmStartError, match="warm_start=") as e:
            warm.parse(bad, own)
        assert "hunter2" not in str(e.value)


def test_which_trials_lie_in_the_new_space(tmp_path):
    url = f"journal://{tmp_path / 'w.journal'}"
    trials = [
        _trial({LR: 3e-4, "scheduler": "linear", "scheduler.warmup_ratio": 0.1}, 0.8),  # in
        _trial({LR: 5e-5, "scheduler": "constant"}, 0.9),  # lr below the new range
        _trial({LR: 2e-4, "scheduler": "constant"}, 0.6),  # in: warm-up, power inactive
        _trial({LR: 2e-4, "scheduler": "linear", "scheduler.warmup_ratio": 0.4}),  # > 0.2
        _trial({LR: 2e-4, "scheduler": "polynomial", "scheduler.warmup_ratio": 0.1}),  # no power
        _trial({LR: 4e-4, "scheduler": "constant"}, state=TrialState.PRUNED),  # in
        _trial({LR: 3e-4, "scheduler": "constant"}, value=None, state=TrialState.FAIL),
    ]
    _source(url, "old", trials)
    todo = _plan(url, "old", _space())
    got = sorted((t.user_attrs[warm.SOURCE_NUMBER], t.params[LR]) for t in todo.trials)
    assert got == [(0, 3e-4), (2, 2e-4), (5, 4e-4)]
    assert "3 of 6 finished trials" in todo.notes[0]
    # a param the new space does not search must be what this sweep pins: seed 1 != seed 0
    _source(
        url,
        "seeded",
        [
            _trial({LR: 3e-4, "scheduler": "constant", "trainer.seed": 0}),
            _trial({LR: 3e-4, "scheduler": "constant", "trainer.seed": 1}),
        ],
    )
    todo = _plan(url, "seeded", _space(["trainer.seed=0"]))
    assert [t.user_attrs[warm.SOURCE_NUMBER] for t in todo.trials] == [0]
    # a newly searched param is taken from the source's fixed config when it recorded one
    added = _space(["optimizer.weight_decay=choice(0.0,0.01)"])
    for fixed, n in ((0.0, 1), (0.1, 0)):
        doc = {"config": {"optimizer.weight_decay": fixed}}
        name = f"wd{fixed}"
        _source(url, name, [_trial({LR: 3e-4, "scheduler": "constant"})], doc=doc)
        if n:
            (t,) = _plan(url, name, added).trials
            assert t.params == {LR: 3e-4, "scheduler": "constant", "optimizer.weight_decay": 0.0}
        else:
            with pytest.raises(warm.WarmStartError, match="no finished trial \\(of 1\\)"):
                _plan(url, name, added)


def test_the_import_is_once_per_study_and_not_counted(tmp_path):
    url = f"journal://{tmp_path / 'w.journal'}"
    src = _source(
        url,
        "old",
        [
            _trial({LR: 3e-4, "scheduler": "constant"}, 0.8, **{RUN_ID: "run-a", "steps": 10}),
            _trial({LR: 2e-4, "scheduler": "constant"}, 0.7, state=TrialState.PRUNED),
            _trial({LR: 2e-3, "scheduler": "constant"}, 0.95),  # outside
        ],
    )
    space = _space()
    spec = study_mod.StudySpec(name="new", storage_url=url)
    study = study_mod.create_or_load(spec)
    todo = _plan(url, "old", space)
    # a first run killed during the import had added the first trial only
    study.add_trial(todo.trials[0])
    with study_mod.StudyLock(url, "new"):
        assert warm.apply(study, todo) == 1
    # a re-run, or another worker with its own Study object, imports nothing again
    assert _plan(url, "old", space) is None
    other = study_mod.create_or_load(spec)
    assert warm.apply(other, todo) == 0
    trials = study.get_trials()
    assert len(trials) == 2
    a, b = sorted(trials, key=lambda t: t.user_attrs[warm.SOURCE_NUMBER])
    old = src.get_trials()
    assert (a.state, a.values, a.intermediate_values) == (
        TrialState.COMPLETE,
        old[0].values,
        old[0].intermediate_values,
    )
    assert (b.state, b.intermediate_values) == (TrialState.PRUNED, old[1].intermediate_values)
    assert a.user_attrs[warm.IMPORTED] == "old" and a.user_attrs["steps"] == 10
    # the source's run id is kept apart: nothing of this sweep takes it for one of its runs
    assert a.user_attrs[warm.SOURCE_RUN] == "run-a" and RUN_ID not in a.user_attrs
    assert a.distributions[LR] == space.distributions[LR]
    # never counted: the budget, the failure rate and the progress are this sweep's own trials
    assert counted(trials) == [] and study_mod.count(study).finished == 0
    assert study_mod.best_trial(study) is None
    rows = study_mod.trial_rows(study)
    assert {r["state"] for r in rows} == {"COMPLETE (imported)", "PRUNED (imported)"}
    assert json.loads(study.user_attrs[warm.DONE]) == {"from": "old", "imported": 2}


def test_several_objectives_are_imported_with_every_value(tmp_path):
    url = f"journal://{tmp_path / 'w.journal'}"
    both = ("maximize", "minimize")
    params = {LR: 3e-4, "scheduler": "constant"}
    dists = {LR: WIDE, "scheduler": SCHEDULES}
    trial = create_trial(values=[0.8, 4.5], params=params, distributions=dists)
    _source(url, "front", [trial], directions=both)
    (t,) = _plan(url, "front", _space(), directions=both).trials
    study = study_mod.create_or_load(
        study_mod.StudySpec(name="new", storage_url=url, direction=list(both))
    )
    assert warm.apply(study, warm.Plan(warm.Source("front"), [t])) == 1
    assert study.get_trials()[0].values == [0.8, 4.5]
    # the same source for a one-objective sweep (another study) is refused
    with pytest.raises(warm.WarmStartError, match="optimises maximize,minimize"):
        _plan(url, "front", _space(), own="single")


def test_a_source_that_cannot_start_this_sweep_is_refused(tmp_path):
    url = f"journal://{tmp_path / 'w.journal'}"
    inside = [_trial({LR: 3e-4, "scheduler": "constant"})]
    _source(url, "min", inside, directions=("minimize",))
    _source(url, "two", [], directions=("maximize", "minimize"))
    _source(url, "acc", inside, doc={"config": {"trainer.objective": "eval_accuracy"}})
    _source(url, "far", [_trial({LR: 0.5, "scheduler": "constant"})])
    _source(url, "empty", [_trial({LR: 3e-4}, value=None, state=TrialState.FAIL)])
    space = _space()
    cases = {
        "gone": "no study 'gone' in this sweep's storage (its studies: acc, empty, far",
        "min": "that study optimises minimize, this sweep maximize",
        "two": "optimises maximize,minimize, this sweep maximize",
        "acc": "objective is eval_accuracy, this sweep's eval_f1",
        "far": "has no finished trial (of 1) whose params lie in this search space",
        "empty": "study 'empty' has no finished trial",
        "new": "names this sweep's own study",
    }
    for name, needle in cases.items():
        with pytest.raises(warm.WarmStartError, match=f"warm_start={name}") as e:
            _plan(url, name, space)
        assert needle in str(e.value), str(e.value)
    # a storage that does not exist is named and never created
    missing = tmp_path / "missing.db"
    with pytest.raises(warm.WarmStartError, match="no Optuna storage at"):
        _plan(url, f"sqlite:///{missing}#old", space)
    assert not missing.exists()


def test_a_source_pruned_on_another_metric_gives_no_intermediate_values(tmp_path):
    url = f"journal://{tmp_path / 'w.journal'}"
    doc = {"config": {"trainer.objective": "eval_f1"}, "sweeper": {"prune_on": "eval_f1"}}
    trials = [
        _trial({LR: 3e-4, "scheduler": "constant"}, 0.8),
        _trial({LR: 2e-4, "scheduler": "constant"}, 0.5, state=TrialState.PRUNED),
    ]
    _source(url, "old", trials, doc=doc)
    todo = _plan(url, "old", _space())
    (t,) = todo.trials
    assert t.values == [0.8] and t.intermediate_values == {}
    assert any("pruned on another metric" in n for n in todo.notes)


def test_the_identity_records_the_source_and_a_cold_sweep_keeps_its_own():
    from conftest import compose

    space = {LR: FloatDistribution(3e-5, 4e-4, log=True)}
    settings = {"direction": "maximize", "sampler": "tpe", "seed": 0, "prune_on": "eval_loss"}
    base = compose([*TINY])
    cold = identity.describe(base, space, {}, settings)
    assert "warm_start" not in cold["sweeper"]  # an unset warm start leaves digests as before
    assert cold == identity.describe(base, space, {}, {**settings, "warm_start": None})
    warm_doc = identity.describe(base, space, {}, {**settings, "warm_start": "old"})
    assert identity.digest(warm_doc) != identity.digest(cold)
    assert identity.differences(cold, warm_doc) == ["hydra.sweeper.warm_start None -> old"]


# --------------------------------------------------------------------------- real sweeps

# tiny trials told on eval_loss (every trial a different value), no pruning, one worker
SWEEP = [
    "-m",
    *TINY,
    "data.max_train_samples=160",
    "data.max_eval_samples=64",
    "hydra.sweeper.pruner=none",
    "trainer.objective=eval_loss",
    "scheduler=constant",
]
# the source: a grid of three learning rates, each run once
SOURCE = ["hydra.sweeper.sampler=grid", "optimizer.lr=choice(1e-4,3e-4,1e-3)"]
# the new sweep: another lr range (1e-4 lies outside it), 2 trials of its own
NEW = ["optimizer.lr=tag(log, interval(2e-4, 2e-3))", "hydra.sweeper.n_trials=2"]


def _own(study):
    return [t for t in study.get_trials() if warm.IMPORTED not in t.user_attrs]


@pytest.mark.slow
def test_a_warm_started_sweep_imports_once_counts_its_own_and_confirms_its_own(workdir):
    proc = run_train([*SWEEP, *SOURCE], workdir, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:]
    (name,) = studies_made(workdir, EXPERIMENT)
    source = studies_made(workdir, EXPERIMENT)[name]
    by_lr = {t.params[LR]: t for t in source.get_trials()}
    assert len(by_lr) == 3 and all(t.intermediate_values for t in by_lr.values())

    confirm = ["hydra.sweeper.confirm.top_k=10", "hydra.sweeper.confirm.seeds=1"]
    args = [*SWEEP, *NEW, f"hydra.sweeper.warm_start={name}", *confirm]
    proc = run_train(args, workdir, timeout=900)
    assert proc.returncode == 0, proc.stdout[-4000:]
    assert "warm start: 2 of 3 finished trials" in proc.stdout and "2/2 finished" in proc.stdout
    studies = studies_made(workdir, EXPERIMENT)
    (new_name,) = set(studies) - {name}
    study = studies[new_name]
    imported = [t for t in study.get_trials() if warm.IMPORTED in t.user_attrs]
    # the two points inside the new range, with the source's values and curves; 1e-4 is not
    assert sorted(t.params[LR] for t in imported) == [3e-4, 1e-3]
    for t in imported:
        old = by_lr[t.params[LR]]
        assert t.user_attrs[warm.IMPORTED] == name and t.state == TrialState.COMPLETE
        assert t.values == old.values and t.intermediate_values == old.intermediate_values
        assert t.user_attrs[warm.SOURCE_NUMBER] == old.number
        assert t.user_attrs[warm.SOURCE_RUN] == old.user_attrs[RUN_ID]
    # exactly n_trials trials of its own, all finished
    own = _own(study)
    assert len(own) == 2 and all(t.state == TrialState.COMPLETE for t in own)
    # the identity records the source
    assert json.loads(study.user_attrs[identity.DOC])["sweeper"]["warm_start"] == name

    # confirmation (top 10 of 4 complete trials) confirmed this sweep's own trials only, and
    # the best-trial tag is on one of its own runs
    client = mlflow_client(workdir)
    runs = runs_of(client, EXPERIMENT)
    confirmed = {r.data.tags["sweep.confirms"] for r in runs if "sweep.confirms" in r.data.tags}
    assert confirmed == {t.user_attrs[RUN_ID] for t in own}
    best = [
        r.info.run_id
        for r in runs
        if r.data.tags.get("optuna.study") == new_name and r.data.tags.get("optuna.best") == "true"
    ]
    assert len(best) == 1 and best[0] in confirmed

    # the same command again: nothing imported again, nothing trained again
    again = run_train(args, workdir, timeout=600)
    assert again.returncode == 0, again.stdout[-3000:]
    assert "warm start:" not in again.stdout
    assert len(studies_made(workdir, EXPERIMENT)[new_name].get_trials()) == 4

    # the same source copied into a SQLite storage, named as <storage>#<study>
    db = workdir / "old.db"
    optuna.copy_study(
        from_study_name=name,
        from_storage=open_storage(f"journal://{workdir / '.sweep' / (EXPERIMENT + '.journal')}"),
        to_storage=f"sqlite:///{db}",
    )
    other = [*SWEEP, NEW[0], "hydra.sweeper.n_trials=1"]
    proc = run_train([*other, f'hydra.sweeper.warm_start="sqlite:///{db}#{name}"'], workdir)
    assert proc.returncode == 0, proc.stdout[-3000:]
    # the same command run cold is yet another study, with nothing imported
    cold = run_train(other, workdir)
    assert cold.returncode == 0, cold.stdout[-3000:]
    studies = studies_made(workdir, EXPERIMENT)
    assert len(studies) == 4
    for study in (studies[n] for n in set(studies) - {name, new_name}):
        imported = [t for t in study.get_trials() if warm.IMPORTED in t.user_attrs]
        sweeper_doc = json.loads(study.user_attrs[identity.DOC])["sweeper"]
        assert len(_own(study)) == 1
        if "warm_start" in sweeper_doc:
            assert sweeper_doc["warm_start"] == f"sqlite:///{db}#{name}"
            assert sorted(t.values[0] for t in imported) == sorted(
                by_lr[lr].values[0] for lr in (3e-4, 1e-3)
            )
        else:
            assert imported == []


def _sources(workdir) -> set[str]:
    """Studies a bad warm start must not touch, in the sweep's own journal (the default search
    space: lr log 3e-5..4e-4 and a schedule)."""
    url = f"journal://{workdir / '.sweep' / (EXPERIMENT + '.journal')}"
    inside = [_trial({LR: 1e-4, "scheduler": "constant"})]
    _source(url, "min", inside, directions=("minimize",))
    _source(url, "two", inside[:0], directions=("maximize", "minimize"))
    _source(url, "far", [_trial({LR: 0.5, "scheduler": "constant"})])
    return set(studies_made(workdir, EXPERIMENT))


@pytest.mark.parametrize(
    "setting,needle",
    [
        ("gone", "no study 'gone' in this sweep's storage"),
        ("min", "optimises minimize, this sweep maximize"),
        ("two", "optimises maximize,minimize, this sweep maximize"),
        ("far", "no finished trial (of 1) whose params lie in this search space"),
        ('"nope#far"', "is not <storage url>#<study>"),
    ],
)
def test_a_bad_warm_start_is_one_error_line_before_any_trial(workdir, setting, needle):
    before = _sources(workdir)
    rc, errors, stdout, seconds = bad_run(
        ["-m", *TINY, f"hydra.sweeper.warm_start={setting}"], workdir, timeout=300
    )
    assert_one_error_line(rc, errors, stdout, seconds, [needle], f"warm_start={setting}")
    # no study made, no trial run, no MLflow store opened
    assert set(studies_made(workdir, EXPERIMENT)) == before
    assert not (workdir / "mlflow.db").exists()
    assert "trial 0" not in stdout
