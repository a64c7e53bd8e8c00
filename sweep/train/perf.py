"""Where a run's time and memory go, measured from inside transformers' Trainer.

`PerfCallback` times the optimisation steps (forward, backward, optimizer) and the evaluations,
and counts samples and real and padded tokens in the training batches from the attention masks
the model receives. Everything else a trial spends (data loading, building the model, MLflow, the
sweeper) is its overhead: trial wall time minus `perf.step_seconds` and `perf.eval_seconds`.

`PeakMemory` measures the most memory a run held (`perf.peak_memory_mb`, MiB): on a CUDA device
the tensors CUDA allocated at once at most, elsewhere the process's peak resident memory.

`Costs` measures what a trained model costs, the four cost metrics every run logs once at its
end and a sweep can optimise (sweep/core/metrics.py COSTS, all minimised): `perf.train_seconds`,
`perf.params`, `perf.latency_ms` and `perf.peak_memory_mb`.

Every run logs the summary as `perf.*` metrics; `benchmarks/hpsearch.py` attaches the same
callback to the `Trainer.hyperparameter_search` baselines, so both sides are measured alike.
"""

from __future__ import annotations

import logging
import random
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
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


# --------------------------------------------------------------------------- cost metrics

# forward batches timed for perf.latency_ms, after one untimed warm-up batch
LATENCY_BATCHES = 5
# what the model reads of a tokenized example; labels stay out (inference computes no loss)
_MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def trainable_params(model: torch.nn.Module) -> int:
    """The parameters the optimizer updates (`requires_grad`): frozen ones are not counted."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def latency_rows(n_rows: int, batch_size: int, batches: int) -> list[int]:
    """`batches x batch_size` row indices of the validation set, in a seeded random order that is
    the same in every trial and process: a bigger batch size takes more of the same order, and a
    set smaller than that is gone through again, so every batch is full."""
    rng = random.Random(0)
    rows: list[int] = []
    while len(rows) < batches * batch_size:
        order = list(range(n_rows))
        rng.shuffle(order)
        rows += order
    return rows[: batches * batch_size]


class Costs:
    """The cost metrics of one run (see the module docstring), measured the same way in every
    trial, so that trials compare:

    - `perf.params`: the model's trainable parameters, counted once it is built.
    - `perf.train_seconds`: wall seconds of `Trainer.train()`, its periodic evaluations and
      checkpoints included; not loading data, building the model or measuring latency. A run
      resumed from a checkpoint counts only this process's part.
    - `perf.latency_ms`: inference milliseconds per example at `trainer.eval_batch_size`, on the
      trained model in eval mode under `torch.inference_mode` and the run's autocast (the
      precision its evaluations use), with the threads the run has. The batches are drawn from
      the validation set (`latency_rows`) and padded to their longest example like the
      evaluations' batches (tokenizing and padding are not timed); one untimed warm-up batch
      (a compiled model: the warm-up batch and every timed batch once), then `LATENCY_BATCHES`
      batches timed from inputs on the device to logits (CUDA synchronised): their total time
      over their examples (`perf.latency_examples`). Pruned and diverged runs are measured too:
      their cost is what the model costs, whatever it learned.
    - `perf.peak_memory_mb`: `PeakMemory`, from `start()` (before the model is built) to the end.
    """

    def __init__(self, cuda: bool):
        self.peak = PeakMemory(cuda)
        self.cuda = cuda
        self.values: dict[str, float] = {}

    def start(self) -> None:
        self.peak.start()

    def count_params(self, model: torch.nn.Module) -> None:
        self.values["perf.params"] = float(trainable_params(model))

    @contextmanager
    def training(self) -> Iterator[None]:
        """Times the block as `perf.train_seconds`, also when it raises."""
        started = time.perf_counter()
        try:
            yield
        finally:
            self.values["perf.train_seconds"] = round(time.perf_counter() - started, 3)

    def measure_latency(self, trainer, evals, batches: int = LATENCY_BATCHES) -> None:
        """perf.latency_ms of `trainer`'s model on `evals` (tokenized validation examples)."""
        if not len(evals):
            return
        size = int(trainer.args.per_device_eval_batch_size)
        rows = evals.select_columns([c for c in _MODEL_INPUTS if c in evals.column_names])
        rows = rows.select(latency_rows(len(rows), size, 1 + batches)).to_list()
        device = trainer.args.device
        inputs = [
            {k: v.to(device) for k, v in trainer.data_collator(rows[i : i + size]).items()}
            for i in range(0, len(rows), size)
        ]
        model = trainer.model_wrapped if trainer.model_wrapped is not None else trainer.model
        # warm-up: lazy initialisation, kernel choice; a compiled model (trainer.compile) may
        # compile again for each new padded length, so it sees every timed batch once before
        warm = inputs if hasattr(model, "_orig_mod") else inputs[:1]
        was_training = model.training
        model.eval()
        try:
            with torch.inference_mode(), trainer.accelerator.autocast():
                for batch in warm:
                    model(**batch)
                self._sync()
                started = time.perf_counter()
                for batch in inputs[1:]:
                    model(**batch)
                self._sync()
                seconds = time.perf_counter() - started
        finally:
            model.train(was_training)
        self.values["perf.latency_ms"] = round(seconds * 1000 / (batches * size), 6)
        self.values["perf.latency_examples"] = float(batches * size)

    def _sync(self) -> None:
        if self.cuda and torch.cuda.is_available():
            torch.cuda.synchronize()

    def metrics(self) -> dict[str, float]:
        """What was measured so far, peak memory included (a failed run logs what it has)."""
        return {**self.values, **self.peak.metrics()}
