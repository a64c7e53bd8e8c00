"""SLURM for real: a one-node cluster on 127.0.0.1 (Debian's slurm-wlm, started by each test with
its own configuration and ports: tests/services.py SlurmCluster).

- driver mode: `python train.py -m hydra/launcher=slurm`, one SLURM job per trial, against a
  PostgreSQL study (password in PGPASSWORD, not in the URL) and an `mlflow server`;
- the controller stopped mid-sweep (by its PID) and started again, or gone past
  `hydra.launcher.controller_grace`;
- worker mode: deploy/slurm/sweep.sbatch as a job array of workers on one study.

After every cluster test no job is left in the queue and no trial RUNNING. The rules of the
launcher's wait (QueueWatch) and the refusal of secrets in a job's config need no cluster:

    .venv/bin/python -m pytest tests/test_slurm.py -m "not slurm"     # seconds
    .venv/bin/python -m pytest tests/test_slurm.py                    # the cluster too (root)
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import (
    CONFIG_SECRET,
    PRUNING,
    ROOT,
    TINY,
    assert_refused_secret,
    mlflow_client,
    run_train,
    running_trial_run,
    runs_of,
    start_train,
)
from omegaconf import OmegaConf
from optuna.trial import TrialState
from services import MlflowServer, PgCluster, ServiceUnavailable, SlurmCluster, unavailable

from sweep.core.errors import UserError
from sweep.engines import slurm as slurm_engine
from sweep.engines.ray import RayLauncher
from sweep.search import remote
from sweep.search import study as study_mod

EXPERIMENT = "tiny-synthetic"
# trials long enough to be caught mid-way (~200 steps of the tiny model)
LONG = ["data.train_size=3200", "data.max_train_samples=3200", "trainer.eval_every=20"]
BEAT = ["hydra.sweeper.heartbeat_interval=1", "hydra.sweeper.grace_period=120"]
# a token given through the config: it must never reach a job (an env var on the nodes instead)


def _cluster(**options) -> Iterator[SlurmCluster]:
    try:
        cluster = SlurmCluster(**options).start()
    except ServiceUnavailable as e:
        unavailable(str(e))
    try:
        yield cluster
    finally:
        left = cluster.squeue()
        cluster.stop()
    assert not left, f"jobs left in the queue: {left}"


@pytest.fixture
def slurm():
    yield from _cluster()


@pytest.fixture
def slurm_gpus():
    """A cluster of 4 CPUs and 2 GPUs that SLURM schedules and names in each job's environment
    (no device behind them: tests/services.py)."""
    yield from _cluster(cpus=4, gpus=2)


@pytest.fixture
def slurm_quick():
    """A cluster whose clients give up on an absent controller after ~3 s (MessageTimeout,
    default 10 s; a squeue that meets the controller shutting down waits ~13 s and then
    succeeds once it is back): a 10 s outage outlasts one squeue's own retries here, as a
    controller restart of minutes does on a real cluster."""
    yield from _cluster(message_timeout=3)


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


@pytest.mark.slurm
@pytest.mark.slow
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
        # a token given through the config (its own study and store, so that a sweep that wrongly
        # ran leaves the one below alone): refused, and looked for with the password at the end
        leak = run_train(
            [
                "-m",
                *TINY,
                "hydra/launcher=slurm",
                "hydra.sweeper.n_trials=1",
                "tracking.experiment=leak-check",
                f"+model.hf_token={CONFIG_SECRET}",
            ],
            workdir,
            env=env,
        )
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
        # no password and no config secret in submitit's pickles and sbatch scripts, Hydra's
        # files or MLflow
        for needle in (password.encode(), CONFIG_SECRET.encode()):
            for root in (workdir, base):
                for path in Path(root).rglob("*"):
                    if path.is_file() and not path.is_symlink():
                        assert needle not in path.read_bytes(), (path, needle)
        assert list(workdir.rglob("*.pkl")) and list(workdir.rglob("*_submission.sh"))
        assert_refused_secret(leak)
    finally:
        if server is not None:
            server.stop()
        pg.stop()


@pytest.mark.slurm
@pytest.mark.slow
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
    tasks = [
        r.data.tags["sweep.slurm.job_id"] for r in runs if "optuna.trial_number" in r.data.tags
    ]
    # every trial ran in a task of the array, and both tasks ran trials (the cancelled one, and
    # the other, which ran the retry)
    assert sorted(set(tasks)) == [f"{array}_0", f"{array}_1"], tasks


@pytest.mark.slurm
@pytest.mark.slow
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


# --------------------------------------------------------------------------- no cluster needed


def test_a_failed_squeue_proves_nothing_and_is_retried_with_backoff_within_the_grace():
    watch = slurm_engine.QueueWatch(poll=1, grace=100, settle=5)
    assert watch.look({"7": "RUNNING"}, ["7"], now=0).lost == []
    waits = []
    for now in (10, 20, 40, 70):  # the controller is away: each look fails
        look = watch.look(None, ["7"], now)
        assert look.lost == [] and look.away_for == now - 10  # no job lost, however long
        waits.append(look.wait)
    assert waits == [1, 2, 4, 8]  # looked at again later and later
    assert watch.look(None, ["7"], 80).wait == 16
    assert watch.look(None, ["7"], 90).wait == 20  # never past the grace (10 + 100)
    # it answers again, still listing the job: nothing lost, the backoff starts over
    look = watch.look({"7": "RUNNING"}, ["7"], now=95)
    assert look.lost == [] and look.away_for is None and look.wait == 1
    assert watch.look(None, ["7"], 96).wait == 1
    many = slurm_engine.QueueWatch(poll=2, grace=10_000, settle=5)
    assert max(many.look(None, ["7"], t).wait for t in range(20)) == slurm_engine.MAX_BACKOFF


def test_a_controller_away_past_the_grace_gives_up():
    watch = slurm_engine.QueueWatch(poll=1, grace=30, settle=5)
    watch.look(None, ["7"], now=0)
    assert watch.look(None, ["7"], now=29).away_for == 29
    with pytest.raises(slurm_engine.ControllerGone) as gone:
        watch.look(None, ["7"], now=30)
    assert gone.value.away_for == 30
    # the grace counts from the first failure since the controller last answered
    watch = slurm_engine.QueueWatch(poll=1, grace=30, settle=5)
    for now, states in ((0, None), (20, {"7": "RUNNING"}), (40, None), (69, None)):
        assert watch.look(states, ["7"], now).lost == []
    with pytest.raises(slurm_engine.ControllerGone):
        watch.look(None, ["7"], now=70)


def test_a_job_is_lost_only_when_an_answering_squeue_no_longer_lists_it_for_the_settle_time():
    watch = slurm_engine.QueueWatch(poll=1, grace=30, settle=5)
    assert watch.look({}, ["7", "8"], now=0).lost == []  # out of the queue: its clock starts
    assert watch.look(None, ["7", "8"], now=10).lost == []  # a failed look proves nothing
    # answered: 7 still gone (since 0), 8 back in the queue (its clock stops)
    assert watch.look({"8": "PENDING"}, ["7", "8"], now=11).lost == ["7"]
    assert watch.look({"8": "COMPLETED"}, ["8"], now=12).lost == []  # ended: its clock starts
    assert watch.look({"8": "COMPLETED"}, ["8"], now=16).lost == []
    assert watch.look({"8": "COMPLETED"}, ["8"], now=17).lost == ["8"]  # no result 5 s later


@pytest.mark.parametrize("launcher", [slurm_engine.SlurmLauncher, RayLauncher])
@pytest.mark.parametrize(
    ("extra", "key", "variable"),
    [
        ({"model": {"hf_token": CONFIG_SECRET}}, "model.hf_token", "HF_TOKEN"),
        ({"model": {"token": CONFIG_SECRET}}, "model.token", "HF_TOKEN"),
        (
            {"tracking": {"password": CONFIG_SECRET}},
            "tracking.password",
            "MLFLOW_TRACKING_PASSWORD",
        ),
        ({"extra": {"wandb_api_key": CONFIG_SECRET}}, "extra.wandb_api_key", "WANDB_API_KEY"),
        ({"extra": {"hub_token": ["a", CONFIG_SECRET]}}, "extra.hub_token", "HUB_TOKEN"),
        ({"data": {"train_file": f"s3://me:{CONFIG_SECRET}@bucket/t.csv"}}, "data.train_file", ""),
    ],
)
def test_a_secret_in_a_cluster_jobs_config_is_refused_naming_the_key_and_the_variable(
    launcher, extra, key, variable
):
    cfg = OmegaConf.merge(
        {"model": {"name": "tiny", "tokenizer": "bert"}, "trainer": {"max_tokens": 8}}, extra
    )
    with pytest.raises(UserError) as refused:  # before any contact with a cluster
        remote.check(launcher(), "sqlite:///x.db", None, cfg)
    line = str(refused.value)
    assert key in line and variable in line and "\n" not in line, line
    assert CONFIG_SECRET not in line


def test_what_is_not_a_secret_in_a_jobs_config():
    cfg = OmegaConf.create(
        {
            "model": {
                "tokenizer": "bert-base-uncased",
                "hf_token": "${oc.env:HF_TOKEN}",  # read on the node: only the name travels
                "use_auth_token": True,
                "token": None,
            },
            "trainer": {"max_tokens": 8},
            "data": {"api_key": "", "train_file": "s3://bucket/t.csv", "max_tokens": [1, 2]},
        }
    )
    assert remote.config_secrets(cfg) == []
    cfg.model.hf_token = "${oc.env:HF_TOKEN,hf_default}"  # a default travels with the job
    assert remote.config_secrets(cfg) == ["model.hf_token"]


def test_a_secret_in_the_config_is_refused_before_slurm_is_contacted(workdir):
    # SLURM_CONF names no cluster: a launcher that asked the controller first would fail with
    # "the SLURM controller does not answer" instead
    proc = run_train(
        ["-m", *TINY, "hydra/launcher=slurm", f"+model.hf_token={CONFIG_SECRET}"],
        workdir,
        env={"SLURM_CONF": str(workdir / "no-cluster.conf")},
    )
    assert_refused_secret(proc)
    assert not list(workdir.rglob("*.pkl"))


# --------------------------------------------------------------------------- the controller


def _sweep(n_trials: int, grace: float | None = None) -> list[str]:
    """A sweep whose jobs run ~50-100 s each, two at a time: long enough for a controller outage
    of ~10 s (a squeue fails after ~3 s on `slurm_quick`) to fall inside them."""
    return [
        "-m",
        *TINY,
        *LONG,
        "trainer.epochs=6",
        *BEAT,
        "hydra/launcher=slurm",
        "hydra.launcher.poll_interval=0.5",
        *([f"hydra.launcher.controller_grace={grace}"] if grace is not None else []),
        "hydra.sweeper.n_jobs=2",
        f"hydra.sweeper.n_trials={n_trials}",
    ]


def _trial_runs(workdir: Path) -> dict[str, list]:
    """{trial number: its MLflow runs} of the tiny sweep in `workdir`'s store."""
    runs: dict[str, list] = {}
    for r in runs_of(mlflow_client(workdir), EXPERIMENT):
        if "optuna.trial_number" in r.data.tags:
            runs.setdefault(r.data.tags["optuna.trial_number"], []).append(r)
    return runs


@pytest.mark.slurm
@pytest.mark.slow
def test_a_controller_restart_mid_sweep_loses_no_job_and_runs_no_trial_twice(slurm_quick, workdir):
    slurm = slurm_quick
    n = 3
    env = {"SLURM_CONF": str(slurm.conf)}
    log = workdir / "train.log"
    proc = start_train(_sweep(n), workdir, env=env)
    try:
        victim = _running_run(lambda: mlflow_client(workdir), proc, log)
        stopped = time.time()
        slurm.stop_controller()  # by its PID; slurmd and the jobs go on
        time.sleep(10)
        slurm.start_controller()
        assert proc.wait(timeout=600) == 0, log.read_text()[-4000:]
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    out = log.read_text()
    # the launcher met the outage: its squeue failed, and it looked again until it answered
    assert "the SLURM controller does not answer" in out and "answers again" in out, out[-3000:]

    study = _study(f"journal://{workdir / '.sweep' / (EXPERIMENT + '.journal')}")
    trials = study.trials
    assert len(trials) == n and study_mod.count(study).finished == n
    assert all(t.state == TrialState.COMPLETE for t in trials), [t.state for t in trials]
    assert not [t.number for t in trials if study_mod.RETRY_OF in t.system_attrs]  # no retry
    # what MLflow and SLURM recorded: one run and one SLURM job per trial, all completed; the
    # job that was running when the controller stopped ran on and was told normally
    runs = _trial_runs(workdir)
    assert sorted(runs) == [str(t.number) for t in trials] and all(
        len(rs) == 1 for rs in runs.values()
    ), {k: len(v) for k, v in runs.items()}
    jobs = slurm.jobs()
    assert sorted(jobs) == sorted(rs[0].data.tags["sweep.slurm.job_id"] for rs in runs.values())
    assert {state for state, _, _ in jobs.values()} == {"COMPLETED"}, jobs
    survivor = runs[victim.data.tags["optuna.trial_number"]][0]
    assert survivor.info.status == "FINISHED" and survivor.info.end_time / 1000 > stopped


@pytest.mark.slurm
@pytest.mark.slow
def test_a_controller_away_past_the_grace_stops_the_sweep_and_a_rerun_runs_nothing_twice(
    slurm_quick, workdir
):
    slurm = slurm_quick
    env = {"SLURM_CONF": str(slurm.conf)}
    log = workdir / "train.log"
    proc = start_train(_sweep(2, grace=5), workdir, env=env)
    stopped = False
    try:
        _running_run(lambda: mlflow_client(workdir), proc, log)
        batch = sorted(ln.split()[0] for ln in slurm.squeue())
        slurm.stop_controller()
        stopped = True
        code = proc.wait(timeout=300)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        if stopped:
            slurm.start_controller()
    out = log.read_text()
    errors = [ln for ln in out.splitlines() if ln.startswith("error:")]
    assert code == 2 and len(errors) == 1, out[-4000:]
    assert "controller_grace" in errors[0] and all(j in errors[0] for j in batch), errors[0]
    journal = f"journal://{workdir / '.sweep' / (EXPERIMENT + '.journal')}"
    study = _study(journal)
    assert not [t for t in study.trials if t.state == TrialState.RUNNING]
    assert study_mod.count(study).finished == 0  # the batch went back to the queue, not lost
    # scancel could not reach the controller either: the jobs are written down for the next run
    left = workdir / slurm_engine.LEFT_RUNNING
    assert sorted(left.read_text().split()) == batch

    # the same command again, the controller back: it finishes the budget, and no job of its own
    # starts before every job of the stopped sweep has ended (SLURM's own record)
    again = run_train(_sweep(2), workdir, env=env, timeout=600)
    assert again.returncode == 0, again.stdout[-4000:]
    assert not left.exists()  # cancelled and waited out, or found ended, before any submission
    study = _study(journal)
    assert study_mod.count(study).finished == 2
    assert not [t for t in study.trials if t.state == TrialState.RUNNING]
    jobs = slurm.jobs()
    old_end = max(jobs[j][2] for j in batch)
    new_start = min(start for j, (_, start, _) in jobs.items() if j not in batch)
    assert new_start >= old_end, jobs


@pytest.mark.slurm
@pytest.mark.slow
def test_jobs_left_running_by_a_sweep_that_lost_its_controller_are_cancelled_first(slurm, workdir):
    """The next sweep from the same directory cancels (and waits out) the jobs an earlier one
    could not cancel, before it submits anything: their trials were put back in the queue."""
    env = slurm.env()
    out = subprocess.run(
        ["sbatch", "--parsable", f"--chdir={workdir}", "--wrap", "sleep 300"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    job = out.stdout.strip()
    left = workdir / slurm_engine.LEFT_RUNNING
    left.parent.mkdir(parents=True, exist_ok=True)
    left.write_text(f"{job}\n")
    saved = dict(os.environ)
    os.environ["SLURM_CONF"] = str(slurm.conf)
    try:
        slurm_engine.SlurmLauncher().check()
    finally:
        os.environ.clear()
        os.environ.update(saved)
    assert not left.exists()
    state = slurm.jobs()[job][0]
    assert state == "CANCELLED", state


# --------------------------------------------------------------------------- GPUs


@pytest.mark.slurm
@pytest.mark.slow
def test_gpus_per_task_gives_each_trial_job_a_gpu_of_its_own(slurm_gpus, workdir):
    """3 trial jobs at once, each asking for one GPU, on a node of 4 CPUs and 2 GPUs: the CPUs
    would run all three together; SLURM runs two, each on its own GPU, and the third once a
    GPU is free."""
    args = [
        "-m",
        *TINY,
        "hydra/launcher=slurm",
        "hydra.launcher.gpus_per_task=1",
        "hydra.launcher.poll_interval=0.5",
        "hydra.sweeper.n_jobs=3",
        "hydra.sweeper.n_trials=3",
    ]
    proc = run_train(args, workdir, env={"SLURM_CONF": str(slurm_gpus.conf)}, timeout=600)
    assert proc.returncode == 0, proc.stdout[-4000:]
    scripts = list(workdir.rglob("*_submission.sh"))
    assert len(scripts) == 3
    for script in scripts:  # the sbatch script each job really got
        lines = script.read_text().splitlines()
        assert "#SBATCH --gpus-per-task=1" in lines and "#SBATCH --ntasks-per-node=1" in lines
        assert not [ln for ln in lines if "--gpus-per-node" in ln], lines
    # the GPU SLURM gave each trial's job (SLURM_JOB_GPUS, tagged by the trial), and when each
    # job ran by SLURM's own record
    gpu = {
        r.data.tags["sweep.slurm.job_id"]: r.data.tags.get("sweep.node.gpus")
        for rs in _trial_runs(workdir).values()
        for r in rs
    }
    jobs = slurm_gpus.jobs()
    assert sorted(gpu) == sorted(jobs) and set(gpu.values()) <= {"0", "1"}, (gpu, jobs)
    first, second, third = sorted(jobs, key=lambda j: jobs[j][1])
    assert gpu[first] != gpu[second]  # the two that ran together: a GPU each
    # the third waited for a GPU (SLURM times are to the second: it may start in the one
    # another ended)
    assert jobs[third][1] >= min(jobs[first][2], jobs[second][2]), jobs
