"""One run, one GPU, and the record of where it ran.

transformers' Trainer wraps the model in `nn.DataParallel` whenever its process sees more than
one GPU: every batch is split over all of them, so the effective batch is `n_gpu` times
`trainer.train_batch_size`, and the same config reproduced on a one-GPU machine trains another
run. A sweep pins each of its workers to one GPU (sweep/search/workers.py); a run that would see
several without that (a plain `python train.py` on a multi-GPU machine, a job of a parallel
launcher) keeps the first, with one note, before CUDA starts in its process.
"""

from __future__ import annotations

import logging
import os

from omegaconf import DictConfig

from sweep.core.devices import GPU_ENV, cuda_started, visible_gpus

log = logging.getLogger(__name__)


def keep_one_gpu(cfg: DictConfig) -> str | None:
    """Hide every GPU but the first from this process when it would see several. Returns the
    note it logged (None when there was nothing to do)."""
    if cfg.trainer.device == "cpu":
        return None
    gpus = visible_gpus()
    if len(gpus) <= 1:
        return None
    if cuda_started():  # too late to hide them: say so rather than split batches silently
        note = (
            f"this process sees {len(gpus)} GPUs and CUDA has started, so it cannot keep to "
            f"one: Trainer will split each batch over all {len(gpus)} (nn.DataParallel); set "
            f"{GPU_ENV} before starting to choose one"
        )
        log.warning(note)
        return note
    os.environ[GPU_ENV] = gpus[0]
    note = (
        f"this machine shows {len(gpus)} GPUs; a run uses one: GPU {gpus[0]} (set {GPU_ENV} to "
        "choose; a sweep places its trials with hydra.sweeper.gpus and .trials_per_gpu)"
    )
    log.info("note: %s", note)
    return note


def device_tags(cfg: DictConfig) -> dict[str, str]:
    """Where the run trains: `sweep.device`, on a GPU its id (as CUDA_VISIBLE_DEVICES names it),
    name and memory; and the effective batch (per device x devices, 1 device: always)."""
    import torch

    t = cfg.trainer
    tags = {"sweep.effective_batch_size": str(int(t.train_batch_size) * _devices_used(t))}
    if t.device == "cpu" or not torch.cuda.is_available():
        mps = getattr(torch.backends, "mps", None)  # where Trainer trains with device=auto
        on_mps = t.device == "auto" and bool(mps and mps.is_available())
        tags["sweep.device"] = "mps" if on_mps else "cpu"
        return tags
    index = torch.cuda.current_device()
    props = torch.cuda.get_device_properties(index)
    visible = os.environ.get(GPU_ENV)
    tags.update(
        {
            "sweep.device": "cuda",
            "sweep.gpu": visible.split(",")[index].strip() if visible else str(index),
            "sweep.gpu.name": str(props.name),
            "sweep.gpu.memory_mb": str(int(props.total_memory) // 2**20),
        }
    )
    return tags


def _devices_used(t: DictConfig) -> int:
    """How many devices Trainer splits a batch over: one, unless CUDA started with several."""
    import torch

    if t.device == "cpu" or not torch.cuda.is_available():
        return 1
    return max(1, torch.cuda.device_count())
