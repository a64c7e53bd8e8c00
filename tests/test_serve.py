"""The registered champion takes plain text: in-process through `mlflow.pyfunc.load_model` and over
HTTP through `mlflow models serve --env-manager local` (a real server on 127.0.0.1), both on a real
SQLite store and registry under the test's own directory.

The champion is made the way a sweep's confirmation makes it, minus the search: a tiny model
trained once, logged with `confirm.log_model` on a real finished run and registered with
`confirm.register_model` (alias `champion`).

.venv/bin/python -m pytest tests/test_serve.py
"""

from __future__ import annotations

import contextlib
import json
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

import numpy as np
import pandas as pd
import pytest
from conftest import TINY, compose

NAME = "serve-tiny"
TEXTS = [
    "a fine film",
    "dull and far too long, and not good at all",
    "slow start, but a wonderful ending",
    "Überraschend schön: the cast is great",
]
# no model or dataset hub: the training here and the server's processes run offline
OFFLINE = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


@dataclass
class Champion:
    uri: str  # the tracking (and registry) URI of the store
    model_uri: str  # models:/<name>@champion
    labels: list[str]  # the model's label names, index -> name
    model_dir: str  # the saved model the champion was logged from
    root: Path  # the test's directory


@pytest.fixture(scope="module")
def champion(tmp_path_factory, cache_dir) -> Champion:
    """A tiny model trained once, logged on a real run and registered as `NAME@champion`, in a
    store under a directory whose name holds a space."""
    from sweep.search import confirm as cf
    from sweep.track.tracking import Tracker
    from sweep.train.loop import run_training

    root = tmp_path_factory.mktemp("serve") / "a store"
    root.mkdir()
    with pytest.MonkeyPatch.context() as mp:
        for key, value in OFFLINE.items():
            mp.setenv(key, value)
        mp.setenv("SWEEP_CACHE_DIR", str(cache_dir))
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        cfg = compose([x for x in TINY if not x.startswith("hydra.")] + ["trainer.max_steps=10"])
        model_dir = str(root / "model")
        result = run_training(cfg, save_to=model_dir)
        assert result.status == "completed"
        uri = f"sqlite:///{root / 'mlflow.db'}"
        tracker = Tracker(uri, NAME)
        tracker.start("winner")
        tracker.end()
        logged = cf.log_model(uri, tracker.run_id, model_dir)
        cf.register_model(uri, logged, NAME)
    labels = json.loads(Path(model_dir, "serving.json").read_text(encoding="utf-8"))["labels"]
    return Champion(uri, f"models:/{NAME}@champion", [str(n) for n in labels], model_dir, root)


def _load(champion: Champion):
    import mlflow

    mlflow.set_tracking_uri(champion.uri)
    return mlflow.pyfunc.load_model(champion.model_uri)


def _rows(predicted) -> tuple[list[str], np.ndarray]:
    """(labels, (n, classes) probabilities) of a prediction, a DataFrame or the server's records."""
    frame = pd.DataFrame(predicted)
    assert list(frame.columns) == ["label", "probabilities"], frame.columns
    return [str(x) for x in frame["label"]], np.array([list(p) for p in frame["probabilities"]])


def _check_valid(champion: Champion, labels: list[str], probs: np.ndarray, n: int) -> None:
    assert probs.shape == (n, len(champion.labels))
    assert np.all(probs >= 0) and np.all(probs <= 1)
    assert np.allclose(probs.sum(axis=1), 1.0, atol=1e-6)
    assert labels == [champion.labels[i] for i in probs.argmax(axis=1)]


def test_the_champion_predicts_plain_text_in_process(champion):
    from sweep.track.served import Classifier

    model = _load(champion)
    want = Classifier(champion.model_dir).probabilities(TEXTS)  # the saved model, directly
    n = len(TEXTS)
    inputs = {  # what: (input, how many of TEXTS it holds)
        "DataFrame with a text column": (pd.DataFrame({"text": TEXTS}), n),
        "DataFrame with text and an id": (pd.DataFrame({"text": TEXTS, "id": range(n)}), n),
        "DataFrame with an id before the text": (
            pd.DataFrame({"id": [f"r{i}" for i in range(n)], "text": TEXTS}),
            n,
        ),
        "list of strings": (list(TEXTS), n),
        "Series": (pd.Series(TEXTS), n),
        "Series named text": (pd.Series(TEXTS, name="text"), n),
        "numpy array of strings": (np.array(TEXTS), n),
        "one string": (TEXTS[0], 1),  # one text, not its characters
        "mapping with a text key": ({"text": TEXTS}, n),
    }
    failures = {}
    for what, (model_input, count) in inputs.items():
        try:
            predicted = model.predict(model_input)
        except Exception as e:  # every refused input is reported, not only the first
            failures[what] = f"{type(e).__name__}: {str(e)[-300:]}"
            continue
        labels, probs = _rows(predicted)
        _check_valid(champion, labels, probs, count)
        np.testing.assert_allclose(probs, want[:count], atol=1e-6, err_msg=what)
    assert not failures, failures
    # what holds no texts is refused with a message, never scored as str() of something else
    from mlflow.exceptions import MlflowException

    for bad in ([1, 2], ["a fine film", None], pd.DataFrame({"a": ["x"], "b": ["y"]})):
        with pytest.raises(MlflowException, match="cannot read the texts"):
            model.predict(bad)


# --------------------------------------------------------------------------- the scoring server


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# the local address is reached directly, whatever proxy the environment names
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _post(url: str, payload: dict, timeout: float = 60) -> tuple[int, str]:
    request = urllib.request.Request(
        url, data=json.dumps(payload).encode(), headers={"Content-Type": "application/json"}
    )
    try:
        with _OPENER.open(request, timeout=timeout) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def _wait_for_ping(base: str, proc: subprocess.Popen, log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"the server exited ({proc.returncode}):\n{log.read_text()[-3000:]}")
        try:
            with _OPENER.open(base + "/ping", timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.5)
    pytest.fail(f"no answer on {base}/ping in {timeout:.0f} s:\n{log.read_text()[-3000:]}")


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def _stop(proc: subprocess.Popen) -> None:
    """Stop the whole process group (the CLI and the uvicorn it starts): SIGTERM, and SIGKILL for
    whatever is left after 15 s (a SIGTERM the group ignores, inherited or not, changes nothing)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if proc.poll() is not None and not _group_alive(proc.pid):
            return
        time.sleep(0.2)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=15)


def _serve(champion: Champion, port: int, log: Path) -> subprocess.Popen:
    """`mlflow models serve` on the champion, in its own session, cwd and TMPDIR in the test's
    directory; `uvicorn` (which the command runs by name) from this interpreter's environment."""
    tmp = champion.root / "tmp"
    tmp.mkdir(exist_ok=True)
    bin_dir = str(Path(sys.executable).parent)
    env = {
        **os.environ,
        **OFFLINE,
        "MLFLOW_TRACKING_URI": champion.uri,
        "PATH": os.pathsep.join([bin_dir, os.environ.get("PATH", "")]),
        "TMPDIR": str(tmp),
        "PYTHONUNBUFFERED": "1",
    }
    command = [sys.executable, "-m", "mlflow", "models", "serve", "-m", champion.model_uri]
    command += ["--env-manager", "local", "--host", "127.0.0.1", "--port", str(port)]
    with open(log, "w") as out:
        return subprocess.Popen(
            command,
            cwd=champion.root,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


# the scoring server's JSON formats: what: (payload, how many of TEXTS it holds)
PAYLOADS = {
    "inputs: a list of strings": ({"inputs": TEXTS}, len(TEXTS)),
    "inputs: one string": ({"inputs": TEXTS[0]}, 1),
    "instances: a list of strings": ({"instances": TEXTS}, len(TEXTS)),
    "instances: records with a text field": (
        {"instances": [{"text": t} for t in TEXTS]},
        len(TEXTS),
    ),
    "dataframe_split": (
        {"dataframe_split": {"columns": ["text"], "data": [[t] for t in TEXTS]}},
        len(TEXTS),
    ),
    "dataframe_records": ({"dataframe_records": [{"text": t} for t in TEXTS]}, len(TEXTS)),
    "inputs: a text column": ({"inputs": {"text": TEXTS}}, len(TEXTS)),
    "inputs: records with a text field": ({"inputs": [{"text": t} for t in TEXTS]}, len(TEXTS)),
}


@pytest.mark.slow
def test_mlflow_models_serve_answers_labels_and_probabilities(champion):
    want_labels, want = _rows(_load(champion).predict(pd.DataFrame({"text": TEXTS})))
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    log = champion.root / "serve.log"
    started = time.monotonic()
    proc = _serve(champion, port, log)
    try:
        _wait_for_ping(base, proc, log, timeout=240)
        print(f"server up in {time.monotonic() - started:.1f} s")
        failures = {}
        for what, (payload, count) in PAYLOADS.items():
            status, body = _post(base + "/invocations", payload)
            if status != 200:
                failures[what] = f"{status}: {body[:300]}"
                continue
            labels, probs = _rows(json.loads(body)["predictions"])
            _check_valid(champion, labels, probs, count)
            assert labels == want_labels[:count], what
            np.testing.assert_allclose(probs, want[:count], atol=1e-5, err_msg=what)
        assert not failures, failures
        # no texts: the client's mistake (400, with the reason), and the server stays up
        status, body = _post(base + "/invocations", {"inputs": [1, 2]})
        assert status == 400 and "cannot read the texts" in body, (status, body[:300])
        assert _post(base + "/invocations", PAYLOADS["inputs: one string"][0])[0] == 200
    finally:
        _stop(proc)
    assert proc.poll() is not None
