"""Training-step throughput and MFU of the default recipe on a GPU, against Trainer's defaults.

    .venv/bin/python benchmarks/gpu.py                          # on a CUDA machine
    .venv/bin/python benchmarks/gpu.py --compile                # also ours with torch.compile
    .venv/bin/python benchmarks/gpu.py --device cpu --steps 6 --warmup 2 --peak-tflops 1 \\
        --override model=tiny data.train_size=160               # a smoke run without a GPU

Two arms train the same model on the same tokenized reviews, batch and sequence length:

- `trainer`: transformers' `Trainer` as users call it: `from_pretrained`, `TrainingArguments`
  defaults (fp32), the tokenizer's dynamic padding, random batches.
- `ours`: `sweep.train.loop.run_training` with the default config: `trainer.precision=auto` (bf16
  autocast on a GPU that has it), fused AdamW, SDPA attention, bucketed batches
  (trainer.batch_order), padding to multiples of 8 on a GPU; `ours_compiled` adds
  `trainer.compile=true`.

Each arm runs `--steps` optimisation steps; the clock (with `torch.cuda.synchronize()` on a GPU)
starts after `--warmup` steps and stops at the last step, before the final evaluation. Model
FLOPs per batch of B sequences padded to length s, for L layers of width h and P non-embedding
parameters: 6·P·B·s (matmuls, forward and backward) + 12·L·h·B·s² (attention scores and
context). MFU = those FLOPs per second / the card's peak dense bf16 FLOP/s (a table of known
cards below, or `--peak-tflops`). Prints one JSON line per arm (appended to
benchmarks/results.jsonl unless `--no-record`) and a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

from transformers import TrainerCallback

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# peak dense bf16 tensor FLOP/s (without sparsity), from the vendors' data sheets
PEAK_BF16_TFLOPS = {
    "H200": 989.0,
    "H100 SXM": 989.0,
    "H100 NVL": 835.0,
    "H100 PCIe": 756.0,
    "H100": 756.0,
    "A100": 312.0,
    "L40S": 362.0,
    "L4": 121.0,
    "A10G": 70.0,
}


def peak_tflops(device_name: str) -> float | None:
    for key in sorted(PEAK_BF16_TFLOPS, key=len, reverse=True):  # "H100 SXM" before "H100"
        if key.lower() in device_name.lower():
            return PEAK_BF16_TFLOPS[key]
    return None


def model_shape(model) -> tuple[int, int, int]:
    """(non-embedding parameters, layers, hidden size) of a BERT-style model."""
    embedding_params = sum(
        p.numel() for name, p in model.named_parameters() if ".embeddings." in f".{name}"
    )
    total = sum(p.numel() for p in model.parameters())
    cfg = model.config
    return total - embedding_params, cfg.num_hidden_layers, cfg.hidden_size


def train_flops(params: int, layers: int, hidden: int, batch: int, seq: int) -> float:
    """Model FLOPs of one training step (forward + backward) on `batch` sequences of `seq`."""
    return 6.0 * params * batch * seq + 12.0 * layers * hidden * batch * seq * seq


class Clock(TrainerCallback):
    """Times the steps after `warmup` up to the last one and counts the sequences, tokens and
    model FLOPs of their batches (from the attention masks)."""

    def __init__(self, warmup: int, cuda: bool):
        self.warmup, self.cuda = warmup, cuda
        self.start = self.end = None
        self.samples = self.tokens = self.real_tokens = 0
        self.flops = 0.0
        self.shape = None

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        self.shape = model_shape(model)
        model.register_forward_pre_hook(self._count, with_kwargs=True)
        if self.warmup == 0:
            self._mark("start")

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.warmup:
            self._mark("start")
        if state.global_step == state.max_steps:
            self._mark("end")

    def _mark(self, which: str) -> None:
        if self.cuda:
            import torch

            torch.cuda.synchronize()
        setattr(self, which, time.perf_counter())

    def _count(self, module, args, kwargs) -> None:
        mask = kwargs.get("attention_mask")
        if not module.training or mask is None or self.start is None or self.end is not None:
            return
        b, s = mask.shape
        self.samples += b
        self.tokens += b * s
        self.real_tokens += int(mask.sum())
        self.flops += train_flops(*self.shape, b, s)

    def result(self, peak: float | None) -> dict:
        seconds = self.end - self.start
        achieved = self.flops / seconds
        return {
            "timed_seconds": round(seconds, 3),
            "samples": self.samples,
            "samples_per_s": round(self.samples / seconds, 1),
            "tokens_per_s": round(self.tokens / seconds, 1),
            "padded_share": round(1 - self.real_tokens / self.tokens, 4) if self.tokens else 0.0,
            "model_tflops_per_s": float(f"{achieved / 1e12:.4g}"),
            "mfu": float(f"{achieved / (peak * 1e12):.4g}") if peak else None,
        }


def compose_cfg(a: argparse.Namespace, extra: list[str]):
    from hydra import compose, initialize_config_dir

    from sweep.core.config import register_configs

    register_configs()
    over = ["tracking=none", f"trainer.max_steps={a.steps}", f"trainer.eval_every={a.steps}"]
    over += [f"trainer.device={a.device}", *a.override, *extra]
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        return compose("config", over)


def arm_ours(a: argparse.Namespace, compiled: bool, peak: float | None) -> dict:
    from sweep.train import loop

    cfg = compose_cfg(a, ["trainer.compile=true"] if compiled else [])
    clock = Clock(a.warmup, a.device == "cuda")
    loop.run_training(cfg, callbacks=[clock])
    return {"precision": cfg.trainer.precision, **clock.result(peak)}


def arm_trainer(a: argparse.Namespace, peak: float | None) -> dict:
    from transformers import AutoModelForSequenceClassification, Trainer, TrainingArguments

    from sweep.train import loop
    from sweep.train import model as model_mod

    cfg = compose_cfg(a, [])
    prep = loop.prepare(cfg)  # the very same tokenized reviews
    n_labels = len(prep.raw.label_names)
    if cfg.model.source == "random":  # the smoke run's tiny model
        model = model_mod.build_model(cfg.model, n_labels, seed=cfg.trainer.seed)
    else:
        where = model_mod.weights_location(cfg.model)
        model = AutoModelForSequenceClassification.from_pretrained(where, num_labels=n_labels)
    clock = Clock(a.warmup, a.device == "cuda")
    with tempfile.TemporaryDirectory() as out:
        args = TrainingArguments(
            output_dir=out,
            max_steps=a.steps,
            per_device_train_batch_size=cfg.trainer.train_batch_size,
            report_to="none",
            disable_tqdm=True,
            save_strategy="no",
            use_cpu=a.device == "cpu",
        )
        Trainer(
            model=model,
            args=args,
            train_dataset=prep.train,  # Trainer drops the unused `length` column
            processing_class=prep.tokenizer,
            callbacks=[clock],
        ).train()
    return {"precision": "fp32", **clock.result(peak)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--warmup", type=int, default=30, help="steps before the clock starts")
    ap.add_argument("--compile", action="store_true", help="also ours with trainer.compile=true")
    ap.add_argument("--peak-tflops", type=float, help="the device's peak dense bf16 TFLOP/s")
    ap.add_argument("--override", nargs="*", default=[], help="Hydra overrides for both arms")
    ap.add_argument("--no-record", action="store_true", help="do not append to results.jsonl")
    a = ap.parse_args()
    if not 0 <= a.warmup < a.steps:
        ap.error("--warmup must be in [0, --steps)")
    import torch

    if a.device == "cuda" and not torch.cuda.is_available():
        sys.exit("error: no CUDA GPU here; a smoke run on the CPU: --device cpu --peak-tflops N")
    name = torch.cuda.get_device_name(0) if a.device == "cuda" else platform.processor() or "cpu"
    peak = a.peak_tflops or (peak_tflops(name) if a.device == "cuda" else None)
    if peak is None:
        print(f"note: peak FLOP/s of {name!r} unknown: no MFU (pass --peak-tflops)")
    os.environ.setdefault("SWEEP_CACHE_DIR", tempfile.mkdtemp(prefix="gpu-bench-cache-"))
    arms = [("trainer", lambda: arm_trainer(a, peak)), ("ours", lambda: arm_ours(a, False, peak))]
    if a.compile:
        arms.append(("ours_compiled", lambda: arm_ours(a, True, peak)))
    results = []
    for arm, run in arms:
        line = {
            "benchmark": "gpu",
            "date": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "device": name,
            "peak_tflops": peak,
            "arm": arm,
            "steps": a.steps,
            "warmup": a.warmup,
            "overrides": a.override,
            **run(),
        }
        print(json.dumps(line), flush=True)
        if not a.no_record:
            with open(ROOT / "benchmarks" / "results.jsonl", "a") as f:
                f.write(json.dumps(line) + "\n")
        results.append(line)
    cols = ["arm", "precision", "samples_per_s", "tokens_per_s", "padded_share"]
    cols += ["model_tflops_per_s", "mfu"]
    print("\n| " + " | ".join(cols) + " |\n" + "|---" * len(cols) + "|")
    for r in results:
        print("| " + " | ".join(str(r[c]) for c in cols) + " |")
    base = results[0]["samples_per_s"]
    for r in results[1:]:
        print(f"\nsamples/s {r['arm']} / trainer: {r['samples_per_s'] / base:.2f}x")


if __name__ == "__main__":
    main()
