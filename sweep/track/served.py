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


def as_texts(model_input) -> list[str]:
    """A DataFrame with a `text` column (or one column), a Series, a list or one string."""
    if isinstance(model_input, pd.DataFrame):
        column = model_input["text"] if "text" in model_input else model_input.iloc[:, 0]
        return [str(t) for t in column.tolist()]
    if isinstance(model_input, pd.Series | np.ndarray | list | tuple):
        return [str(t) for t in list(model_input)]
    return [str(model_input)]


def signature():
    """The logged model's signature and input example: a DataFrame with a `text` column in,
    `label` and `probabilities` out."""
    from mlflow.models import infer_signature

    example = pd.DataFrame({"text": ["a quietly moving film", "dull and far too long"]})
    output = pd.DataFrame({"label": ["a", "b"], "probabilities": [[0.5, 0.5], [0.5, 0.5]]})
    return infer_signature(example, output), example


class TextClassifierModel(mlflow.pyfunc.PythonModel):
    """pyfunc: `predict(DataFrame{text})` -> DataFrame{label, probabilities}."""

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
