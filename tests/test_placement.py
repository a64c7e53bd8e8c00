"""GPU placement of a sweep's local workers (sweep/search/workers.py) and of one run
(sweep/train/gpu.py): how many workers, which GPU each one sees, the environment each worker
process really gets, and the bad settings refused before any training. This machine has no GPU:
the placement is a function of the visible ids, tested here for any machine; the worker
processes and the refusals are real.

.venv/bin/python -m pytest tests/test_placement.py
"""

from __future__ import annotations

import json
import os
import sys

import pytest
from conftest import TINY
from test_bad_input import assert_no_store, bad_run

from sweep.core.config import ConfigError
from sweep.core.devices import GPU_ENV
from sweep.search import workers

EIGHT = [str(i) for i in range(8)]


def devices(gpus="auto", per_gpu=1, n_workers="auto", visible=EIGHT, **kw):
    opts = {"device": "auto", "in_process": True, "cores_here": 16, **kw}
    return workers.place(gpus, per_gpu, n_workers, visible=visible, **opts).devices


@pytest.mark.parametrize(
    "kwargs,want",
    [
        # one GPU: one worker on it; two trials per GPU: two workers on it
        ({"visible": ["0"]}, ["0"]),
        ({"visible": ["0"], "per_gpu": 2}, ["0", "0"]),
        # eight GPUs: one worker per GPU, or four per GPU dealt round-robin
        ({}, EIGHT),
        ({"per_gpu": 4}, EIGHT * 4),
        # a subset, by id; ids are the sweep process's own (CUDA_VISIBLE_DEVICES=4,5,6 -> 0,1,2)
        ({"gpus": [1, 3]}, ["1", "3"]),
        ({"gpus": [0, 2], "visible": ["4", "5", "6"]}, ["4", "6"]),
        ({"visible": ["GPU-5f3a", "MIG-1c2d"]}, ["GPU-5f3a", "MIG-1c2d"]),
        # fewer workers than slots spread over the GPUs, more wrap around
        ({"n_workers": 3, "per_gpu": 2, "visible": ["0", "1"]}, ["0", "1", "0"]),
        ({"n_workers": 5, "visible": ["0", "1"]}, ["0", "1", "0", "1", "0"]),
        # no GPU: the CPU rule (one worker per core, at most 4), environment untouched
        ({"visible": []}, [None] * workers.MAX_AUTO),
        ({"visible": [], "cores_here": 2}, [None, None]),
        ({"visible": [], "n_workers": 3}, [None] * 3),
        # GPUs there but not for this sweep: every worker has them hidden
        ({"gpus": "none", "n_workers": 2}, ["", ""]),
        ({"device": "cpu", "n_workers": 2}, ["", ""]),
        # a parallel launcher runs trials side by side already: one worker, unpinned
        ({"in_process": False}, [None]),
    ],
)
def test_placement_by_visible_gpus_and_trials_per_gpu(kwargs, want):
    assert devices(**kwargs) == want


def test_fewer_trials_left_than_workers_keeps_them_spread_over_the_gpus():
    place = workers.place(
        "auto", 2, "auto", visible=["0", "1"], device="auto", in_process=True, cores_here=8
    )
    assert place.devices == ["0", "1", "0", "1"] and place.gpus == ["0", "1"]
    assert place.trimmed(3).devices == ["0", "1", "0"]
    assert place.trimmed(0).devices == ["0"]  # the main worker is always there


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"gpus": [0, 1], "visible": []}, "hydra.sweeper.gpus=[0, 1] but torch sees no CUDA GPU"),
        ({"gpus": [0, 2], "visible": ["0", "1"]}, "names GPU 2, but this machine shows 2"),
        ({"gpus": [0, 0]}, "a list of distinct GPU ids"),
        ({"gpus": ["a"]}, "a list of distinct GPU ids"),
        ({"gpus": -1}, "a list of distinct GPU ids"),
        ({"gpus": True}, "a list of distinct GPU ids"),
        ({"per_gpu": 0}, "hydra.sweeper.trials_per_gpu must be >= 1, got 0"),
        ({"gpus": "none", "device": "cuda"}, "trainer.device=cuda contradicts"),
    ],
)
def test_bad_placement_settings_are_one_line(kwargs, message):
    with pytest.raises(ConfigError) as e:
        devices(**kwargs)
    assert message in str(e.value) and "\n" not in str(e.value)


# --------------------------------------------------------------------------- real processes

REPORT = "import json, os, sys; json.dump(dict(os.environ), open(sys.argv[1], 'w'))"


def test_each_helper_process_gets_its_own_gpu_and_the_parent_keeps_its_environment(tmp_path):
    """The environment each worker process really gets: its own CUDA_VISIBLE_DEVICES (or this
    process's, for None), the main worker's key, and nothing changed in this process."""
    before = dict(os.environ)
    helpers = workers.Helpers()
    outs = [tmp_path / f"env-{i}.json" for i in range(4)]
    placed = ["0", "1", "GPU-5f3a", None]
    for i, device in enumerate(placed):
        # one helper per call, each told where to write what it got (the command is the only
        # difference; a sweep's helpers share one)
        helpers.start([placed[0], device], tmp_path, None, [sys.executable, "-c", REPORT, outs[i]])
    assert helpers.wait(timeout=60) == []
    got = [json.loads(p.read_text()) for p in outs]
    assert [g.get(GPU_ENV) for g in got[:3]] == ["0", "1", "GPU-5f3a"]
    assert got[3].get(GPU_ENV) == os.environ.get(GPU_ENV)  # None: inherited as it is
    assert {g[workers.KEY_ENV] for g in got} == {workers.main_key()}
    assert all(g[workers.HELPER_ENV] == str(os.getpid()) for g in got)
    assert dict(os.environ) == before  # never the parent's environment


def test_the_main_worker_pins_only_itself(monkeypatch):
    monkeypatch.delenv(GPU_ENV, raising=False)
    workers.pin_self(None)
    assert GPU_ENV not in os.environ
    workers.pin_self("3")
    assert os.environ[GPU_ENV] == "3"


@pytest.mark.parametrize(
    "override,needles",
    [
        ("hydra.sweeper.gpus=[0,1]", ["hydra.sweeper.gpus=[0, 1]", "torch sees no CUDA GPU"]),
        ("hydra.sweeper.trials_per_gpu=0", ["hydra.sweeper.trials_per_gpu must be >= 1"]),
        ("hydra.sweeper.gpus=[0,0]", ["hydra.sweeper.gpus must be auto, none or a list"]),
        ("trainer.device=cuda", ["trainer.device=cuda needs a CUDA GPU"]),
    ],
)
def test_gpu_settings_this_machine_cannot_meet_stop_before_any_training(workdir, override, needles):
    rc, errors, stdout, _ = bad_run(["-m", *TINY, override], workdir)
    shown = "\n".join(errors) + stdout[-2000:]
    assert rc == 2 and len(errors) == 1 and errors[0].startswith("error: "), shown
    assert all(n in errors[0] for n in needles), shown
    assert "Traceback" not in stdout
    assert_no_store(workdir)
