"""Out of memory is an outcome: a trial that runs out of memory ends FAIL with
`sweep.fail_reason=out_of_memory` and one line naming the batch size and max length, its
in-process worker gives the memory back and the sweep goes on; a plain run says it in one
`error:` line and exits 1. Every failure here is a real allocation failure: a real
`python train.py` under an address-space limit with a batch that cannot fit, or an allocation
larger than any address space.

.venv/bin/python -m pytest tests/test_oom.py          (the two real-OOM runs are marked slow)
"""

from __future__ import annotations

import gc
import resource

import pytest
import torch
from conftest import TINY, compose, mlflow_client, run_train, runs_of, sweep_study

# Larger than the 128 TiB a 64-bit Linux process can address: the allocator asks the kernel and
# is refused, whatever the machine's memory and overcommit setting
NO_SUCH_MEMORY = 2**50

# 4096 generated reviews (~35 tokens, 88 at most) tokenized to max length 512: one batch of all of
# them needs ~6.4 GiB of address space (measured VmPeak 6.7e6 kB without a limit), while a whole
# sweep process with batches of 16 peaks at ~2.4 GiB (2.54e6 kB: torch, transformers, MLflow and
# Optuna imported). 4 GiB sits well apart from both, so the small batch always fits and the big
# one never does (tests/test_oom.py runs on the same 2-core machine kind as CI).
ADDRESS_SPACE = 4 * 2**30
OOM_DATA = [
    "model=tiny",
    "data.train_size=4096",
    "data.max_train_samples=4096",
    "data.eval_size=64",
    "data.max_eval_samples=64",
    "data.max_length=512",
    "trainer.max_steps=2",
    "trainer.eval_every=2",
    # the CPU's allocator, whatever the machine: CUDA reserves more address space than the limit
    "trainer.device=cpu",
]


def limited_address_space():
    """In the child before exec: its virtual memory may not exceed ADDRESS_SPACE (`ulimit -v`)."""
    resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE, ADDRESS_SPACE))


def caught(fn) -> BaseException:
    try:
        fn()
    except BaseException as e:  # noqa: BLE001 - the test inspects what was raised
        return e
    raise AssertionError("expected an error")


def test_real_allocation_failures_are_out_of_memory_and_other_errors_are_not():
    from sweep.train.oom import is_out_of_memory

    cpu = caught(lambda: torch.empty(NO_SUCH_MEMORY, dtype=torch.uint8))
    assert isinstance(cpu, RuntimeError) and "DefaultCPUAllocator" in str(cpu)
    python = caught(lambda: bytearray(NO_SUCH_MEMORY))
    assert type(python) is MemoryError
    assert is_out_of_memory(cpu) and is_out_of_memory(python)

    def wrapped():  # a library that re-raises it as its own error keeps it as the cause
        try:
            torch.empty(NO_SUCH_MEMORY, dtype=torch.uint8)
        except RuntimeError as e:
            raise ValueError("the batch could not be collated") from e

    assert is_out_of_memory(caught(wrapped))
    shapes = caught(lambda: torch.ones(2) @ torch.ones(3))  # a real RuntimeError, not memory
    assert not is_out_of_memory(shapes)
    assert not is_out_of_memory(caught(lambda: int("x")))


@pytest.mark.parametrize("phase", ["train", "eval"])
def test_the_line_names_the_batch_size_of_the_phase_that_ran_out(phase):
    # a real allocation that fails inside the model's forward pass, in a training step or in an
    # evaluation: the line names that phase's batch size
    from transformers import TrainerCallback

    from sweep.train.loop import run_training
    from sweep.train.oom import advice, is_out_of_memory

    class Allocate(TrainerCallback):
        def on_train_begin(self, args, state, control, model=None, **kwargs):
            def hook(module, inputs):
                if module.training == (phase == "train"):
                    torch.empty(NO_SUCH_MEMORY, dtype=torch.uint8)

            model.register_forward_pre_hook(hook)

    cfg = compose([*TINY[:5], "tracking=none", "trainer.eval_batch_size=32"])
    error = caught(lambda: run_training(cfg, callbacks=[Allocate()]))
    assert is_out_of_memory(error)
    line = advice(cfg, error)
    assert "\n" not in line and "data.max_length=48" in line
    if phase == "train":
        assert "trainer.train_batch_size=16" in line
        assert "lower trainer.train_batch_size (or data.max_length)" in line
    else:
        assert "trainer.eval_batch_size=32" in line
        assert "lower trainer.eval_batch_size (or data.max_length)" in line
    assert "tried to allocate 1.0 PiB" in line


def vm_size() -> int:
    """This process's address space now, in bytes."""
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmSize in /proc/self/status")


def test_a_run_out_of_memory_leaves_nothing_of_itself_alive_in_its_process(workdir):
    # as in an in-process worker: a real out of memory in this very process (its address space
    # limited to what it uses now plus 1.5 GiB, far from the ~4 GiB more the batch needs). Once
    # run_job has raised, neither the run's Trainer nor its model is alive, though the caller
    # still holds the error (a sweeper holds it until it has told the trial)
    from transformers import PreTrainedModel, Trainer

    from sweep.train.oom import OutOfMemory
    from sweep.train.runner import run_job

    def models_and_trainers() -> list:
        return [o for o in gc.get_objects() if isinstance(o, Trainer | PreTrainedModel)]

    # what earlier tests of this process left (held here, so that no id of theirs is reused)
    before = models_and_trainers()
    uri = f"tracking.uri=sqlite:///{workdir / 'mlflow.db'}"
    cfg = compose([*OOM_DATA, "trainer.train_batch_size=4096", uri])
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    resource.setrlimit(resource.RLIMIT_AS, (vm_size() + 3 * 2**29, hard))
    try:
        with pytest.raises(OutOfMemory, match="trainer.train_batch_size=4096") as error:
            run_job(cfg, want_outcome=True)
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
    alive = [o for o in models_and_trainers() if not any(o is b for b in before)]
    assert alive == [], alive
    assert error.value.__cause__ is None and error.value.__context__ is None
    (run,) = runs_of(mlflow_client(workdir), "tiny-synthetic")
    assert run.info.status == "FAILED" and run.data.tags["sweep.fail_reason"] == "out_of_memory"


@pytest.mark.slow
def test_a_trial_out_of_memory_fails_and_the_next_runs_in_the_same_process(workdir):
    # trial 0 gets the batch that cannot fit, trial 1 one that can; one failure is allowed. With
    # n_workers=1 and Hydra's basic launcher both trials run in the sweeper's own process
    proc = run_train(
        [
            "-m",
            *OOM_DATA,
            "hydra.sweeper.n_workers=1",
            "hydra.sweeper.confirm.top_k=0",
            "hydra.sweeper.n_trials=2",
            "hydra.sweeper.max_failure_rate=0.5",
            "trainer.train_batch_size=choice(16,4096)",
            "hydra.sweeper.enqueue=[{trainer.train_batch_size:4096},{trainer.train_batch_size:16}]",
        ],
        workdir,
        preexec_fn=limited_address_space,
    )
    out = proc.stdout
    assert proc.returncode == 0, out[-3000:]
    assert "Traceback" not in out
    said = [line for line in out.splitlines() if "ran out of memory" in line]
    assert len(said) == 1, said
    assert "trial 0" in said[0]
    for part in ("trainer.train_batch_size=4096", "data.max_length=512", "lower trainer.train_"):
        assert part in said[0], said[0]

    study = sweep_study(workdir, "tiny-synthetic")
    assert [t.state.name for t in study.trials] == ["FAIL", "COMPLETE"]
    assert study.trials[0].user_attrs["sweep.fail_reason"] == "out_of_memory"
    assert "ran out of memory" in study.trials[0].system_attrs["sweep:fail_reason"]

    runs = {
        r.data.tags.get("optuna.trial_number"): r
        for r in runs_of(mlflow_client(workdir), "tiny-synthetic")
    }
    failed, done = runs["0"], runs["1"]
    assert failed.info.status == "FAILED" and done.info.status == "FINISHED"
    assert failed.data.tags["sweep.fail_reason"] == "out_of_memory"
    assert failed.data.tags["optuna.state"] == "FAIL"
    assert "sweep.fail_reason" not in done.data.tags
    # the memory trial 0 held was given back before trial 1: trial 1's peak (its whole process's
    # resident memory, imports included) stays far below what trial 0 reached before failing
    peak_failed = failed.data.metrics["perf.peak_memory_mb"]
    peak_done = done.data.metrics["perf.peak_memory_mb"]
    assert 100 < peak_done < peak_failed, (peak_done, peak_failed)


@pytest.mark.slow
def test_a_plain_run_out_of_memory_is_one_error_line_exit_1_and_a_failed_run(workdir):
    proc = run_train(
        [*OOM_DATA, "trainer.train_batch_size=4096"], workdir, preexec_fn=limited_address_space
    )
    out = proc.stdout
    assert proc.returncode == 1, out[-3000:]
    assert "Traceback" not in out
    errors = [line for line in out.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, out[-3000:]
    for part in ("ran out of memory", "trainer.train_batch_size=4096", "data.max_length=512"):
        assert part in errors[0], errors[0]
    assert "lower trainer.train_batch_size (or data.max_length)" in errors[0]
    (run,) = runs_of(mlflow_client(workdir), "tiny-synthetic")
    assert run.info.status == "FAILED"
    assert run.data.tags["sweep.fail_reason"] == "out_of_memory"
    assert run.data.metrics["perf.peak_memory_mb"] > 100


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_out_of_memory_is_out_of_memory_and_memory_is_given_back():
    from sweep.train.oom import free_memory, is_out_of_memory

    total = torch.cuda.get_device_properties(0).total_memory
    error = caught(lambda: torch.empty(2 * total, dtype=torch.uint8, device="cuda"))
    assert isinstance(error, torch.OutOfMemoryError) and is_out_of_memory(error)
    held = torch.empty(2**28, dtype=torch.uint8, device="cuda")
    del held
    assert torch.cuda.memory_reserved() >= 2**28  # the caching allocator keeps it...
    free_memory()
    assert torch.cuda.memory_reserved() < 2**28  # ...until the trial's end hands it back
