"""Optimizer parameter groups and learning-rate schedules.

Weight decay is never applied to biases and LayerNorm weights. Schedules are chosen by name through
transformers' `get_scheduler`; `polynomial` follows Keras `PolynomialDecay`: from the start LR to
`end_lr` with `power` over exactly `decay_steps` steps, then held at `end_lr`.
"""

from __future__ import annotations

import torch
from omegaconf import DictConfig
from torch.optim.lr_scheduler import LambdaLR
from transformers import get_scheduler

_NO_DECAY = ("bias", "LayerNorm.weight", "layer_norm.weight", "norm.weight")


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if name.endswith(_NO_DECAY) or p.ndim == 1 else decay).append(p)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def build_optimizer(model: torch.nn.Module, cfg: DictConfig) -> torch.optim.Optimizer:
    groups = param_groups(model, cfg.weight_decay)
    kwargs = {"lr": cfg.lr, "betas": tuple(cfg.betas), "eps": cfg.eps}
    if next(model.parameters()).device.type in ("cpu", "cuda"):
        # one kernel for the whole update: on CPU ~6x faster than the per-tensor loop for MiniLM
        # (17 ms vs 111 ms a step on 2 cores); what Trainer's default adamw_torch_fused does too
        kwargs["fused"] = True
    cls = torch.optim.AdamW if cfg.name == "adamw" else torch.optim.Adam
    return cls(groups, **kwargs)


def build_scheduler(
    optimizer: torch.optim.Optimizer,
    cfg: DictConfig,
    *,
    total_steps: int,
    warmup_steps: int,
) -> LambdaLR:
    if cfg.name == "polynomial":
        decay_steps = cfg.decay_steps or total_steps
        return get_scheduler(
            "polynomial",
            optimizer,
            num_warmup_steps=warmup_steps,
            num_training_steps=decay_steps,
            scheduler_specific_kwargs={"lr_end": cfg.end_lr, "power": cfg.power},
        )
    if cfg.name == "constant":
        return get_scheduler("constant", optimizer)
    return get_scheduler(
        cfg.name, optimizer, num_warmup_steps=warmup_steps, num_training_steps=total_steps
    )
