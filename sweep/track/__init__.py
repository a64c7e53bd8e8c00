"""MLflow: the store, runs, params, metrics, tags, and the figures logged to them."""
