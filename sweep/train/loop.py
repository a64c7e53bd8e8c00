"""One training run on transformers' Trainer, with our own callback for metrics, pruning and
divergence. The caller owns the MLflow run; this module only writes metrics into it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import random
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig
from transformers import (
    DataCollatorWithPadding,
    PrinterCallback,
    Trainer,
    TrainerCallback,
    TrainingArguments,
)
from transformers.utils import logging as hf_logging

from sweep.core.config import ConfigError, batch_order, interactive, plan_steps, warmup_steps
from sweep.core.metrics import METRICS, TEST_METRICS, objectives, pick
from sweep.core.metrics import direction as metric_direction
from sweep.track.tracking import NullTracker
from sweep.train import batches, optim, tokens
from sweep.train import data as data_mod
from sweep.train import model as model_mod
from sweep.train.perf import Costs, PerfCallback

log = logging.getLogger(__name__)

# report(eval metrics, step) -> True when the run should stop (pruned); the hook picks the metric
PruneHook = Callable[[dict[str, float], int], bool]


@dataclass
class RunResult:
    status: str  # completed | pruned | diverged
    objective: float
    final: dict[str, float]
    best: dict[str, float]
    steps: int
    total_steps: int
    seconds: float
    history: list[dict[str, Any]] = field(default_factory=list)
    data_fingerprint: str = ""
    # every objective's value, in trainer.objective's order (the first is `objective`)
    values: list[float] = field(default_factory=list)
    # what constraints can bound: the evaluation the objective came from, and the costs
    measured: dict[str, float] = field(default_factory=dict)


@dataclass
class Prepared:
    """Everything a run needs that does not depend on the hyperparameters being searched."""

    raw: Any
    tokenizer: Any
    train: Any
    eval: Any
    total_steps: int
    eval_subset: Any = None  # the evaluations before the last step use it, when set
    # the label index whose F1 is eval_f1 with two classes (data.positive_label); None: more than
    # two classes, eval_f1 is the macro average
    positive_index: int | None = 1
    # data.train_on_validation: the test split (sweep.train.data.TestSplit), which `eval` then
    # holds, evaluated once at the last step (test_* metrics); None: `eval` is the validation split
    test: Any = None

    def eval_every(self, every: int) -> int:
        """Steps between evaluations: `every` (trainer.eval_every), or with a test split in place
        of validation only the last step (nothing may be chosen or pruned on the test split)."""
        return self.total_steps if self.test is not None else every

    def f1_params(self) -> dict[str, str]:
        """What eval_f1 means, as the params every run logs once: `metrics.f1_average` (binary |
        macro) and `metrics.f1_positive_label` (the label name; `-` for macro)."""
        return f1_params(self.raw.label_names, self.positive_index)


def eval_subset(evals, n: int):
    """A fixed random subset of `n` evaluation samples, the same for every trial and process (the
    pruner compares trials at the same step); None when `n` is 0 or covers the whole set."""
    if not n or n >= len(evals):
        return None
    picked = sorted(random.Random(0).sample(range(len(evals)), n))
    return evals.select(picked)  # `evals` is sorted by length and sorted indices keep that order


def prepare(cfg: DictConfig) -> Prepared:
    """Load data, check what depends on it, tokenize (cached). Before any model is built."""
    quiet_progress_bars()
    raw = data_mod.load_raw(cfg.data)
    # an unknown data.positive_label fails here, before anything is tokenized or trained
    positive = data_mod.positive_index(raw.label_names, cfg.data.get("positive_label"))
    if positive is None:
        log.info("eval_f1: macro average over the %d classes", len(raw.label_names))
    else:
        log.info("eval_f1: F1 of label %r (index %d)", raw.label_names[positive], positive)
    total = plan_steps(cfg, len(raw.train))  # raises ConfigError on a too-long warm-up / decay
    test = _test_in_place_of_validation(cfg, raw)
    tokenizer = model_mod.load_tokenizer(cfg.model)
    splits = raw if test is None else _with_test(raw, test)
    train, evals = tokens.tokenize(splits, tokenizer, cfg.data.max_length, cfg.data.cache_dir)
    # evaluation batches of similar lengths pad little; the metrics do not depend on the order
    evals = evals.sort("length")
    return Prepared(
        raw=raw,
        tokenizer=tokenizer,
        train=train,
        eval=evals,
        total_steps=total,
        eval_subset=None if test is not None else eval_subset(evals, cfg.trainer.eval_subset),
        positive_index=positive,
        test=test,
    )


def _test_in_place_of_validation(cfg: DictConfig, raw):
    """With data.train_on_validation the validation split is in the train split, and the run's
    one evaluation is on the test split (which the config check made sure exists)."""
    if not cfg.data.get("train_on_validation"):
        return None
    test = data_mod.load_test(cfg.data, raw.label_names)
    if test is None:
        raise data_mod.DataError("data.train_on_validation=true: the data have no test split")
    return test


def _with_test(raw, test):
    """`raw` with the test split where tokenizing looks for the validation split, under a
    fingerprint of both (the tokenize cache is keyed by it)."""
    import dataclasses

    blob = f"{raw.fingerprint}|test:{test.digest}".encode()
    fingerprint = hashlib.sha256(blob).hexdigest()[:16]
    return dataclasses.replace(raw, validation=test.data, fingerprint=fingerprint)


def config_key(cfg: DictConfig) -> str:
    """A short stable hash of the resolved config (names the checkpoint directory)."""
    from sweep.core.config import resolved

    blob = json.dumps(resolved(cfg), sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def f1_params(label_names: list[str], positive: int | None) -> dict[str, str]:
    """`metrics.f1_average` and `metrics.f1_positive_label` for these labels (see Prepared)."""
    if len(label_names) > 2 or positive is None:
        return {"metrics.f1_average": "macro", "metrics.f1_positive_label": "-"}
    return {"metrics.f1_average": "binary", "metrics.f1_positive_label": str(label_names[positive])}


def f1(labels: np.ndarray, preds: np.ndarray, n_classes: int, positive: int | None = 1) -> float:
    """F1 of class `positive` (a label index, default 1) for two classes (0 when it has no true or
    predicted sample), else the unweighted mean over the classes that occur in labels or
    predictions (macro; `positive` is not used): scikit-learn's f1_score with zero_division=0
    (pos_label=positive, or average="macro"), without its ~2 s import in every worker process
    (tests/test_perf.py and tests/test_labels.py compare the two)."""

    def of(c: int) -> float:
        tp = int(np.sum((preds == c) & (labels == c)))
        denom = int(np.sum(preds == c)) + int(np.sum(labels == c))
        return 2 * tp / denom if denom else 0.0

    if n_classes == 2:
        return of(1 if positive is None else int(positive))
    return float(np.mean([of(int(c)) for c in np.union1d(labels, preds)]))


def compute_metrics(pred, positive: int | None = 1) -> dict[str, float]:
    """accuracy and f1 (of label index `positive` for two classes, else macro; see f1)."""
    logits = pred.predictions[0] if isinstance(pred.predictions, tuple) else pred.predictions
    labels = np.asarray(pred.label_ids)
    preds = np.argmax(logits, axis=-1)
    n_classes = max(int(logits.shape[-1]), 2)
    return {
        "accuracy": float((preds == labels).mean()),
        "f1": f1(labels, preds, n_classes, positive),
    }


def quiet_progress_bars() -> None:
    """No carriage-return bars from datasets / transformers in logs and CI output."""
    if not interactive():
        import datasets

        datasets.disable_progress_bars()
        hf_logging.disable_progress_bar()


class RunCallback(TrainerCallback):
    """Sends train/eval metrics to the tracker (step = global step), reports the objective to a
    pruner after every evaluation, stops on a NaN/inf loss, and evaluates at the last step."""

    def __init__(
        self, tracker, objective: list[str], eval_every: int, prune_hook: PruneHook | None
    ):
        self.tracker = tracker
        # the evaluation metric that tells a diverged run: the first evaluation objective, or
        # with cost objectives only (measured once, after training) the evaluation loss
        self.watched = next((m for m in objective if m in METRICS), "eval_loss")
        self.eval_every = eval_every
        self.prune_hook = prune_hook
        self.history: list[dict[str, Any]] = []
        self.pruned = False
        self.diverged = False
        self.bar = None
        self.postfix: dict[str, str] = {}

    def on_train_begin(self, args, state, control, **kwargs):
        if interactive():
            from tqdm.auto import tqdm

            self.bar = tqdm(total=state.max_steps, desc="train", unit="step", leave=False)
            self.bar.update(state.global_step)

    def on_train_end(self, args, state, control, **kwargs):
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def _show(self, **values: float) -> None:
        if self.bar is not None:
            self.postfix.update({k: f"{v:.4f}" for k, v in values.items()})
            self.bar.set_postfix(self.postfix, refresh=False)

    def on_step_end(self, args, state, control, **kwargs):
        if self.bar is not None:
            self.bar.update(state.global_step - self.bar.n)
        if state.global_step >= state.max_steps and state.global_step % self.eval_every:
            control.should_evaluate = True
            control.should_log = True
        return control

    def on_log(self, args, state, control, logs=None, **kwargs):
        logs = logs or {}
        metrics = {}
        if "loss" in logs:
            metrics["train_loss"] = logs["loss"]
            if not math.isfinite(logs["loss"]):
                self.diverged = True
                control.should_training_stop = True
        if "learning_rate" in logs:
            metrics["learning_rate"] = logs["learning_rate"]
        if "grad_norm" in logs and logs["grad_norm"] is not None:
            metrics["grad_norm"] = logs["grad_norm"]
        if metrics:
            self.tracker.log_metrics(metrics, step=state.global_step)
            if "train_loss" in metrics:
                self._show(loss=metrics["train_loss"])
        return control

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        m = {k: float(v) for k, v in (metrics or {}).items() if k in METRICS or k in TEST_METRICS}
        self.tracker.log_metrics(m, step=state.global_step)
        self.history.append({"step": state.global_step, **m})
        self._show(**{k.removeprefix("eval_"): v for k, v in m.items() if k != "eval_loss"})
        log.info(
            "step %d/%d: %s",
            state.global_step,
            state.max_steps,
            "  ".join(f"{k}={v:.4f}" for k, v in m.items()),
        )
        value = m.get(self.watched)
        if value is None or not math.isfinite(value):
            self.diverged = value is not None
            control.should_training_stop = self.diverged or control.should_training_stop
        elif (
            self.prune_hook is not None
            and state.global_step < state.max_steps
            and self.prune_hook(m, state.global_step)
        ):
            self.pruned = True
            control.should_training_stop = True
        return control


class SweepTrainer(Trainer):
    """Trainer whose evaluations run under torch.inference_mode (Trainer's own use no_grad) and,
    before the last step, may use a subset of the evaluation set."""

    def __init__(self, *args, eval_subset=None, batch_order="random", prefix="eval", **kwargs):
        super().__init__(*args, **kwargs)
        self.eval_subset = eval_subset
        self.batch_order = batch_order
        self.prefix = prefix  # of the metrics its evaluations report: eval, or test (a refit)

    def _get_train_sampler(self, train_dataset=None):
        # Trainer's hook for the training sampler (it has no bucketed strategy of its own)
        if self.batch_order != "bucketed":
            return super()._get_train_sampler(train_dataset)
        batch = self.args.train_batch_size * self.args.gradient_accumulation_steps
        # the `length` column tokens.tokenize wrote: Trainer drops it (not a model input) from the
        # dataset it passes here, but self.train_dataset still has it, rows in the same order
        lengths = self.train_dataset["length"]
        return batches.BucketedSampler(lengths, batch, seed=self.args.data_seed)

    def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix="eval"):
        if (
            eval_dataset is None
            and self.eval_subset is not None
            and self.state.global_step < self.state.max_steps
        ):
            eval_dataset = self.eval_subset
        if metric_key_prefix == "eval":
            metric_key_prefix = self.prefix
        return super().evaluate(eval_dataset, ignore_keys, metric_key_prefix)

    def prediction_step(self, *args, **kwargs):
        # no autograd bookkeeping at all (no version counters, no views tracked); the outputs are
        # only read for metrics, never reused in training
        with torch.inference_mode():
            return super().prediction_step(*args, **kwargs)


def _has_accelerator() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return torch.cuda.is_available() or bool(mps and mps.is_available())


def cpu_has_native_bf16() -> bool:
    """Whether this CPU multiplies bf16 in hardware (AVX512-BF16 or AMX): there autocast to bf16
    trains ~1.5x faster than fp32; elsewhere it would be emulated, and slower."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return bool(flags & {"avx512_bf16", "amx_bf16"})
    except OSError:
        pass
    return False


def _on_gpu(t) -> bool:
    """Whether the run's trainer config puts it on a CUDA device."""
    return t.device == "cuda" or (t.device == "auto" and torch.cuda.is_available())


def check_compile(cfg: DictConfig) -> None:
    """trainer.compile on a CPU needs torch's inductor to build C++ kernels, and it passes torch's
    library folder to g++ unquoted: under a path with a space the link fails deep in the first
    step. Refused up front instead, in one line (a CUDA device compiles its kernels with Triton)."""
    t = cfg.trainer
    on_gpu = _on_gpu(t)
    where = str(Path(torch.__file__).parent)
    if t.get("compile") and not on_gpu and any(c.isspace() for c in where):
        raise ConfigError(
            f"trainer.compile=true on a CPU cannot work with torch installed under a path with a "
            f"space ({where}): torch's inductor does not quote it; move the environment or set "
            "trainer.compile=false"
        )


def settle_precision(cfg: DictConfig) -> None:
    """Replace trainer.precision=auto by what it means on this machine (bf16 on a CUDA GPU that
    supports it or a CPU with native bf16, else fp32), so the logged config, and a `reproduce`
    of it anywhere, holds the precision the run really used."""
    t = cfg.trainer
    if t.precision != "auto":
        return
    on_gpu = _on_gpu(t)
    if on_gpu:
        native = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    else:
        native = (t.device == "cpu" or not _has_accelerator()) and cpu_has_native_bf16()
    t.precision = "bf16" if native else "fp32"
    where = "GPU" if on_gpu else "CPU"
    log.info(
        "trainer.precision=auto: %s (%s %s bf16)",
        t.precision,
        where,
        "with native" if native else "without native",
    )


def _precision_args(precision: str) -> dict[str, bool]:
    return {"bf16": precision == "bf16", "fp16": precision == "fp16"}


def training_arguments(
    cfg: DictConfig, total_steps: int, output_dir: str, eval_every: int | None = None
) -> TrainingArguments:
    t = cfg.trainer
    ckpt = t.checkpoint_every > 0
    order = batch_order(t)
    return TrainingArguments(
        output_dir=output_dir,
        max_steps=total_steps,
        per_device_train_batch_size=t.train_batch_size,
        per_device_eval_batch_size=t.eval_batch_size,
        eval_strategy="steps",
        eval_steps=eval_every or t.eval_every,
        logging_strategy="steps",
        logging_steps=t.logging_every,
        logging_nan_inf_filter=False,  # a NaN loss must be seen, not averaged away
        save_strategy="steps" if ckpt else "no",
        save_steps=t.checkpoint_every if ckpt else 500,
        save_total_limit=2 if ckpt else None,
        seed=t.seed,
        data_seed=t.seed,
        max_grad_norm=t.max_grad_norm,
        # bucketed: SweepTrainer._get_train_sampler; Trainer's own strategies for the other two
        train_sampling_strategy="group_by_length" if order == "length_grouped" else "random",
        length_column_name="length",
        report_to="none",
        disable_tqdm=True,
        use_cpu=t.device == "cpu" or (t.device == "auto" and not _has_accelerator()),
        dataloader_num_workers=0,
        dataloader_pin_memory=torch.cuda.is_available(),
        remove_unused_columns=True,
        torch_compile=bool(t.get("compile", False)),
        **_precision_args(t.precision),
    )


def latest_complete_checkpoints(out_dir: Path) -> list[Path]:
    """The checkpoints in `out_dir`, oldest first, that were written to the end. Trainer writes
    trainer_state.json last, so a checkpoint is whole when that file holds whole JSON: a process
    killed while saving leaves it missing, empty or cut off. Such a directory is removed, so the
    run resumes from the one before and saves it again."""
    ckpts = sorted(
        (p for p in out_dir.glob("checkpoint-*") if p.name.split("-")[1].isdigit()),
        key=lambda p: int(p.name.split("-")[1]),
    )
    complete = []
    for p in ckpts:
        if _whole_json(p / "trainer_state.json"):
            complete.append(p)
        else:
            log.warning("removing the incomplete checkpoint %s (its save was interrupted)", p)
            shutil.rmtree(p, ignore_errors=True)
    return complete


def _whole_json(path: Path) -> bool:
    try:
        json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):  # missing, unreadable, cut off or not UTF-8
        return False
    return True


def run_training(
    cfg: DictConfig,
    tracker=None,
    prune_hook: PruneHook | None = None,
    prepared: Prepared | None = None,
    run_dir: str | None = None,
    callbacks: list | None = None,
    save_to: str | None = None,
) -> RunResult:
    """Fine-tune once with `cfg`; returns the objective and the metrics it saw. `save_to`: a
    directory where a completed run leaves its model for serving (sweep/track/served.py)."""
    tracker = tracker or NullTracker()
    t = cfg.trainer
    started = time.perf_counter()
    if t.threads:
        torch.set_num_threads(int(t.threads))
    check_compile(cfg)
    settle_precision(cfg)
    hf_logging.set_verbosity_error()
    quiet_progress_bars()
    prep = prepared or prepare(cfg)
    out_dir = _output_dir(cfg, run_dir)
    every = prep.eval_every(t.eval_every)
    callback = RunCallback(tracker, objectives(t.objective), every, prune_hook)
    trainer, costs = _fit(cfg, prep, tracker, out_dir, [callback, *(callbacks or [])])
    steps = trainer.state.global_step

    status, values, final, best, measured = _outcome(t, callback, costs)
    objective = values[0]
    if t.save_model and status == "completed":
        save_dir = os.path.join(out_dir, "final_model")
        trainer.save_model(save_dir)
        prep.tokenizer.save_pretrained(save_dir)
        tracker.log_artifacts(save_dir, "model")
    if save_to and status == "completed":
        save_for_serving(trainer, prep, cfg, save_to)

    del trainer
    if not run_dir and t.checkpoint_every == 0:
        shutil.rmtree(out_dir, ignore_errors=True)
    return RunResult(
        status=status,
        objective=objective,
        final=final,
        best=best,
        steps=steps,
        total_steps=prep.total_steps,
        seconds=time.perf_counter() - started,
        history=callback.history,
        data_fingerprint=prep.raw.fingerprint,
        values=values,
        measured=measured,
    )


def _fit(
    cfg: DictConfig, prep: Prepared, tracker, out_dir: str, callbacks: list
) -> tuple[Trainer, dict[str, float]]:
    """Build the model and its Trainer, train, and measure what the model costs. Where the time
    and memory went and the cost metrics (perf.*: sweep/train/perf.py) are logged at the end, and
    by a failed run too (out of memory above all: how far it got, and with how much). Returns
    the trainer and the cost metrics (sweep/core/metrics.py COSTS)."""
    t = cfg.trainer
    # the run's own memory, from its model on: the data are prepared (and cached) once for all
    # the trials of a sweep, so counting them would make the first trial look bigger than others
    costs = Costs(cuda=_on_gpu(t))
    costs.start()
    perf = PerfCallback()
    try:
        model, opt, sched = _model_and_optimizers(cfg, prep)
        costs.count_params(model)
        trainer = _build_trainer(
            cfg, prep, model, (opt, sched), out_dir, [callbacks[0], perf, *callbacks[1:]]
        )
        resume = _resume_point(t, out_dir, tracker)
        with costs.training():
            trainer.train(resume_from_checkpoint=resume)
        costs.measure_latency(trainer, prep.eval)
    except Exception:
        tracker.log_metrics({**perf.summary(), **costs.metrics()}, step=perf.steps)
        raise
    measured = costs.metrics()
    tracker.log_metrics({**perf.summary(), **measured}, step=trainer.state.global_step)
    return trainer, measured


def save_for_serving(trainer, prep: Prepared, cfg: DictConfig, path: str) -> None:
    """The model, its tokenizer and serving.json (label names, max length) in `path`."""
    from sweep.track.served import SERVING_FILE

    shutil.rmtree(path, ignore_errors=True)
    trainer.save_model(path)
    prep.tokenizer.save_pretrained(path)
    serving = {"labels": list(prep.raw.label_names), "max_length": int(cfg.data.max_length)}
    Path(path, SERVING_FILE).write_text(json.dumps(serving), encoding="utf-8")


def _model_and_optimizers(cfg: DictConfig, prep: Prepared):
    """The model, its optimizer and its learning-rate schedule over the run's planned steps."""
    model = model_mod.build_model(cfg.model, len(prep.raw.label_names), seed=cfg.trainer.seed)
    opt = optim.build_optimizer(model, cfg.optimizer)
    sched = optim.build_scheduler(
        opt,
        cfg.scheduler,
        total_steps=prep.total_steps,
        warmup_steps=warmup_steps(cfg, prep.total_steps),
    )
    return model, opt, sched


def _output_dir(cfg: DictConfig, run_dir: str | None) -> str:
    """Checkpoints live in a stable directory keyed by the run's config, so a rerun resumes;
    without checkpoints Trainer still wants an output_dir: a throwaway one."""
    t = cfg.trainer
    if run_dir:
        return run_dir
    if t.checkpoint_every > 0:
        return os.path.join(t.checkpoint_dir, config_key(cfg))
    return tempfile.mkdtemp(prefix="sweep-run-")


def _build_trainer(
    cfg: DictConfig, prep: Prepared, model, optimizers, out_dir: str, callbacks: list
) -> SweepTrainer:
    trainer = SweepTrainer(
        model=model,
        args=training_arguments(
            cfg, prep.total_steps, out_dir, prep.eval_every(cfg.trainer.eval_every)
        ),
        train_dataset=prep.train,
        eval_dataset=prep.eval,
        # multiples of 8 suit GPU tensor cores; on a CPU they are only more padding
        data_collator=DataCollatorWithPadding(
            prep.tokenizer, pad_to_multiple_of=8 if torch.cuda.is_available() else None
        ),
        compute_metrics=partial(compute_metrics, positive=prep.positive_index),
        callbacks=callbacks,
        optimizers=optimizers,
        eval_subset=prep.eval_subset,
        batch_order=batch_order(cfg.trainer),
        prefix="eval" if prep.test is None else "test",
    )
    trainer.remove_callback(PrinterCallback)  # our callback logs one line per evaluation instead
    return trainer


def _resume_point(t, out_dir: str, tracker) -> str | None:
    """The latest complete checkpoint to resume from (tagged on the run), when checkpointing."""
    resume = None
    if t.checkpoint_every > 0 and Path(out_dir).is_dir():
        ckpts = latest_complete_checkpoints(Path(out_dir))
        resume = str(ckpts[-1]) if ckpts else None
        if resume:
            log.info("resuming from %s", resume)
            tracker.set_tags({"sweep.resumed_from": resume})
    return resume


def _outcome(t, callback: RunCallback, costs: dict[str, float]):
    """(status, objective values, final metrics, best metrics, measured) from the evaluations
    the run saw. Each evaluation objective is taken from one evaluation: the final one, or with
    trainer.objective_at=best the best by the first evaluation objective (so several objectives
    describe one model state); NaN when the run diverged. A cost objective (perf.*) is the cost
    the run logged (`costs`): measured once, at the end, so objective_at does not apply to it.
    `measured` is that evaluation with the costs: what constraints bound."""
    names = objectives(t.objective)
    history = callback.history
    final = dict(history[-1]) if history else {}
    final.pop("step", None)
    first = next((m for m in names if m in METRICS), None)
    best = _best(history, first) if first else dict(final)
    source = best if t.objective_at == "best" and first else final
    measured = {**source, **costs}
    values = [float(measured.get(m, float("nan"))) for m in names]
    status = "diverged" if callback.diverged else "pruned" if callback.pruned else "completed"
    if status == "diverged":
        values = [float("nan")] * len(names)
    return status, values, final, best, measured


def _best(history: list[dict[str, Any]], metric: str) -> dict[str, float]:
    """The evaluation with the best finite `metric` (by its direction), without its step."""
    better = pick(metric_direction(metric))
    finite_hist = [h for h in history if math.isfinite(h.get(metric, float("nan")))]
    best_row = better(finite_hist, key=lambda h: h[metric]) if finite_hist else {}
    return {k: v for k, v in best_row.items() if k != "step"}
