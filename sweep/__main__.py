"""`python -m sweep COMMAND ...`: the commands around a sweep's MLflow records.

    python -m sweep reproduce RUN_ID [--tracking-uri URI] [--atol 1e-6] [--set KEY=VALUE ...]
    python -m sweep reproduce --best --experiment NAME
    python -m sweep best --experiment NAME [--tracking-uri URI]

Every command takes `--tracking-uri`; without it $MLFLOW_TRACKING_URI is used, else
`sqlite:///mlflow.db` in the working directory.

Adding a command: write `add_<name>(sub)` (its argparse sub-parser) and `cmd_<name>(args) -> int`,
and list them in COMMANDS. Keep this module light: import heavy modules inside `cmd_*` only, after
the cheap checks.

Exit codes: 0 ok; 1 the command ran but its check failed (reproduced metrics differ);
2 bad input (unknown run or experiment, refused config, unreachable store), one line on stderr.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable

TRACKING_HELP = (
    "MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db in the cwd)"
)


def _add_tracking_uri(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tracking-uri", metavar="URI", default=None, help=TRACKING_HELP)


# --------------------------------------------------------------------------- reproduce


def add_reproduce(sub) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "reproduce",
        help="re-run a logged trial from MLflow alone and compare its final metrics",
        description=(
            "Re-run a logged run with exactly its logged config.yaml as a new top-level run "
            "tagged reproduces=<run id>, warn about environment differences, and compare the "
            "final eval_loss / eval_accuracy / eval_f1. Exit 0 when they match within --atol, "
            "1 when they don't, 2 on bad input."
        ),
    )
    p.add_argument("run_id", nargs="?", metavar="RUN_ID", help="the MLflow run id to re-run")
    p.add_argument("--best", action="store_true", help="re-run the best trial of --experiment")
    p.add_argument("--experiment", metavar="NAME", help="MLflow experiment (with --best)")
    _add_tracking_uri(p)
    p.add_argument(
        "--atol",
        type=float,
        default=1e-6,
        help="absolute tolerance per metric (default 1e-6; CPU runs match exactly)",
    )
    p.add_argument(
        "--set",
        dest="sets",
        action="append",
        metavar="KEY=VALUE",
        help="value for a key masked when logged (a secret, a URI password); default: the "
        "environment variable named by the key's last segment, upper-cased (hf_token -> HF_TOKEN)",
    )
    return p


def cmd_reproduce(args: argparse.Namespace) -> int:
    from sweep import reproduce as rep

    try:
        return rep.reproduce(
            args.run_id,
            best=args.best,
            experiment=args.experiment,
            tracking_uri=args.tracking_uri,
            atol=args.atol,
            sets=rep.parse_sets(args.sets),
        )
    except rep.MismatchError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1


# --------------------------------------------------------------------------- best


def add_best(sub) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "best",
        help="the best trial of a sweep: value, params and the overrides that re-create it",
        description=(
            "Print the best trial of an experiment (the run tagged optuna.best=true, else the "
            "best finished trial by its objective): its value, searched params and the "
            "`python train.py ...` line that re-creates it."
        ),
    )
    p.add_argument("--experiment", metavar="NAME", required=True, help="MLflow experiment name")
    _add_tracking_uri(p)
    return p


def cmd_best(args: argparse.Namespace) -> int:
    from sweep import reproduce as rep

    return rep.show_best(args.experiment, args.tracking_uri)


# --------------------------------------------------------------------------- dispatch

Command = tuple[Callable[..., argparse.ArgumentParser], Callable[[argparse.Namespace], int]]
COMMANDS: dict[str, Command] = {
    "reproduce": (add_reproduce, cmd_reproduce),
    "best": (add_best, cmd_best),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m sweep",
        description="Commands around a sweep's MLflow records.",
        epilog="`python -m sweep COMMAND --help` describes a command.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for add, _ in COMMANDS.values():
        add(sub)
    return parser


def _user_errors() -> tuple[type[BaseException], ...]:
    """Bad-input errors of the modules imported so far (never imports anything new)."""
    found: list[type[BaseException]] = []
    for module, names in (
        ("sweep.reproduce", ("ReproduceError",)),
        ("sweep.config", ("ConfigError",)),
        ("sweep.tracking", ("TrackingError",)),
        ("sweep.data", ("DataError",)),
        ("sweep.model", ("ModelError",)),
    ):
        mod = sys.modules.get(module)
        for name in names:
            if mod is not None and hasattr(mod, name):
                found.append(getattr(mod, name))
    return tuple(found)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return 0
    logging.basicConfig(level=logging.WARNING, format="[%(name)s] %(levelname)s %(message)s")
    logging.getLogger("sweep").setLevel(logging.INFO)
    _, run = COMMANDS[args.command]
    try:
        return run(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as e:
        if isinstance(e, _user_errors()):
            print(f"error: {e}", file=sys.stderr)
            return 2
        raise


if __name__ == "__main__":
    sys.exit(main())
