"""What eval_f1 means: F1 of the positive label (data.positive_label, default the second label of
the mapping) for two classes, macro F1 for more; logged as params on every run."""

from __future__ import annotations

import csv
import math
import random
from functools import partial
from types import SimpleNamespace

import numpy as np
import pytest
from conftest import compose, mlflow_client, run_train, runs_of

from sweep.train.data import DataError, load_raw, positive_index
from sweep.train.loop import compute_metrics, f1, f1_params

# ---- unit level ------------------------------------------------------------------------------


def _cases(n_classes: int, seed: int):
    rng = np.random.default_rng(seed)
    return [
        (rng.integers(0, n_classes, 60), rng.integers(0, n_classes, 60)),
        (rng.integers(0, n_classes, 60), np.zeros(60, dtype=int)),  # one predicted class
        (rng.integers(0, n_classes, 60), np.ones(60, dtype=int)),
        (np.zeros(20, dtype=int), np.zeros(20, dtype=int)),  # one class anywhere
        (np.array([0, 1, 1, 0, 1, 1]), np.array([1, 1, 0, 0, 1, 1])),
    ]


@pytest.mark.parametrize("positive", [0, 1])
def test_binary_f1_of_the_positive_index_matches_scikit_learn(positive):
    from sklearn.metrics import f1_score

    for labels, preds in _cases(2, 7 + positive):
        want = f1_score(labels, preds, pos_label=positive, average="binary", zero_division=0)
        assert f1(labels, preds, 2, positive) == pytest.approx(want), (labels, preds)
    labels, preds = np.array([1, 1, 1, 0]), np.array([1, 1, 0, 0])
    assert f1(labels, preds, 2, 1) == pytest.approx(0.8)
    assert f1(labels, preds, 2, 0) == pytest.approx(2 / 3)  # not the same number
    assert f1(labels, preds, 2) == f1(labels, preds, 2, 1)  # the default: index 1


def test_macro_f1_of_three_classes_matches_scikit_learn_and_ignores_positive():
    from sklearn.metrics import f1_score

    for labels, preds in _cases(3, 3):
        want = f1_score(labels, preds, average="macro", zero_division=0)
        for positive in (None, 0, 1, 2):
            assert f1(labels, preds, 3, positive) == pytest.approx(want), (labels, preds)


def test_compute_metrics_uses_the_positive_index():
    logits = np.array([[2.0, 0.0], [0.0, 2.0], [0.0, 2.0], [2.0, 0.0]])  # preds 0 1 1 0
    pred = SimpleNamespace(predictions=logits, label_ids=np.array([1, 1, 1, 0]))
    assert compute_metrics(pred)["f1"] == pytest.approx(0.8)  # index 1, as before
    got = partial(compute_metrics, positive=0)(pred)
    assert got == {"accuracy": pytest.approx(0.75), "f1": pytest.approx(2 / 3)}
    three = SimpleNamespace(predictions=np.eye(3)[[0, 1, 2, 0]], label_ids=np.array([0, 1, 2, 1]))
    from sklearn.metrics import f1_score

    want = f1_score([0, 1, 2, 1], [0, 1, 2, 0], average="macro", zero_division=0)
    assert compute_metrics(three, positive=None)["f1"] == pytest.approx(want)


def test_positive_index_matching_and_errors():
    assert positive_index(["neg", "pos"]) == 1
    assert positive_index(["neg", "pos"], None) == 1
    assert positive_index(["neg", "pos"], "neg") == 0
    assert positive_index(["neg", "pos"], " POS ") == 1  # canonicalised like the labels
    assert positive_index(["0", "1"], 0) == 0  # an int matches its string
    assert positive_index(["0", "1"], "1") == 1
    assert positive_index(["false", "true"], True) == 1
    assert positive_index(["Negative", "Positive"], "negative") == 0  # hub ClassLabel names
    assert positive_index(["a", "b", "c"]) is None
    with pytest.raises(DataError) as e:
        positive_index(["neg", "pos"], "maybe")
    msg = str(e.value)
    assert "\n" not in msg and "maybe" in msg and "['neg', 'pos']" in msg
    with pytest.raises(DataError) as e:
        positive_index(["a", "b", "c"], "a")
    msg = str(e.value)
    assert "\n" not in msg and "macro" in msg and "['a', 'b', 'c']" in msg


def test_f1_params():
    assert f1_params(["neg", "pos"], 1) == {
        "metrics.f1_average": "binary",
        "metrics.f1_positive_label": "pos",
    }
    assert f1_params(["0", "1"], 0)["metrics.f1_positive_label"] == "0"
    assert f1_params(["a", "b", "c"], None) == {
        "metrics.f1_average": "macro",
        "metrics.f1_positive_label": "-",
    }


def test_config_key_default_and_old_configs_without_it():
    from omegaconf import OmegaConf

    from sweep.cli.reproduce import to_config
    from sweep.core.config import ConfigError, resolved, validate

    cfg = compose(["model=tiny", "data=files", "data.train_file=x.csv"])
    assert cfg.data.positive_label is None
    assert compose(["model=tiny", "data.positive_label=1"]).data.positive_label == "1"
    for name in ("synthetic", "imdb"):
        assert compose([f"data={name}"]).data.positive_label is None
    old = resolved(compose(["model=tiny"]))
    del old["data"]["positive_label"]  # the logged config of a run from before the key
    again = to_config(old)
    assert again.data.positive_label is None
    validate(again, check_device=False)
    bad = compose(["model=tiny"])
    OmegaConf.update(bad, "data.positive_label", " ")
    with pytest.raises(ConfigError, match="data.positive_label"):
        validate(bad, check_device=False)


def test_files_labels_and_positive_label(tmp_path):
    path = tmp_path / "t.csv"
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["text", "label"])
        w.writerows([(f"text {i}", ["POS", "neg", "Pos"][i % 3]) for i in range(9)])
    raw = load_raw(SimpleNamespace(name="files", train_file=str(path), validation_file=str(path)))
    assert raw.label_names == ["neg", "pos"]
    assert positive_index(raw.label_names, "Neg") == 0


# ---- end to end: real runs with the tiny model -------------------------------------------------

POS_WORDS = ["wonderful", "great", "brilliant", "moving", "superb", "delightful"]
NEG_WORDS = ["dull", "awful", "boring", "clumsy", "tedious", "dreadful"]


def _write(path, rows):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["review", "sentiment"])
        w.writerows(rows)


def _rows(rng: random.Random, counts: dict[str, int], words: dict[str, list[str]]):
    """Exactly `counts[label]` rows of each label, shuffled; the label's words say which."""
    labels = [y for y, k in counts.items() for _ in range(k)]
    rng.shuffle(labels)
    return [
        (f"the film was {rng.choice(words[y])} and scene {i} {rng.choice('xyz')}", y)
        for i, y in enumerate(labels)
    ]


def _binary_fixture(workdir):
    """Imbalanced train (60 pos, 30 neg) and validation (26 pos, 14 neg): the validation split
    holds four pos texts a second time labelled neg, so no model is perfect on it (accuracy < 1,
    neither F1 is 1) and a model that learnt the words scores F1 0.93 for pos but 0.83 for neg."""
    rng = random.Random(8)
    words = {"pos": POS_WORDS, "neg": NEG_WORDS}
    train = _rows(rng, {"pos": 60, "neg": 30}, words)
    val = _rows(rng, {"pos": 26, "neg": 10}, words)
    val += [(text, "neg") for text, y in val if y == "pos"][:4]
    _write(workdir / "train.csv", train)
    _write(workdir / "valid.csv", val)
    return [y for _, y in val]


FILES = [
    "model=tiny",
    "data=files",
    "data.train_file=train.csv",
    "data.validation_file=valid.csv",
    "data.text_column=review",
    "data.label_column=sentiment",
    "data.max_length=24",
    "trainer.train_batch_size=8",
    "trainer.epochs=6",  # 72 steps at lr 5e-3: the tiny model learns the words by ~36
    "trainer.eval_every=24",
    "trainer.logging_every=12",
    "trainer.precision=fp32",
    "trainer.device=cpu",
    "optimizer.lr=5e-3",
]


def _final(client, run, key: str) -> float:
    hist = client.get_metric_history(run.info.run_id, key)
    return max(hist, key=lambda m: m.step).value


def _predictions(client, run, texts: list[str], dst) -> np.ndarray:
    """Predictions of the run's logged final model on `texts` (the run's label indices)."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    local = client.download_artifacts(run.info.run_id, "model", str(dst))
    tok = AutoTokenizer.from_pretrained(local)
    model = AutoModelForSequenceClassification.from_pretrained(local).eval()
    enc = tok(texts, truncation=True, max_length=24, padding=True, return_tensors="pt")
    with torch.inference_mode():
        return model(**enc).logits.argmax(-1).numpy()


def _no_runs(workdir, experiment: str) -> bool:
    if not (workdir / "mlflow.db").exists():
        return True
    client = mlflow_client(workdir)
    exp = client.get_experiment_by_name(experiment)
    return exp is None or not client.search_runs([exp.experiment_id])


def _one_error_line(out: str) -> str:
    lines = [ln for ln in out.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1, out[-3000:]
    return lines[0]


@pytest.mark.slow
def test_binary_string_labels_positive_label(workdir):
    from sklearn.metrics import f1_score

    val_labels = _binary_fixture(workdir)
    n = len(val_labels)
    counts = {y: val_labels.count(y) for y in ("pos", "neg")}
    runs = {}
    for name, extra in (("default", []), ("neg", ["data.positive_label=neg"])):
        exp = f"labels-{name}"
        proc = run_train(
            [*FILES, *extra, f"tracking.experiment={exp}", "trainer.save_model=true"], workdir
        )
        assert proc.returncode == 0, proc.stdout[-3000:]
        client = mlflow_client(workdir)
        (run,) = runs_of(client, exp)
        runs[name] = run

    client = mlflow_client(workdir)
    p_default, p_neg = runs["default"].data.params, runs["neg"].data.params
    assert p_default["metrics.f1_average"] == "binary" == p_neg["metrics.f1_average"]
    assert p_default["metrics.f1_positive_label"] == "pos"  # neg/pos: pos is index 1
    assert p_neg["metrics.f1_positive_label"] == "neg"
    assert p_default["data.positive_label"] == "None" and p_neg["data.positive_label"] == "neg"

    acc = {k: _final(client, r, "eval_accuracy") for k, r in runs.items()}
    f1_pos, f1_neg = (_final(client, runs[k], "eval_f1") for k in ("default", "neg"))
    # the same seed and data: the same model and predictions; only what F1 measures differs
    assert acc["default"] == pytest.approx(acc["neg"])
    a = acc["default"]
    errors = round(n * (1 - a))
    assert errors == pytest.approx(n * (1 - a)) and errors >= 4  # the contradictory pairs
    # F1 = 2 TP / (2 TP + FP + FN), and FP + FN = errors for either class: each F1 gives the
    # count of that class's correct predictions, and the two must add up to the correct ones
    tp = f1_pos * errors / (2 * (1 - f1_pos))
    tn = f1_neg * errors / (2 * (1 - f1_neg))
    assert tp == pytest.approx(round(tp), abs=1e-6) and tn == pytest.approx(round(tn), abs=1e-6)
    assert round(tp) + round(tn) == n - errors
    assert round(tp) <= counts["pos"] and round(tn) <= counts["neg"]
    assert counts == {"pos": 26, "neg": 14}
    # the two F1s are equal only when TP == TN, which needs at least 12 errors with 26 / 14
    if errors < 12:
        assert f1_pos != pytest.approx(f1_neg)

    # exactly: the logged final models' predictions on the validation texts, against scikit-learn
    with open(workdir / "valid.csv", newline="") as f:
        texts = [r["review"] for r in csv.DictReader(f)]
    y = np.array([["neg", "pos"].index(v) for v in val_labels])
    for name, pos_label, logged in (("default", 1, f1_pos), ("neg", 0, f1_neg)):
        preds = _predictions(client, runs[name], texts, workdir / f"model-{name}")
        assert float((preds == y).mean()) == pytest.approx(a)
        want = f1_score(y, preds, pos_label=pos_label, zero_division=0)
        assert logged == pytest.approx(want), (name, preds)

    # an unknown label: one error line naming the labels, exit 2, no MLflow run
    proc = run_train(
        [*FILES, "data.positive_label=maybe", "tracking.experiment=labels-bad"], workdir
    )
    assert proc.returncode == 2, proc.stdout[-3000:]
    line = _one_error_line(proc.stdout)
    assert "data.positive_label" in line and "maybe" in line and "['neg', 'pos']" in line
    assert "Traceback" not in proc.stdout
    assert _no_runs(workdir, "labels-bad")


@pytest.mark.slow
def test_three_classes_macro_f1_and_positive_label_refused(workdir):
    rng = random.Random(3)
    words = {"a": POS_WORDS, "b": NEG_WORDS, "c": ["long", "quiet", "odd", "slow", "grey"]}
    _write(workdir / "train.csv", _rows(rng, {"a": 30, "b": 30, "c": 30}, words))
    _write(workdir / "valid.csv", _rows(rng, {"a": 10, "b": 10, "c": 10}, words))
    proc = run_train([*FILES, "tracking.experiment=labels-abc"], workdir)
    assert proc.returncode == 0, proc.stdout[-3000:]
    client = mlflow_client(workdir)
    (run,) = runs_of(client, "labels-abc")
    assert run.data.params["metrics.f1_average"] == "macro"
    assert run.data.params["metrics.f1_positive_label"] == "-"
    f1_value = _final(client, run, "eval_f1")
    assert math.isfinite(f1_value) and 0 <= f1_value <= 1

    proc = run_train([*FILES, "data.positive_label=a", "tracking.experiment=labels-abc-a"], workdir)
    assert proc.returncode == 2, proc.stdout[-3000:]
    line = _one_error_line(proc.stdout)
    assert "data.positive_label" in line and "macro" in line and "['a', 'b', 'c']" in line
    assert "Traceback" not in proc.stdout
    assert _no_runs(workdir, "labels-abc-a")
