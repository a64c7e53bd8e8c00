"""SLURM for real: a one-node cluster on 127.0.0.1 (Debian's slurm-wlm, started by each test with
its own configuration and ports: tests/services.py SlurmCluster).

- driver mode: `python train.py -m hydra/launcher=slurm`, one SLURM job per trial, against a
  PostgreSQL study (password in PGPASSWORD, not in the URL) and an `mlflow server`;
- worker mode: deploy/slurm/sweep.sbatch as a job array of workers on one study.

After every test no job is left in the queue and no trial RUNNING.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import (
    PRUNING,
    ROOT,
    TINY,
    mlflow_client,
    run_train,
    running_trial_run,
    runs_of,
    start_train,
)
from optuna.trial import TrialState
from services import MlflowServer, PgCluster, ServiceUnavailable, SlurmCluster, unavailable

from sweep.search import study as study_mod

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

EXPERIMENT = "tiny-synthetic"
# trials long enough to be caught mid-way (~200 steps of the tiny model)
LONG = ["data.train_size=3200", "data.max_train_samples=3200", "trainer.eval_every=20"]
BEAT = ["hydra.sweeper.heartbeat_interval=1", "hydra.sweeper.grace_period=120"]


@pytest.fixture
def slurm():
    try:
        cluster = SlurmCluster().start()
    except ServiceUnavailable as e:
        unavailable(str(e))
    try:
        yield cluster
    finally:
        left = cluster.squeue()
        cluster.stop()
    assert not left, f"jobs left in the queue: {left}"


def _study(storage: str, env: dict | None = None):
    import optuna

    saved = dict(os.environ)
    os.environ.update(env or {})
    try:
        opened = study_mod.open_storage(storage)
        names = optuna.study.get_all_study_names(storage=opened)
        assert len(names) == 1, names
        return optuna.load_study(study_name=names[0], storage=opened)
    finally:
        os.environ.clear()
        os.environ.update(saved)


def _running_run(client_of, proc, log: Path):
    """A trial's MLflow run that has logged a first evaluation inside a SLURM job."""
    return running_trial_run(
        client_of,
        lambda run: "sweep.slurm.job_id" in run.data.tags,
        "eval_loss",
        lambda: proc.poll() is None,
        lambda: log.read_text()[-3000:],
    )


def test_driver_mode_one_job_per_trial_and_a_cancelled_job_fails_only_its_trial(
    slurm, tmp_path_factory, workdir
):
    try:
        pg = PgCluster().start()
    except ServiceUnavailable as e:
        unavailable(str(e))
    server = None
    try:
        password = pg.password
        storage = f"postgresql://optuna@127.0.0.1:{pg.port}/optuna"  # the password: PGPASSWORD
        base = tmp_path_factory.mktemp("mlflow-server")
        server = MlflowServer(f"sqlite:///{base / 'mlflow.db'}", base / "artifacts", base / "log")
        server.start()
        env = {"SLURM_CONF": str(slurm.conf), "PGPASSWORD": password}
        args = [
            "-m",
            *TINY,
            *LONG,
            *BEAT,
            "hydra/launcher=slurm",
            "hydra.launcher.poll_interval=0.5",
            "hydra.sweeper.n_jobs=2",
            f"hydra.sweeper.storage={storage}",
            f"tracking.uri={server.uri}",
            "hydra.sweeper.n_trials=5",
            *PRUNING,
            "hydra.sweeper.pruner_startup_trials=1",
        ]
        from mlflow import MlflowClient

        proc = start_train(args, workdir, env=env)
        try:
            victim = _running_run(lambda: MlflowClient(server.uri), proc, workdir / "train.log")
            job = victim.data.tags["sweep.slurm.job_id"]
            subprocess.run(["scancel", job], env=slurm.env(), check=True)
            assert proc.wait(timeout=600) == 0, (workdir / "train.log").read_text()[-4000:]
        finally:
            if proc.poll() is None:
                proc.kill()
        out = (workdir / "train.log").read_text()
        warned = [ln for ln in out.splitlines() if "may run on other hosts" in ln]
        assert len(warned) == 1 and out.index(warned[0]) < out.index("slurm: job #0")

        study = _study(storage, {"PGPASSWORD": password})
        trials = study.trials
        assert not [t for t in trials if t.state == TrialState.RUNNING]
        number = int(victim.data.tags["optuna.trial_number"])
        lost = trials[number]
        assert lost.state == TrialState.FAIL, out[-3000:]
        assert lost.system_attrs[study_mod.FAIL_REASON].startswith("job lost: SLURM job")
        retries = [t for t in trials if t.system_attrs.get(study_mod.RETRY_OF) == number]
        assert len(retries) == 1 and retries[0].params == lost.params
        assert retries[0].state in (TrialState.COMPLETE, TrialState.PRUNED)
        # the budget is exact, and only the cancelled job's trial failed
        assert study_mod.count(study).finished == 5
        assert [t.number for t in trials if t.state == TrialState.FAIL] == [number]
        pruned = [t for t in trials if t.state == TrialState.PRUNED]
        complete = [t for t in trials if t.state == TrialState.COMPLETE]
        assert pruned and complete, [t.state for t in trials]
        full = max(t.user_attrs["steps"] for t in complete)
        assert all(t.user_attrs["steps"] < full for t in pruned)  # stopped inside their job

        runs = runs_of(MlflowClient(server.uri), EXPERIMENT)
        parents = [r for r in runs if r.data.tags.get("sweep.role") == "parent"]
        children = [r for r in runs if r.data.tags.get("mlflow.parentRunId")]
        assert len(parents) == 1 and len(children) == len(trials)
        jobs = [r.data.tags["sweep.slurm.job_id"] for r in children]
        assert len(set(jobs)) == len(jobs)  # one SLURM job per trial
        for r in children:
            assert r.data.tags["sweep.node"].startswith("slurm ")
            history = MlflowClient(server.uri).get_metric_history(r.info.run_id, "eval_loss")
            assert history  # its curve
        # no password in submitit's pickles and sbatch scripts, Hydra's files or MLflow
        needle = password.encode()
        for root in (workdir, base):
            for path in Path(root).rglob("*"):
                if path.is_file() and not path.is_symlink():
                    assert needle not in path.read_bytes(), path
        assert list(workdir.rglob("*.pkl")) and list(workdir.rglob("*_submission.sh"))
    finally:
        if server is not None:
            server.stop()
        pg.stop()


def test_worker_mode_job_array_with_a_cancelled_task(slurm, workdir):
    """deploy/slurm/sweep.sbatch as an array of 2 workers on one journal study; one array task is
    cancelled mid-trial: its trial is failed and retried by the others, the budget still exact."""
    storage = f"journal://{workdir / 'study.journal'}"
    args = [
        *TINY,
        *LONG,
        *BEAT,
        f"hydra.sweeper.storage={storage}",
        f"tracking.uri=sqlite:///{workdir / 'mlflow.db'}",
        "hydra.sweeper.n_trials=3",
    ]
    env = {**slurm.env(), "SWEEP_DIR": str(ROOT), "SWEEP_PYTHON": sys.executable}
    script = ROOT / "deploy" / "slurm" / "sweep.sbatch"
    out = subprocess.run(
        ["sbatch", "--parsable", "--array=0-1", f"--chdir={workdir}", str(script), *args],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    array = out.stdout.strip().split(";")[0]

    store = workdir / "mlflow.db"
    victim = running_trial_run(
        lambda: mlflow_client(workdir) if store.exists() else None,
        lambda run: run.data.tags.get("sweep.slurm.job_id", "").startswith(f"{array}_"),
        "eval_f1",
        lambda: True,
        lambda: str(slurm.squeue()),
    )
    subprocess.run(["scancel", victim.data.tags["sweep.slurm.job_id"]], env=env, check=True)
    deadline = time.time() + 600
    while slurm.squeue() and time.time() < deadline:
        time.sleep(1)
    assert not slurm.squeue()

    study = _study(storage)
    trials = study.trials
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    assert study_mod.count(study).finished == 3
    number = int(victim.data.tags["optuna.trial_number"])
    lost = trials[number]
    assert lost.state == TrialState.FAIL
    retries = [t for t in trials if t.system_attrs.get(study_mod.RETRY_OF) == number]
    assert len(retries) == 1 and retries[0].params == lost.params
    assert retries[0].state == TrialState.COMPLETE
    # no duplicates: every trial ran once (a retry is a new trial with the lost one's params)
    done = [t for t in trials if t.state == TrialState.COMPLETE]
    assert len(done) == 3 and len({t.number for t in done}) == 3
    runs = runs_of(mlflow_client(workdir), EXPERIMENT)
    tasks = {
        r.data.tags.get("sweep.slurm.job_id") for r in runs if "optuna.trial_number" in r.data.tags
    }
    assert len(tasks) >= 2  # trials ran in several array tasks


def test_ctrl_c_in_the_driver_cancels_its_jobs_and_a_rerun_resumes(slurm, workdir):
    args = [
        "-m",
        *TINY,
        *LONG,
        *BEAT,
        "hydra/launcher=slurm",
        "hydra.launcher.poll_interval=0.5",
        "hydra.sweeper.n_jobs=2",
        "hydra.sweeper.n_trials=3",
    ]
    env = {"SLURM_CONF": str(slurm.conf)}
    proc = start_train(args, workdir, env=env)
    try:
        _running_run(lambda: mlflow_client(workdir), proc, workdir / "train.log")
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C in the driver's terminal
        assert proc.wait(timeout=120) == 130, (workdir / "train.log").read_text()[-3000:]
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert "cancelled SLURM jobs" in (workdir / "train.log").read_text()
    deadline = time.time() + 60
    while slurm.squeue() and time.time() < deadline:
        time.sleep(0.5)
    assert not slurm.squeue(), "a job of the interrupted sweep is still queued or running"
    journal = f"journal://{workdir / '.sweep' / (EXPERIMENT + '.journal')}"
    study = _study(journal)
    assert not [t for t in study.trials if t.state == TrialState.RUNNING]
    again = run_train(args, workdir, env=env, timeout=600)
    assert again.returncode == 0, again.stdout[-3000:]
    study = _study(journal)
    assert study_mod.count(study).finished == 3
    assert not [t for t in study.trials if t.state == TrialState.RUNNING]
