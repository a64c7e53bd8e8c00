"""`hydra/launcher=ray` on a real Ray cluster: a head with no CPUs and two worker nodes, all on
127.0.0.1, started by each test with its own ports and temp dir (tests/services.py: RayCluster).

The nodes start with their own environment only (the offline switches, and PGPASSWORD where the
study is in PostgreSQL), as nodes of a real cluster do: nothing of the driver's environment but
what the launcher forwards reaches a job, so each job finds its trial in its own overrides.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
from conftest import (
    CONFIG_SECRET,
    PRUNING,
    TINY,
    assert_refused_secret,
    mlflow_client,
    run_train,
    running_trial_run,
    runs_of,
    start_train,
)
from optuna.trial import TrialState
from services import (
    MlflowServer,
    PgCluster,
    RayCluster,
    ServiceUnavailable,
    unavailable,
)

from sweep.search import study as study_mod

pytestmark = [pytest.mark.ray, pytest.mark.slow]

EXPERIMENT = "tiny-synthetic"
OFFLINE = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
SWEEP = [
    "-m",
    *TINY,
    "hydra/launcher=ray",
    "hydra.sweeper.n_jobs=2",
    "hydra.sweeper.heartbeat_interval=1",
    "hydra.sweeper.grace_period=120",
]
# trials long enough to be caught mid-way (~200 steps of the tiny model)
LONG = ["data.train_size=3200", "data.max_train_samples=3200", "trainer.eval_every=20"]
# a token given through the config: it must never reach a task (an env var on the nodes instead)


def start_cluster(env: dict[str, str] | None = None) -> RayCluster:
    try:
        return RayCluster(nodes=2, env={**OFFLINE, **(env or {})}).start()
    except ServiceUnavailable as e:
        unavailable(str(e))
        raise


@pytest.fixture
def ray_cluster():
    cluster = start_cluster()
    try:
        yield cluster
    finally:
        cluster.stop()
    assert not cluster.pids(), "a process of the test's Ray cluster is still running"


def _study(storage: str):
    import optuna

    opened = study_mod.open_storage(storage)
    names = optuna.study.get_all_study_names(storage=opened)
    assert len(names) == 1, names
    return optuna.load_study(study_name=names[0], storage=opened)


def _journal(workdir: Path) -> str:
    return f"journal://{workdir / '.sweep' / (EXPERIMENT + '.journal')}"


def _node_of(run) -> str:
    node = run.data.tags.get("sweep.node", "")
    assert node.startswith("ray "), run.data.tags
    return node.split()[1]


def _running_run(workdir: Path, proc):
    """A trial's MLflow run that has logged a first evaluation on a Ray node."""
    store = workdir / "mlflow.db"
    return running_trial_run(
        lambda: mlflow_client(workdir) if store.exists() else None,
        lambda run: "sweep.node" in run.data.tags,
        "eval_f1",
        lambda: proc.poll() is None,
        lambda: (workdir / "train.log").read_text()[-3000:],
        timeout=240,
    )


def test_a_password_in_the_storage_url_is_refused_before_any_job(workdir):
    proc = run_train(
        [*SWEEP, "hydra.sweeper.storage=postgresql://u:secret@127.0.0.1:1/db"], workdir
    )
    assert proc.returncode == 2, proc.stdout[-2000:]
    errors = [line for line in proc.stdout.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "PGPASSWORD" in errors[0], proc.stdout[-2000:]
    assert "secret" not in errors[0]
    assert not (workdir / "multirun").exists() or not list((workdir / "multirun").rglob("*.yaml"))


def test_a_secret_in_the_config_is_refused_before_any_job(workdir):
    # no cluster at that address: a launcher that connected first would say "no Ray cluster"
    proc = run_train(
        [*SWEEP, "hydra.launcher.address=127.0.0.1:1", f"+model.hf_token={CONFIG_SECRET}"],
        workdir,
        timeout=180,
    )
    assert_refused_secret(proc)


def test_no_cluster_is_one_line_error(workdir):
    proc = run_train([*SWEEP, "hydra.launcher.address=127.0.0.1:1"], workdir, timeout=180)
    assert proc.returncode == 2, proc.stdout[-2000:]
    errors = [line for line in proc.stdout.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "no Ray cluster" in errors[0], proc.stdout[-2000:]


def test_ray_sweep_with_postgres_and_mlflow_server(tmp_path_factory, workdir):
    """Trials run as Ray tasks on both worker nodes, against a PostgreSQL study and an `mlflow
    server`: pruning, heartbeats, nested runs, an exact budget; no password anywhere."""
    try:
        pg = PgCluster().start()
    except ServiceUnavailable as e:
        unavailable(str(e))
    server = cluster = None
    try:
        password = pg.password  # the init script's roles have it (docker/postgres-init.sh)
        storage = f"postgresql://optuna@127.0.0.1:{pg.port}/optuna"  # no password: PGPASSWORD
        base = tmp_path_factory.mktemp("mlflow-server")
        backend = f"sqlite:///{base / 'mlflow.db'}"
        server = MlflowServer(backend, base / "artifacts", base / "server.log").start()
        cluster = start_cluster({"PGPASSWORD": password})
        env = {"RAY_ADDRESS": cluster.address, "PGPASSWORD": password}
        # a token given through the config (its own study and store, so that a sweep that wrongly
        # ran leaves the one below alone): refused, and looked for with the password at the end
        leak = run_train(
            [
                *SWEEP,
                "hydra.sweeper.n_trials=1",
                "tracking.experiment=leak-check",
                f"+model.hf_token={CONFIG_SECRET}",
            ],
            workdir,
            env=env,
            timeout=300,
        )
        proc = run_train(
            [
                *SWEEP,
                f"hydra.sweeper.storage={storage}",
                f"tracking.uri={server.uri}",
                "hydra.sweeper.n_trials=6",
                *PRUNING,
                "hydra.sweeper.pruner_startup_trials=2",
                "data.train_size=320",
                "data.max_train_samples=320",
                "trainer.eval_every=4",
            ],
            workdir,
            env=env,
            timeout=400,
        )
        assert proc.returncode == 0, proc.stdout[-4000:]
        # one warning line, before any job: the stores are on loopback addresses
        warned = [line for line in proc.stdout.splitlines() if "may run on other hosts" in line]
        assert len(warned) == 1 and "127.0.0.1" in warned[0], proc.stdout[:3000]
        assert proc.stdout.index("may run on other hosts") < proc.stdout.index("ray: job #0")

        os.environ["PGPASSWORD"] = password  # this test's process reads the study too
        try:
            study = _study(storage)
        finally:
            del os.environ["PGPASSWORD"]
        trials = study.trials
        assert len(trials) == 6 and not [t for t in trials if t.state == TrialState.RUNNING]
        pruned = [t for t in trials if t.state == TrialState.PRUNED]
        complete = [t for t in trials if t.state == TrialState.COMPLETE]
        assert pruned and complete, [t.state for t in trials]
        full = max(t.user_attrs["steps"] for t in complete)
        assert all(t.user_attrs["steps"] < full for t in pruned)  # stopped inside their job
        # the jobs reported to the study from their nodes: each pruned trial was stopped by a
        # value it reported (a trial whose loss went NaN has nothing to report: not required)
        reported = [t for t in trials if t.intermediate_values]
        assert len(reported) >= 4 and all(t.intermediate_values for t in pruned), [
            (t.number, t.state.name, t.user_attrs, t.system_attrs.get(study_mod.FAIL_REASON))
            for t in trials
        ]
        assert all(study_mod.HEARTBEAT in t.system_attrs for t in trials)

        from mlflow import MlflowClient

        runs = runs_of(MlflowClient(server.uri), EXPERIMENT)
        parents = [r for r in runs if r.data.tags.get("sweep.role") == "parent"]
        children = [r for r in runs if r.data.tags.get("mlflow.parentRunId")]
        assert len(parents) == 1 and len(children) == 6
        assert {r.data.tags["mlflow.parentRunId"] for r in children} == {parents[0].info.run_id}
        assert all("eval_loss" in r.data.metrics for r in children)
        nodes = {_node_of(r) for r in children}
        assert len(nodes) == 2, nodes  # both worker nodes ran trials (the head has no CPUs)

        # no password and no config secret in Hydra's files, the study's folder, MLflow's store
        # or Ray's session
        for needle in (password.encode(), CONFIG_SECRET.encode()):
            for root in (workdir, base, cluster.temp):
                for path in Path(root).rglob("*"):
                    if path.is_file() and not path.is_symlink():
                        with open(path, "rb") as f:
                            assert needle not in f.read(), (path, needle)
        assert_refused_secret(leak)
    finally:
        if cluster is not None:
            cluster.stop()
            assert not cluster.pids()
        if server is not None:
            server.stop()
        pg.stop()


def test_a_killed_node_fails_its_trial_and_the_retry_runs_on_the_other(ray_cluster, workdir):
    proc = start_train(
        [*SWEEP, *LONG, "hydra.sweeper.n_trials=3"],
        workdir,
        env={"RAY_ADDRESS": ray_cluster.address},
    )
    try:
        victim = _running_run(workdir, proc)
        node = _node_of(victim)
        os.kill(ray_cluster.raylet_of(node), signal.SIGKILL)  # the node's raylet, by its PID
        assert proc.wait(timeout=400) == 0, (workdir / "train.log").read_text()[-4000:]
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    log = (workdir / "train.log").read_text()
    study = _study(_journal(workdir))
    trials = study.trials
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    number = int(victim.data.tags["optuna.trial_number"])
    lost = trials[number]
    assert lost.state == TrialState.FAIL, log[-3000:]
    assert lost.system_attrs[study_mod.FAIL_REASON].startswith("job lost"), lost.system_attrs
    retries = [t for t in trials if t.system_attrs.get(study_mod.RETRY_OF) == number]
    assert len(retries) == 1 and retries[0].state == TrialState.COMPLETE
    assert retries[0].params == lost.params
    # the budget is exact: 3 finished, the lost trial counted once, through its retry
    assert study_mod.count(study).finished == 3
    assert len([t for t in trials if t.state == TrialState.COMPLETE]) == 3
    runs = {
        r.data.tags.get("optuna.trial_number"): r
        for r in runs_of(mlflow_client(workdir), EXPERIMENT)
    }
    assert runs[str(number)].info.status in ("FAILED", "KILLED")
    assert _node_of(runs[str(retries[0].number)]) != node  # the retry ran on the other node


def test_ctrl_c_cancels_the_tasks_and_a_rerun_resumes(ray_cluster, workdir):
    args = [*SWEEP, *LONG, "hydra.sweeper.n_trials=3"]
    env = {"RAY_ADDRESS": ray_cluster.address}
    proc = start_train(args, workdir, env=env)
    try:
        _running_run(workdir, proc)
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C in the driver's terminal
        assert proc.wait(timeout=120) == 130, (workdir / "train.log").read_text()[-3000:]
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    study = _study(_journal(workdir))
    assert not [t for t in study.trials if t.state == TrialState.RUNNING]
    deadline = time.time() + 30
    while ray_cluster.busy_workers() and time.time() < deadline:
        time.sleep(0.5)
    assert not ray_cluster.busy_workers(), "a job of the interrupted sweep still runs"
    again = run_train(args, workdir, env=env, timeout=400)
    assert again.returncode == 0, again.stdout[-3000:]
    study = _study(_journal(workdir))
    assert study_mod.count(study).finished == 3
    assert not [t for t in study.trials if t.state == TrialState.RUNNING]


def test_a_quarter_of_a_gpu_packs_four_trials_onto_one_gpu(workdir):
    """One worker node of 4 CPUs and 1 GPU (Ray counts it; no device behind it): with
    `num_gpus=0.25` the four trials of a batch run on it at once, each told GPU 0; a job asking
    for more GPUs than the cluster has is refused before any job (Ray would hold it forever)."""
    try:
        cluster = RayCluster(nodes=1, cpus=4, gpus=1, env=OFFLINE).start()
    except ServiceUnavailable as e:
        unavailable(str(e))
        raise
    env = {"RAY_ADDRESS": cluster.address}
    args = [a for a in SWEEP if not a.startswith("hydra.sweeper.n_jobs=")]
    try:
        refused = run_train([*args, "hydra.launcher.num_gpus=2"], workdir, env=env, timeout=180)
        packed = run_train(
            [
                *args,
                *LONG,
                "hydra.launcher.num_gpus=0.25",
                "hydra.sweeper.n_jobs=4",
                "hydra.sweeper.n_trials=4",
            ],
            workdir,
            env=env,
            timeout=600,
        )
    finally:
        cluster.stop()
    assert not cluster.pids(), "a process of the test's Ray cluster is still running"
    errors = [line for line in refused.stdout.splitlines() if line.startswith("error:")]
    assert refused.returncode == 2 and len(errors) == 1, refused.stdout[-3000:]
    assert "has 1 GPUs" in errors[0] and "num_gpus=2" in errors[0], errors[0]

    assert packed.returncode == 0, packed.stdout[-4000:]
    runs = [
        r
        for r in runs_of(mlflow_client(workdir), EXPERIMENT)
        if "optuna.trial_number" in r.data.tags
    ]
    assert len(runs) == 4
    # what Ray gave each task: GPU 0, a quarter of it
    assert {r.data.tags.get("sweep.node.gpus") for r in runs} == {"0 x0.25"}, runs
    # and the four ran at the same time
    assert max(r.info.start_time for r in runs) < min(r.info.end_time for r in runs)
