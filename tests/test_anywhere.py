"""The suite holds wherever the checkout sits and however the suite was started.

    .venv/bin/python -m pytest tests/test_anywhere.py

A copy of this working tree under a private (0700) directory whose path has a space runs the two
tests that depend on both, started with SIGINT ignored as a shell's background job (`cmd &` in a
script) starts: PostgreSQL's init script (run as the `postgres` user when we are root, who cannot
read a private checkout) and Ctrl-C of a run (exit 130, its MLflow run KILLED). A third test
checks the product's side: a run that inherited SIGINT ignored keeps ignoring it.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import ROOT, TINY, start_train, wait_for_metric

NESTED = [
    "tests/test_docker.py::test_postgres_init_creates_roles_and_databases",
    "tests/test_train.py::test_ctrl_c_ends_the_run_killed_and_keeps_its_metrics",
]


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def copy_working_tree(dest: Path) -> None:
    """Tracked and untracked (not ignored) files of this checkout, as a clone of the working
    tree: what is being tested, committed or not."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        check=True,
        capture_output=True,
    ).stdout.split(b"\0")
    for rel in filter(None, (os.fsdecode(p) for p in listed)):
        src = ROOT / rel
        if src.is_file():  # a file deleted in the working tree is still listed as tracked
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)


@pytest.mark.slow
@pytest.mark.postgres
def test_private_dir_with_a_space_and_sigint_ignored(tmp_path):
    private = tmp_path / "private home"
    private.mkdir(mode=0o700)
    private.chmod(0o700)  # whatever the umask
    checkout = private / "my checkout"
    copy_working_tree(checkout)
    temp = private / "tmp dir"
    temp.mkdir()
    env = {
        **os.environ,
        "CI": "true",  # a missing PostgreSQL is a failure there, never a skip
        "TMPDIR": str(temp),
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    env.pop("PYTEST_ADDOPTS", None)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "no:cacheprovider",
            f"--basetemp={temp / 'pytest'}",
            *NESTED,
        ],
        cwd=checkout,
        env=env,
        preexec_fn=_ignore_sigint,
        capture_output=True,
        text=True,
        timeout=600,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    summary = [ln for ln in out.splitlines() if re.search(r"\d+ (passed|failed|skipped)", ln)]
    assert summary, out[-2000:]
    assert re.fullmatch(r"=*\s*2 passed in [\d.]+s( \([\d:]+\))?\s*=*", summary[-1]), summary[-1]
    assert f"rootdir: {checkout}" in out  # the copy ran, not this checkout


@pytest.mark.slow
def test_a_run_that_inherited_sigint_ignored_keeps_ignoring_it(workdir):
    """nohup-like use (`python train.py &` from a script) must not be interrupted by Ctrl-C."""
    args = [*TINY, "data.train_size=640", "trainer.max_steps=120", "trainer.eval_every=20"]
    log = workdir / "train.log"
    proc = start_train(args, workdir, log=log, preexec_fn=_ignore_sigint)
    client, run = wait_for_metric(workdir, proc, "tiny-synthetic")
    assert proc.poll() is None, log.read_text()[-2000:]  # still training when Ctrl-C comes
    os.killpg(proc.pid, signal.SIGINT)
    assert proc.wait(timeout=300) == 0, log.read_text()[-2000:]
    run = client.get_run(run.info.run_id)
    assert run.info.status == "FINISHED"
    assert int(run.data.tags["sweep.steps"]) == 120


def test_processes_the_tests_start_get_sigint_at_its_default(workdir):
    """The suite's own guarantee (conftest.pytest_configure), checked from the child's side."""
    probe = workdir / "probe.py"
    probe.write_text(
        "import signal\nprint(signal.getsignal(signal.SIGINT) is signal.default_int_handler)\n"
    )
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    out = subprocess.run(
        [sys.executable, str(probe)], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "True"


def test_a_ctrl_c_inside_a_store_write_takes_effect_when_the_write_ends():
    """sweep.track.tracking.uninterrupted: an MLflow SQLite write is never cut in half (that left
    its transaction holding the write lock, and closing the run as KILLED waited for it)."""
    from sweep.track.tracking import uninterrupted

    done = []
    with pytest.raises(KeyboardInterrupt):
        with uninterrupted():
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.2)  # the handler would have raised here
            done.append("write")
        done.append("after")  # never: the deferred Ctrl-C is raised as the block ends
    assert done == ["write"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:  # an inherited "ignore" stays an ignore
        with uninterrupted():
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.2)
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, previous)
