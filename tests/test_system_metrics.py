"""`tracking.system_metrics=true`: MLflow's own system metrics (CPU, memory, disk, network, and
GPU utilisation and memory through nvidia-ml-py) in every run the job creates; off by default.
Real SQLite MLflow stores; MLflow samples every 0.2 s here instead of its default 10 s.

.venv/bin/python -m pytest tests/test_system_metrics.py
"""

from __future__ import annotations

import threading
import time

import pytest
from conftest import TINY, compose, mlflow_client, runs_of

from sweep.core.config import validate


@pytest.fixture(autouse=True)
def sample_often(monkeypatch):
    # MLflow's own settings: a sample every 0.2 s, logged as soon as it is taken
    monkeypatch.setenv("MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL", "0.2")
    monkeypatch.setenv("MLFLOW_SYSTEM_METRICS_SAMPLES_BEFORE_LOGGING", "1")


def monitors() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "SystemMetricsMonitor" and t.is_alive()]


def system_metrics(client, run_id: str) -> dict[str, float]:
    metrics = client.get_run(run_id).data.metrics
    return {k: v for k, v in metrics.items() if k.startswith("system/")}


@pytest.mark.parametrize("status", ["FINISHED", "FAILED", "KILLED"])
def test_a_tracker_logs_system_metrics_only_when_asked_and_stops_at_the_end(workdir, status):
    from sweep.track.tracking import Tracker

    uri = f"sqlite:///{workdir / 'mlflow.db'}"
    runs = {}
    for on in (True, False):
        tracker = Tracker(uri, "system-metrics", system_metrics=on)
        tracker.start(f"system_metrics={on}")
        time.sleep(1.5)
        tracker.end(status)
        assert not monitors()  # every end of a run stops its sampling thread
        runs[on] = tracker.run_id
    client = mlflow_client(workdir)
    on = system_metrics(client, runs[True])
    assert on["system/cpu_utilization_percentage"] >= 0
    assert on["system/system_memory_usage_megabytes"] > 0
    assert client.get_run(runs[True]).info.status == status
    assert system_metrics(client, runs[False]) == {}


def test_system_metrics_are_off_by_default_and_a_bool(workdir):
    assert compose(["model=tiny"]).tracking.system_metrics is False
    with pytest.raises(Exception, match="system_metrics"):
        compose(["model=tiny", "tracking.system_metrics=sometimes"])
    validate(compose(["model=tiny", "tracking.system_metrics=true"]))  # a valid setting


def test_a_run_with_system_metrics_on_has_them_and_one_with_them_off_has_none(workdir):
    from sweep.train.runner import run_job

    # an evaluation every 2 steps: the run lasts a few of MLflow's samples
    base = [*TINY[:5], "trainer.eval_every=2", "trainer.logging_every=2"]
    uri = f"tracking.uri=sqlite:///{workdir / 'mlflow.db'}"
    on = run_job(compose([*base, uri, "tracking.system_metrics=true"]), want_outcome=True)
    off = run_job(compose([*base, uri]), want_outcome=True)
    assert not monitors()
    client = mlflow_client(workdir)
    assert "system/cpu_utilization_percentage" in system_metrics(client, on.run_id)
    assert system_metrics(client, off.run_id) == {}
    assert {r.info.run_id for r in runs_of(client, "tiny-synthetic")} == {on.run_id, off.run_id}
