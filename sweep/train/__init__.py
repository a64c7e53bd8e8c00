"""One training job: data, model, optimiser, the Trainer run and its outcome."""
