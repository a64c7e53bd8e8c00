"""Hydra override strings written from values, quoted where Hydra's grammar needs it."""

from __future__ import annotations

from typing import Any


def to_override(key: str, value: Any) -> str:
    if value is None:
        return f"{key}=null"
    if isinstance(value, bool):
        return f"{key}={str(value).lower()}"
    if isinstance(value, float):
        return f"{key}={value!r}"
    if isinstance(value, str) and any(c in value for c in " ,=()[]{}'\""):
        return f"{key}='{value}'"
    return f"{key}={value}"
