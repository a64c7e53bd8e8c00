"""The sweep: Optuna studies, the Hydra sweeper, workers, the parent run."""
