"""`python -m sweep COMMAND ...`: the commands around a sweep's MLflow records.

    python -m sweep reproduce RUN_ID [--tracking-uri URI] [--atol 1e-6] [--set KEY=VALUE ...]
    python -m sweep reproduce --best --experiment NAME
    python -m sweep best --experiment NAME [--tracking-uri URI]
    python -m sweep report --experiment NAME [--tracking-uri URI] [--out report.html]
    python -m sweep confirm --experiment NAME [--top K] [--seeds S] [--study NAME]
    python -m sweep ui [--host 127.0.0.1] [--port 5000] [--tracking-uri URI] [--allow-remote]
    python -m sweep dashboard [--experiment NAME] [--storage URL] [--host 127.0.0.1] [--port 8080]

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

from sweep.core.errors import EXIT_CODE, UserError

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
    from sweep.cli import reproduce as rep

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
    p.add_argument(
        "--study",
        metavar="NAME",
        help="the sweep's study when the experiment holds several (default: the newest best)",
    )
    _add_tracking_uri(p)
    return p


def cmd_best(args: argparse.Namespace) -> int:
    from sweep.cli import reproduce as rep

    return rep.show_best(args.experiment, args.tracking_uri, study=args.study)


# --------------------------------------------------------------------------- report


def add_report(sub) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "report",
        help="write a self-contained HTML report of a sweep (summary, trial table, plots)",
        description=(
            "Write one HTML file (plotly inlined: it opens offline and can be shared) with the "
            "sweep's summary, its trial table and plots. Built from the Optuna study when its "
            "storage is reachable, else from the MLflow parent and child runs alone."
        ),
    )
    p.add_argument("--experiment", metavar="NAME", required=True, help="MLflow experiment name")
    _add_tracking_uri(p)
    p.add_argument("--out", metavar="FILE", default="report.html", help="default: report.html")
    p.add_argument(
        "--study", metavar="NAME", help="the sweep to report when an experiment holds several"
    )
    p.add_argument(
        "--storage",
        metavar="URL",
        help="Optuna storage URL (default: the parent run's tag sweep.storage, else "
        ".sweep/<experiment>.journal here); needed when the tagged URL has a masked password",
    )
    p.add_argument(
        "--mlflow-only", action="store_true", help="ignore the Optuna study; use MLflow alone"
    )
    return p


def cmd_report(args: argparse.Namespace) -> int:
    from sweep.cli import report

    path, sweep = report.write(
        args.experiment,
        args.tracking_uri,
        args.out,
        study=args.study,
        storage=args.storage,
        use_optuna=not args.mlflow_only,
    )
    for note in sweep.notes:
        print(f"note: {note}", file=sys.stderr)
    print(f"report of sweep {sweep.study} ({len(sweep.rows)} trials, from {sweep.source})")
    print(path)
    return 0


# --------------------------------------------------------------------------- confirm


def add_confirm(sub) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "confirm",
        help="re-run the K best configurations of a sweep with S new seeds; choose, test and "
        "register the winner",
        description=(
            "Re-run the K best complete trials of a sweep (from their logged config.yaml) with S "
            "new training seeds each, as child runs of the sweep's parent tagged "
            "sweep.confirms=<trial run id>; the winner is the best mean over those seeds. It is "
            "scored once on the test split and its model is registered under the experiment's "
            "name with alias champion. Finished confirmation runs are not repeated."
        ),
    )
    p.add_argument("--experiment", metavar="NAME", required=True, help="MLflow experiment name")
    p.add_argument("--top", type=int, default=2, metavar="K", help="configurations (default 2)")
    p.add_argument("--seeds", type=int, default=2, metavar="S", help="new seeds each (default 2)")
    p.add_argument("--study", metavar="NAME", help="the sweep when an experiment holds several")
    _add_tracking_uri(p)
    return p


def cmd_confirm(args: argparse.Namespace) -> int:
    from sweep.cli import confirm

    return confirm.confirm(
        args.experiment,
        top=args.top,
        seeds=args.seeds,
        study=args.study,
        tracking_uri=args.tracking_uri,
    )


# --------------------------------------------------------------------------- ui


def add_ui(sub) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "ui",
        help="the MLflow UI on the configured store (loopback only unless --allow-remote)",
        description=(
            "Start `mlflow server` on the tracking store that train.py logs to and print its "
            "URL; Ctrl-C stops it. The MLflow UI has no login, so a --host outside the loopback "
            "range (127.0.0.0/8, ::1, localhost) is refused unless --allow-remote is given."
        ),
    )
    p.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=5000, help="port (default 5000)")
    _add_tracking_uri(p)
    p.add_argument(
        "--allow-remote",
        action="store_true",
        help="allow a non-loopback --host: anyone who reaches it can read and delete runs",
    )
    p.add_argument("--experiment", metavar="NAME", help="also print this experiment's URL")
    p.add_argument("--workers", type=int, default=1, help="server worker processes (default 1)")
    p.add_argument(
        "--allowed-hosts",
        metavar="HOSTS",
        help="passed to mlflow server: Host headers it accepts beyond localhost and private IPs "
        "(needed to reach it by a public name)",
    )
    p.add_argument("--cors-allowed-origins", metavar="ORIGINS", help="passed to mlflow server")
    p.add_argument(
        "--access-log", action="store_true", help="show the server's line per HTTP request"
    )
    return p


def cmd_ui(args: argparse.Namespace) -> int:
    from sweep.cli import ui
    from sweep.track.tracking import resolve_uri

    ui.check_host(args.host, args.allow_remote)  # refused before anything heavy starts
    return ui.serve(
        resolve_uri(args.tracking_uri, option="--tracking-uri"),
        args.host,
        args.port,
        allow_remote=args.allow_remote,
        experiment=args.experiment,
        workers=args.workers,
        allowed_hosts=args.allowed_hosts,
        cors_allowed_origins=args.cors_allowed_origins,
        access_log=args.access_log,
    )


# --------------------------------------------------------------------------- dashboard


def add_dashboard(sub) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "dashboard",
        help="optuna-dashboard on a sweep's Optuna study storage, live (loopback only unless "
        "--allow-remote)",
        description=(
            "Serve optuna-dashboard on the study storage of a sweep (journal file, SQLite or "
            "PostgreSQL) and print the study's URL; Ctrl-C stops it. The storage: --storage, "
            "else the sweep of --experiment (its parent run's tag sweep.storage, else "
            ".sweep/<experiment>.journal here), else the one journal in .sweep/ here. The "
            "dashboard has no login and can delete studies, so a --host outside the loopback "
            "range is refused unless --allow-remote is given."
        ),
    )
    p.add_argument("--experiment", metavar="NAME", help="MLflow experiment of the sweep")
    p.add_argument(
        "--study", metavar="NAME", help="the sweep's study when the storage holds several"
    )
    p.add_argument(
        "--storage",
        metavar="URL",
        help="Optuna storage: journal:///path, a .journal file, sqlite:///path.db, "
        "postgresql://...",
    )
    _add_tracking_uri(p)
    p.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8080, help="port (default 8080; 0: any free one)")
    p.add_argument(
        "--allow-remote",
        action="store_true",
        help="allow a non-loopback --host: anyone who reaches it can read and delete studies",
    )
    p.add_argument(
        "--no-browser",
        action="store_true",
        help="do not open a browser (never opened without a display)",
    )
    p.add_argument(
        "--access-log", action="store_true", help="show the server's line per HTTP request"
    )
    return p


def cmd_dashboard(args: argparse.Namespace) -> int:
    from sweep.cli import dashboard

    dashboard.check_host(args.host, args.allow_remote)  # refused before anything heavy starts
    target = dashboard.find_target(
        storage=args.storage,
        experiment=args.experiment,
        study=args.study,
        tracking_uri=args.tracking_uri,
    )
    return dashboard.serve(
        target,
        args.host,
        args.port,
        allow_remote=args.allow_remote,
        browser=not args.no_browser,
        access_log=args.access_log,
    )


# --------------------------------------------------------------------------- dispatch

Command = tuple[Callable[..., argparse.ArgumentParser], Callable[[argparse.Namespace], int]]
COMMANDS: dict[str, Command] = {
    "reproduce": (add_reproduce, cmd_reproduce),
    "best": (add_best, cmd_best),
    "report": (add_report, cmd_report),
    "confirm": (add_confirm, cmd_confirm),
    "ui": (add_ui, cmd_ui),
    "dashboard": (add_dashboard, cmd_dashboard),
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
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_CODE


if __name__ == "__main__":
    sys.exit(main())
