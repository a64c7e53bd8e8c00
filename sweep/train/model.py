"""Model and tokenizer from the model config.

Pretrained weights are read from disk once per process and kept in memory; each run gets a deep
copy whose classification head is re-initialised from the run's seed. A sweep's trial and a later
`reproduce` of it therefore start from identical weights whichever process they run in.
`model.freeze_layers` freezes the embeddings and the bottom layers of that copy (`freeze`).
"""

from __future__ import annotations

import copy
import logging

import torch
from omegaconf import DictConfig
from transformers import (
    AutoModelForSequenceClassification,
    AutoTokenizer,
    BertConfig,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from sweep.core.model_files import ModelError, package_dir

log = logging.getLogger(__name__)

_PRETRAINED: dict[tuple[str, int, str], PreTrainedModel] = {}
_TOKENIZERS: dict[str, PreTrainedTokenizerBase] = {}


def weights_location(cfg: DictConfig) -> str:
    """Where from_pretrained reads the weights: a hub id or a local directory."""
    if cfg.source == "package":
        return str(package_dir(cfg.package))
    if cfg.source == "hub":
        return str(cfg.pretrained)
    raise ModelError(f"model {cfg.name!r} (source={cfg.source}) has no pretrained weights")


def tokenizer_location(cfg: DictConfig) -> str:
    if cfg.tokenizer:
        return str(cfg.tokenizer)
    if cfg.source == "random":
        if not cfg.package:
            raise ModelError("model.source=random needs model.tokenizer or model.package")
        return str(package_dir(cfg.package))
    return weights_location(cfg)


def load_tokenizer(cfg: DictConfig) -> PreTrainedTokenizerBase:
    where = tokenizer_location(cfg)
    if where not in _TOKENIZERS:
        try:
            _TOKENIZERS[where] = AutoTokenizer.from_pretrained(where)
        except OSError as e:
            raise ModelError(_hub_message("tokenizer", where, e)) from None
    return _TOKENIZERS[where]


def _hub_message(what: str, where: str, err: Exception) -> str:
    first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return (
        f"cannot load the {what} {where!r}: the Hugging Face hub is unreachable and it is not "
        f"in the local cache ({first[:160]})"
    )


def _pretrained(where: str, num_labels: int, attn: str) -> PreTrainedModel:
    key = (where, num_labels, attn)
    if key not in _PRETRAINED:
        try:
            model = AutoModelForSequenceClassification.from_pretrained(
                where, num_labels=num_labels, attn_implementation=attn
            )
        except OSError as e:
            raise ModelError(_hub_message("model", where, e)) from None
        _PRETRAINED[key] = model.eval()
    return _PRETRAINED[key]


def _reset_head(model: PreTrainedModel, seed: int) -> None:
    """Re-initialise the classification head from `seed` (the pretrained body is untouched)."""
    head = getattr(model, "classifier", None) or getattr(model, "score", None)
    if head is None:
        return
    std = getattr(model.config, "initializer_range", 0.02)
    gen = torch.Generator().manual_seed(seed)
    for module in head.modules():
        if isinstance(module, torch.nn.Linear):
            with torch.no_grad():
                module.weight.copy_(torch.randn(module.weight.shape, generator=gen) * std)
                if module.bias is not None:
                    module.bias.zero_()


def build_model(cfg: DictConfig, num_labels: int, seed: int) -> PreTrainedModel:
    """A fresh model for one run: random tiny BERT, or a copy of the cached pretrained one; with
    `model.freeze_layers` > 0 its embeddings and bottom layers frozen (`freeze`)."""
    if cfg.source == "random":
        model = _random_model(cfg, num_labels, seed)
    else:
        model = copy.deepcopy(
            _pretrained(weights_location(cfg), num_labels, cfg.attn_implementation)
        )
        _reset_head(model, seed)
        model.train()
    # a config logged before the key existed has none: nothing frozen, as then
    freeze(model, int(cfg.get("freeze_layers") or 0))
    return model


def _random_model(cfg: DictConfig, num_labels: int, seed: int) -> PreTrainedModel:
    tok = load_tokenizer(cfg)
    config = BertConfig(
        vocab_size=len(tok),
        hidden_size=cfg.hidden_size,
        num_hidden_layers=cfg.num_layers,
        num_attention_heads=cfg.num_heads,
        intermediate_size=cfg.intermediate_size,
        hidden_dropout_prob=cfg.dropout,
        attention_probs_dropout_prob=cfg.dropout,
        max_position_embeddings=512,
        num_labels=num_labels,
        pad_token_id=tok.pad_token_id,
    )
    torch.manual_seed(seed)
    return AutoModelForSequenceClassification.from_config(
        config, attn_implementation=cfg.attn_implementation
    )


# where the stack of transformer layers sits under a base model (`model.base_model`): BERT,
# RoBERTa, ELECTRA, DeBERTa (encoder.layer); DistilBERT (transformer.layer); others (layers)
_LAYER_PATHS = ("encoder.layer", "transformer.layer", "encoder.layers", "layers")


def encoder_layers(model: torch.nn.Module) -> torch.nn.ModuleList:
    """The transformer layers of `model`'s encoder, bottom first; a ModelError naming the
    architecture where they are not at any of `_LAYER_PATHS`."""
    base = getattr(model, "base_model", model)
    for path in _LAYER_PATHS:
        node = base
        for part in path.split("."):
            node = getattr(node, part, None)
        if isinstance(node, torch.nn.ModuleList) and len(node):
            return node
    raise ModelError(
        f"model.freeze_layers: cannot find the transformer layers of {type(model).__name__} "
        f"(looked for {', '.join(_LAYER_PATHS)} under its base model); set model.freeze_layers=0"
    )


def freeze(model: torch.nn.Module, n: int) -> None:
    """`model.freeze_layers`: with n > 0 the embeddings and the bottom `n` transformer layers get
    no gradient (the optimizer skips them, perf.params does not count them, and the backward pass
    stops above them); the layers above, the pooler and the classification head train. n=0:
    nothing frozen. More than the model's layers: a ModelError."""
    if n <= 0:
        return
    layers = encoder_layers(model)
    if n > len(layers):
        raise ModelError(
            f"model.freeze_layers={n} is more than the {len(layers)} transformer layers of "
            f"{type(model).__name__}"
        )
    base = getattr(model, "base_model", model)
    embeddings = getattr(base, "embeddings", None)
    if embeddings is None:
        embeddings = base.get_input_embeddings()
    for module in (embeddings, *layers[:n]):
        module.requires_grad_(False)


def clear_cache() -> None:
    _PRETRAINED.clear()
    _TOKENIZERS.clear()
