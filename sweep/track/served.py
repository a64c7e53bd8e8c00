"""The served model: a fine-tuned classifier as an MLflow pyfunc (text in; label and
probabilities out).

This file is logged with the model ("models from code": MLflow copies it and runs it at load), so
it imports only what the model's pip requirements hold (torch, transformers, pandas, mlflow) and
nothing of this project: `mlflow.pyfunc.load_model("models:/<name>@champion")` works in any
environment with those packages. The same class scores a sweep's winner on the test split, so the
logged test metrics are what the served model predicts.

The model directory (the pyfunc artifact `model`) holds what `Trainer.save_model` and the
tokenizer's `save_pretrained` write, plus `serving.json`: the label names (index -> name) and the
maximum length the model was trained with.
"""

from __future__ import annotations

import json
import os

import mlflow.pyfunc
import numpy as np
import pandas as pd

SERVING_FILE = "serving.json"
BATCH = 32


class Classifier:
    """Loads a saved model directory and predicts class probabilities for texts (fp32, eval)."""

    def __init__(self, model_dir: str):
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        with open(os.path.join(model_dir, SERVING_FILE), encoding="utf-8") as f:
            serving = json.load(f)
        self.labels = [str(n) for n in serving["labels"]]
        self.max_length = int(serving["max_length"])
        self.tokenizer = AutoTokenizer.from_pretrained(model_dir)
        self.model = AutoModelForSequenceClassification.from_pretrained(
            model_dir, dtype=torch.float32
        ).eval()
        self._torch = torch

    def probabilities(self, texts: list[str]) -> np.ndarray:
        """(n, classes) probabilities; batches of similar lengths pad least."""
        torch = self._torch
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        out = np.zeros((len(texts), len(self.labels)), dtype=np.float64)
        with torch.inference_mode():
            for start in range(0, len(order), BATCH):
                idx = order[start : start + BATCH]
                enc = self.tokenizer(
                    [texts[i] for i in idx],
                    truncation=True,
                    max_length=self.max_length,
                    padding=True,
                    return_tensors="pt",
                )
                logits = self.model(**enc).logits.float()
                out[idx] = torch.softmax(logits, dim=-1).numpy()
        return out


TEXT = "text"  # the column (or field) that holds the texts in a table or a record


def as_texts(model_input) -> list[str]:
    """The texts of a prediction input: one string; a list, tuple, Series or 1-D array of
    strings; a DataFrame's `text` column (or its only column); `{"text": texts}` and records
    `{"text": ...}` (what `inputs` / `instances` payloads of the scoring server become). Anything
    else, or an item that is not a string (a number, None, NaN), is refused with a message:
    a text is never made up from `str()` of something else."""
    if isinstance(model_input, pd.DataFrame):
        return _strings(_text_column(model_input))
    if isinstance(model_input, dict):
        if TEXT not in model_input:
            raise _refused(f"a mapping needs a {TEXT!r} key; got {sorted(map(str, model_input))}")
        return as_texts(model_input[TEXT])
    if isinstance(model_input, str):
        return [model_input]
    if isinstance(model_input, np.ndarray):
        if model_input.ndim == 0:  # one string, as the scoring server parses `"inputs": "..."`
            return _strings([model_input.item()])
        if model_input.ndim == 2 and model_input.shape[1] == 1:
            model_input = model_input[:, 0]
        elif model_input.ndim != 1:
            raise _refused(f"an array of texts is 1-D; got shape {model_input.shape}")
    if isinstance(model_input, pd.Series | np.ndarray | list | tuple):
        return _strings([_item(x) for x in model_input])
    raise _refused(f"expected text(s); got {type(model_input).__name__}")


def _item(x):
    """One element of a sequence: a record's `text`; a 0-d array's value (the scoring server
    makes one of each value of `"inputs": [{"text": "..."}, ...]`)."""
    if isinstance(x, dict) and TEXT in x:
        x = x[TEXT]
    return x.item() if isinstance(x, np.ndarray) and x.ndim == 0 else x


def _text_column(frame: pd.DataFrame) -> pd.Series:
    if TEXT in frame.columns:
        return frame[TEXT]
    if len(frame.columns) == 1:
        return frame.iloc[:, 0]
    raise _refused(f"a DataFrame needs a {TEXT!r} column; got {[str(c) for c in frame.columns]}")


def _strings(items) -> list[str]:
    for i, x in enumerate(items):
        if not isinstance(x, str):
            raise _refused(f"text {i} is not a string: {x!r} ({type(x).__name__})")
    return [str(x) for x in items]


def _refused(message: str):
    """An input error (the scoring server answers it with 400, not 500)."""
    from mlflow.exceptions import MlflowException

    return MlflowException.invalid_parameter_value(f"cannot read the texts to classify: {message}")


def signature():
    """The logged model's signature and input example.

    Texts in, `label` and `probabilities` out. The signature declares no input schema on purpose:
    MLflow enforces an input schema before `predict` sees the input, and none fits plain text. A
    named `text` column refuses a list, a Series or one string (they arrive as column `0`); an
    unnamed string column passes only a DataFrame's *first* column (a DataFrame whose `text` is
    not first would be scored on another column, silently) and refuses `{"inputs": {"text":
    [...]}}`. Without an input schema MLflow hands the input over as it came, and `as_texts`
    reads and checks it. The example (a list of strings) is what the model card and
    `serving_input_example.json` show: `{"inputs": ["...", "..."]}`."""
    from mlflow.models import ModelSignature, infer_signature

    example = ["a quietly moving film", "dull and far too long"]
    output = pd.DataFrame({"label": ["a", "b"], "probabilities": [[0.5, 0.5], [0.5, 0.5]]})
    return ModelSignature(inputs=None, outputs=infer_signature(output).inputs), example


class TextClassifierModel(mlflow.pyfunc.PythonModel):
    """pyfunc: `predict(texts)` -> DataFrame{label, probabilities}, one row per text, in order
    (texts: whatever `as_texts` reads)."""

    # the model is logged with an explicit signature; without this MLflow warns, as the class is
    # defined, that predict has no type hints (with them it would convert every input first)
    _skip_type_hint_validation = True

    def load_context(self, context):
        self.classifier = Classifier(context.artifacts["model"])

    def predict(self, context, model_input, params=None):
        probs = self.classifier.probabilities(as_texts(model_input))
        labels = self.classifier.labels
        return pd.DataFrame(
            {
                "label": [labels[i] for i in probs.argmax(axis=1)],
                "probabilities": [row.tolist() for row in probs],
            }
        )


mlflow.models.set_model(TextClassifierModel())
