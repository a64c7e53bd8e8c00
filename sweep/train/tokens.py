"""The tokenization cache: each (data, tokenizer, max_length) is tokenized once, memoised in the
process and cached on disk as Arrow files that concurrent processes share through a file lock.

No padding here: the collator pads per batch.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from typing import Any

import datasets

from sweep.core.config import default_cache_dir
from sweep.train.data import RawData

log = logging.getLogger(__name__)

# Bump when the tokenized layout or the tokenization function changes: invalidates disk caches.
CACHE_VERSION = "1"

__all__ = [
    "CACHE_VERSION",
    "TOKENIZE_STATS",
    "clear_tokenize_memo",
    "tokenize",
    "tokenizer_fingerprint",
]


TOKENIZE_STATS: dict[str, int] = {"memo_hits": 0, "disk_hits": 0, "computed": 0}
_MEMO: dict[str, tuple[datasets.Dataset, datasets.Dataset]] = {}


def clear_tokenize_memo(reset_stats: bool = False) -> None:
    """Forget the in-process memo (disk caches stay); optionally zero :data:`TOKENIZE_STATS`."""
    _MEMO.clear()
    if reset_stats:
        for k in TOKENIZE_STATS:
            TOKENIZE_STATS[k] = 0


def tokenizer_fingerprint(tokenizer: Any) -> str:
    """Stable identity of a tokenizer: name basename + hash of its full definition."""
    h = hashlib.sha256()
    h.update(type(tokenizer).__name__.encode())
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        spec = json.loads(backend.to_str())
        spec.pop("truncation", None)  # runtime state that calls mutate, not identity
        spec.pop("padding", None)
        h.update(json.dumps(spec, sort_keys=True).encode())
    else:
        h.update(json.dumps(sorted(tokenizer.get_vocab().items())).encode())
        h.update(repr(getattr(tokenizer, "do_lower_case", None)).encode())
    for attr in ("model_input_names", "padding_side"):
        h.update(repr(getattr(tokenizer, attr, None)).encode())
    name = os.path.basename(str(getattr(tokenizer, "name_or_path", "") or "").rstrip("/\\"))
    return f"{name or 'tokenizer'}-{h.hexdigest()[:16]}"


def _tokenize_key(raw: RawData, tokenizer: Any, max_length: int) -> str:
    ident = [CACHE_VERSION, raw.fingerprint, tokenizer_fingerprint(tokenizer), int(max_length)]
    return hashlib.sha256(json.dumps(ident).encode()).hexdigest()[:24]


def tokenize(
    raw: RawData, tokenizer: Any, max_length: int, cache_dir: str | None = None
) -> tuple[datasets.Dataset, datasets.Dataset]:
    """Tokenized (train, validation): columns ``input_ids``, ``attention_mask``
    (+ ``token_type_ids`` if the tokenizer makes them), ``labels`` and ``length`` (token count).

    Truncated to ``max_length``, not padded (dynamic padding belongs to the collator). Computed once
    per (raw.fingerprint, tokenizer, max_length, CACHE_VERSION): memoised in-process and cached as
    ``<cache_dir>/<key>-{train,validation}.arrow`` (None: :func:`default_cache_dir`).
    A file lock per key makes concurrent processes compute once; datasets writes each file to a
    temporary name and renames it. :data:`TOKENIZE_STATS` counts memo hits, disk hits, computes.
    ``max_length`` is ``data.max_length``, whose bound is the config's.
    """
    key = _tokenize_key(raw, tokenizer, max_length)
    hit = _MEMO.get(key)
    if hit is not None:
        TOKENIZE_STATS["memo_hits"] += 1
        return hit

    from filelock import FileLock

    cache_dir = cache_dir or default_cache_dir()
    os.makedirs(cache_dir, exist_ok=True)
    paths = {s: os.path.join(cache_dir, f"{key}-{s}.arrow") for s in ("train", "validation")}

    def encode(batch: dict[str, list]) -> dict[str, list]:
        enc = tokenizer(batch["text"], truncation=True, max_length=max_length, padding=False)
        out = {
            k: v for k, v in enc.items() if k in ("input_ids", "attention_mask", "token_type_ids")
        }
        out["labels"] = batch["label"]
        out["length"] = [len(ids) for ids in enc["input_ids"]]
        return out

    with FileLock(os.path.join(cache_dir, f"{key}.lock"), timeout=3600):
        if all(os.path.exists(p) for p in paths.values()):
            result = tuple(datasets.Dataset.from_file(paths[s]) for s in ("train", "validation"))
            TOKENIZE_STATS["disk_hits"] += 1
            log.info("data: tokenized splits loaded from cache %s (%s)", cache_dir, key)
        else:
            result = tuple(
                getattr(raw, "train" if s == "train" else "validation").map(
                    encode,
                    batched=True,
                    batch_size=1000,
                    cache_file_name=paths[s],
                    load_from_cache_file=True,
                    new_fingerprint=f"{key}-{s}",
                    remove_columns=["text", "label"],
                    desc=f"Tokenizing {s}",
                )
                for s in ("train", "validation")
            )
            TOKENIZE_STATS["computed"] += 1
            log.info("data: tokenized %s into %s (%s)", raw.source, cache_dir, key)
    _MEMO[key] = result  # type: ignore[assignment]
    return result  # type: ignore[return-value]
