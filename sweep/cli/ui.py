"""`python -m sweep ui`: the MLflow UI on the configured tracking store.

    python -m sweep ui [--host 127.0.0.1] [--port 5000] [--tracking-uri URI] [--allow-remote]

Runs `mlflow server` as a subprocess on the same store `train.py` logs to (a SQLite store is served
from its own directory, with its artifacts in `mlartifacts/` beside the database), waits for its
/health endpoint and prints the URL. The MLflow UI has no login: anyone who reaches it can read,
change and delete runs. So it binds to 127.0.0.1 unless told otherwise, and a host outside the
loopback range is refused unless `--allow-remote` is given.

`start()` is the programmatic form (tests, notebooks): it returns the running server and its URL.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from sweep.core.config import mask_uri
from sweep.core.errors import UserError
from sweep.track.tracking import artifact_root, check_reachable, sqlite_path

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 5000


class UIError(UserError, ValueError):
    """The UI cannot be started as asked; one line."""


def is_loopback(host: str) -> bool:
    """`localhost`, 127.0.0.0/8 and ::1 reach only this machine; everything else may not."""
    h = host.strip().strip("[]").lower()
    if h == "localhost":
        return True
    try:
        return ipaddress.ip_address(h).is_loopback
    except ValueError:  # a host name other than localhost may resolve anywhere
        return False


def refuse_remote(host: str, allow_remote: bool, server: str, holds: str, error=None) -> None:
    """A server without a login binds to a loopback host unless the user allows otherwise."""
    if not is_loopback(host) and not allow_remote:
        raise (error or UIError)(
            f"refusing to serve {server} on {host}: it has no login, so anyone who can reach "
            f"it could read and delete your {holds}; use a loopback host (127.0.0.1) or pass "
            "--allow-remote"
        )


def warn_remote(host: str, server: str, holds: str) -> None:
    """The one line a server bound beyond loopback (--allow-remote) prints when it starts."""
    if not is_loopback(host):
        print(
            f"warning: serving on {host} (--allow-remote): {server} has no login; anyone "
            f"who can reach this port can read and delete {holds}",
            flush=True,
        )


def check_host(host: str, allow_remote: bool) -> None:
    refuse_remote(host, allow_remote, "the MLflow UI", "runs")


def _url_host(host: str) -> str:
    """Where to reach a server bound to `host` from this machine."""
    h = host.strip("[]")
    if h in ("0.0.0.0", ""):
        return "127.0.0.1"
    if h == "::":
        h = "::1"
    return f"[{h}]" if ":" in h else h


def url_of(host: str, port: int) -> str:
    return f"http://{_url_host(host)}:{port}"


def server_command(
    uri: str,
    host: str,
    port: int,
    *,
    workers: int = 1,
    allowed_hosts: str | None = None,
    cors_allowed_origins: str | None = None,
    access_log: bool = False,
) -> tuple[list[str], Path | None]:
    """The `mlflow server` command line for the store `uri`, and the directory to run it in.
    Without `access_log`, uvicorn's line per HTTP request (dozens per page) is left out."""
    if uri.startswith(("http://", "https://")):
        raise UIError(
            f"the tracking store {mask_uri(uri)} is an MLflow server already: open it in a browser"
        )
    cmd = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", uri]
    cwd = None
    db = sqlite_path(uri)
    if db is not None:
        # served from the database's folder, so `mlartifacts/` resolves beside it
        cwd = db.parent
        root = artifact_root(uri)
        cmd += ["--default-artifact-root", root, "--artifacts-destination", root]
    cmd += ["--host", host.strip("[]"), "--port", str(port), "--workers", str(workers)]
    if allowed_hosts:
        cmd += ["--allowed-hosts", allowed_hosts]
    if cors_allowed_origins:
        cmd += ["--cors-allowed-origins", cors_allowed_origins]
    if not access_log:
        cmd += ["--uvicorn-opts", "--no-access-log"]
    return cmd, cwd


def check_store(uri: str) -> None:
    """The store exists and answers; a missing SQLite file is an error, not a new empty store."""
    from sweep.track.tracking import TrackingError

    try:
        check_reachable(uri)
    except TrackingError as e:
        raise UIError(str(e).replace("tracking.uri=...", "--tracking-uri URI")) from None
    db = sqlite_path(uri)
    if db is not None and not db.is_file():
        raise UIError(
            f"no MLflow database {db}: run a sweep here first (python train.py -m) "
            "or pass --tracking-uri URI"
        )


def check_port_free(host: str, port: int) -> None:
    h = host.strip("[]")
    family = socket.AF_INET6 if ":" in h else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((h, port))
        except OSError as e:
            raise UIError(f"cannot listen on {h}:{port} ({e.strerror}); pass --port N") from None


def free_port(host: str = DEFAULT_HOST) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


@dataclass
class Server:
    """A running MLflow UI: the subprocess (leader of its own process group) and its URL."""

    proc: subprocess.Popen
    url: str

    def stop(self, timeout: float = 15.0) -> int:
        """SIGTERM to the whole group (`mlflow server` and its uvicorn process, which shuts down
        gracefully on it), then SIGKILL if it lingers. Returns the server's exit code."""
        for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
            if self.proc.poll() is not None:
                break
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(wait)
        with contextlib.suppress(ProcessLookupError):  # workers left behind by the leader
            os.killpg(self.proc.pid, signal.SIGKILL)
        return self.proc.wait()

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def wait_healthy(server: Server, timeout: float, log_file: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        code = server.proc.poll()
        if code is not None:
            tail = ""
            if log_file is not None and log_file.is_file():
                lines = log_file.read_text(errors="replace").strip().splitlines()
                tail = f": {lines[-1][:300]}" if lines else ""
            raise UIError(f"mlflow server exited with code {code} before it was ready{tail}")
        try:
            with urllib.request.urlopen(server.url + "/health", timeout=2) as resp:
                if resp.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.3)
    server.stop()
    raise UIError(f"mlflow server did not answer {server.url}/health within {timeout:.0f}s")


def start(
    uri: str,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    *,
    allow_remote: bool = False,
    workers: int = 1,
    allowed_hosts: str | None = None,
    cors_allowed_origins: str | None = None,
    access_log: bool = False,
    log: IO | Path | None = None,
    timeout: float = 180.0,
) -> Server:
    """Start the MLflow UI on `uri` and return it once /health answers.

    `log`: where the server's output goes (a path or an open file; default: inherited).
    The caller stops it with `server.stop()` (or `with start(...) as server:`)."""
    check_host(host, allow_remote)
    check_store(uri)
    check_port_free(host, port)
    cmd, cwd = server_command(
        uri,
        host,
        port,
        workers=workers,
        allowed_hosts=allowed_hosts,
        cors_allowed_origins=cors_allowed_origins,
        access_log=access_log,
    )
    log_file = Path(log) if isinstance(log, str | Path) else None
    out = open(log_file, "w") if log_file else log  # noqa: SIM115 - the child holds it
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("MLFLOW_TRACKING_URI", None)  # the server's own store is --backend-store-uri
    try:
        proc = subprocess.Popen(
            cmd,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT if out is not None else None,
            start_new_session=True,  # its own group: stop() reaches the uvicorn workers too
        )
    finally:
        if log_file is not None:
            out.close()
    server = Server(proc, url_of(host, port))
    try:
        wait_healthy(server, timeout, log_file)
    except BaseException:
        server.stop()
        raise
    return server


def experiment_url(uri: str, base_url: str, experiment: str) -> str:
    """The runs table of one experiment. MLflow 3.17 opens an experiment on its GenAI overview
    unless the page is asked for the model-training workflow."""
    from sweep.track import tracking

    exp = tracking.client(uri).get_experiment_by_name(experiment)
    if exp is None:
        raise UIError(f"no MLflow experiment {experiment!r} in {mask_uri(uri)}")
    return f"{base_url}/#/experiments/{exp.experiment_id}/runs?workflowType=machine_learning"


def serve(
    uri: str,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    *,
    allow_remote: bool = False,
    experiment: str | None = None,
    **kwargs,
) -> int:
    """The `ui` command: start, print the URL, run until Ctrl-C (or SIGTERM), stop cleanly."""
    check_host(host, allow_remote)
    check_store(uri)
    check_port_free(host, port)
    print(f"MLflow UI on {mask_uri(uri)}", flush=True)
    warn_remote(host, "the MLflow UI", "runs")

    def _stop(signum, frame):  # Ctrl-C and SIGTERM both stop the server cleanly
        raise KeyboardInterrupt

    # set explicitly: a process started in the background by a shell inherits SIGINT ignored
    previous = {sig: signal.signal(sig, _stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    server = None
    try:
        server = start(uri, host, port, allow_remote=allow_remote, **kwargs)
        print(f"open {server.url}", flush=True)
        if experiment:
            print(f"experiment {experiment}: {experiment_url(uri, server.url, experiment)}")
        print("Ctrl-C stops it", flush=True)
        code = server.proc.wait()
        print(f"mlflow server exited with code {code}", flush=True)
        return 0 if code == 0 else 1
    except KeyboardInterrupt:
        if server is not None:
            server.stop()
        print("stopped", flush=True)
        return 0
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if server is not None and server.proc.poll() is None:
            server.stop()


# --------------------------------------------------------------------------- driving the page
# Helpers for a Playwright page on the MLflow 3.17 runs table, shared by tests/test_ui.py and
# docs/screenshots.py (they take the page object; Playwright itself is a dev dependency).

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
RUN_NAME_COLUMN = "attributes.`Run Name`"


def close_assistant(page) -> None:
    """MLflow 3.17 opens its assistant panel beside the runs table; close it when present."""
    close = page.get_by_role("button", name="Close", exact=True)
    if close.count():
        close.first.click()


def expand_parent(page, run_name: str) -> None:
    """MLflow nests child runs under their parent: click the parent row's expander."""
    cell = page.locator(f"[role=gridcell][col-id='{RUN_NAME_COLUMN}']", has_text=run_name).first
    cell.locator("button").first.click()


def show_columns(page, columns: list[str]) -> None:
    """Add metric / param columns to the runs table through its Columns selector."""
    page.get_by_role("button", name="Columns", exact=True).click()
    search = page.get_by_placeholder("Search columns")
    tree = page.locator("[data-testid=column-selector-tree]")
    for col in columns:
        search.fill(col)
        tree.get_by_text(col, exact=True).first.click()
    page.keyboard.press("Escape")
    page.locator("[role=columnheader]", has_text=columns[-1]).first.wait_for(timeout=30_000)


def row_cells(page, run_name: str) -> dict[str, str]:
    """The runs-table row of `run_name`: column header -> cell text. The table renders its
    pinned and scrolling columns as separate row elements, matched here by their row index."""
    cell = page.locator(f"[role=gridcell][col-id='{RUN_NAME_COLUMN}']", has_text=run_name).first
    index = cell.locator("xpath=ancestor::*[@role='row'][1]").get_attribute("row-index")
    headers = {
        h.get_attribute("col-id"): h.inner_text().strip()
        for h in page.locator("[role=columnheader]").all()
    }
    out = {}
    for row in page.locator(f"[role=row][row-index='{index}']").all():
        for c in row.locator("[role=gridcell]").all():
            col = c.get_attribute("col-id")
            out[headers.get(col) or col] = c.inner_text().strip()
    return out
