"""Hydra + Optuna + MLflow sweeps for fine-tuning BERT-style text classifiers."""
