"""What the cluster launchers make of their GPU options, without a cluster: the sbatch script a
SLURM job is submitted with, the share of a GPU a Ray task asks for, the tag a job records of
the GPUs its engine gave it, and the bad values refused (one `error:` line, exit 2) before the
cluster is contacted. The real clusters run them in tests/test_slurm.py and tests/test_ray.py.

    .venv/bin/python -m pytest tests/test_cluster_options.py
"""

from __future__ import annotations

import dataclasses
import re

import pytest
from conftest import TINY, run_train

from sweep.core import trial_env
from sweep.core.errors import UserError
from sweep.engines import ray as ray_engine
from sweep.engines import slurm as slurm_engine


def sbatch_lines(tmp_path, **options) -> list[str]:
    """The `#SBATCH` lines of the script a job of `hydra/launcher=slurm` with `options` gets."""
    conf = dataclasses.asdict(slurm_engine.SlurmLauncherConf(job_name="t"))
    launcher = slurm_engine.SlurmLauncher(**{**conf, **options})
    script = launcher._executor(str(tmp_path))._make_submission_file_text("true", "u")
    return [ln for ln in script.splitlines() if ln.startswith("#SBATCH")]


@pytest.mark.parametrize(
    ("options", "want", "unwanted"),
    [
        ({"gpus_per_task": 1}, ["--gpus-per-task=1"], "--gpus-per-node"),
        ({"gpus_per_node": 2}, ["--gpus-per-node=2"], "--gpus-per-task"),
        ({}, [], "--gpus"),
        ({"gpus_per_task": 0}, [], "--gpus"),  # 0: none, as when unset
    ],
)
def test_the_gpu_options_in_the_sbatch_script(tmp_path, options, want, unwanted):
    lines = sbatch_lines(tmp_path, **options)
    # one task per job, the trial: --gpus-per-task counts per task, and sbatch refuses it
    # without a task count
    for line in ["--ntasks-per-node=1", "--nodes=1", *want]:
        assert f"#SBATCH {line}" in lines, lines
    assert not [ln for ln in lines if unwanted in ln], lines


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"gpus_per_task": -1}, "hydra.launcher.gpus_per_task=-1: at least 0"),
        ({"gpus_per_node": -2}, "hydra.launcher.gpus_per_node=-2: at least 0"),
        ({"gpus_per_task": 1, "gpus_per_node": 1}, "set one"),
        ({"cpus_per_task": 0}, "hydra.launcher.cpus_per_task=0: at least 1"),
        ({"controller_grace": -1}, "hydra.launcher.controller_grace=-1: 0 or more"),
        ({"poll_interval": 0}, "hydra.launcher.poll_interval=0: more than 0 seconds"),
    ],
)
def test_bad_slurm_options_are_refused_before_the_controller_is_asked(
    monkeypatch, tmp_path, options, message
):
    # no cluster there: a launcher that asked first would say "the SLURM controller does not
    # answer" instead
    monkeypatch.setenv("SLURM_CONF", str(tmp_path / "no-cluster.conf"))
    with pytest.raises(UserError, match=re.escape(message)):
        slurm_engine.SlurmLauncher(**options).check()


@pytest.mark.parametrize("share", [0, 0.25, 0.5, 1, 2, 8])
def test_a_share_of_a_gpu_is_a_fraction_or_whole_gpus(share):
    assert ray_engine.check_share("num_gpus", share) == share


@pytest.mark.parametrize("value", [-1, -0.25, 1.5, float("nan"), float("inf"), True, "a", None])
def test_bad_ray_shares_are_refused_before_the_cluster_is_contacted(value):
    # no cluster at that address: a launcher that connected first would say "no Ray cluster"
    launcher = ray_engine.RayLauncher(address="127.0.0.1:1", num_gpus=value)
    with pytest.raises(UserError, match=re.escape(f"hydra.launcher.num_gpus={value}: ")):
        launcher.check()
    launcher = ray_engine.RayLauncher(address="127.0.0.1:1", num_cpus=value)
    with pytest.raises(UserError, match=re.escape(f"hydra.launcher.num_cpus={value}: ")):
        launcher.check()


@pytest.mark.parametrize(
    ("launcher", "option", "message"),
    [
        ("ray", "hydra.launcher.num_gpus=-0.25", "hydra.launcher.num_gpus=-0.25: "),
        ("ray", "hydra.launcher.num_gpus=1.5", "hydra.launcher.num_gpus=1.5: "),
        ("ray", "hydra.launcher.num_gpus=quarter", "hydra.launcher.num_gpus=quarter"),
        ("slurm", "hydra.launcher.gpus_per_task=-1", "hydra.launcher.gpus_per_task=-1: "),
        ("slurm", "hydra.launcher.gpus_per_task=one", "hydra.launcher.gpus_per_task=one"),
    ],
)
def test_a_bad_gpu_option_is_one_error_line_before_the_cluster_is_contacted(
    workdir, launcher, option, message
):
    proc = run_train(
        ["-m", *TINY, f"hydra/launcher={launcher}", "hydra.launcher.address=127.0.0.1:1", option]
        if launcher == "ray"
        else ["-m", *TINY, f"hydra/launcher={launcher}", option],
        workdir,
        env={"SLURM_CONF": str(workdir / "no-cluster.conf")},
    )
    errors = [ln for ln in proc.stdout.splitlines() if ln.startswith("error:")]
    assert proc.returncode == 2 and len(errors) == 1, proc.stdout[-3000:]
    assert message in errors[0], errors[0]
    assert not (workdir / "mlflow.db").exists()  # before any store, any job


def test_a_job_records_the_gpus_its_engine_gave_it(monkeypatch):
    for name in (trial_env.NODE, trial_env.NODE_GPUS, "SLURM_JOB_ID", "SLURM_JOB_GPUS"):
        monkeypatch.delenv(name, raising=False)
    assert "sweep.node.gpus" not in trial_env.node_tags()  # no engine, or no GPU from it
    monkeypatch.setenv("SLURM_JOB_ID", "7")
    monkeypatch.setenv("SLURM_JOB_GPUS", "1")
    assert trial_env.node_tags()["sweep.node.gpus"] == "1"
    monkeypatch.setenv(trial_env.NODE_GPUS, "0 x0.25")  # what the Ray launcher sets
    assert trial_env.node_tags()["sweep.node.gpus"] == "0 x0.25"
    monkeypatch.setenv(trial_env.NODE_GPUS, "")  # a Ray task without GPUs
    monkeypatch.delenv("SLURM_JOB_GPUS")
    assert "sweep.node.gpus" not in trial_env.node_tags()
