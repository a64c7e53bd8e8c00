"""The order in which training examples form batches (`trainer.batch_order`).

- `random`: a fresh random permutation each epoch (Trainer's default sampler).
- `length_grouped`: transformers' `LengthGroupedSampler`: a random permutation cut into windows
  of up to 50 batches, each window sorted longest first. Within a window the batches run from
  long to short, so the model sees a length trend that repeats every window.
- `bucketed`: the same windows sorted by length, cut into batches, and then *the batches*
  shuffled: batches hold similar lengths (little padding) but come in random order. The one
  batch shorter than `batch_size` (the tail) goes last, so every other batch stays aligned.

Which one is the default was decided on real text (BENCHMARKS.md, "Batch order"); the names and
the rule for the legacy `trainer.group_by_length` live in sweep/core/config.py (no torch there).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
from torch.utils.data import Sampler


def window_batches(n: int, batch_size: int) -> int:
    """Batches per sorting window: as transformers' LengthGroupedSampler, up to 50 and at most a
    quarter of the data, so even a small set is cut into several windows."""
    return max(1, min(n // (batch_size * 4), 50))


def bucketed_indices(
    lengths: Sequence[int], batch_size: int, generator: torch.Generator
) -> list[int]:
    n = len(lengths)
    window = window_batches(n, batch_size) * batch_size
    perm = torch.randperm(n, generator=generator).tolist()
    batches: list[list[int]] = []
    for start in range(0, n, window):
        chunk = sorted(perm[start : start + window], key=lambda i: lengths[i])
        batches += [chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size)]
    full = [b for b in batches if len(b) == batch_size]
    tail = [b for b in batches if len(b) < batch_size]
    order = torch.randperm(len(full), generator=generator).tolist()
    return [i for k in order for i in full[k]] + [i for b in tail for i in b]


class BucketedSampler(Sampler[int]):
    """`bucketed` order; seeded, and each epoch (each `iter`) draws a new order."""

    def __init__(self, lengths: Sequence[int], batch_size: int, seed: int):
        self.lengths = list(lengths)
        self.batch_size = batch_size
        self.generator = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return len(self.lengths)

    def __iter__(self) -> Iterator[int]:
        return iter(bucketed_indices(self.lengths, self.batch_size, self.generator))
