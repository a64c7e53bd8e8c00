"""Where a run trains, and on how many devices (sweep/train/gpu.py): a run that would see several
GPUs keeps the first, with one note, before CUDA starts (never a silent nn.DataParallel); every
run is tagged with its device, GPU and effective batch size; `trainer.device=cuda` without a
CUDA GPU is refused before any training. This machine has no GPU: the GPU counts torch reports
are set per test (torch's own functions, replaced), the sweep and the refusal are real.

.venv/bin/python -m pytest tests/test_run_device.py       (the real sweep is marked slow)
"""

from __future__ import annotations

import logging
import os
from types import SimpleNamespace

import pytest
import torch
from conftest import TINY, compose, mlflow_client, run_train, runs_of
from test_bad_input import assert_no_store, bad_run

from sweep.core.devices import GPU_ENV
from sweep.train.gpu import device_tags, keep_one_gpu


@pytest.fixture
def gpus(monkeypatch):
    """`gpus(n, env)`: torch counts `n` GPUs, as NVML does: the entries of CUDA_VISIBLE_DEVICES
    when it is set (so hiding GPUs through it shows), else `n`. `env` None: the variable unset.
    CUDA has not started."""

    def count() -> int:
        given = os.environ.get(GPU_ENV)
        return len([e for e in given.split(",") if e.strip()]) if given is not None else n[0]

    n = [0]

    def set_up(machine: int, env: str | None) -> None:
        n[0] = machine
        monkeypatch.setenv(GPU_ENV, env or "")  # recorded, so the test's end restores it
        if env is None:
            monkeypatch.delenv(GPU_ENV)
        monkeypatch.setattr(torch.cuda, "device_count", count)
        monkeypatch.setattr(torch.cuda, "is_initialized", lambda: False)

    return set_up


def notes(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "sweep.train.gpu"]


@pytest.mark.parametrize("env", ["0,1", None])
def test_a_run_that_sees_two_gpus_keeps_the_first_with_one_note(gpus, caplog, env):
    gpus(2, env)
    caplog.set_level(logging.INFO, logger="sweep.train.gpu")
    note = keep_one_gpu(compose(["model=tiny"]))
    assert os.environ[GPU_ENV] == "0"
    assert torch.cuda.device_count() == 1  # what Trainer will count: no DataParallel
    assert note is not None and "shows 2 GPUs" in note and "GPU 0" in note
    assert notes(caplog) == [f"note: {note}"]


def test_a_run_keeps_the_first_of_the_gpus_it_was_given_by_their_own_names(gpus):
    gpus(8, "GPU-5f3a,GPU-77b1")
    keep_one_gpu(compose(["model=tiny"]))
    assert os.environ[GPU_ENV] == "GPU-5f3a"


@pytest.mark.parametrize(
    "machine,env,device",
    [(1, None, "auto"), (8, "3", "auto"), (0, None, "auto"), (2, None, "cpu")],
)
def test_a_run_with_one_gpu_none_or_on_the_cpu_is_left_as_it_is(gpus, caplog, machine, env, device):
    gpus(machine, env)
    caplog.set_level(logging.INFO, logger="sweep.train.gpu")
    assert keep_one_gpu(compose(["model=tiny", f"trainer.device={device}"])) is None
    assert os.environ.get(GPU_ENV) == env
    assert notes(caplog) == []


def test_once_cuda_has_started_the_run_says_it_will_split_batches_and_changes_nothing(
    gpus, caplog, monkeypatch
):
    gpus(2, "0,1")
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)
    note = keep_one_gpu(compose(["model=tiny"]))
    assert os.environ[GPU_ENV] == "0,1"  # too late to hide one: CUDA read the variable
    assert "nn.DataParallel" in note and "split each batch over all 2" in note
    assert notes(caplog) == [note]
    assert caplog.records[-1].levelno == logging.WARNING


def test_run_job_keeps_one_gpu_before_anything_asks_for_cuda(gpus, monkeypatch):
    # torch.cuda.is_available is what starts CUDA's device list: every call of it in a real run
    # (precision, compile check, peak memory, Trainer) must come after the pinning
    from sweep.train.runner import run_job

    gpus(2, None)
    seen: list[str | None] = []

    def is_available() -> bool:
        seen.append(os.environ.get(GPU_ENV))
        return False  # this machine trains on its CPU all the same

    monkeypatch.setattr(torch.cuda, "is_available", is_available)
    run_job(compose([*TINY[:5], "tracking=none", "trainer.max_steps=2"]))
    assert seen and set(seen) == {"0"}, seen


def test_a_cpu_run_is_tagged_cpu_with_its_batch_as_the_effective_batch():
    cfg = compose(["model=tiny", "trainer.train_batch_size=24"])
    assert device_tags(cfg) == {"sweep.device": "cpu", "sweep.effective_batch_size": "24"}


def test_a_gpu_run_is_tagged_with_its_gpu_by_the_machines_id_and_its_effective_batch(
    gpus, monkeypatch
):
    # what torch reports on a machine with CUDA_VISIBLE_DEVICES=4,5 and CUDA started on both
    # (too late to keep one): Trainer splits each batch over the two, so the effective batch is 2x
    gpus(8, "4,5")
    h100 = SimpleNamespace(name="NVIDIA H100 80GB HBM3", total_memory=80 * 2**30)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda i: h100)
    tags = device_tags(compose(["model=tiny", "trainer.train_batch_size=32"]))
    assert tags == {
        "sweep.device": "cuda",
        "sweep.gpu": "4",
        "sweep.gpu.name": "NVIDIA H100 80GB HBM3",
        "sweep.gpu.memory_mb": "81920",
        "sweep.effective_batch_size": "64",
    }


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_a_run_on_a_real_gpu_names_it():
    tags = device_tags(compose(["model=tiny", "trainer.device=cuda"]))
    assert tags["sweep.device"] == "cuda"
    assert tags["sweep.gpu.name"] == torch.cuda.get_device_name(0)
    assert int(tags["sweep.gpu.memory_mb"]) > 1000


@pytest.mark.slow
def test_each_trial_of_a_sweep_is_tagged_with_its_device_and_effective_batch(workdir):
    # two local workers, GPUs hidden, each trial with its own batch size
    proc = run_train(
        [
            "-m",
            *TINY,
            "data.max_train_samples=160",
            "hydra.sweeper.gpus=none",
            "hydra.sweeper.n_workers=2",
            "hydra.sweeper.n_trials=2",
            "trainer.train_batch_size=choice(8,16)",
            "hydra.sweeper.enqueue=[{trainer.train_batch_size:8},{trainer.train_batch_size:16}]",
        ],
        workdir,
    )
    assert proc.returncode == 0, proc.stdout[-4000:]
    runs = [r for r in runs_of(mlflow_client(workdir), "tiny-synthetic") if r.data.params]
    trials = [r for r in runs if "optuna.trial_number" in r.data.tags]
    assert len(trials) == 2, [r.data.tags.get("mlflow.runName") for r in runs]
    batches = sorted(r.data.params["trainer.train_batch_size"] for r in trials)
    assert batches == ["16", "8"]
    for r in trials:
        assert r.info.status == "FINISHED"
        assert r.data.tags["sweep.device"] == "cpu"
        assert (
            r.data.tags["sweep.effective_batch_size"] == r.data.params["trainer.train_batch_size"]
        )
        assert "sweep.gpu" not in r.data.tags
        # what each trial cost, logged by every trial (sweep/train/perf.py)
        assert r.data.metrics["perf.peak_memory_mb"] > 100
        assert r.data.metrics["perf.train_samples_per_s"] > 0
    assert "shows 2 GPUs" not in proc.stdout  # no GPU here: no note


def test_a_plain_run_on_cuda_without_a_cuda_gpu_is_refused_before_training(workdir):
    rc, errors, stdout, _ = bad_run([*TINY, "trainer.device=cuda"], workdir)
    shown = "\n".join(errors) + stdout[-2000:]
    assert rc == 2 and len(errors) == 1, shown
    assert errors[0] == "error: trainer.device=cuda needs a CUDA GPU and none is available", shown
    assert "Traceback" not in stdout
    assert_no_store(workdir)
