"""Where a run's time goes, measured from inside transformers' Trainer.

`PerfCallback` times the optimisation steps (forward, backward, optimizer) and the evaluations,
and counts real and padded tokens in the training batches from the attention masks the model
receives. Everything else a trial spends (data loading, building the model, MLflow, the sweeper)
is its overhead: trial wall time minus `perf.step_seconds` and `perf.eval_seconds`.

Every run logs the summary as `perf.*` metrics; `benchmarks/hpsearch.py` attaches the same
callback to the `Trainer.hyperparameter_search` baselines, so both sides are measured alike.
"""

from __future__ import annotations

import time
from typing import Any

from transformers import TrainerCallback


class PerfCallback(TrainerCallback):
    def __init__(self) -> None:
        self.runs: list[dict[str, float]] = []  # one summary per train() call
        self._reset()

    def _reset(self) -> None:
        self.step_seconds = 0.0
        self.eval_seconds = 0.0
        self.steps = 0
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
        if mask is not None:
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
            "perf.train_tokens": float(self.real_tokens),
            "perf.batch_tokens": float(self.batch_tokens),
            "perf.train_tokens_per_s": (
                round(self.real_tokens / self.step_seconds, 2) if self.step_seconds else 0.0
            ),
            "perf.padded_share": round(padded, 4),
        }
