"""The one walker over plain config trees (dicts and lists, as `OmegaConf.to_container` gives).

Paths are dotted (`optimizer.lr`); a list item is `key[i]`, or, with `index=False`, shares its
list's path (what key-based rules such as "is this a secret key" need).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any


def join(prefix: str, key: Any) -> str:
    return f"{prefix}.{key}" if prefix else str(key)


def _child(prefix: str, i: int, index: bool) -> str:
    return f"{prefix}[{i}]" if index else prefix


def keys(node: Any, prefix: str = "", *, index: bool = True) -> Iterator[tuple[str, Any]]:
    """(path, key) of every mapping key anywhere in the tree, parents before children."""
    if isinstance(node, Mapping):
        for k, v in node.items():
            p = join(prefix, k)
            yield p, k
            yield from keys(v, p, index=index)
    elif isinstance(node, list | tuple):
        for i, v in enumerate(node):
            yield from keys(v, _child(prefix, i, index), index=index)


def leaves(
    node: Any, prefix: str = "", *, index: bool = True, into_lists: bool = True
) -> Iterator[tuple[str, Any]]:
    """(path, value) of every leaf: a value that is not a mapping (nor a list, with
    `into_lists`). An empty mapping or list has no leaves."""
    if isinstance(node, Mapping):
        for k, v in node.items():
            yield from leaves(v, join(prefix, k), index=index, into_lists=into_lists)
    elif into_lists and isinstance(node, list | tuple):
        for i, v in enumerate(node):
            yield from leaves(v, _child(prefix, i, index), index=index, into_lists=into_lists)
    else:
        yield prefix, node


def map_leaves(node: Any, fn: Callable[[str, Any], Any], prefix: str = "", *, index: bool = True):
    """A copy of the tree (dicts and lists) with every leaf replaced by `fn(path, leaf)`."""
    if isinstance(node, Mapping):
        return {k: map_leaves(v, fn, join(prefix, k), index=index) for k, v in node.items()}
    if isinstance(node, list | tuple):
        return [
            map_leaves(v, fn, _child(prefix, i, index), index=index) for i, v in enumerate(node)
        ]
    return fn(prefix, node)
