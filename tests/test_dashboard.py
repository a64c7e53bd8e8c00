"""`python -m sweep dashboard`: optuna-dashboard on a real tiny sweep's study storage (journal
file, SQLite, PostgreSQL), checked in a real headless Chromium (Playwright driving Debian's
/usr/bin/chromium), and its bad-input lines.

.venv/bin/python -m pytest tests/test_dashboard.py                   # everything (~2 min, 2 cores)
.venv/bin/python -m pytest tests/test_dashboard.py -m "not slow"     # the refusals (seconds)

Each server is `python -m sweep dashboard --port 0` as a subprocess (the URL it prints is the one
that answers), stopped by its PID with SIGTERM. The Pareto-front view is checked on a real
two-objective sweep. Without /usr/bin/chromium (`apt-get install chromium`) the browser tests
are skipped, or fail when `CI` is set.
"""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest
from conftest import ROOT, TINY, mlflow_client, run_train, runs_of, sweep_cli, sweep_study
from services import PgCluster, ServiceUnavailable, unavailable

from sweep.cli import ui

EXPERIMENT = "tiny-synthetic"
N_TRIALS = 4
SWEEP = [
    "-m",
    *TINY,
    "data.max_train_samples=160",
    "data.max_eval_samples=64",
    "hydra.sweeper.heartbeat_interval=1",
]
CHROMIUM, CHROMIUM_ARGS = ui.CHROMIUM, ui.CHROMIUM_ARGS


def sweep_env(root: Path, cache: Path) -> dict[str, str]:
    return {"SWEEP_CACHE_DIR": str(cache), "MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}"}


@pytest.fixture(scope="module")
def journal_sweep(tmp_path_factory) -> Path:
    """A finished 4-trial tiny sweep in its default journal, `.sweep/tiny-synthetic.journal`."""
    root = tmp_path_factory.mktemp("journal-sweep")
    env = sweep_env(root, tmp_path_factory.mktemp("tokcache-dash"))
    proc = run_train([*SWEEP, f"hydra.sweeper.n_trials={N_TRIALS}"], root, env=env)
    assert proc.returncode == 0, proc.stdout[-4000:]
    return root


@pytest.fixture(scope="module")
def sqlite_sweep(tmp_path_factory) -> Path:
    """A finished 3-trial tiny sweep, experiment dash-sqlite, its study in SQLite (optuna.db)."""
    root = tmp_path_factory.mktemp("sqlite-sweep")
    env = sweep_env(root, tmp_path_factory.mktemp("tokcache-dash-sqlite"))
    args = [
        *SWEEP,
        "hydra.sweeper.n_trials=3",
        "tracking.experiment=dash-sqlite",
        f"hydra.sweeper.storage=sqlite:///{root / 'optuna.db'}",
    ]
    proc = run_train(args, root, env=env)
    assert proc.returncode == 0, proc.stdout[-4000:]
    return root


# --------------------------------------------------------------------------- the server


class Dashboard:
    """`python -m sweep dashboard ARGS` running: its process, what it printed, its URLs."""

    def __init__(self, args: list[str], cwd: Path, env: dict | None = None, timeout: float = 120):
        path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
        full_env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": path, **(env or {})}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "sweep", "dashboard", "--port", "0", "--no-browser", *args],
            cwd=cwd,
            env=full_env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: list[str] = []
        self._stopped: tuple[int, str] | None = None
        # read by a thread: select() on a text pipe misses lines already in Python's buffer
        self._read = queue.Queue()
        threading.Thread(target=self._reader, daemon=True).start()
        self.page = self._wait_for_url(timeout)
        self.base = re.match(r"(http://[^/]+)/dashboard", self.page).group(1)

    def _reader(self) -> None:
        for line in self.proc.stdout:
            self._read.put(line)
        self._read.put(None)

    def _wait_for_url(self, timeout: float) -> str:
        """The `open URL` line: printed once the server is listening."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self._read.get(timeout=1.0)
            except queue.Empty:
                continue
            if line is None:  # it exited
                self.proc.wait(10)
                raise AssertionError(f"dashboard exited: {''.join(self.lines)}{self.err()}")
            self.lines.append(line)
            if line.startswith("open http://"):
                return line.split()[1]
        self.stop()
        raise AssertionError(f"no URL within {timeout:.0f} s: {''.join(self.lines)}")

    def err(self) -> str:
        return self.proc.stderr.read() if self.proc.poll() is not None else ""

    def api(self, path: str):
        with urllib.request.urlopen(self.base + path, timeout=30) as resp:
            return json.loads(resp.read())

    def stop(self) -> tuple[int, str]:
        """SIGTERM to its PID; its exit code and the rest of its output (once: later calls
        return the same)."""
        if self._stopped is not None:
            return self._stopped
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        rest = []
        while (line := self._read.get(timeout=10)) is not None:
            rest.append(line)
        self._stopped = (self.proc.returncode, "".join(rest))
        return self._stopped

    def __enter__(self) -> Dashboard:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def stopped_cleanly(dash: Dashboard) -> None:
    code, rest = dash.stop()
    assert code == 0 and "stopped" in rest, (code, rest)


def check_serves(dash: Dashboard, study) -> int:
    """The API behind the pages serves `study`: its trials and the importance of each of its
    parameters. Returns the study's id in the dashboard."""
    summaries = dash.api("/api/studies")["study_summaries"]
    ids = {s["study_name"]: s["study_id"] for s in summaries}
    assert study.study_name in ids, summaries
    study_id = ids[study.study_name]
    assert dash.page.endswith(f"/dashboard/studies/{study_id}")
    detail = dash.api(f"/api/studies/{study_id}")
    assert sorted(t["number"] for t in detail["trials"]) == sorted(t.number for t in study.trials)
    importances = dash.api(f"/api/studies/{study_id}/param_importances")["param_importances"][0]
    assert {i["name"] for i in importances} == set(study.best_trial.params)
    return study_id


# --------------------------------------------------------------------------- the browser


def browser_page(p):
    """A headless Chromium page (the caller closes its browser)."""
    browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
    return browser, browser.new_page(viewport={"width": 1600, "height": 1200})


def need_browser():
    if not Path(CHROMIUM).exists():
        unavailable(f"{CHROMIUM} is absent (Debian package chromium)")
    try:
        from playwright import sync_api
    except ImportError:
        unavailable("playwright is not installed (part of the dev extra)")
    return sync_api


def card(page, title: str):
    """The dashboard's card (a MUI Card) whose heading is `title`."""
    heading = page.get_by_role("heading", name=title, exact=True).first
    heading.wait_for(timeout=120_000)
    return heading.locator("xpath=ancestor::div[contains(@class, 'MuiCard-root')][1]")


def check_study_page(page, url: str, study, shots: Path) -> None:
    """The study's page: its name, the best trial, and the importance of every searched
    parameter drawn; its trial list: every trial by number."""
    # the first load of the bundle in a cold browser on a busy 2-core machine can be slow; what
    # counts is that the content shows up, which the waits below are for
    page.goto(url, wait_until="domcontentloaded", timeout=120_000)
    page.get_by_text(study.study_name).first.wait_for(timeout=120_000)
    importance = card(page, "Hyperparameter Importance")
    for name in study.best_trial.params:  # the bars' labels, drawn by plotly as SVG text
        importance.locator("svg text", has_text=name).first.wait_for(timeout=60_000)
    # the best trial's card: its number in the title, its value under it
    best = card(page, f"Best Trial (number={study.best_trial.number})")
    value = study.best_value  # as JavaScript prints it: 0.0 is "0"
    shown = str(int(value)) if float(value).is_integer() else repr(value)
    best.get_by_text(shown, exact=True).first.wait_for(timeout=30_000)
    page.screenshot(path=str(shots / "study.png"), full_page=True)

    page.goto(url + "/trials", wait_until="domcontentloaded", timeout=120_000)
    page.get_by_text(f"{len(study.trials)} Trials", exact=True).wait_for(timeout=120_000)
    for t in study.trials:
        page.get_by_text(f"Trial {t.number}", exact=True).first.wait_for(timeout=30_000)
    page.screenshot(path=str(shots / "trials.png"), full_page=True)


@pytest.mark.slow
@pytest.mark.browser
def test_dashboard_shows_the_journal_sweep_in_chromium(journal_sweep, tmp_path):
    """No options, in the sweep's directory: the one journal in .sweep/ is served, the study's
    page shows its trials and the importance of each searched parameter."""
    sync_api = need_browser()
    study = sweep_study(journal_sweep, EXPERIMENT)
    assert len(study.trials) == N_TRIALS and len(study.best_trial.params) >= 2
    with Dashboard([], journal_sweep) as dash:
        assert f"{EXPERIMENT}.journal" in "".join(dash.lines)
        check_serves(dash, study)
        with sync_api.sync_playwright() as p:
            browser, page = browser_page(p)
            try:
                check_study_page(page, dash.page, study, tmp_path)
            finally:
                browser.close()
        stopped_cleanly(dash)


@pytest.mark.slow
@pytest.mark.browser
def test_dashboard_finds_a_sqlite_study_from_the_experiment(sqlite_sweep, tmp_path):
    """`--experiment NAME`: the parent run's tag sweep.storage names the SQLite database."""
    sync_api = need_browser()
    url = f"sqlite:///{sqlite_sweep / 'optuna.db'}"
    study = sweep_study(sqlite_sweep, "dash-sqlite", storage=url)
    with Dashboard(["--experiment", "dash-sqlite"], sqlite_sweep) as dash:
        printed = "".join(dash.lines)
        assert url in printed and "sweep.storage" in printed, printed
        check_serves(dash, study)
        with sync_api.sync_playwright() as p:
            browser, page = browser_page(p)
            try:
                check_study_page(page, dash.page, study, tmp_path)
            finally:
                browser.close()
        stopped_cleanly(dash)
    # the same database named directly, as a path: the same study
    with Dashboard(["--storage", str(sqlite_sweep / "optuna.db")], tmp_path) as dash:
        check_serves(dash, study)
        stopped_cleanly(dash)


@pytest.mark.browser
@pytest.mark.slow
def test_dashboard_draws_the_pareto_front_of_a_two_objective_sweep(tmp_path, tmp_path_factory):
    """A real two-objective sweep (eval_loss against trainable parameters, the tiny model's width
    searched): the study's page draws its Pareto front, each trial a point, the front's
    members (the runs the sweep tagged sweep.pareto=true) in their own trace."""
    sync_api = need_browser()
    env = sweep_env(tmp_path, tmp_path_factory.mktemp("tokcache-dash-pareto"))
    n = 6
    args = [
        *SWEEP,
        f"hydra.sweeper.n_trials={n}",
        "trainer.objective=[eval_loss,perf.params]",
        "model.hidden_size=choice(16,32)",
        "tracking.experiment=dash-pareto",
    ]
    proc = run_train(args, tmp_path, env=env, timeout=900)
    assert proc.returncode == 0, proc.stdout[-4000:]
    study = sweep_study(tmp_path, "dash-pareto")
    front = {t.number for t in study.best_trials}
    assert 1 <= len(front) < n
    client = mlflow_client(tmp_path)
    tagged = {
        int(r.data.tags["optuna.trial_number"])
        for r in runs_of(client, "dash-pareto")
        if r.data.tags.get("sweep.pareto") == "true"
    }
    assert tagged == front
    journal = tmp_path / ".sweep" / "dash-pareto.journal"
    with Dashboard(["--storage", str(journal)], tmp_path) as dash:
        study_id = dash.api("/api/studies")["study_summaries"][0]["study_id"]
        detail = dash.api(f"/api/studies/{study_id}")
        assert {t["number"] for t in detail["best_trials"]} == front
        with sync_api.sync_playwright() as p:
            browser, page = browser_page(p)
            try:
                page.goto(dash.page, wait_until="domcontentloaded", timeout=120_000)
                check_pareto_card(page, n, front)
                page.screenshot(path=str(tmp_path / "pareto.png"), full_page=True)
            finally:
                browser.close()
        stopped_cleanly(dash)


def check_pareto_card(page, n: int, front: set[int]) -> None:
    pareto = card(page, "Pareto Front")
    # plotly draws one marker per trial (front and the rest); wait for all of them
    points = pareto.locator("g.points path.point")
    deadline = time.monotonic() + 60
    while points.count() < n and time.monotonic() < deadline:
        page.wait_for_timeout(250)
    assert points.count() == n, points.count()
    # in two traces: the trials off the front, and the front in its own colours
    traces = pareto.locator("g.trace.scatter").all()
    counts = sorted(t.locator("path.point").count() for t in traces)
    assert counts == sorted(c for c in (n - len(front), len(front)) if c), counts
    if len(front) == 1:  # one best trial gets a card of its own, its number in the title
        card(page, f"Best Trial (number={min(front)})")
        return
    best = card(page, "Best Trials")
    for number in front:
        best.get_by_text(f"Trial {number}", exact=True).wait_for(timeout=30_000)


# --------------------------------------------------------------------------- PostgreSQL


@pytest.mark.slow
@pytest.mark.postgres
def test_dashboard_on_a_postgres_study_with_the_password_from_pgpassword(tmp_path_factory):
    """A sweep on PostgreSQL (password in its storage URL, so MLflow's tag holds it masked):
    `--experiment` serves it with the password from PGPASSWORD; without it, one line that says
    where the password goes, before any server starts."""
    try:
        pg = PgCluster().start()
    except ServiceUnavailable as e:
        unavailable(str(e))
    try:
        storage = pg.create_database("dash", "dash", "dash-pw-1")
        root = tmp_path_factory.mktemp("pg-sweep")
        env = sweep_env(root, tmp_path_factory.mktemp("tokcache-dash-pg"))
        args = [*SWEEP, "hydra.sweeper.n_trials=2", f"hydra.sweeper.storage={storage}"]
        proc = run_train(args, root, env=env)
        assert proc.returncode == 0, proc.stdout[-4000:]
        study = sweep_study(root, EXPERIMENT, storage=storage)

        no_password = {"PGPASSWORD": "", "PGPASSFILE": str(root / "no-pgpass")}
        bad = sweep_cli(["dashboard", "--experiment", EXPERIMENT, "--port", "0"], root, no_password)
        assert bad.returncode == 2, bad.stdout + bad.stderr
        assert one_error_line(bad).endswith(
            "its password: PGPASSWORD, ~/.pgpass, or --storage URL with the password"
        )
        assert "dash-pw-1" not in bad.stderr and "open http" not in bad.stdout

        with Dashboard(["--experiment", EXPERIMENT], root, {"PGPASSWORD": "dash-pw-1"}) as dash:
            assert f"postgresql://dash@127.0.0.1:{pg.port}/dash" in "".join(dash.lines)
            check_serves(dash, study)
            stopped_cleanly(dash)
    finally:
        pg.stop()


# --------------------------------------------------------------------------- bad input


def one_error_line(proc: subprocess.CompletedProcess) -> str:
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    return lines[0]


@pytest.fixture()
def stores(workdir) -> Path:
    """A journal with study `s1`, a SQLite database that is not Optuna's, nothing else."""
    import optuna

    (workdir / ".sweep").mkdir()
    optuna.create_study(
        study_name="s1",
        storage=optuna.storages.JournalStorage(
            optuna.storages.journal.JournalFileBackend(str(workdir / ".sweep" / "exp.journal"))
        ),
    ).add_trial(optuna.trial.create_trial(params={}, distributions={}, value=1.0))
    with sqlite3.connect(workdir / "other.db") as db:
        db.execute("CREATE TABLE runs (id TEXT)")
    return workdir


@pytest.mark.parametrize(
    "args,message",
    [
        (["--storage", "missing.journal"], "error: no Optuna storage {cwd}/missing.journal"),
        (["--storage", "sqlite:///missing.db"], "error: no Optuna storage {cwd}/missing.db"),
        (["--storage", "other.db"], "is not an Optuna storage: it has no Optuna tables"),
        (["--study", "s2"], "error: no study 's2' in journal://{cwd}/.sweep/exp.journal"),
        (["--experiment", "nope"], "error: no MLflow database {cwd}/mlflow.db, and there is no"),
        (["--host", "0.0.0.0"], "error: refusing to serve optuna-dashboard on 0.0.0.0"),
        (
            ["--storage", "postgresql://u:secret@127.0.0.1:{closed}/optuna"],
            "error: Optuna storage postgresql://u:***@127.0.0.1:{closed}/optuna cannot be opened",
        ),
    ],
)
def test_bad_input_is_one_line_before_any_server(stores, args, message):
    closed = ui.free_port()  # nothing listens there
    args = [a.format(closed=closed) for a in args]
    started = time.monotonic()
    proc = sweep_cli(["dashboard", "--port", "0", *args], stores, timeout=60)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert message.format(cwd=stores, closed=closed) in one_error_line(proc)
    assert "secret" not in proc.stderr
    assert proc.stdout == ""  # nothing was served
    assert time.monotonic() - started < 30
    assert sorted(p.name for p in stores.iterdir()) == [".sweep", "other.db"]  # nothing created
    with sqlite3.connect(stores / "other.db") as db:  # and nothing written into a foreign db
        tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
    assert tables == ["runs"]


def test_a_port_in_use_is_one_line(stores):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        proc = sweep_cli(["dashboard", "--no-browser", "--port", str(port)], stores, timeout=60)
    assert proc.returncode == 2
    assert f"cannot listen on 127.0.0.1:{port}" in one_error_line(proc)
    assert "--port N" in proc.stderr


def test_several_journals_need_a_choice(stores):
    (stores / ".sweep" / "another.journal").write_text("")
    proc = sweep_cli(["dashboard", "--port", "0"], stores, timeout=60)
    assert proc.returncode == 2
    line = one_error_line(proc)
    assert "holds 2 sweep journals (another, exp)" in line and "--experiment NAME" in line


def test_no_sweep_here_says_what_to_run(workdir):
    proc = sweep_cli(["dashboard", "--port", "0"], workdir, timeout=60)
    assert proc.returncode == 2
    assert "no sweep journal in" in one_error_line(proc) and "python train.py -m" in proc.stderr
    assert not (workdir / ".sweep").exists()


def test_headless_never_opens_a_browser(monkeypatch):
    from sweep.cli import dashboard

    monkeypatch.setattr(sys, "platform", "linux")
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    assert dashboard.headless()
    monkeypatch.setenv("DISPLAY", ":0")
    assert not dashboard.headless()


def test_storage_paths_become_urls(tmp_path):
    from sweep.cli.dashboard import storage_url

    db = tmp_path / "a.db"
    with sqlite3.connect(db) as c:
        c.execute("CREATE TABLE t (a)")
    assert storage_url(str(db)) == f"sqlite:///{db}"
    assert storage_url(str(tmp_path / "s.journal")) == f"journal://{tmp_path / 's.journal'}"
    assert storage_url("postgresql://u@h/db") == "postgresql://u@h/db"
