"""Out of memory is an outcome of a run, not a crash.

A batch that does not fit (CUDA's `torch.OutOfMemoryError`, the CPU allocator's "can't allocate
memory", Python's `MemoryError`) says that this configuration is too big for this machine: the
run ends FAILED with `sweep.fail_reason=out_of_memory` and one line naming the batch size and max
length to lower (`advice`). A sweep goes on to its next trial, within `max_failure_rate`, after
its process has given the memory back (`free_memory`); a plain run prints the line as its one
`error:` line and exits with EXIT_CODE (train.py).
"""

from __future__ import annotations

import gc
import re
import sys
from types import TracebackType

from omegaconf import DictConfig

OUT_OF_MEMORY = "out_of_memory"  # the value of sweep.fail_reason
# a plain run that ran out of memory exits 1 after its one `error:` line (train.py): the run
# failed, as a sweep with too many failed trials does; 2 is input refused before any training
EXIT_CODE = 1

# what the allocators say when they are refused, besides the exception types: the CPU allocator
# ("DefaultCPUAllocator: can't allocate memory"), CUDA errors raised as plain RuntimeErrors by
# cuBLAS and the driver ("CUDA error: out of memory", CUBLAS_STATUS_ALLOC_FAILED), Apple's MPS
_SIGNS = ("can't allocate memory", "defaultcpuallocator", "out of memory", "alloc_failed")
# frames of transformers' Trainer that run an evaluation (checked first: Trainer evaluates from
# inside its training loop) and that run a training step
_EVAL_FRAMES = {"evaluate", "evaluation_loop", "prediction_step"}
_TRAIN_FRAMES = {"training_step", "_inner_training_loop"}


class OutOfMemory(RuntimeError):
    """A run ran out of memory; the message is the one line `advice` wrote."""


def is_out_of_memory(e: BaseException) -> bool:
    """Whether `e`, or an error it was raised from (a library may wrap it), is a refused memory
    allocation."""
    seen: set[int] = set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, MemoryError) or type(e).__name__ == "OutOfMemoryError":
            return True
        if isinstance(e, RuntimeError) and any(s in str(e).lower() for s in _SIGNS):
            return True
        e = e.__cause__ or e.__context__
    return False


def advice(cfg: DictConfig, e: BaseException) -> str:
    """One line: where the run ran out of memory, at which batch size and max length, and what
    to lower. Training and evaluation batches have their own size: the phase decides which."""
    t, length = cfg.trainer, cfg.data.max_length
    where = _device(e)
    phase = _phase(e.__traceback__)
    tried = _tried(str(e))
    tried = f" (tried to allocate {tried})" if tried else ""
    if phase is None:  # building the model or loading the data: no batch is involved yet
        return (
            f"{where} ran out of memory before training{tried}: use a smaller model or "
            "fewer samples (data.max_train_samples)"
        )
    key = "train_batch_size" if phase == "train" else "eval_batch_size"
    what = "a training step" if phase == "train" else "an evaluation"
    line = (
        f"{where} ran out of memory in {what} at trainer.{key}={t[key]}, data.max_length={length}"
        f"{tried}: lower trainer.{key} (or data.max_length)"
    )
    if where == "the GPU" and t.precision == "fp32":
        line += ", or train in trainer.precision=bf16"
    return line


def _device(e: BaseException) -> str:
    text = str(e)
    if type(e).__name__ == "OutOfMemoryError" or "CUDA" in text or "CUBLAS" in text:
        return "the GPU"
    if "MPS" in text:
        return "the MPS device"
    return "the CPU"


def _phase(tb: TracebackType | None) -> str | None:
    """`eval`, `train` or None (neither: before Trainer ran), from the frames the error left."""
    names = set()
    while tb is not None:
        names.add(tb.tb_frame.f_code.co_name)
        tb = tb.tb_next
    if names & _EVAL_FRAMES:
        return "eval"
    return "train" if names & _TRAIN_FRAMES else None


def _tried(text: str) -> str:
    """The size of the refused allocation, as the allocator gave it ("2.00 GiB") or in binary
    units from a count of bytes; "" when the message does not say."""
    m = re.search(r"(?i)tried to allocate (\d+(?:\.\d+)?) ?(bytes|[KMGTP]iB)", text)
    if m is None:
        return ""
    if m.group(2).lower() != "bytes":
        return f"{m.group(1)} {m.group(2)}"
    size = float(m.group(1))
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024:
            return f"{size:.0f} bytes" if unit == "bytes" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} PiB"


def free_memory() -> None:
    """Give back what a finished run held before the next one in this process: reference cycles
    (Trainer, its callbacks and the model refer to each other) are collected, and CUDA's caching
    allocator returns its cached blocks, so another worker sharing the GPU can use them."""
    gc.collect()
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_initialized():
        torch.cuda.empty_cache()
