"""A sweep's identity: the same command resumes its own study, a different one never silently
takes over another sweep's (sweep/search/identity.py).

    .venv/bin/python -m pytest tests/test_identity.py              # ~3 min on 2 cores
    .venv/bin/python -m pytest tests/test_identity.py -m "not slow" # the in-process ones, seconds

In-process: the identity document and its differences, and the choice of study on a real
journal storage (old studies without an identity included). As subprocesses (real Hydra
multirun): a changed search space, another model in another tracking store, the same command
resuming, raising n_trials, and two workers with different identities on one study name.
"""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest
from conftest import (
    TINY,
    compose,
    finished,
    mlflow_client,
    run_train,
    runs_of,
    studies_made,
    sweep_cli,
)
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.trial import TrialState, create_trial

from sweep.search import identity
from sweep.search.study import open_storage

EXPERIMENT = "tiny-synthetic"
SWEEP = [
    "-m",
    *TINY,
    "trainer.max_steps=5",
    "data.max_train_samples=96",
    "data.max_eval_samples=32",
    "hydra.sweeper.n_trials=2",
]
LR = FloatDistribution(3e-5, 4e-4, log=True)
SCHEDULE = CategoricalDistribution(["constant", "linear", "cosine", "polynomial"])
SETTINGS = {"direction": "maximize", "sampler": "tpe", "seed": 0, "prune_on": "eval_loss"}


def doc_of(overrides: list[str], space: dict, **settings):
    return identity.describe(compose(overrides), space, {}, {**SETTINGS, **settings})


# --------------------------------------------------------------------------- the document


def test_identity_leaves_out_what_may_change_between_runs_of_one_sweep():
    space = {"optimizer.lr": LR, "scheduler": SCHEDULE}
    base = doc_of([*TINY[:-1]], space)
    same = doc_of(
        [
            *TINY[:-1],
            "tracking.uri=sqlite:////elsewhere/mlflow.db",
            "tracking.experiment=other-name",
            "trainer.threads=1",
            "trainer.logging_every=1",
            "data.cache_dir=/tmp/x",
            "optimizer.lr=0.5",  # searched: each trial sets it
            "scheduler=cosine",  # searched as a config group
        ],
        space,
    )
    assert identity.digest(base) == identity.digest(same)
    assert "optimizer.lr" not in base["config"] and "scheduler.name" not in base["config"]
    assert base["config"]["model.name"] == "tiny"


def test_what_shapes_a_trial_changes_the_identity_and_is_named():
    space = {"optimizer.lr": LR, "scheduler": SCHEDULE}
    base = doc_of([*TINY[:-1]], space)
    changed = {
        "model": doc_of([*TINY[:-1], "model.hidden_size=64"], space),
        "space": doc_of([*TINY[:-1]], {**space, "optimizer.lr": FloatDistribution(1e-5, 1e-4)}),
        "sampler": doc_of([*TINY[:-1]], space, sampler="random"),
        "objective": doc_of([*TINY[:-1], "trainer.objective=eval_accuracy"], space),
    }
    for what, doc in changed.items():
        assert identity.digest(doc) != identity.digest(base), what
    diffs = identity.differences(base, changed["space"])
    assert diffs == ["optimizer.lr range 3e-05..0.0004 (log) -> range 1e-05..0.0001"]
    assert identity.differences(base, changed["model"]) == ["model.hidden_size 32 -> 64"]
    assert identity.differences(base, changed["sampler"]) == ["hydra.sweeper.sampler tpe -> random"]
    # a value fixed inside a searched config group still shapes every trial
    pinned = {"scheduler.end_lr"}
    low, high = (
        identity.describe(
            compose([*TINY[:-1], f"scheduler.end_lr={v}"]), space, {}, SETTINGS, pinned
        )
        for v in (1e-6, 1e-5)
    )
    assert identity.digest(low) != identity.digest(high)
    assert identity.differences(low, high) == ["scheduler.end_lr 1e-06 -> 1e-05"]
    # secrets never enter the document, but a changed one still changes the identity
    tok = [doc_of([*TINY[:-1], f"+model.hf_token=hf_secret{i}"], space) for i in range(2)]
    assert "hf_secret" not in json.dumps(tok[0])
    assert identity.digest(tok[0]) != identity.digest(tok[1])
    fixed = doc_of([*TINY[:-1], "scheduler=cosine"], {"optimizer.lr": LR})
    assert "scheduler choice constant, linear, cosine, polynomial -> cosine" in (
        identity.differences(base, fixed)
    )


# --------------------------------------------------------------------------- choosing the study


def _storage(tmp_path: Path):
    return open_storage(f"journal://{tmp_path / 'studies.journal'}")


def _legacy_study(storage, name: str, dist) -> None:
    """A study as sweeps made them before identities: named after the experiment, no identity."""
    study = optuna.create_study(study_name=name, storage=storage, direction="maximize")
    lr = dist["optimizer.lr"]
    params = {"optimizer.lr": (lr.low * lr.high) ** 0.5}
    study.add_trial(
        create_trial(state=TrialState.COMPLETE, value=0.5, params=params, distributions=dist)
    )


def test_default_name_carries_the_identity(tmp_path):
    storage = _storage(tmp_path)
    doc = doc_of([*TINY[:-1]], {"optimizer.lr": LR})
    digest = identity.digest(doc)
    name, note = identity.choose_study(storage, None, EXPERIMENT, digest, doc, {"optimizer.lr": LR})
    assert name == f"{EXPERIMENT}-{digest[:8]}" and note is None


def test_an_explicit_name_with_another_identity_is_refused(tmp_path):
    storage = _storage(tmp_path)
    space = {"optimizer.lr": LR}
    old = doc_of([*TINY[:-1]], space)
    study = optuna.create_study(study_name="team", storage=storage)
    identity.record(study, identity.digest(old), old)
    new_space = {"optimizer.lr": FloatDistribution(1e-5, 1e-4, log=True)}
    new = doc_of([*TINY[:-1]], new_space)
    with pytest.raises(identity.IdentityError) as e:
        identity.choose_study(storage, "team", EXPERIMENT, identity.digest(new), new, new_space)
    msg = str(e.value)
    assert "\n" not in msg
    assert "optimizer.lr range 3e-05..0.0004 (log) -> range 1e-05..0.0001 (log)" in msg
    assert "hydra.sweeper.study_name" in msg
    # the same identity under that name continues it
    again = identity.choose_study(storage, "team", EXPERIMENT, identity.digest(old), old, space)
    assert again == ("team", None)
    # and a worker that got past the check with another identity is refused at record()
    with pytest.raises(identity.IdentityError):
        identity.record(study, identity.digest(new), new)


def test_an_old_study_of_the_same_space_resumes_once_with_a_note(tmp_path):
    storage = _storage(tmp_path)
    space = {"optimizer.lr": LR}
    _legacy_study(storage, EXPERIMENT, space)
    doc = doc_of([*TINY[:-1]], space)
    digest = identity.digest(doc)
    name, note = identity.choose_study(storage, None, EXPERIMENT, digest, doc, space)
    assert name == EXPERIMENT and "predates sweep identities" in note
    identity.record(optuna.load_study(study_name=name, storage=storage), digest, doc)
    # said once: from now on it carries this identity and is found again, without a note
    assert identity.choose_study(storage, None, EXPERIMENT, digest, doc, space) == (
        EXPERIMENT,
        None,
    )
    # another sweep of the experiment leaves the adopted study alone
    other_space = {"optimizer.lr": FloatDistribution(1e-5, 1e-4, log=True)}
    other = doc_of([*TINY[:-1]], other_space)
    name3, _ = identity.choose_study(
        storage, None, EXPERIMENT, identity.digest(other), other, other_space
    )
    assert name3 == f"{EXPERIMENT}-{identity.digest(other)[:8]}"


def test_an_old_study_of_another_space_is_left_alone(tmp_path):
    storage = _storage(tmp_path)
    _legacy_study(storage, EXPERIMENT, {"optimizer.lr": FloatDistribution(1e-6, 1e-5, log=True)})
    space = {"optimizer.lr": LR}
    doc = doc_of([*TINY[:-1]], space)
    digest = identity.digest(doc)
    name, note = identity.choose_study(storage, None, EXPERIMENT, digest, doc, space)
    assert name == f"{EXPERIMENT}-{digest[:8]}"
    assert "searched another space" in note and name in note


def test_an_old_study_named_explicitly_resumes_as_before(tmp_path):
    storage = _storage(tmp_path)
    _legacy_study(storage, "mine", {"optimizer.lr": FloatDistribution(1e-6, 1e-5, log=True)})
    doc = doc_of([*TINY[:-1]], {"optimizer.lr": LR})
    name, note = identity.choose_study(
        storage, "mine", EXPERIMENT, identity.digest(doc), doc, {"optimizer.lr": LR}
    )
    assert name == "mine" and "resuming it as before" in note


# --------------------------------------------------------------------------- real sweeps


@pytest.mark.slow
def test_a_changed_search_space_starts_its_own_sweep_and_each_command_resumes_its_own(workdir):
    first = run_train(SWEEP, workdir)
    assert first.returncode == 0, first.stdout[-3000:]
    (old_name,) = studies_made(workdir, EXPERIMENT)
    changed = [*SWEEP, "optimizer.lr=tag(log, interval(1e-5, 1e-4))", "scheduler=cosine"]
    second = run_train(changed, workdir)
    assert second.returncode == 0, second.stdout[-3000:]
    found = studies_made(workdir, EXPERIMENT)
    assert len(found) == 2
    (new_name,) = set(found) - {old_name}
    assert finished(found[old_name]) == 2 and finished(found[new_name]) == 2
    assert all(
        1e-5 <= t.params["optimizer.lr"] <= 1e-4 and "scheduler" not in t.params
        for t in found[new_name].trials
    )
    doc = json.loads(found[new_name].user_attrs[identity.DOC])
    assert doc["config"]["scheduler.name"] == "cosine"
    # each parent run belongs to its own study
    runs = runs_of(mlflow_client(workdir), EXPERIMENT)
    parents = {r.data.tags["optuna.study"] for r in runs if r.data.tags.get("sweep.role")}
    assert parents == {old_name, new_name}

    # `best` takes the newest sweep's best, or the one of --study
    for study, want in ((None, new_name), (old_name, old_name)):
        args = ["best", "--experiment", EXPERIMENT] + (["--study", study] if study else [])
        shown = sweep_cli(args, workdir)
        assert shown.returncode == 0, shown.stderr
        assert f"(study {want}, trial" in shown.stdout

    again = run_train(SWEEP, workdir)  # the first command again: its own study, nothing to run
    assert again.returncode == 0, again.stdout[-3000:]
    assert f"study '{old_name}'" in again.stdout and "2/2 trials finished" in again.stdout
    more = run_train([*changed, "hydra.sweeper.n_trials=3"], workdir)
    assert more.returncode == 0, more.stdout[-3000:]
    after = studies_made(workdir, EXPERIMENT)
    assert finished(after[old_name]) == 2 and finished(after[new_name]) == 3


@pytest.mark.slow
def test_another_model_in_another_tracking_store(workdir):
    tiny = [*SWEEP, "tracking.experiment=shared", "tracking.uri=sqlite:///a.db"]
    assert run_train(tiny, workdir).returncode == 0
    bigger = [*SWEEP, "tracking.experiment=shared", "tracking.uri=sqlite:///b.db"]
    bigger.append("model.hidden_size=64")
    proc = run_train(bigger, workdir)
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert "could not write" not in proc.stdout
    found = studies_made(workdir, "shared")
    assert len(found) == 2 and all(finished(s) == 2 for s in found.values())
    from sweep.track.tracking import client

    for db in ("a.db", "b.db"):
        runs = runs_of(client(f"sqlite:///{workdir / db}"), "shared")
        assert len(runs) == 3 and sum(r.data.tags.get("sweep.role") == "parent" for r in runs) == 1
    # the tiny sweep again, but pointed at the other store: refused in one line, nothing run
    moved = [*SWEEP, "tracking.experiment=shared", "tracking.uri=sqlite:///b.db"]
    refused = run_train(moved, workdir)
    assert refused.returncode == 2, refused.stdout[-3000:]
    errors = [ln for ln in refused.stdout.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and "a.db" in errors[0] and "b.db" in errors[0], errors
    assert len(runs_of(client(f"sqlite:///{workdir / 'b.db'}"), "shared")) == 3


@pytest.mark.slow
def test_a_worker_with_another_identity_is_refused_before_it_asks(workdir):
    team = [*SWEEP, "hydra.sweeper.study_name=team"]
    assert run_train(team, workdir).returncode == 0
    other = [*team, "hydra.sweeper.n_trials=4", "optimizer.lr=tag(log, interval(1e-5, 1e-4))"]
    proc = run_train(other, workdir)
    assert proc.returncode == 2, proc.stdout[-3000:]
    errors = [ln for ln in proc.stdout.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1, proc.stdout[-3000:]
    assert "study 'team' holds another sweep" in errors[0]
    assert "optimizer.lr range 3e-05..0.0004 (log) -> range 1e-05..0.0001 (log)" in errors[0]
    assert len(studies_made(workdir, EXPERIMENT)["team"].trials) == 2  # it asked for no trial


@pytest.mark.slow
def test_an_old_study_resumes_and_best_report_and_reproduce_find_it(workdir):
    """A study as versions before sweep identities left it: named after the experiment, in its
    journal, without the identity attributes. The same command adopts it (a note, once), and
    best / report / reproduce --best find its runs."""
    named = [*SWEEP, f"hydra.sweeper.study_name={EXPERIMENT}"]
    assert run_train(named, workdir).returncode == 0
    journal = workdir / ".sweep" / f"{EXPERIMENT}.journal"
    kept = [ln for ln in journal.read_text().splitlines() if identity.DIGEST not in ln]
    journal.write_text(
        "\n".join(kept) + "\n"
    )  # both identity attrs (their keys start sweep.identity)
    (study,) = studies_made(workdir, EXPERIMENT).values()
    assert identity.DIGEST not in study.user_attrs and finished(study) == 2

    more = run_train([*SWEEP, "hydra.sweeper.n_trials=3"], workdir)
    assert more.returncode == 0, more.stdout[-3000:]
    assert more.stdout.count("predates sweep identities") == 1, more.stdout[-3000:]
    after = studies_made(workdir, EXPERIMENT)
    assert list(after) == [EXPERIMENT] and finished(after[EXPERIMENT]) == 3
    assert after[EXPERIMENT].user_attrs[identity.DIGEST]  # adopted: found again without a note
    again = run_train([*SWEEP, "hydra.sweeper.n_trials=3"], workdir)
    assert again.returncode == 0 and "predates" not in again.stdout, again.stdout[-3000:]
    assert "3/3 trials finished" in again.stdout

    shown = sweep_cli(["best", "--experiment", EXPERIMENT], workdir)
    assert shown.returncode == 0, shown.stderr
    assert f"(study {EXPERIMENT}, trial" in shown.stdout
    report = sweep_cli(["report", "--experiment", EXPERIMENT, "--out", "r.html"], workdir)
    assert report.returncode == 0, report.stderr[-3000:]
    assert EXPERIMENT in (workdir / "r.html").read_text()
    redo = sweep_cli(["reproduce", "--best", "--experiment", EXPERIMENT], workdir)
    assert redo.returncode == 0, redo.stdout[-2000:] + redo.stderr[-2000:]
