"""Bad input on the command line ends in one `error:` line and exit 2, with or without `-m`.

Hydra reports a composition error (an unknown key, a wrong type, an unknown config group option,
an override it cannot parse) in five lines and exits 1. `own_hydra_errors()`, which train.py calls
before handing over to Hydra, routes these errors to `describe()`: one line that names the key and
suggests the nearest valid keys or options (difflib over the keys of the very config node that
refused the override, and over the config groups). The sweeper uses `describe()` for the same
errors in its search space.

Light on purpose: Hydra, OmegaConf and the standard library only, so bad input is reported before
anything heavy (torch, transformers, MLflow) is imported.
"""

from __future__ import annotations

import difflib
import os
import re
from typing import Any

from hydra.errors import (
    ConfigCompositionException,
    MissingConfigException,
    OverrideParseException,
    SearchPathException,
)
from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException, ValidationError
from omegaconf.nodes import BooleanNode, EnumNode, FloatNode, IntegerNode, StringNode

from sweep.core import internals
from sweep.core.config import MASK, is_secret_key, mask_uri
from sweep.core.errors import exit_on_user_error

# what Hydra raises for bad input while it composes the config (MissingConfigException is a
# ConfigCompositionException); anything else is a bug and keeps Hydra's own report
BAD_INPUT = (ConfigCompositionException, OverrideParseException, SearchPathException)


def exit_on_bad_input(e: BaseException) -> None:
    exit_on_user_error(describe(e))


def own_hydra_errors() -> None:
    """Make Hydra's composition errors end in one `error:` line and exit 2.

    Hydra catches every exception of `hydra.run` / `hydra.multirun` in `run_and_report`, prints
    it in several lines and calls sys.exit(1); it has no public hook for that. This is the one
    place that touches that private function: we wrap the callable it is given, so that bad input
    reaches `exit_on_bad_input` first (a SystemExit passes through Hydra untouched). With
    HYDRA_FULL_ERROR=1 Hydra's full traceback is kept. If a future Hydra moves the function, its
    own report (exit 1) comes back and tests/test_bad_input.py fails.
    """
    hydra_utils = internals.hydra_utils()  # private, see above

    original = getattr(hydra_utils, "run_and_report", None)
    if original is None or getattr(original, "_sweep_owned", False):
        return

    def run_and_report(func: Any) -> Any:
        def guarded() -> Any:
            try:
                return func()
            except BAD_INPUT as e:
                if os.environ.get("HYDRA_FULL_ERROR") == "1":
                    raise
                exit_on_bad_input(e)

        return original(guarded)

    run_and_report._sweep_owned = True  # type: ignore[attr-defined]
    hydra_utils.run_and_report = run_and_report


# --------------------------------------------------------------------------- one line per error


def describe(e: BaseException) -> str:
    """One line for a Hydra / OmegaConf composition error, naming the key and, where one is
    close, the valid key or option the user probably meant."""
    if isinstance(e, OverrideParseException):
        return _parse_error(e)
    if isinstance(e, MissingConfigException) and e.options is not None and e.missing_cfg_file:
        return _missing_option(e)
    message = str(e)
    cause = e if isinstance(e, OmegaConfBaseException) else e.__cause__
    if isinstance(cause, OmegaConfBaseException) and getattr(cause, "full_key", None):
        if isinstance(cause, ConfigKeyError | AttributeError):
            return _unknown_key(cause, message)
        if isinstance(cause, ValidationError):
            return _wrong_type(cause, message)
    return one_line(message or str(cause or "") or type(e).__name__)


def one_line(text: str) -> str:
    """Hydra's multi-line message as one line, without its config search path listing."""
    text = text.split("Config search path:")[0]
    lines = [line.strip() for line in text.splitlines()]
    return mask_uri(" ".join(line for line in lines if line))


def suggest(name: str, candidates: list[str], n: int = 3) -> list[str]:
    return difflib.get_close_matches(name, candidates, n=n, cutoff=0.6)


def _mask_override(line: str) -> str:
    key, sep, value = line.partition("=")
    if sep and is_secret_key(key.lstrip("+~")):
        return f"{key}={MASK}"
    return mask_uri(line)


_EXPECTING = re.compile(r"\s*expecting \{[^}]{40,}\}")


def _parse_error(e: OverrideParseException) -> str:
    lines = [line.strip() for line in e.message.splitlines() if line.strip()]
    # line 1 repeats the override, the last points at Hydra's docs; keep the parser's reason
    reasons = [line for line in lines[1:] if not line.startswith("See https://")]
    reason = _EXPECTING.sub("", " ".join(reasons)) or "not Hydra's override grammar"
    return (
        f"cannot parse override {_mask_override(e.override)!r}: {mask_uri(reason)} "
        "(see https://hydra.cc/docs/advanced/override_grammar/basic/)"
    )


def _missing_option(e: MissingConfigException) -> str:
    group, _, name = str(e.missing_cfg_file).rpartition("/")
    if not group:  # the primary config itself
        return one_line(str(e))
    options = [str(o) for o in e.options or []]
    where = re.match(r"In '([^']+)':", str(e))
    inside = f" (in {where[1]})" if where and where[1] not in ("config", "hydra/config") else ""
    close = suggest(name, options)
    hint = f"; did you mean {' or '.join(f'{group}={c}' for c in close)}?" if close else ""
    return (
        f"{group}={name} is not an option of {group}{inside}{hint} (options: {', '.join(options)})"
    )


def _groups(parent: str) -> list[str]:
    """Config groups under `parent` ('' for the top), from the running Hydra's config loader."""
    try:
        from hydra.core.global_hydra import GlobalHydra

        gh = GlobalHydra.instance()
        if not gh.is_initialized():
            return []
        return [str(g) for g in gh.config_loader().list_groups(parent)]
    except Exception:  # noqa: BLE001 - only for suggestions
        return []


def _unknown_key(cause: OmegaConfBaseException, message: str) -> str:
    full = str(cause.full_key)
    key = str(getattr(cause, "key", None) or full.rpartition(".")[2])
    prefix = full[: -len(key)].rstrip(".") if full.endswith(key) else full.rpartition(".")[0]
    # what the user typed may go deeper than the segment that failed: optimiser.lr
    typed = re.search(r"Could not (?:override|append to config)[^']*'([^']+)'", message)
    typed_key = typed[1] if typed else full
    tail = typed_key[len(full) + 1 :] if typed_key.startswith(full + ".") else ""

    keys: list[str] = []
    if "/" in key:  # a config group path: hydra/launchr
        group_parent, _, leaf = key.rpartition("/")
        close = [f"{group_parent}/{g}" for g in suggest(leaf, _groups(group_parent))]
        line = f"{typed_key} is not a config group"
    else:
        parent = getattr(cause, "parent_node", None)
        keys = _keys(parent)
        candidates = keys + [g for g in _groups("") if g not in keys] if not prefix else keys
        close = []
        for c in suggest(key, candidates):
            dotted = f"{prefix}.{c}" if prefix else c
            if tail and _has_path(parent, f"{c}.{tail}"):
                dotted = f"{dotted}.{tail}"
            close.append(dotted)
        line = f"{typed_key} is not a key of {prefix or 'the config'}"
    if close:
        return f"{line}; did you mean {' or '.join(close)}?"
    if keys:
        return f"{line} (its keys: {', '.join(keys)})"
    return line


def _keys(node: Any) -> list[str]:
    """The keys of a config node, a missing (???) value's included, private ones (_target_) not."""
    if not isinstance(node, DictConfig):
        return []
    return [str(k) for k in node if not str(k).startswith("_")]


def _has_path(node: Any, dotted: str) -> bool:
    parts = dotted.split(".")
    for i, part in enumerate(parts):
        if part not in _keys(node):
            return False
        if i < len(parts) - 1:
            try:
                node = node[part]
            except OmegaConfBaseException:  # a missing value or a broken interpolation
                return False
    return True


def _kind(node: Any) -> str | None:
    if isinstance(node, BooleanNode):
        return "a boolean (true or false)"
    if isinstance(node, IntegerNode):
        return "an integer"
    if isinstance(node, FloatNode):
        return "a float"
    if isinstance(node, EnumNode):
        return "one of " + ", ".join(m.name for m in node.enum_type)
    if isinstance(node, StringNode):
        return "a string"
    if isinstance(node, ListConfig):
        try:
            return f"a list like {OmegaConf.to_container(node, resolve=False)}"
        except OmegaConfBaseException:
            return "a list"
    if isinstance(node, DictConfig):
        return "a mapping, e.g. {a: 1}"
    return None


def _wrong_type(cause: OmegaConfBaseException, message: str) -> str:
    full = str(cause.full_key)
    value = getattr(cause, "value", None)
    merged = re.match(r"Error merging override (.+)$", message.strip(), re.DOTALL)
    if merged:
        what = _mask_override(merged[1])
    else:
        shown = MASK if is_secret_key(full) else value
        what = f"{full}={shown}"
        if message.strip():  # e.g. a YAML file under conf/ against its schema
            what = f"{one_line(message)}: {what}"
    kind = _kind(getattr(cause, "child_node", None))
    if kind is None:
        reason = str(getattr(cause, "msg", "") or cause).splitlines()[0]
        return f"{what}: {mask_uri(reason)}"
    shown_value = MASK if is_secret_key(full) else mask_uri(repr(value))
    return f"{what}: {shown_value} is not {kind}"
