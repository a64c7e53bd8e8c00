"""Bad input ends the same way everywhere: one `error:` line on stderr and exit 2, before any
heavy work (no torch import, nothing written to MLflow), with `python train.py` and with `-m`.

.venv/bin/python -m pytest tests/test_bad_input.py -s   # -s shows the time to each error line
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import TINY, TRAIN, mlflow_client, runs_of

from sweep.track.tracking import TrackingError, check_scheme, resolve_uri

PASSWORD = "s3cr3t-Pw"
# (override, what the error line must say)
CASES = {
    "unknown_key": (
        "optimizer.lrr=1e-4",
        ["optimizer.lrr", "not a key of optimizer", "did you mean optimizer.lr?"],
    ),
    "wrong_type": ("optimizer.lr=abc", ["optimizer.lr=abc", "'abc' is not a float"]),
    "bad_scheme": (
        f"tracking.uri=ftp://bob:{PASSWORD}@x/y",
        ["tracking.uri", "ftp://bob:***@x/y", "unsupported scheme 'ftp'"],
    ),
}
MODES = {"run": [], "sweep": ["-m"]}

TORCH_STUB = """\
import os
import pathlib

marker = os.environ.get("TORCH_STUB_MARKER")
if marker:  # an import that something swallows still leaves its trace
    pathlib.Path(marker).write_text("torch was imported")
raise RuntimeError("torch stub: this process imported torch")
"""


def bad_run(args: list[str], cwd: Path, env: dict | None = None, timeout: float = 120):
    """`python train.py ARGS` with stderr apart from stdout; returns (returncode, stderr lines,
    stdout, seconds until the `error:` line appeared on stderr)."""
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    out_path = cwd / "stdout.txt"
    start = time.monotonic()
    with open(out_path, "w") as out:
        proc = subprocess.Popen(
            [sys.executable, str(TRAIN), *args],
            cwd=cwd,
            env=full_env,
            stdout=out,
            stderr=subprocess.PIPE,
            text=True,
        )
        lines, seconds = [], None
        assert proc.stderr is not None
        for line in proc.stderr:
            if seconds is None and line.startswith("error:"):
                seconds = time.monotonic() - start
            lines.append(line.rstrip("\n"))
        proc.wait(timeout=timeout)
    stdout = out_path.read_text()
    out_path.unlink()
    return proc.returncode, [line for line in lines if line.strip()], stdout, seconds


def assert_one_error_line(rc, errors, stdout, seconds, needles, label):
    shown = "\n".join(errors) + "\n--- stdout:\n" + stdout[-2000:]
    assert rc == 2, shown
    assert len(errors) == 1 and errors[0].startswith("error: "), shown
    for needle in needles:
        assert needle in errors[0], shown
    assert "Traceback" not in stdout and "HYDRA_FULL_ERROR" not in stdout, shown
    assert PASSWORD not in errors[0] + stdout
    print(f"\n{label}: {seconds:.2f}s to {errors[0]!r}")


def assert_no_store(workdir: Path) -> None:
    for name in ("mlflow.db", "mlartifacts", "mlruns", ".sweep"):
        assert not (workdir / name).exists(), f"a bad-input run created {name}"


# the three (in CASES), and other composition errors that must read the same
OTHER_CASES = {
    "group_option": ("scheduler=cosin", ["scheduler=cosin", "did you mean scheduler=cosine?"]),
    "sweeper_key": ("hydra.sweeper.n_trail=3", ["did you mean hydra.sweeper.n_trials?"]),
    "parse": ("optimizer.lr=(", ["cannot parse override 'optimizer.lr=('"]),
    "nested_typo": ("optimiser.lr=1e-4", ["optimiser.lr", "did you mean optimizer.lr?"]),
    "int_type": ("trainer.max_steps=1.5", ["trainer.max_steps=1.5", "is not an integer"]),
    "missing_value": ("tracking.experiment=???", ["tracking.experiment is required"]),
}
ALL_CASES = {**CASES, **OTHER_CASES}


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("case", ALL_CASES)
def test_bad_input_is_one_error_line_and_exit_2(workdir, case, mode):
    override, needles = ALL_CASES[case]
    rc, errors, stdout, seconds = bad_run([*MODES[mode], *TINY, override], workdir)
    assert_one_error_line(rc, errors, stdout, seconds, needles, f"{case} ({mode})")
    assert_no_store(workdir)


@pytest.mark.parametrize(
    "searched",
    [
        "optimizer.lrr=tag(log, interval(1e-5, 1e-3))",  # a typo below a known node
        "optimiser.lr=choice(1, 2)",  # a typo at the top: nothing to refuse it but composition
    ],
)
def test_a_typo_in_a_searched_key_names_the_key(workdir, searched):
    rc, errors, stdout, seconds = bad_run(["-m", *TINY, searched], workdir)
    key = searched.split("=")[0]
    needles = [f"search space {key}", "did you mean optimizer.lr?"]
    assert_one_error_line(rc, errors, stdout, seconds, needles, "searched typo")
    assert_no_store(workdir)  # refused before any study, parent run or trial


@pytest.mark.parametrize("mode", MODES)
def test_sweep_grammar_and_hydra_overrides_still_compose(workdir, mode):
    """Valid sweep grammar and hydra.* overrides pass composition (and the sweeper's check of
    the search space): what stops the run is the store, checked after them."""
    extra = (
        [
            "optimizer.lr=tag(log, interval(1e-5, 1e-3))",
            "scheduler=choice(linear,cosine)",
            "hydra.sweeper.n_trials=3",
            "hydra/launcher=joblib",
        ]
        if mode == "sweep"
        else ["optimizer.lr=3e-4", "scheduler=cosine"]
    )
    args = [
        *MODES[mode],
        *TINY,
        *extra,
        "+hydra.job.env_set.SWEEP_TEST_X=1",
        "tracking.uri=ftp://x/y",
    ]
    rc, errors, stdout, seconds = bad_run(args, workdir)
    needles = ["error: tracking.uri ftp://x/y: unsupported scheme 'ftp'"]
    assert_one_error_line(rc, errors, stdout, seconds, needles, f"valid overrides ({mode})")


# --------------------------------------------------------------------------- no torch on the way


@pytest.fixture
def torch_stub(tmp_path) -> tuple[dict, Path]:
    """An environment whose `import torch` finds a stub that leaves a marker and raises."""
    stub = tmp_path / "stub"
    (stub / "torch").mkdir(parents=True)
    (stub / "torch" / "__init__.py").write_text(TORCH_STUB)
    marker = tmp_path / "torch-imported"
    path = os.pathsep.join(p for p in (str(stub), os.environ.get("PYTHONPATH", "")) if p)
    return {"PYTHONPATH": path, "TORCH_STUB_MARKER": str(marker)}, marker


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("case", CASES)
def test_bad_input_is_reported_before_torch_is_imported(workdir, torch_stub, case, mode):
    env, marker = torch_stub
    override, needles = CASES[case]
    rc, errors, stdout, seconds = bad_run([*MODES[mode], *TINY, override], workdir, env=env)
    assert_one_error_line(rc, errors, stdout, seconds, needles, f"{case} ({mode}, torch stub)")
    assert not marker.exists(), "torch was imported before the error"


def test_the_torch_stub_stops_a_valid_run(workdir, torch_stub):
    """Not vacuous: with the stub first on the path, a valid run does import it, and fails."""
    env, marker = torch_stub
    rc, errors, stdout, _ = bad_run([*TINY, "tracking.enabled=false"], workdir, env=env)
    assert rc != 0
    assert "torch stub: this process imported torch" in "\n".join(errors) + stdout
    assert marker.exists()


# --------------------------------------------------------------------------- MLflow untouched


def test_bad_input_leaves_an_existing_store_untouched(workdir):
    client = mlflow_client(workdir)
    exp_id = client.create_experiment("tiny-synthetic")
    run = client.create_run(exp_id, run_name="logged before")
    client.log_param(run.info.run_id, "optimizer.lr", "0.0003")
    client.log_metric(run.info.run_id, "eval_f1", 0.75, step=10)
    client.set_terminated(run.info.run_id, "FINISHED")
    db = workdir / "mlflow.db"
    before = hashlib.sha256(db.read_bytes()).hexdigest(), db.stat().st_mtime_ns
    for mode in MODES:
        for override, needles in CASES.values():
            rc, errors, stdout, seconds = bad_run([*MODES[mode], *TINY, override], workdir)
            assert_one_error_line(rc, errors, stdout, seconds, needles, f"{override} ({mode})")
    assert (hashlib.sha256(db.read_bytes()).hexdigest(), db.stat().st_mtime_ns) == before
    (kept,) = runs_of(client, "tiny-synthetic")
    assert kept.info.run_id == run.info.run_id and kept.info.status == "FINISHED"
    assert kept.data.params == {"optimizer.lr": "0.0003"}
    assert kept.data.metrics == {"eval_f1": 0.75}
    assert not (workdir / ".sweep").exists()


# --------------------------------------------------------------------------- the scheme check


@pytest.mark.parametrize(
    "uri",
    [
        "sqlite:///tmp/mlflow.db",
        "http://127.0.0.1:5000",
        "https://mlflow.example.org",
        "postgresql://u:p@db/x",
        "postgresql+psycopg2://u:p@db/x",
        "mysql+pymysql://u:p@db/x",
        "mssql://u:p@db/x",
        "databricks",
        "file:///tmp/mlruns",  # refused later, by check_reachable, which says why
    ],
)
def test_schemes_mlflow_serves_pass(uri):
    check_scheme(uri)
    assert resolve_uri(uri) == uri


@pytest.mark.parametrize("uri", ["ftp://x/y", "s3://bucket/mlflow", "htp://host:5000"])
def test_other_schemes_are_refused_naming_the_option(uri, monkeypatch):
    with pytest.raises(TrackingError, match=r"^tracking\.uri .*: unsupported scheme"):
        resolve_uri(uri)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    with pytest.raises(TrackingError, match=r"^MLFLOW_TRACKING_URI .*: unsupported scheme"):
        resolve_uri(None)


@pytest.mark.parametrize("uri", ["sqlite://mlflow.db", "Sqlite:///mlflow.db"])
def test_a_sqlite_uri_without_a_path_says_how_to_write_one(uri):
    from sweep.track.tracking import check_reachable

    with pytest.raises(TrackingError, match=r"write it sqlite:///relative/path\.db"):
        check_reachable(uri)
