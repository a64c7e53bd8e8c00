"""Schemas, checks, secrets and overrides: what every other layer reads."""
