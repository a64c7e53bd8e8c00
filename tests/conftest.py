"""Shared fixtures: a private working directory per test, offline settings, helpers that run
`train.py` as a real subprocess and compose the real Hydra config in-process.

Run everything with `make test` (or `.venv/bin/python -m pytest`); skip the slow ones with
`-m "not slow"`.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from sweep.core import trial_env
from sweep.search.workers import threads_each

ROOT = Path(__file__).resolve().parent.parent
TRAIN = ROOT / "train.py"

# a tiny, fast trial: tiny BERT on a small generated set
TINY = [
    "model=tiny",
    "data.train_size=160",
    "data.eval_size=64",
    "data.max_length=48",
    "trainer.train_batch_size=16",
    "trainer.eval_every=5",
    "trainer.logging_every=5",
    # a sweep runs in one process unless a test asks for local workers (tests/test_sweeper.py)
    "hydra.sweeper.n_workers=1",
    # no confirmation stage unless a test asks for it (tests/test_confirm.py)
    "hydra.sweeper.confirm.top_k=0",
]
# a sweep that prunes: random points over a range whose low end learns nothing, told on eval_loss
PRUNING = [
    "hydra.sweeper.sampler=random",
    "hydra.sweeper.pruner=median",
    "hydra.sweeper.pruner_warmup_steps=0",
    "trainer.objective=eval_loss",
    "optimizer.lr=tag(log, interval(1e-7, 3e-3))",
    "scheduler=constant",
]


def pytest_configure(config):
    # A shell starts background jobs (`cmd &` in a script) with SIGINT ignored, and an ignored
    # signal stays ignored across exec, so the processes under test would never see a Ctrl-C. A
    # *handled* signal is reset to its default on exec: with a handler in this process, every
    # process a test starts begins with SIGINT at its default, whatever the suite inherited.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    # With one pytest worker per core (make test), torch's default of one thread per core in
    # every process oversubscribes the cores, and its spinning OpenMP threads wait on each other:
    # two tiny runs side by side took 14 s of training each instead of 1.8 s (BENCHMARKS.md,
    # "The test suite"). Every process the suite starts gets its worker's share of the cores.
    # The product's own rule for trials side by side (sweep/search/workers.py).
    share = str(threads_each(int(getattr(config, "workerinput", {}).get("workercount", 1))))
    for key in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(key, share)


def pytest_collection_modifyitems(config, items):
    # the slow tests first (stable otherwise): with one worker per core (make test), the long ones
    # are spread over the workers from the start instead of meeting one worker at the end
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> Path:
    """Tokenized-data cache shared by the session (tests of the cache itself use their own)."""
    return tmp_path_factory.mktemp("tokcache")


@pytest.fixture(autouse=True)
def offline_env(monkeypatch, cache_dir):
    for key in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.setenv(key, "1")
    monkeypatch.setenv("SWEEP_CACHE_DIR", str(cache_dir))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    for key in trial_env.JOB_CONTEXT:
        monkeypatch.delenv(key, raising=False)


@pytest.fixture
def workdir(tmp_path, monkeypatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


def run_train(
    args: list[str], cwd: Path, timeout: float = 300, env: dict | None = None, preexec_fn=None
):
    """`python train.py ARGS` in `cwd`; returns the CompletedProcess (stdout+stderr merged).
    `preexec_fn` runs in the child before exec (e.g. to limit its address space)."""
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    return subprocess.run(
        [sys.executable, str(TRAIN), *args],
        cwd=cwd,
        env=full_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=timeout,
        preexec_fn=preexec_fn,
    )


def start_train(
    args: list[str],
    cwd: Path,
    env: dict | None = None,
    log: Path | None = None,
    preexec_fn=None,
):
    """Start `python train.py ARGS` without waiting (for kill / interrupt tests); `preexec_fn`
    runs in the child before exec (e.g. to start it with SIGINT ignored)."""
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    out = open(log or (cwd / "train.log"), "w")  # noqa: SIM115 - closed with the process
    return subprocess.Popen(
        [sys.executable, str(TRAIN), *args],
        cwd=cwd,
        env=full_env,
        stdout=out,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
        preexec_fn=preexec_fn,
    )


SHARED_DATA = ROOT.parent / "shared" / "data"


def shared_set(name: str) -> list[str]:
    """`data=files` overrides for a real labelled set in ../shared/data beside the clone (see its
    README; CI has the same copy: never copy it into the repo). Skips without it, and fails
    where the environment variable CI is set."""
    folder = SHARED_DATA / name
    missing = [n for n in ("train.csv", "validation.csv") if not (folder / n).is_file()]
    if missing:
        reason = f"no {', '.join(missing)} in {folder}: the real labelled set {name} is missing"
        if os.environ.get("CI"):
            pytest.fail(f"{reason} (CI is set: CI has them beside the clone)")
        pytest.skip(reason)
    return [
        "data=files",
        f"data.train_file={folder / 'train.csv'}",
        f"data.validation_file={folder / 'validation.csv'}",
        "data.text_column=text",
        "data.label_column=label",
    ]


def compose(overrides: list[str] | None = None, *, with_hydra: bool = False):
    """The real config, composed in-process like `python train.py OVERRIDES` would."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    from sweep.core.config import register_configs

    register_configs()
    import hydra_plugins.sweep_optuna.sweep_optuna  # noqa: F401 - registers hydra/sweeper=optuna

    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return hydra_compose("config", overrides=overrides or [], return_hydra_config=with_hydra)


def mlflow_client(workdir: Path):
    """A client on the test's SQLite store, opened under the same lock the project uses (a
    process may be creating the store right now)."""
    from sweep.track.tracking import client

    return client(f"sqlite:///{workdir / 'mlflow.db'}")


def sweep_study(workdir: Path, experiment: str, storage: str | None = None):
    """The one Optuna study a sweep made in `workdir`'s default journal for `experiment` (its
    name carries the sweep's identity: `<experiment>-<8 hex>`)."""
    study = study_if_made(workdir, experiment, storage)
    assert study is not None, f"expected one study for {experiment}, found none"
    return study


def studies_made(workdir: Path, experiment: str):
    """Every Optuna study in `workdir`'s default journal for `experiment`, by name."""
    import optuna

    from sweep.search.study import open_storage

    storage = open_storage(f"journal://{workdir / '.sweep' / (experiment + '.journal')}")
    names = optuna.study.get_all_study_names(storage=storage)
    return {n: optuna.load_study(study_name=n, storage=storage) for n in names}


def finished(study) -> int:
    """How many of a study's trials have ended (COMPLETE, PRUNED or FAIL)."""
    return sum(t.state.is_finished() for t in study.get_trials(deepcopy=False))


# a token given through the config (`+model.hf_token=...`) in the cluster tests
CONFIG_SECRET = "hf_cfgSecret7Qm2xW"


def assert_refused_secret(proc) -> None:
    """A sweep refused for a token in its config: exit 2, one `error:` line naming the key and
    the variable to set on the nodes instead, never the token itself."""
    errors = [line for line in proc.stdout.splitlines() if line.startswith("error:")]
    assert proc.returncode == 2 and len(errors) == 1, proc.stdout[-3000:]
    assert "model.hf_token" in errors[0] and "HF_TOKEN" in errors[0], errors[0]
    assert CONFIG_SECRET not in errors[0]


def study_if_made(workdir: Path, experiment: str, storage: str | None = None):
    """For polling while a sweep starts: its study, or None while there is none yet (the journal
    file exists a moment before the study does). More than one study is still an error."""
    import optuna

    from sweep.search.study import open_storage

    journal = workdir / ".sweep" / (experiment + ".journal")
    if storage is None and not journal.exists():
        return None
    opened = open_storage(storage or f"journal://{journal}")
    names = optuna.study.get_all_study_names(storage=opened)
    assert len(names) <= 1, f"expected one study, found {names}"
    return optuna.load_study(study_name=names[0], storage=opened) if names else None


def running_trial_run(client_of, match, metric: str, alive, why, timeout: float = 300):
    """A RUNNING MLflow run of the tiny sweeps' experiment for which `match(run)` holds, once it
    has logged `metric`: polled while `alive()`, with the client `client_of()` gives (None while
    the store is not there yet). Fails with `why()` when none shows up."""
    import time

    deadline = time.time() + timeout
    while time.time() < deadline and alive():
        time.sleep(0.5)
        client = client_of()
        exp = client.get_experiment_by_name("tiny-synthetic") if client is not None else None
        if exp is None:
            continue
        for run in client.search_runs([exp.experiment_id], "attributes.status = 'RUNNING'"):
            if metric in run.data.metrics and match(run):
                return run
    raise AssertionError(f"no trial started: {why()}")


def wait_for_metric(
    workdir: Path, proc, experiment: str, metric: str = "eval_f1", timeout: float = 180
):
    """(client, run): the first run of `experiment` in `workdir`'s store once it has logged
    `metric`, polled while `proc` runs; fails with the end of its log otherwise."""
    import time

    client, run = None, None
    deadline = time.time() + timeout
    while run is None and time.time() < deadline and proc.poll() is None:
        time.sleep(0.5)
        if (workdir / "mlflow.db").exists():
            client = client or mlflow_client(workdir)
            exp = client.get_experiment_by_name(experiment)
            runs = client.search_runs([exp.experiment_id]) if exp else []
            if runs and metric in runs[0].data.metrics:
                run = runs[0]
    log = workdir / "train.log"
    assert run is not None, log.read_text()[-2000:] if log.exists() else "no run"
    return client, run


def runs_of(client, experiment: str):
    exp = client.get_experiment_by_name(experiment)
    assert exp is not None, f"no MLflow experiment {experiment!r}"
    return client.search_runs([exp.experiment_id], max_results=1000)


def sweep_cli(args: list[str], cwd: Path, env: dict | None = None, timeout: float = 300):
    """`python -m sweep ARGS` in `cwd` (the package need not be installed)."""
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": path, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "sweep", *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
