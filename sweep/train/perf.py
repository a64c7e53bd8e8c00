"""Where a run's time and memory go, measured from inside transformers' Trainer.

`PerfCallback` times the optimisation steps (forward, backward, optimizer) and the evaluations,
and counts samples and real and padded tokens in the training batches from the attention masks
the model receives. Everything else a trial spends (data loading, building the model, MLflow, the
sweeper) is its overhead: trial wall time minus `perf.step_seconds` and `perf.eval_seconds`.

`PeakMemory` measures the most memory a run held (`perf.peak_memory_mb`, MiB): on a CUDA device
the tensors CUDA allocated at once at most, elsewhere the process's peak resident memory.

Every run logs the summary as `perf.*` metrics; `benchmarks/hpsearch.py` attaches the same
callback to the `Trainer.hyperparameter_search` baselines, so both sides are measured alike.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

from transformers import TrainerCallback

log = logging.getLogger(__name__)


class PerfCallback(TrainerCallback):
    def __init__(self) -> None:
        self.runs: list[dict[str, float]] = []  # one summary per train() call
        self._reset()

    def _reset(self) -> None:
        self.step_seconds = 0.0
        self.eval_seconds = 0.0
        self.steps = 0
        self.samples = 0
        self.real_tokens = 0
        self.batch_tokens = 0
        self._step_start: float | None = None
        self._last_step_end: float | None = None
        self._hook = None

    # ---- counting tokens: a forward pre-hook sees each training batch's attention mask

    def _count(self, module, args, kwargs) -> None:
        if not module.training:
            return
        mask = kwargs.get("attention_mask")
        if mask is not None:  # (B, T)
            self.samples += int(mask.shape[0])
            self.real_tokens += int(mask.sum())
            self.batch_tokens += mask.numel()

    def on_train_begin(self, args, state, control, model=None, **kwargs: Any):
        self._reset()
        if model is not None:
            self._hook = model.register_forward_pre_hook(self._count, with_kwargs=True)

    def on_step_begin(self, args, state, control, **kwargs: Any):
        self._step_start = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs: Any):
        now = time.perf_counter()
        if self._step_start is not None:
            self.step_seconds += now - self._step_start
            self.steps += 1
        self._step_start = None
        self._last_step_end = now

    def on_evaluate(self, args, state, control, **kwargs: Any):
        # the evaluation runs between a step's end and this call
        if self._last_step_end is not None:
            self.eval_seconds += time.perf_counter() - self._last_step_end
            self._last_step_end = None

    def on_train_end(self, args, state, control, **kwargs: Any):
        if self._hook is not None:
            self._hook.remove()
            self._hook = None
        self.runs.append(self.summary())

    def summary(self) -> dict[str, float]:
        padded = 1 - self.real_tokens / self.batch_tokens if self.batch_tokens else 0.0
        return {
            "perf.step_seconds": round(self.step_seconds, 4),
            "perf.eval_seconds": round(self.eval_seconds, 4),
            "perf.steps": float(self.steps),
            "perf.train_samples": float(self.samples),
            "perf.train_samples_per_s": self._rate(self.samples),
            "perf.train_tokens": float(self.real_tokens),
            "perf.batch_tokens": float(self.batch_tokens),
            "perf.train_tokens_per_s": self._rate(self.real_tokens),
            "perf.padded_share": round(padded, 4),
        }

    def _rate(self, count: int) -> float:
        """Per second of optimisation-step time (the evaluations and overhead left out)."""
        return round(count / self.step_seconds, 2) if self.step_seconds else 0.0


# --------------------------------------------------------------------------- peak memory

_CLEAR_REFS = "/proc/self/clear_refs"
_STATUS = "/proc/self/status"


class PeakMemory:
    """The most memory one run held, from `start` (before its model is built) to `mb()`: each run
    of an in-process worker is measured on its own, not the process's whole life.

    On a CUDA device: the peak of the tensors allocated at once (`max_memory_allocated`, what a
    batch needs; CUDA's cache is not counted), its counter reset at the start (a process's first
    run starts with CUDA itself, counting from zero). Elsewhere: the process's peak resident
    memory, imported libraries included (what the machine must have). On Linux, writing "5" to
    /proc/self/clear_refs resets the kernel's own high-water mark (VmHWM): exact, however short
    the peak, where a sampling thread would miss peaks between its samples and cost a thread.
    Without it (macOS, Windows, a kernel that refuses the write) the peak is the process's since
    it started: exact for a run in its own process, an upper bound for later runs in one."""

    def __init__(self, cuda: bool):
        self.cuda = cuda

    def start(self) -> None:
        if self.cuda:
            import torch

            if torch.cuda.is_initialized():
                torch.cuda.reset_peak_memory_stats()
            return
        try:
            with open(_CLEAR_REFS, "w", encoding="ascii") as f:
                f.write("5")
        except OSError as e:
            log.debug("peak memory: cannot reset the high-water mark (%s): the process's peak", e)

    def mb(self) -> float:
        """MiB (2**20 bytes), the unit torch's memory summaries use."""
        if self.cuda:
            import torch

            return round(torch.cuda.max_memory_allocated() / 2**20, 1)
        return round(_rss_peak_bytes() / 2**20, 1)

    def metrics(self) -> dict[str, float]:
        return {"perf.peak_memory_mb": self.mb()}


def _rss_peak_bytes() -> float:
    """The process's peak resident memory: VmHWM on Linux, getrusage's maxrss elsewhere (bytes
    on macOS), psutil's peak working set on Windows."""
    try:
        with open(_STATUS, encoding="ascii") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return float(line.split()[1]) * 1024  # kB
    except OSError:
        pass
    try:
        import resource
    except ImportError:  # Windows
        import psutil

        info = psutil.Process().memory_info()
        return float(getattr(info, "peak_wset", info.rss))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return float(peak if sys.platform == "darwin" else peak * 1024)
