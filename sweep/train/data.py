"""Data: load raw text/label splits (generated, local files or the hub), tokenize once, cache.

Three sources, chosen by ``data.name``:

* ``synthetic``: generated movie-review sentiment sentences (:func:`generate_reviews`),
  deterministic from ``data.seed``. Negation, contrast and intensity decide a large share of the
  labels, so counting keywords does not solve it. ``label_noise`` flips TRAIN labels only; the
  validation split stays clean so that accuracy measures the model, not the noise.
* ``files``: local CSV / TSV / JSON lines (``.jsonl`` or ``.json``) / Parquet files with
  configurable text and label columns; without ``validation_file`` a seeded
  ``validation_fraction`` of the training file is held out.
* ``imdb``: ``datasets.load_dataset(hub_id)`` (default ``stanfordnlp/imdb``). IMDB has no
  validation split: its ``test`` split (``validation_split``) serves as validation.

Every split ends up as a ``datasets.Dataset`` with exactly the columns ``text`` (str) and ``label``
(int in 0..K-1). :func:`tokenize` turns them into ``input_ids``/``attention_mask``
(/``token_type_ids``)/``labels``/``length`` once per (data fingerprint, tokenizer, max_length),
memoised in-process and cached on disk as Arrow files. No padding: the collator pads per batch.

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
from dataclasses import dataclass
from typing import Any

import datasets
from omegaconf import DictConfig, OmegaConf

from sweep.core.config import data_config, default_cache_dir
from sweep.core.errors import UserError

log = logging.getLogger(__name__)

# Bump when the tokenized layout or the tokenization function changes: invalidates disk caches.
CACHE_VERSION = "1"

__all__ = [
    "CACHE_VERSION",
    "KINDS",
    "TOKENIZE_STATS",
    "DataError",
    "RawData",
    "ReviewRecord",
    "clear_tokenize_memo",
    "default_cache_dir",
    "generate_review_records",
    "generate_reviews",
    "load_raw",
    "positive_index",
    "tokenize",
]


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


# --------------------------------------------------------------------------------------------
# The synthetic movie-review generator
# --------------------------------------------------------------------------------------------

KINDS = ("plain", "negation", "contrast", "intensity")
# Share of each kind. Plain reviews are keyword-solvable; the other 60 % are not (a bag-of-words
# model sits near chance on them), which caps bag-of-words accuracy around 0.70.
_KIND_WEIGHTS = (0.40, 0.20, 0.20, 0.20)

_FILMS = [
    "movie", "film", "picture", "sequel", "documentary", "thriller", "comedy", "drama",
    "feature", "remake", "prequel", "adaptation", "blockbuster", "indie film", "biopic",
    "animated film", "western", "musical",
]  # fmt: skip
_ASPECTS = [
    "acting", "plot", "script", "soundtrack", "cinematography", "pacing", "dialogue", "ending",
    "characters", "visuals", "direction", "humour", "score", "cast", "storyline", "editing",
    "lead performance", "set design", "camera work", "screenplay", "final act", "opening scene",
    "villain", "costumes", "special effects", "supporting cast", "story", "premise",
]  # fmt: skip
_POS_ADJ = [
    "good", "great", "brilliant", "wonderful", "superb", "excellent", "delightful", "gripping",
    "moving", "charming", "clever", "stunning", "beautiful", "fantastic", "engaging",
    "memorable", "impressive", "enjoyable", "fresh", "funny", "touching", "compelling",
    "captivating", "polished", "inventive", "thrilling", "sharp", "gorgeous", "heartfelt",
    "smart", "lovely", "solid",
]  # fmt: skip
_NEG_ADJ = [
    "bad", "terrible", "awful", "dull", "boring", "tedious", "clumsy", "lifeless",
    "forgettable", "predictable", "messy", "weak", "flat", "painful", "dreadful", "bland",
    "shallow", "awkward", "mediocre", "disappointing", "lazy", "confusing", "sloppy", "stale",
    "cheap", "tiresome", "pointless", "uninspired", "clunky", "irritating", "hollow", "silly",
]  # fmt: skip
_POS_NOUN = [
    "masterpiece", "triumph", "gem", "delight", "classic", "joy to watch", "treat", "success",
    "must-see", "work of art",
]  # fmt: skip
_NEG_NOUN = [
    "disaster", "mess", "waste of time", "letdown", "snoozefest", "failure", "trainwreck",
    "chore to sit through", "dud", "misfire",
]  # fmt: skip
_POS_VERB = ["enjoyed", "loved", "liked", "appreciated", "admired", "savoured"]
_NEG_VERB = ["hated", "disliked", "regretted watching", "resented", "minded", "endured"]
_BASE_VERB = {
    "enjoyed": "enjoy", "loved": "love", "liked": "like", "appreciated": "appreciate",
    "admired": "admire", "savoured": "savour", "hated": "hate", "disliked": "dislike",
    "regretted watching": "regret watching", "resented": "resent", "minded": "mind",
    "endured": "have to endure",
}  # fmt: skip
_POS_MOMENT = ["memorable", "funny", "exciting", "clever", "touching", "beautiful", "tense"]
_NEG_MOMENT = ["dull", "boring", "wasted", "awkward", "tedious", "cringeworthy", "pointless"]
_STRONG = [
    "absolutely", "utterly", "truly", "incredibly", "extraordinarily", "thoroughly",
    "remarkably", "exceptionally", "completely", "deeply", "genuinely", "spectacularly",
]  # fmt: skip
_WEAK = [
    "slightly", "somewhat", "a little", "mildly", "a bit", "marginally", "faintly",
    "sort of", "occasionally", "a tad",
]  # fmt: skip
_NEGATORS = [
    "not", "never", "hardly", "far from", "anything but", "by no means", "not exactly",
    "not particularly", "in no way", "not at all", "scarcely", "not remotely",
]  # fmt: skip
_NOUN_NEGATORS = ["hardly a", "far from a", "not exactly a", "by no means a", "no", "not a"]
_COPULA = ["is", "was", "feels", "felt", "seems", "comes across as"]
_COPULA_PLURAL = ["are", "were", "feel", "felt", "seem", "come across as"]
_PLURAL_ASPECTS = {"characters", "visuals", "costumes", "special effects"}
_OPENERS = [
    "Just saw this {film}.", "So, about this {film}.", "Quick review.", "My two cents.",
    "Where to begin.", "Okay, here goes.", "Long-time lurker, first review.",
    "Finally got around to this {film}.", "A few thoughts on this {film}.",
]  # fmt: skip
_PREFIXES = ["Honestly, ", "Overall, ", "In the end, ", "To be fair, ", "Frankly, ", "Well, "]
_FILLERS = [
    "I watched this on a rainy sunday.",
    "My sister picked it for movie night.",
    "It runs a little over two hours.",
    "I saw it at a small cinema downtown with a friend.",
    "The trailer had been everywhere for weeks.",
    "It is based on a novel I have not read.",
    "We watched it with the subtitles on.",
    "I went in knowing almost nothing about it.",
    "It was part of a double feature at the local theatre.",
    "The story is set in a small coastal town.",
    "It follows two brothers who run a bakery in {city}.",
    "The director's previous {film} came out in {year}.",
    "It premiered at a festival in {city} back in {year}.",
    "I rented it on a long flight to {city}.",
    "The {film} was shot mostly in {city}.",
    "Most of it takes place over a single weekend.",
    "My parents had recommended it to me years ago.",
    "There is a cameo from a famous singer halfway through.",
    "It is the third {film} from this studio this year.",
    "The lead actor also co-wrote it.",
    "I had some popcorn and a large soda.",
    "The runtime is about ninety minutes.",
]
_CITIES = ["Lisbon", "Toronto", "Osaka", "Berlin", "Nairobi", "Austin", "Glasgow", "Lima", "Oslo"]
_NEUTRAL_CLOSERS = [
    "That's my take.", "Make of that what you will.", "Your mileage may vary.",
    "Just my opinion.", "That is all I have to say.", "Anyway, those are my thoughts.",
    "Curious what others think.",
]  # fmt: skip
_POS_CLOSERS = [
    "Highly recommended.", "Go see it.", "I'd watch it again.", "Worth every minute.",
    "A real pleasure.", "I left the cinema smiling.",
]  # fmt: skip
_NEG_CLOSERS = [
    "Avoid it.", "Skip this one.", "What a waste of an evening.", "I want my two hours back.",
    "Not worth the ticket.", "I nearly walked out.",
]  # fmt: skip


@dataclass(frozen=True)
class ReviewRecord:
    """One generated review. ``label`` is what the split carries (after noise), ``clean_label``
    what the text says; ``kind`` is how the text encodes it (one of :data:`KINDS`)."""

    text: str
    label: int
    kind: str
    clean_label: int

    @property
    def flipped(self) -> bool:
        return self.label != self.clean_label


def _adj(rng: random.Random, positive: bool) -> str:
    return rng.choice(_POS_ADJ if positive else _NEG_ADJ)


def _subject(rng: random.Random) -> str:
    r = rng.random()
    if r < 0.7:
        return f"the {rng.choice(_ASPECTS)}"
    if r < 0.9:
        return f"the {rng.choice(_FILMS)}"
    return "it"


def _subject_verb(rng: random.Random) -> str:
    """'<subject> <copula>' with number agreement."""
    subject = _subject(rng)
    plural = subject[4:] in _PLURAL_ASPECTS
    return f"{subject} {rng.choice(_COPULA_PLURAL if plural else _COPULA)}"


def _clause(rng: random.Random, positive: bool, intensifier: str = "") -> str:
    """'<subject> <copula> [intensifier] <adjective>' with the given polarity."""
    adj = f"{intensifier} {_adj(rng, positive)}".strip()
    return f"{_subject_verb(rng)} {adj}"


def _negated_clause(rng: random.Random, positive: bool) -> str:
    """A clause whose polarity is ``positive`` although its sentiment word has the opposite one."""
    r = rng.random()
    if r < 0.45:
        return f"{_subject_verb(rng)} {rng.choice(_NEGATORS)} {_adj(rng, not positive)}"
    if r < 0.6:
        noun = rng.choice(_NEG_NOUN if positive else _POS_NOUN)
        film = rng.choice(["it", "this " + rng.choice(_FILMS)])
        neg = rng.choice(_NOUN_NEGATORS)
        if neg == "no":
            return f"{film} is no {noun}"
        return f"{film} is {neg} {noun}"
    if r < 0.75:
        verb = rng.choice(_NEG_VERB if positive else _POS_VERB)
        lead = rng.choice(["I can't say I", "I didn't", "I did not", "I never", "nobody I know"])
        if lead == "I didn't" or lead == "I did not":
            verb = _BASE_VERB[verb]
        return f"{lead} {verb} it"
    if r < 0.9:
        moment = rng.choice(_NEG_MOMENT if positive else _POS_MOMENT)
        return rng.choice(
            [
                f"there wasn't a single {moment} moment",
                f"there is not one {moment} scene in it",
                f"I couldn't find a single {moment} minute",
                f"not one scene felt {moment}",
            ]
        )
    word = _adj(rng, not positive)
    return rng.choice(
        [
            f"nothing about it felt {word}",
            f"I wouldn't call {_subject(rng)} {word}",
            f"calling {_subject(rng)} {word} would be wrong",
            f"no one could call {_subject(rng)} {word}",
        ]
    )


def _contrast(rng: random.Random, positive: bool) -> str:
    """Two clauses of opposite polarity; the grammar (not the position) says which one decides."""
    a = _clause(rng, not positive)  # conceded
    b = _clause(rng, positive)  # decisive
    r = rng.randrange(9)
    if r == 0:
        return f"{a}, but {b}."
    if r == 1:
        return f"although {a}, {b}."
    if r == 2:
        return f"{a}. However, {b}."
    if r == 3:
        return f"{b}, even though {a}."
    if r == 4:
        return f"{a}. Still, {b}."
    if r == 5:
        return f"while {a}, {b}."
    if r == 6:
        return f"{b}, although {a}."
    if r == 7:
        part = rng.choice(["start", "first half", "opening", "middle stretch", "trailer"])
        ending = rng.choice(["ending", "second half", "finale", "final act", "last twenty minutes"])
        return f"a {_adj(rng, not positive)} {part}, but a {_adj(rng, positive)} {ending}."
    noun = rng.choice(_ASPECTS)
    return f"despite the {_adj(rng, not positive)} {noun}, {b}."


def _intensity(rng: random.Random, positive: bool) -> str:
    """Two opposite aspects; the strongly-intensified one decides, in either order."""
    strong = rng.choice(_STRONG)
    weak = rng.choice(_WEAK)
    if rng.random() < 0.3:  # short form: "mildly funny but utterly boring"
        s = f"{strong} {_adj(rng, positive)}"
        w = f"{weak} {_adj(rng, not positive)}"
        film = rng.choice(["it", f"this {rng.choice(_FILMS)}"])
        if rng.random() < 0.5:
            return f"{film} {rng.choice(_COPULA)} {w} but {s}."
        return f"{film} {rng.choice(_COPULA)} {s}, if {w}."
    s = _clause(rng, positive, strong)
    w = _clause(rng, not positive, weak)
    if rng.random() < 0.5:
        conn = rng.choice([", yet", ", but", " and", ", while", "; meanwhile"])
        return f"{w}{conn} {s}."
    conn = rng.choice([" and", ", while", ", though", "; on the other hand,", ", even if"])
    return f"{s}{conn} {w}."


def _plain(rng: random.Random, positive: bool) -> list[str]:
    sentences = []
    for _ in range(rng.choice([1, 1, 2, 2, 3])):
        inten = rng.choice(["", "", "", rng.choice(_STRONG), rng.choice(_WEAK)])
        if rng.random() < 0.5:
            sentences.append(f"{_clause(rng, positive, inten)}.")
        else:
            sentences.append(f"{_clause(rng, positive, inten)} and {_clause(rng, positive)}.")
    if rng.random() < 0.25:
        film = rng.choice(_FILMS)
        noun = rng.choice(_POS_NOUN if positive else _NEG_NOUN)
        sentences.append(f"this {film} is a {noun}.")
    return sentences


def _fill(text: str, rng: random.Random) -> str:
    return text.format(
        film=rng.choice(_FILMS), city=rng.choice(_CITIES), year=rng.randrange(1978, 2025)
    )


def _cap(s: str) -> str:
    return s[:1].upper() + s[1:]


def _review(rng: random.Random, positive: bool, kind: str) -> str:
    if kind == "plain":
        core = _plain(rng, positive)
    elif kind == "negation":
        core = [f"{_negated_clause(rng, positive)}."]
        r = rng.random()
        if r < 0.35:  # a second negated clause with the same polarity
            core.append(f"{_negated_clause(rng, positive)}.")
        elif r < 0.55:  # or a plain one, so the negated word is outnumbered but not absent
            core.append(f"{_clause(rng, positive)}.")
    elif kind == "contrast":
        core = [_contrast(rng, positive)]
    elif kind == "intensity":
        core = [_intensity(rng, positive)]
    else:  # pragma: no cover - internal
        raise ValueError(kind)

    fillers = [_fill(f, rng) for f in rng.sample(_FILLERS, rng.choice([0, 0, 1, 1, 2, 3]))]
    parts: list[str] = []
    if rng.random() < 0.3:
        parts.append(_fill(rng.choice(_OPENERS), rng))
    n_before = rng.randint(0, len(fillers))
    parts.extend(fillers[:n_before])
    prefix = rng.choice(_PREFIXES) if rng.random() < 0.3 else ""
    parts.append(_cap(prefix + core[0]) if prefix else _cap(core[0]))
    parts.extend(_cap(c) for c in core[1:])
    parts.extend(fillers[n_before:])
    if len(" ".join(parts).split()) < 8:  # keep reviews at least ~8 words long
        parts.append(_fill(rng.choice([f for f in _FILLERS if f not in fillers]), rng))
    r = rng.random()
    if kind == "plain" and r < 0.3:
        parts.append(rng.choice(_POS_CLOSERS if positive else _NEG_CLOSERS))
    elif r < 0.5:
        parts.append(rng.choice(_NEUTRAL_CLOSERS))
    return " ".join(parts)


def generate_review_records(
    n: int, seed: int, label_noise: float = 0.0, *, stream: str = "train"
) -> list[ReviewRecord]:
    """Generate ``n`` movie reviews deterministically from ``(seed, stream)``.

    Classes are exactly balanced (``n // 2`` negatives, the rest positive, in shuffled order).
    Kinds: ~40 % ``plain`` (sentiment words agree with the label), ~20 % ``negation`` ("never
    boring", "hardly a masterpiece", "I can't say I enjoyed it"), ~20 % ``contrast`` (the clause
    after "but"/"however" or the main clause of "although" decides) and ~20 % ``intensity`` (two
    opposite aspects, the strongly intensified one decides, in either order). Positive and negative
    words therefore occur often in both classes.

    ``label_noise`` flips exactly ``round(n * label_noise)`` labels (chosen by a separate seeded
    stream, so the texts do not depend on it). :func:`load_raw` applies it to the train split
    only; the validation split is generated clean from a different ``stream``. The bounds of
    ``n`` (``data.train_size`` / ``data.eval_size``) and ``label_noise`` are the config's.
    Uses only ``random.Random`` seeded with a string (stable across processes and machines).
    """
    base = f"sweep-synthetic/v1/{int(seed)}/{stream}"
    rng = random.Random(base)
    labels = [0] * (n // 2) + [1] * (n - n // 2)
    rng.shuffle(labels)
    kinds = rng.choices(KINDS, weights=_KIND_WEIGHTS, k=n)
    texts = [_review(rng, bool(y), k) for y, k in zip(labels, kinds, strict=True)]
    noisy = list(labels)
    n_flip = round(n * float(label_noise))
    for i in random.Random(base + "/noise").sample(range(n), n_flip):
        noisy[i] = 1 - noisy[i]
    return [
        ReviewRecord(t, y, k, c) for t, y, k, c in zip(texts, noisy, kinds, labels, strict=True)
    ]


def generate_reviews(
    n: int, seed: int, label_noise: float = 0.0, *, stream: str = "train"
) -> tuple[list[str], list[int]]:
    """Texts and labels (0 = negative, 1 = positive); see :func:`generate_review_records`."""
    records = generate_review_records(n, seed, label_noise, stream=stream)
    return [r.text for r in records], [r.label for r in records]


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


def _finish(
    train: tuple[list[str], list[int]],
    val: tuple[list[str], list[int]],
    names: list[str],
    d: DictConfig,
    source: str,
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
    if notes:
        source = f"{source[:-1]}, {', '.join(notes)})"
    fp = _fingerprint(out, names)
    return RawData(
        train=_make_dataset(*out[0]),
        validation=_make_dataset(*out[1]),
        label_names=list(names),
        fingerprint=fp,
        source=source,
    )


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
    return _finish(train, val, ["negative", "positive"], d, source)


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
    return _finish(train, val, names, d, source)


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


def _check_hub_splits(dd: Any, hub_id: str, val_split: str, text_col: str, label_col: str) -> None:
    """Both splits exist and carry the text and label columns; train is checked first."""
    for split in ("train", val_split):
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

    IMDB has no validation split: its ``test`` split (``data.validation_split``) serves as
    validation. Offline (``HF_DATASETS_OFFLINE=1``) this works from a warm HF cache only; a cold
    cache or an unreachable hub raises :class:`DataError` naming the dataset id.
    """
    hub_id, val_split = d.hub_id, d.validation_split
    text_col, label_col = d.text_column, d.label_column
    dd = _open_hub_dataset(hub_id)
    _check_hub_splits(dd, hub_id, val_split, text_col, label_col)
    feat = dd["train"].features[label_col]
    train_texts, train_labels = dd["train"][text_col], dd["train"][label_col]
    val_texts, val_labels = dd[val_split][text_col], dd[val_split][label_col]
    names, train_labels, val_labels = _hub_labels(feat, train_labels, val_labels, hub_id, val_split)
    if any(y is None or y < 0 for y in list(train_labels) + list(val_labels)):
        raise DataError(f"{hub_id}: unlabelled rows (label -1) in train or {val_split}")
    source = f"hub({hub_id}, validation={val_split})"
    return _finish(
        (list(train_texts), list(train_labels)),
        (list(val_texts), list(val_labels)),
        names,
        d,
        source,
    )


# --------------------------------------------------------------------------------------------
# Tokenization with in-process memo and on-disk Arrow cache
# --------------------------------------------------------------------------------------------

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
