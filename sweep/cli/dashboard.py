"""`python -m sweep dashboard`: optuna-dashboard on a sweep's Optuna study storage, live.

    python -m sweep dashboard [--experiment NAME [--study NAME]] [--storage URL]
                              [--host 127.0.0.1] [--port 8080] [--no-browser]

Which storage: `--storage URL` (a journal file or `journal:///path`, `sqlite:///path.db`,
`postgresql://...`); else the sweep of `--experiment` in the MLflow store (its parent run's tag
`sweep.storage`, else `.sweep/<experiment>.journal` here, where the sweep wrote it by default);
else the one journal in `.sweep/` of the working directory. The dashboard reads the storage on
every request, so a sweep that is still running shows each trial as it finishes.

Everything that can be checked is checked before the server starts, each as one `error:` line
(exit 2): a storage file that is not there (never created empty), a database that does not answer
or holds no study, a `--study` it does not hold, a host outside the loopback range without
`--allow-remote` (the dashboard has no login, and it can delete studies), a port in use.

The server is optuna-dashboard's WSGI app on a threaded wsgiref server (what its own CLI runs
without gunicorn), in this process; Ctrl-C or SIGTERM stops it. `--port 0` takes any free port;
the URL printed is the one that answers.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from sweep.cli.ui import refuse_remote, url_of, warn_remote
from sweep.core.config import MASK, mask_uri, strip_uri_password
from sweep.core.errors import UserError

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080  # optuna-dashboard's own default
SQLITE_HEADER = b"SQLite format 3\x00"


class DashboardError(UserError, ValueError):
    """The dashboard cannot be started as asked; one line."""


@dataclass
class Target:
    """What to serve: the storage URL (as given, maybe with a password), the study to point at
    (None: the storage's list of studies) and where the choice came from."""

    url: str
    study: str | None = None
    source: str = "--storage"
    notes: list[str] = field(default_factory=list)
    hint: str = ""  # added to the line when the storage cannot be opened


def check_host(host: str, allow_remote: bool) -> None:
    refuse_remote(host, allow_remote, "optuna-dashboard", "studies", DashboardError)


# --------------------------------------------------------------------------- which storage


def storage_url(given: str) -> str:
    """`--storage` as an Optuna storage URL: URLs pass; a path to a file is a journal, or SQLite
    when the file starts with SQLite's header."""
    if "://" in given:
        return given
    path = Path(given).expanduser().resolve()
    if path.is_file() and path.read_bytes()[: len(SQLITE_HEADER)] == SQLITE_HEADER:
        return f"sqlite:///{path}"
    return f"journal://{path}"


def storage_file(url: str) -> Path | None:
    """The file a journal or SQLite storage lives in (None for a database server); read as
    sweep.search.study.open_storage reads it, without importing Optuna for a missing file."""
    if url.startswith("journal://"):
        return Path(url[len("journal://") :])
    if url.endswith((".journal", ".log")) and "://" not in url:
        return Path(url)
    if url.startswith("sqlite:///"):
        return Path(url[len("sqlite:///") :])
    return None


def local_journals(cwd: Path) -> list[Path]:
    return sorted((cwd / ".sweep").glob("*.journal"))


def from_working_dir(cwd: Path) -> Target:
    """No --storage and no --experiment: the one journal a sweep left in `.sweep/` here."""
    found = local_journals(cwd)
    if not found:
        raise DashboardError(
            f"no sweep journal in {cwd / '.sweep'}: run a sweep here first (python train.py -m), "
            "or pass --experiment NAME or --storage URL"
        )
    if len(found) > 1:
        names = ", ".join(p.stem for p in found)
        raise DashboardError(
            f"{cwd / '.sweep'} holds {len(found)} sweep journals ({names}): choose one with "
            "--experiment NAME or --storage URL"
        )
    return Target(f"journal://{found[0]}", source="the one journal in .sweep/")


def from_experiment(experiment: str, study: str | None, tracking_uri: str | None) -> Target:
    """The storage of `experiment`'s sweep: its MLflow parent run's tag sweep.storage, else the
    default journal `.sweep/<experiment>.journal` here (also without any MLflow store)."""
    from sweep.search.study import default_storage

    local = default_storage(experiment, study)
    parent, why, notes = _parent_run(experiment, study, tracking_uri)
    default = f"the default journal of experiment {experiment!r}"
    if parent is None:
        if storage_file(local).is_file():
            return Target(local, study, source=default, notes=[f"{why}; using {default}"])
        raise DashboardError(f"{why}, and there is no {storage_file(local)}: pass --storage URL")
    study = study or parent.data.tags.get("optuna.study")
    tagged = parent.data.tags.get("sweep.storage")
    source = f"tag sweep.storage of the sweep's MLflow parent run {parent.info.run_id}"
    if tagged and f":{MASK}@" in tagged:
        # the tag never holds the password: libpq reads it from PGPASSWORD or ~/.pgpass
        hint = "its password: PGPASSWORD, ~/.pgpass, or --storage URL with the password"
        return Target(strip_uri_password(tagged), study, source, notes, hint)
    return Target(tagged or local, study, source if tagged else default, notes)


def _parent_run(experiment: str, study: str | None, tracking_uri: str | None):
    """(the sweep's MLflow parent run, "", notes) or (None, why there is none, [])."""
    from sweep.cli.report import ReportError, find_parent
    from sweep.cli.ui import check_store
    from sweep.track import tracking

    uri = tracking.resolve_uri(tracking_uri, option="--tracking-uri")
    db = tracking.sqlite_path(uri)
    if db is not None and not db.is_file():
        return None, f"no MLflow database {db}", []
    check_store(uri)  # an MLflow store that does not answer: one line, not minutes of retries
    client = tracking.client(uri)
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        return None, f"no MLflow experiment {experiment!r} in {mask_uri(uri)}", []
    try:
        parent, notes = find_parent(client, exp, study)
    except ReportError:
        which = f" for study {study!r}" if study else ""
        return None, f"MLflow experiment {experiment!r} has no sweep parent run{which}", []
    return parent, "", [n.replace("reporting the newest", "serving the newest") for n in notes]


def find_target(
    *,
    storage: str | None,
    experiment: str | None,
    study: str | None,
    tracking_uri: str | None,
    cwd: Path | None = None,
) -> Target:
    cwd = cwd or Path.cwd()
    if storage:
        return Target(storage_url(storage), study)
    if experiment:
        return from_experiment(experiment, study, tracking_uri)
    target = from_working_dir(cwd)
    target.study = study
    return target


# --------------------------------------------------------------------------- opening it


def open_target(target: Target):
    """The Optuna storage of `target` and the id of its study (None: no study named), checked:
    the file is there, the database answers, it holds the study."""
    from sweep.search.study import open_storage

    shown = mask_uri(target.url)
    path = storage_file(target.url)
    if path is not None and not path.is_file():
        raise DashboardError(f"no Optuna storage {path.resolve()} (from {target.source})")
    if "://" in target.url and not target.url.startswith("journal://"):
        _check_optuna_tables(target)
    try:
        storage = open_storage(target.url)
        studies = storage.get_all_studies()
    except UserError as e:
        why = f"; {target.hint}" if target.hint else ""
        raise DashboardError(f"{e}{why}") from None
    except Exception as e:  # noqa: BLE001 - a corrupt file or a foreign database: one line
        first = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
        raise DashboardError(f"Optuna storage {shown} cannot be read ({first})") from None
    if not studies:
        raise DashboardError(f"Optuna storage {shown} holds no study")
    names = [s.study_name for s in studies]
    if target.study is None and len(names) > 1:
        return storage, None  # the page listing them
    name = target.study or names[0]
    if name not in names:
        held = ", ".join(sorted(names))
        raise DashboardError(f"no study {name!r} in {shown} (it holds: {held})")
    return storage, storage.get_study_id_from_name(name)


def _check_optuna_tables(target: Target) -> None:
    """A database that answers and has Optuna's tables: Optuna would create them in any other
    (in an MLflow database given by mistake, say), and the dashboard must not write there."""
    import sqlalchemy

    shown = mask_uri(target.url)
    server = not target.url.startswith("sqlite")
    kwargs = {"connect_args": {"connect_timeout": 5}} if server else {}
    try:
        engine = sqlalchemy.create_engine(target.url, poolclass=sqlalchemy.pool.NullPool, **kwargs)
        try:
            tables = set(sqlalchemy.inspect(engine).get_table_names())
        finally:
            engine.dispose()
    except Exception as e:  # noqa: BLE001 - any driver error: one line
        first = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
        why = f"; {target.hint}" if target.hint else ""
        raise DashboardError(f"Optuna storage {shown} cannot be opened ({first}){why}") from None
    if not {"studies", "trials", "version_info"} <= tables:
        raise DashboardError(
            f"{shown} (from {target.source}) is not an Optuna storage: it has no Optuna tables"
        )


# --------------------------------------------------------------------------- serving


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True  # a request still open does not hold up Ctrl-C


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 - the base class's signature
        pass


def bind(app, host: str, port: int, access_log: bool = False) -> WSGIServer:
    """A threaded WSGI server listening on host:port (port 0: any free one)."""
    h = host.strip("[]")
    cls = _Server
    if ":" in h:
        cls = type("_Server6", (_Server,), {"address_family": socket.AF_INET6})
    handler = WSGIRequestHandler if access_log else _QuietHandler
    try:
        return make_server(h, port, app, server_class=cls, handler_class=handler)
    except OSError as e:
        raise DashboardError(
            f"cannot listen on {h}:{port} ({e.strerror or e}); pass --port N (0: any free port)"
        ) from None


def headless() -> bool:
    """No screen to open a browser on (a Linux/BSD box without X11 or Wayland: a server, CI, a
    plain SSH session, where `webbrowser` would start a text browser in the terminal)."""
    if sys.platform.startswith(("linux", "freebsd", "openbsd", "netbsd")):
        return not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
    return False


def start(target: Target, host: str, port: int, access_log: bool = False):
    """The checked storage and a bound server: (server, base URL, study page URL or None)."""
    storage, study_id = open_target(target)
    server = bind(None, host, port, access_log)  # a port in use is told before the slow import
    try:
        from optuna_dashboard import wsgi  # seconds: it imports scikit-learn where installed
    except ImportError:
        server.server_close()
        raise DashboardError(
            "optuna-dashboard is not installed here: pip install -e . (or pip install "
            "optuna-dashboard)"
        ) from None
    server.set_app(wsgi(storage))
    base = url_of(host, server.server_address[1]) + "/dashboard"
    page = f"{base}/studies/{study_id}" if study_id is not None else None
    return server, base, page


def serve(
    target: Target,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    *,
    allow_remote: bool = False,
    browser: bool = True,
    access_log: bool = False,
) -> int:
    """The `dashboard` command: check, bind, print the URL, serve until Ctrl-C or SIGTERM."""
    check_host(host, allow_remote)
    with _stopped_by_signals():
        server, base, page = start(target, host, port, access_log)
        _announce(target, host, base, page, browser)
        try:
            server.serve_forever(poll_interval=0.5)
        except KeyboardInterrupt:
            print("stopped", flush=True)
        finally:
            server.server_close()
    return 0


def _announce(target: Target, host: str, base: str, page: str | None, browser: bool) -> None:
    for note in target.notes:
        print(f"note: {note}", file=sys.stderr)
    print(f"optuna-dashboard on {mask_uri(target.url)} (from {target.source})", flush=True)
    warn_remote(host, "optuna-dashboard", "studies")
    print(f"open {page or base}", flush=True)
    print("Ctrl-C stops it", flush=True)
    if browser and not headless():
        import webbrowser

        threading.Thread(target=webbrowser.open, args=(page or base,), daemon=True).start()


@contextlib.contextmanager
def _stopped_by_signals():
    """Ctrl-C and SIGTERM both raise KeyboardInterrupt in the block (set explicitly: a process
    started in the background by a shell inherits SIGINT ignored)."""

    def _stop(signum, frame):
        raise KeyboardInterrupt

    previous = {sig: signal.signal(sig, _stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
