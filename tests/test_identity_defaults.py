"""A changed code default is another sweep: the identity records every value that shapes a trial,
defaults included, so the same command under other defaults never resumes a study whose trials
ran under the old ones; a study whose identity was recorded the old way (defaults left out) is
still resumed by the same command (sweep/search/identity.py).

    .venv/bin/python -m pytest tests/test_identity_defaults.py               # ~2 min on 2 cores
    .venv/bin/python -m pytest tests/test_identity_defaults.py -m "not slow" # in-process, seconds

In-process, on a real journal storage: the document holds default values; studies of the old
scheme are found (default name and explicit name), resumed with a note once and recorded in
full; a study that differs only in values the command leaves to the code defaults is named in a
note. As subprocesses (real Hydra multirun): a study left the old way resumes with the same
`python train.py -m`; two git worktrees whose only difference is one schema default
(`trainer.batch_order`) run the same command against one study storage and MLflow store.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from conftest import ROOT, TINY, compose, finished, mlflow_client, run_train, runs_of, studies_made
from optuna.distributions import FloatDistribution

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
SPACE = {"optimizer.lr": LR}
SETTINGS = {"direction": "maximize", "sampler": "tpe", "seed": 0, "prune_on": "eval_loss"}


def doc_of(overrides: list[str] | None = None) -> dict:
    return identity.describe(compose([*TINY[:-1], *(overrides or [])]), SPACE, {}, SETTINGS)


def old_scheme(doc: dict) -> dict:
    """The document for the same sweep as the code before version 2 wrote it: no version, and
    every config value equal to the schema default left out."""
    defaults = identity.schema_defaults()
    config = {k: v for k, v in doc["config"].items() if k not in defaults or defaults[k] != v}
    return {**{k: v for k, v in doc.items() if k != "version"}, "config": config}


def store_old(study: optuna.Study, doc: dict) -> dict:
    """Overwrite the study's identity attrs with what the old code's record() stored."""
    old = old_scheme(doc)
    study.set_user_attr(identity.DOC, json.dumps(old, sort_keys=True, default=str))
    study.set_user_attr(identity.DIGEST, identity.digest(old))
    return old


def _storage(tmp_path: Path):
    return open_storage(f"journal://{tmp_path / 'studies.journal'}")


# --------------------------------------------------------------------------- in-process


def test_the_document_records_default_values_too():
    doc = doc_of()
    assert doc["config"]["trainer.batch_order"] == "bucketed"  # the schema default, recorded
    assert doc["config"]["trainer.seed"] == 42
    assert doc["version"] == identity.VERSION
    other = doc_of(["trainer.batch_order=random"])
    assert identity.differences(doc, other) == ["trainer.batch_order bucketed -> random"]


def test_a_default_named_study_of_the_old_scheme_resumes_once_with_a_note(tmp_path):
    storage = _storage(tmp_path)
    doc = doc_of()
    old_name = identity.study_name(EXPERIMENT, identity.digest(old_scheme(doc)))
    study = optuna.create_study(study_name=old_name, storage=storage, direction="maximize")
    store_old(study, doc)
    full = identity.digest(doc)
    name, note = identity.choose_study(storage, None, EXPERIMENT, full, doc, SPACE)
    assert name == old_name, "the same command must find the study it made before"
    assert note and "left default values out" in note and old_name in note
    identity.record(study, full, doc)  # from now on its identity holds every value
    attrs = optuna.load_study(study_name=old_name, storage=storage).user_attrs
    assert attrs[identity.DIGEST] == full
    assert json.loads(attrs[identity.DOC])["version"] == identity.VERSION
    assert identity.choose_study(storage, None, EXPERIMENT, full, doc, SPACE) == (old_name, None)
    # a sweep that differs from it in a default value leaves it alone, and says so
    other = doc_of(["trainer.batch_order=random"])
    name2, note2 = identity.choose_study(
        storage, None, EXPERIMENT, identity.digest(other), other, SPACE
    )
    assert name2 == identity.study_name(EXPERIMENT, identity.digest(other)) != old_name
    assert note2 is None  # random is no default: a changed command, as before


def test_an_explicitly_named_study_of_the_old_scheme_resumes_and_another_is_refused(tmp_path):
    storage = _storage(tmp_path)
    doc = doc_of()
    team = optuna.create_study(study_name="team", storage=storage, direction="maximize")
    store_old(team, doc)
    full = identity.digest(doc)
    name, note = identity.choose_study(storage, "team", EXPERIMENT, full, doc, SPACE)
    assert name == "team" and note and "left default values out" in note
    identity.record(team, full, doc)
    assert identity.choose_study(storage, "team", EXPERIMENT, full, doc, SPACE) == ("team", None)

    bigger = optuna.create_study(study_name="bigger", storage=storage, direction="maximize")
    store_old(bigger, doc_of(["model.hidden_size=64"]))
    with pytest.raises(identity.IdentityError) as e:
        identity.choose_study(storage, "bigger", EXPERIMENT, full, doc, SPACE)
    assert "model.hidden_size 64 -> 32" in str(e.value)
    with pytest.raises(identity.IdentityError):
        identity.record(bigger, full, doc)


def test_a_study_that_differs_only_in_code_defaults_is_named_in_a_note(tmp_path):
    storage = _storage(tmp_path)
    before = doc_of(["trainer.batch_order=random"])  # as a checkout whose default was random
    first = optuna.create_study(study_name=f"{EXPERIMENT}-first", storage=storage)
    identity.record(first, identity.digest(before), before)
    doc = doc_of()
    name, note = identity.choose_study(storage, None, EXPERIMENT, identity.digest(doc), doc, SPACE)
    assert name == identity.study_name(EXPERIMENT, identity.digest(doc))
    assert note and f"'{EXPERIMENT}-first'" in note and name in note
    assert "trainer.batch_order random -> bucketed" in note
    # a value the command sets itself is a changed command, not a changed default: no note
    sized = doc_of(["data.train_size=320"])
    other = optuna.create_study(study_name=f"{EXPERIMENT}-sized", storage=_storage(tmp_path / "b"))
    identity.record(other, identity.digest(sized), sized)
    again = identity.choose_study(
        _storage(tmp_path / "b"), None, EXPERIMENT, identity.digest(doc), doc, SPACE
    )
    assert again == (name, None)


# --------------------------------------------------------------------------- real sweeps


@pytest.mark.slow
def test_a_study_left_by_the_old_scheme_resumes_with_the_same_command(workdir):
    """The study as the code before version 2 left it: named after the old digest, the old
    identity attrs. (Tracking off: the study is renamed here, and MLflow would keep the name
    it had when its runs were logged; the identity leaves tracking.* out anyway.)"""
    command = [*SWEEP, "tracking.enabled=false"]
    first = run_train([*command, "hydra.sweeper.n_trials=1"], workdir)
    assert first.returncode == 0, first.stdout[-3000:]
    ((name, study),) = studies_made(workdir, EXPERIMENT).items()
    doc = json.loads(study.user_attrs[identity.DOC])
    old_name = identity.study_name(EXPERIMENT, identity.digest(old_scheme(doc)))
    storage = study._storage
    if old_name != name:
        optuna.copy_study(
            from_study_name=name,
            from_storage=storage,
            to_storage=storage,
            to_study_name=old_name,
        )
        optuna.delete_study(study_name=name, storage=storage)
    store_old(optuna.load_study(study_name=old_name, storage=storage), doc)

    more = run_train(command, workdir)
    assert more.returncode == 0, more.stdout[-3000:]
    after = studies_made(workdir, EXPERIMENT)
    assert list(after) == [old_name], more.stdout[-3000:]
    assert finished(after[old_name]) == 2
    assert more.stdout.count("left default values out") == 1, more.stdout[-3000:]
    assert json.loads(after[old_name].user_attrs[identity.DOC])["version"] == identity.VERSION
    again = run_train(command, workdir)
    assert again.returncode == 0, again.stdout[-3000:]
    assert "left default values out" not in again.stdout
    assert "2/2 trials finished" in again.stdout


# --------------------------------------------------------------------------- two checkouts

# A code default lives in the schema and in the trainer preset that every config composes: a real
# change of one (bucketed became the default this way) changes both.
DEFAULTS = {
    Path("sweep", "core", "config.py"): (
        'batch_order: str = "bucketed"',
        'batch_order: str = "random"',
    ),
    Path("conf", "trainer", "default.yaml"): ("batch_order: bucketed", "batch_order: random"),
}


def _git(*args: str) -> str:
    proc = subprocess.run(
        ["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False
    )
    assert proc.returncode == 0, f"git {' '.join(args)}: {proc.stderr.strip()}"
    return proc.stdout


def _worktree(dest: Path) -> Path:
    """A git worktree of HEAD holding this checkout's working tree as it is: the code under
    test is what is here, committed or not."""
    _git("worktree", "add", "--detach", str(dest), "HEAD")
    changed = _git("ls-files", "-z", "--modified", "--others", "--exclude-standard")
    for rel in filter(None, changed.split("\0")):
        src, dst = ROOT / rel, dest / rel
        if src.is_file():
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst)
        else:  # deleted here
            dst.unlink(missing_ok=True)
    return dest


@pytest.fixture
def checkouts(tmp_path):
    """Two worktrees of this checkout in the test's folder, removed again even on failure."""
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("needs git and a git checkout")
    made: list[Path] = []
    try:
        for label in ("checkout a", "checkout b"):  # a space in the path, on purpose
            made.append(_worktree(tmp_path / label))
        yield made
    finally:
        for path in made or [tmp_path / "checkout a"]:
            subprocess.run(
                ["git", "worktree", "remove", "--force", str(path)],
                cwd=ROOT,
                capture_output=True,
                timeout=120,
                check=False,
            )
        subprocess.run(["git", "worktree", "prune"], cwd=ROOT, capture_output=True, check=False)


def run_in(checkout: Path, args: list[str], cwd: Path, code: str | None = None):
    """`python train.py ARGS` of `checkout` (or `python -c CODE`) in `cwd`, importing that
    checkout's packages: they come first on the path, before the editable install's."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(checkout)}
    argv = ["-c", code] if code else [str(checkout / "train.py"), *args]
    return subprocess.run(
        [sys.executable, *argv],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=300,
    )


def _imports_from(checkout: Path, cwd: Path) -> None:
    code = (
        "import sweep.core.config as c, hydra_plugins.sweep_optuna.sweep_optuna as p\n"
        "print(c.__file__); print(p.__file__)"
    )
    proc = run_in(checkout, [], cwd, code=code)
    assert proc.returncode == 0, proc.stdout
    for line in proc.stdout.splitlines():
        assert Path(line).resolve().is_relative_to(checkout.resolve()), proc.stdout


def _orders(workdir: Path) -> dict[str, set[str]]:
    """The batch order each study's trial runs logged (the checkout's own default)."""
    out: dict[str, set[str]] = {}
    for run in runs_of(mlflow_client(workdir), EXPERIMENT):
        if run.data.tags.get("sweep.role") is None and "optuna.study" in run.data.tags:
            out.setdefault(run.data.tags["optuna.study"], set()).add(
                run.data.params.get("trainer.batch_order")
            )
    return out


@pytest.mark.slow
def test_two_checkouts_with_another_default_do_not_share_a_study(checkouts, workdir):
    a, b = checkouts
    for rel, (default, changed) in DEFAULTS.items():
        text = (b / rel).read_text()
        assert text.count(default) == 1, f"the default this test changes has moved: {rel}"
        (b / rel).write_text(text.replace(default, changed))
    for checkout in (a, b):
        _imports_from(checkout, workdir)

    first = run_in(a, SWEEP, workdir)
    assert first.returncode == 0, first.stdout[-3000:]
    (s1,) = studies_made(workdir, EXPERIMENT)
    second = run_in(b, SWEEP, workdir)  # the same command, in the other checkout
    assert second.returncode == 0, second.stdout[-3000:]
    found = studies_made(workdir, EXPERIMENT)
    assert len(found) == 2, f"resumed {s1} silently: {second.stdout[-1500:]}"
    (s2,) = set(found) - {s1}
    assert finished(found[s1]) == 2 and finished(found[s2]) == 2
    assert _orders(workdir) == {s1: {"bucketed"}, s2: {"random"}}  # each checkout's code ran
    notes = [ln for ln in second.stdout.splitlines() if ln.startswith("note:") and s1 in ln]
    assert len(notes) == 1 and "trainer.batch_order bucketed -> random" in notes[0], notes

    # the first study named explicitly: refused in one line naming the key and both values
    named = run_in(b, [*SWEEP, f"hydra.sweeper.study_name={s1}"], workdir)
    assert named.returncode == 2, named.stdout[-3000:]
    errors = [ln for ln in named.stdout.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and "trainer.batch_order bucketed -> random" in errors[0], errors
    assert finished(studies_made(workdir, EXPERIMENT)[s1]) == 2
