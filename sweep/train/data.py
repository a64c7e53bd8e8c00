"""Data sources: load raw text/label splits (generated, local files or the hub).

Three sources, chosen by ``data.name``:

* ``synthetic``: generated movie-review sentiment sentences (:mod:`sweep.train.synthetic`),
  deterministic from ``data.seed``. ``label_noise`` flips TRAIN labels only; the validation split
  stays clean so that accuracy measures the model, not the noise.
* ``files``: local CSV / TSV / JSON lines (``.jsonl`` or ``.json``) / Parquet files with
  configurable text and label columns; without ``validation_file`` a seeded
  ``validation_fraction`` of the training file is held out.
* ``imdb``: ``datasets.load_dataset(hub_id)`` (default ``stanfordnlp/imdb``). IMDB has no
  validation split: a seeded ``validation_fraction`` of its train split is held out as validation,
  and its ``test`` split (``test_split``) is the test split. (Before 2026-12 the ``test`` split
  served as validation; a logged config with ``validation_split=test`` still loads that way.)

A test split (:func:`load_test`) is loaded apart from train and validation, only once a sweep has
chosen its winner: ``data.test_size`` generated reviews, ``data.test_file``, or the hub's
``data.test_split``. It has its own digest; the train/validation fingerprint does not include it.

``data.train_on_validation=true`` (what a sweep's refit runs, sweep/search/refit.py) appends the
validation split, as it would be held out (after ``max_eval_samples``), to the train split and
leaves no validation split; the run then evaluates on the test split (sweep/train/loop.py).

Every split ends up as a ``datasets.Dataset`` with exactly the columns ``text`` (str) and ``label``
(int in 0..K-1); :mod:`sweep.train.tokens` tokenizes and caches them.

The config values are checked in one place, :func:`sweep.core.config.data_config` (the rules of
``validate``), which :func:`load_raw` applies to what it is given; this module checks only what
the data themselves hold. Every user-facing data problem raises :class:`DataError` with a one-line
message naming the file, column or key.
"""

from __future__ import annotations

import codecs
import hashlib
import json
import logging
import math
import os
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import datasets
from omegaconf import DictConfig, OmegaConf

from sweep.core.config import data_config
from sweep.core.errors import UserError
from sweep.train.synthetic import generate_reviews

log = logging.getLogger(__name__)

__all__ = ["DataError", "RawData", "TestSplit", "load_raw", "load_test", "positive_index"]


class DataError(UserError, ValueError):
    """A user-facing data problem. The message is one line and names the file, column or key."""

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))


@dataclass
class RawData:
    train: datasets.Dataset  # columns exactly: "text" (str), "label" (int)
    validation: datasets.Dataset  # same columns
    label_names: list[str]  # index -> name
    fingerprint: str  # sha256 hex (16 chars) of both splits' texts+labels and label_names
    source: str  # one-line human description
    # per split: its own digest (the same hash over that split alone), and where it came from
    # (MLflow dataset source type and source), for `mlflow.log_input`
    digests: dict[str, str] = field(default_factory=dict)
    origin: dict[str, tuple[str, str]] = field(default_factory=dict)


@dataclass
class TestSplit:
    """The held-out test split: evaluated once, on a sweep's winner only."""

    data: datasets.Dataset  # columns "text", "label" (ids of the train split's label_names)
    digest: str
    origin: tuple[str, str]  # (MLflow dataset source type, source)
    source: str  # one line


# --------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------

_FEATURES = datasets.Features({"text": datasets.Value("string"), "label": datasets.Value("int64")})
_KNOWN_PAIRS = [("neg", "pos"), ("negative", "positive"), ("0", "1"), ("false", "true")]
_EXTENSIONS = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".jsonl": "json",
    ".json": "json",
    ".parquet": "parquet",
}


def _make_dataset(texts: Sequence[str], labels: Sequence[int]) -> datasets.Dataset:
    return datasets.Dataset.from_dict(
        {"text": list(texts), "label": [int(y) for y in labels]}, features=_FEATURES
    )


def _fingerprint(splits: Sequence[tuple[Sequence[str], Sequence[int]]], names: list[str]) -> str:
    h = hashlib.sha256()
    h.update(json.dumps(["sweep-rawdata-v1", names]).encode())
    for texts, labels in splits:
        h.update(f"|split:{len(texts)}|".encode())
        for t, y in zip(texts, labels, strict=True):
            b = t.encode("utf-8")
            h.update(f"{len(b)}:{int(y)}:".encode())
            h.update(b)
    return h.hexdigest()[:16]


def _subset_indices(n: int, limit: int | None, seed: int, split: str) -> list[int] | None:
    """Indices of a seeded shuffle of range(n), first ``limit``; None when no subsetting."""
    if limit is None or limit >= n:
        return None
    idx = list(range(n))
    random.Random(f"sweep-subset/{int(seed)}/{split}").shuffle(idx)
    return idx[:limit]


def _origin(kind: str, **where: Any) -> tuple[str, str]:
    """(source type, source) as MLflow's dataset entities hold them: `local` with a file's uri,
    `hugging_face` with the hub id and split, or `code` for generated data."""
    return kind, json.dumps(where, sort_keys=True)


def _finish(
    train: tuple[list[str], list[int]],
    val: tuple[list[str], list[int]],
    names: list[str],
    d: DictConfig,
    source: str,
    origin: dict[str, tuple[str, str]] | None = None,
) -> RawData:
    out = []
    notes = []
    plan = ((train, "train", "max_train_samples"), (val, "validation", "max_eval_samples"))
    for (texts, labels), split, key in plan:
        idx = _subset_indices(len(texts), d[key], d.seed, split)
        if idx is not None:
            texts, labels = [texts[i] for i in idx], [labels[i] for i in idx]
            notes.append(f"{key}={len(idx)}")
        out.append((texts, labels))
    origin = dict(origin or {})
    if d.train_on_validation:
        out, origin = _train_on_validation(out, origin)
        notes.append("train_on_validation")
    if notes:
        source = f"{source[:-1]}, {', '.join(notes)})"
    fp = _fingerprint(out, names)
    digests = {"train": _fingerprint(out[:1], names), "validation": _fingerprint(out[1:], names)}
    return RawData(
        train=_make_dataset(*out[0]),
        validation=_make_dataset(*out[1]),
        label_names=list(names),
        fingerprint=fp,
        source=source,
        digests=digests if out[1][0] else {"train": digests["train"]},
        origin=origin,
    )


def _train_on_validation(
    out: list[tuple[list[str], list[int]]], origin: dict[str, tuple[str, str]]
) -> tuple[list[tuple[list[str], list[int]]], dict[str, tuple[str, str]]]:
    """``data.train_on_validation``: the validation split, as the run would have held it out
    (after ``max_eval_samples``), appended to the train split; no validation split is left. The
    train split's origin names both sources. The labels were mapped before, from the train split
    alone (a validation label outside it is refused), so the label ids do not change."""
    (t_texts, t_labels), (v_texts, v_labels) = out
    merged = [(t_texts + v_texts, t_labels + v_labels), ([], [])]
    kind, train_source = origin.get("train", ("code", "{}"))
    _, val_source = origin.get("validation", ("code", "{}"))
    both = {**json.loads(train_source), "plus_validation": json.loads(val_source)}
    return merged, {"train": (kind, json.dumps(both, sort_keys=True))}


def load_raw(cfg: Any) -> RawData:
    """Load the train and validation splits the ``data`` config describes (see module docstring).

    ``cfg`` is the ``data`` group, or a part of it: :func:`~sweep.core.config.data_config` fills
    in the schema's defaults and raises ``ConfigError`` for a value the config refuses.
    ``max_train_samples`` / ``max_eval_samples`` keep a seeded (``data.seed``) random subset: the
    split is shuffled, then the first N are taken (IMDB is sorted by label, so order matters).
    """
    d = data_config(cfg)
    # the trials of a sweep process share one load (files are keyed by their content)
    key = _raw_key(d)
    if key in _RAW_MEMO:
        return _RAW_MEMO[key]
    if d.name == "synthetic":
        raw = _load_synthetic(d)
    elif d.name == "files":
        raw = _load_files(d)
    else:
        raw = _load_hub(d)
    _RAW_MEMO.clear()  # one data set at a time
    _RAW_MEMO[key] = raw
    return raw


_RAW_MEMO: dict[str, RawData] = {}


def _raw_key(d: DictConfig) -> str:
    plain: dict[str, Any] = OmegaConf.to_container(d, resolve=True)  # type: ignore[assignment]
    for k in ("train_file", "validation_file"):
        path = plain.get(k)
        if path and os.path.isfile(str(path)):
            digest = hashlib.sha256()
            with open(str(path), "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    digest.update(block)
            plain[k + "_sha256"] = digest.hexdigest()
    return json.dumps(plain, sort_keys=True, default=str)


def _load_synthetic(d: DictConfig) -> RawData:
    # Noise on train only; validation from its own stream, clean.
    train = generate_reviews(d.train_size, d.seed, d.label_noise, stream="train")
    val = generate_reviews(d.eval_size, d.seed, 0.0, stream="eval")
    source = f"synthetic(n={d.train_size}+{d.eval_size}, seed={d.seed}, noise={d.label_noise:g})"
    origin = {
        split: _origin("code", generated=f"sweep.train.synthetic seed={d.seed} stream={stream}")
        for split, stream in (("train", "train"), ("validation", "eval"))
    }
    return _finish(train, val, SYNTHETIC_LABELS, d, source, origin)


SYNTHETIC_LABELS = ["negative", "positive"]


# ---- the test split -------------------------------------------------------------------------


def load_test(cfg: Any, label_names: Sequence[str]) -> TestSplit | None:
    """The test split the ``data`` config describes, labelled with the train split's
    ``label_names``; None when it has none (``data=files`` without ``test_file``,
    ``data.test_size=0``, a hub dataset without ``test_split``)."""
    d = data_config(cfg)
    names = [str(n) for n in label_names]
    if d.name == "synthetic":
        if not d.test_size:
            return None
        texts, labels = generate_reviews(d.test_size, d.seed, 0.0, stream="test")
        origin = _origin("code", generated=f"sweep.train.synthetic seed={d.seed} stream=test")
        source = f"synthetic(n={d.test_size}, seed={d.seed}, stream=test)"
    elif d.name == "files":
        if not d.test_file:
            return None
        path = os.path.abspath(os.path.expanduser(d.test_file))
        texts, keys = _read_split(path, "test_file", d.text_column, d.label_column)
        labels = _known_labels(keys, names, os.path.basename(path), d.label_column)
        origin = _origin("local", uri=path)
        source = f"files(test={os.path.basename(path)})"
    else:
        split = d.test_split
        if not split or split == d.validation_split:
            return None
        dd = _open_hub_dataset(d.hub_id)
        if split not in dd:
            raise DataError(
                f"data.test_split: dataset {d.hub_id!r} has no split {split!r}; "
                f"splits found: {list(dd)}"
            )
        texts = list(dd[split][d.text_column])
        raw_labels = dd[split][d.label_column]
        feat = dd[split].features[d.label_column]
        if isinstance(feat, datasets.ClassLabel):
            labels = [int(y) for y in raw_labels]
        else:
            keys = [_label_key(v) for v in raw_labels]
            labels = _known_labels(keys, names, f"{d.hub_id}[{split}]", d.label_column)
        origin = _origin("hugging_face", path=d.hub_id, split=split)
        source = f"hub({d.hub_id}, test={split})"
    return TestSplit(
        data=_make_dataset(texts, labels),
        digest=_fingerprint([(texts, labels)], names),
        origin=origin,
        source=source,
    )


def _known_labels(keys: list[str], names: list[str], where: str, column: str) -> list[int]:
    ids = {_label_key(n): i for i, n in enumerate(names)}
    unknown = sorted(set(keys) - set(ids))
    if unknown:
        raise DataError(
            f"{where}: test labels {unknown} in column {column!r} do not occur in the train "
            f"labels {names}"
        )
    return [ids[k] for k in keys]


# ---- files ----------------------------------------------------------------------------------


def _check_file(path: str, key: str) -> str:
    """Existence, extension, emptiness and UTF-8 checks, before any parsing."""
    if not os.path.exists(path):
        raise DataError(f"data.{key}: file not found: {path}")
    if not os.path.isfile(path):
        raise DataError(f"data.{key}: not a regular file: {path}")
    ext = os.path.splitext(path)[1].lower()
    if ext not in _EXTENSIONS:
        raise DataError(
            f"data.{key}: unsupported file extension {ext or '(none)'!r} for {path}; "
            f"use one of {', '.join(sorted(_EXTENSIONS))}"
        )
    if os.path.getsize(path) == 0:
        raise DataError(f"data.{key}: file is empty: {path}")
    fmt = _EXTENSIONS[ext]
    if fmt != "parquet":
        decoder = codecs.getincrementaldecoder("utf-8")()
        offset = 0
        with open(path, "rb") as fh:
            while True:
                chunk = fh.read(1 << 20)
                try:
                    decoder.decode(chunk, final=not chunk)
                except UnicodeDecodeError as e:
                    raise DataError(
                        f"data.{key}: {path} is not valid UTF-8 (byte 0x{chunk[e.start]:02x} at "
                        f"offset {offset + e.start}); re-encode the file as UTF-8"
                    ) from None
                if not chunk:
                    break
                offset += len(chunk)
    return fmt


def _read_table(path: str, fmt: str, key: str):
    import pandas as pd

    try:
        if fmt in ("csv", "tsv"):
            return pd.read_csv(
                path,
                sep="\t" if fmt == "tsv" else ",",
                dtype=str,
                keep_default_na=False,
                encoding="utf-8-sig",
            )
        if fmt == "json":
            with open(path, encoding="utf-8-sig") as fh:
                head = fh.read(4096).lstrip()
            if head.startswith("["):  # tolerate a JSON array of records in a .json file
                return pd.read_json(path, orient="records", dtype=False, encoding="utf-8-sig")
            return pd.read_json(path, lines=True, dtype=False, encoding="utf-8-sig")
        return pd.read_parquet(path)
    except pd.errors.EmptyDataError:
        raise DataError(f"data.{key}: {path} has no rows") from None
    except Exception as e:  # parser errors of any of the formats
        msg = " ".join(str(e).split())[:200]
        raise DataError(
            f"data.{key}: cannot parse {path} as {fmt}: {type(e).__name__}: {msg}"
        ) from None


def _is_missing(v: Any) -> bool:
    if v is None:
        return True
    if isinstance(v, float) and math.isnan(v):
        return True
    try:
        import pandas as pd

        if v is pd.NA or v is pd.NaT:
            return True
    except ImportError:  # pragma: no cover
        pass
    return isinstance(v, str) and not v.strip()


def _label_key(v: Any) -> str:
    """Canonical, case-insensitive string form of a raw label value."""
    if isinstance(v, bool) or type(v).__name__ == "bool_":
        return "true" if v else "false"
    if isinstance(v, int) or type(v).__name__.startswith("int"):
        return str(int(v))
    if isinstance(v, float) or type(v).__name__.startswith("float"):
        return str(int(v)) if float(v).is_integer() else repr(float(v))
    return str(v).strip().lower()


def _as_int(s: str) -> int | None:
    try:
        return int(s)
    except ValueError:
        return None


def _label_mapping(keys: set[str]) -> list[str]:
    """label_names (index -> canonical key) for a set of canonical label keys."""
    for neg, pos in _KNOWN_PAIRS:
        if keys == {neg, pos}:
            return [neg, pos]
    ints = [_as_int(k) for k in keys]
    if all(i is not None for i in ints):
        return [str(i) for i in sorted(ints)]  # numeric order: {1, 2} -> 0, 1; {-1, 1} -> 0, 1
    return sorted(keys)


def positive_index(label_names: Sequence[str], positive_label: Any = None) -> int | None:
    """The index into ``label_names`` of the class whose F1 is ``eval_f1``, from
    ``data.positive_label``; None for more than two classes (``eval_f1`` is then the macro
    average, which has no positive class). Unset, it is index 1: the second label of the mapping
    (``pos`` of neg/pos, ``1`` of 0/1, the later one in sorted order otherwise). Matched like the
    labels themselves (:func:`_label_key`: a case-insensitive string, ints as strings). Raises
    :class:`DataError` for a label that does not occur, or for one set with more than two
    classes."""
    names = [str(n) for n in label_names]
    if len(names) > 2:
        if positive_label is not None:
            raise DataError(
                f"data.positive_label={positive_label!r}: the data have {len(names)} classes "
                f"{names}, and eval_f1 is their macro average, which has no positive class; "
                "remove data.positive_label (or set it to null)"
            )
        return None
    if positive_label is None:
        return 1
    want = _label_key(positive_label)
    for i, name in enumerate(names):
        if _label_key(name) == want:
            return i
    raise DataError(
        f"data.positive_label={positive_label!r} is not a label of the data; labels found: {names}"
    )


def _read_split(path: str, key: str, text_col: str, label_col: str) -> tuple[list[str], list[str]]:
    fmt = _check_file(path, key)
    df = _read_table(path, fmt, key)
    base = os.path.basename(path)
    if len(df) == 0:
        raise DataError(f"data.{key}: {path} has no rows")
    cols = [str(c) for c in df.columns]
    if text_col not in cols:
        raise DataError(
            f"data.text_column: column {text_col!r} not found in {base}; columns found: {cols}"
        )
    if label_col not in cols:
        raise DataError(
            f"data.label_column: column {label_col!r} not found in {base}; columns found: {cols}"
        )
    raw_labels = df[label_col].tolist()
    missing = sum(_is_missing(v) for v in raw_labels)
    if missing:
        raise DataError(
            f"{base}: {missing} of {len(df)} rows have a missing or empty label "
            f"in column {label_col!r}"
        )
    raw_texts = df[text_col].tolist()
    empty = sum(_is_missing(v) for v in raw_texts)
    if empty:
        raise DataError(
            f"{base}: {empty} of {len(df)} rows have missing or empty text in column {text_col!r}"
        )
    return [str(t) for t in raw_texts], [_label_key(v) for v in raw_labels]


def _load_files(d: DictConfig) -> RawData:
    text_col, label_col, frac, seed = d.text_column, d.label_column, d.validation_fraction, d.seed
    train_path = os.path.abspath(os.path.expanduser(d.train_file))
    val_file = d.validation_file
    val_path = os.path.abspath(os.path.expanduser(val_file)) if val_file else None
    # cheap checks on both files before parsing either
    _check_file(train_path, "train_file")
    if val_path is not None:
        _check_file(val_path, "validation_file")

    t_texts, t_keys = _read_split(train_path, "train_file", text_col, label_col)
    tbase = os.path.basename(train_path)
    if val_path is not None:
        v_texts, v_keys = _read_split(val_path, "validation_file", text_col, label_col)
        source = f"files({tbase}, validation={os.path.basename(val_path)})"
    else:
        n = len(t_texts)
        n_val = min(n - 1, max(1, round(n * frac)))
        if n < 2:
            raise DataError(f"{tbase}: {n} row is too few to hold out a validation split")
        idx = list(range(n))
        random.Random(f"sweep-split/{seed}").shuffle(idx)
        v_idx, tr_idx = sorted(idx[:n_val]), sorted(idx[n_val:])
        v_texts, v_keys = [t_texts[i] for i in v_idx], [t_keys[i] for i in v_idx]
        all_keys = set(t_keys)  # one file: the label set is the file's
        t_texts, t_keys = [t_texts[i] for i in tr_idx], [t_keys[i] for i in tr_idx]
        source = f"files({tbase}, validation_fraction={frac:g}, seed={seed})"

    train_keys = set(t_keys) if val_path is not None else all_keys
    if len(set(t_keys)) < 2:
        raise DataError(
            f"{tbase}: the train split has only one class ({sorted(set(t_keys))}) "
            f"in column {label_col!r}; need at least two"
        )
    unknown = sorted(set(v_keys) - train_keys)
    if unknown:
        vname = os.path.basename(val_path) if val_path else tbase
        raise DataError(
            f"{vname}: validation labels {unknown} in column {label_col!r} do not occur in the "
            f"train labels {sorted(train_keys)}"
        )
    names = _label_mapping(train_keys)
    ids = {k: i for i, k in enumerate(names)}
    log.info(
        "data: %d labels found in column %r of %s; mapping %s",
        len(names),
        label_col,
        tbase,
        ", ".join(f"{k!r}->{i}" for k, i in ids.items()),
    )
    train = (t_texts, [ids[k] for k in t_keys])
    val = (v_texts, [ids[k] for k in v_keys])
    origin = {"train": _origin("local", uri=train_path)}
    if val_path is not None:
        origin["validation"] = _origin("local", uri=val_path)
    else:
        origin["validation"] = _origin(
            "local", uri=train_path, held_out=f"validation_fraction={frac:g} seed={seed}"
        )
    return _finish(train, val, names, d, source, origin)


# ---- hub ------------------------------------------------------------------------------------


def _open_hub_dataset(hub_id: str) -> Any:
    """``datasets.load_dataset(hub_id)``; any failure becomes a :class:`DataError` with a hint."""
    try:
        return datasets.load_dataset(hub_id)
    except Exception as e:
        msg = " ".join(str(e).split())[:300]
        offline = os.environ.get("HF_DATASETS_OFFLINE") or os.environ.get("HF_HUB_OFFLINE")
        hint = (
            "offline mode is on and the local Hugging Face cache is cold"
            if offline
            else "the Hugging Face Hub is unreachable or the local cache is cold"
        )
        raise DataError(
            f"data.hub_id: cannot load dataset {hub_id!r}: {hint} "
            f"({type(e).__name__}: {msg}); download it once with network access "
            f"(HF_DATASETS_CACHE), or use data=files / data=synthetic"
        ) from None


def _check_hub_splits(
    dd: Any, hub_id: str, val_split: str | None, text_col: str, label_col: str
) -> None:
    """The splits exist and carry the text and label columns; train is checked first."""
    for split in ("train", val_split) if val_split else ("train",):
        if split not in dd:
            raise DataError(
                f"data.validation_split: dataset {hub_id!r} has no split {split!r}; "
                f"splits found: {list(dd)}"
            )
        cols = dd[split].column_names
        for key, col in (("text_column", text_col), ("label_column", label_col)):
            if col not in cols:
                raise DataError(
                    f"data.{key}: column {col!r} not found in {hub_id}[{split}]; "
                    f"columns found: {cols}"
                )


def _hub_labels(
    feat: Any, train_labels: Any, val_labels: Any, hub_id: str, val_split: str
) -> tuple[list[str], Any, Any]:
    """The label names and both splits' labels as ids.

    A ``ClassLabel`` column already holds ids and names them; any other column is mapped from
    the train split's label set, and a validation label outside it is an error.
    """
    if isinstance(feat, datasets.ClassLabel):
        return list(feat.names), train_labels, val_labels
    keys = {_label_key(v) for v in train_labels}
    names = _label_mapping(keys)
    ids = {k: i for i, k in enumerate(names)}
    bad = sorted({_label_key(v) for v in val_labels} - set(ids))
    if bad:
        raise DataError(f"{hub_id}[{val_split}]: labels {bad} do not occur in train")
    train_ids = [ids[_label_key(v)] for v in train_labels]
    val_ids = [ids[_label_key(v)] for v in val_labels]
    return names, train_ids, val_ids


def _load_hub(d: DictConfig) -> RawData:
    """IMDB (or another hub dataset with ``text``/``label``) via ``datasets.load_dataset``.

    Validation: the hub split ``data.validation_split`` when set, else a seeded
    ``data.validation_fraction`` of the train split (IMDB has no validation split; its ``test``
    split is the test split, :func:`load_test`). Offline (``HF_DATASETS_OFFLINE=1``) this works
    from a warm HF cache only; a cold cache or an unreachable hub raises :class:`DataError`
    naming the dataset id.
    """
    hub_id, val_split = d.hub_id, d.validation_split
    text_col, label_col = d.text_column, d.label_column
    dd = _open_hub_dataset(hub_id)
    _check_hub_splits(dd, hub_id, val_split, text_col, label_col)
    feat = dd["train"].features[label_col]
    train_texts, train_labels = list(dd["train"][text_col]), list(dd["train"][label_col])
    if val_split:
        val_texts, val_labels = list(dd[val_split][text_col]), list(dd[val_split][label_col])
        source = f"hub({hub_id}, validation={val_split})"
        val_origin = _origin("hugging_face", path=hub_id, split=val_split)
    else:
        frac, seed = d.validation_fraction, d.seed
        idx = list(range(len(train_texts)))
        random.Random(f"sweep-split/{seed}").shuffle(idx)
        n_val = min(len(idx) - 1, max(1, round(len(idx) * frac)))
        v_idx, tr_idx = sorted(idx[:n_val]), sorted(idx[n_val:])
        val_texts, val_labels = [train_texts[i] for i in v_idx], [train_labels[i] for i in v_idx]
        train_texts = [train_texts[i] for i in tr_idx]
        train_labels = [train_labels[i] for i in tr_idx]
        source = f"hub({hub_id}, validation_fraction={frac:g}, seed={seed})"
        val_split = "train"  # for messages: validation rows come from it
        val_origin = _origin(
            "hugging_face", path=hub_id, split="train", held_out=f"{frac:g} seed={seed}"
        )
    names, train_labels, val_labels = _hub_labels(feat, train_labels, val_labels, hub_id, val_split)
    if any(y is None or y < 0 for y in list(train_labels) + list(val_labels)):
        raise DataError(f"{hub_id}: unlabelled rows (label -1) in train or {val_split}")
    origin = {
        "train": _origin("hugging_face", path=hub_id, split="train"),
        "validation": val_origin,
    }
    return _finish(
        (train_texts, list(train_labels)),
        (val_texts, list(val_labels)),
        names,
        d,
        source,
        origin,
    )
