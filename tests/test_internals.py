"""What sweep/core/internals.py relies on in Optuna's and Hydra's private API, pinned on real
objects: a journal-file study opened by two handles (as two workers do) and Hydra's modules."""

from __future__ import annotations

import optuna
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState

from sweep.core import internals


def open_study(path, name="s"):
    storage = JournalStorage(JournalFileBackend(str(path)))
    return optuna.create_study(study_name=name, storage=storage, load_if_exists=True)


def test_trial_ids_name_the_storage_rows_of_live_and_frozen_trials(tmp_path):
    study = open_study(tmp_path / "j.log")
    first, second = study.ask(), study.ask()
    study.tell(first, 1.0)
    store = internals.storage(study)
    for trial in (first, second):
        tid = internals.trial_id(trial)
        assert store.get_trial(tid).number == trial.number
        assert internals.trial_id_of(study, trial.number) == tid
    frozen = study.trials[0]
    assert internals.trial_id(frozen) == internals.trial_id(first)
    # a write through the storage reaches the trial without its Trial object
    store.set_trial_system_attr(internals.trial_id(second), "why", "test")
    assert store.set_trial_state_values(internals.trial_id(second), TrialState.FAIL)
    other = open_study(tmp_path / "j.log")
    assert other.trials[1].state == TrialState.FAIL
    assert other.trials[1].system_attrs["why"] == "test"
    assert internals.study_id(other) == internals.study_id(study)


def test_study_user_attrs_are_read_fresh_from_the_storage(tmp_path):
    mine = open_study(tmp_path / "j.log")
    assert internals.study_user_attrs(mine) == {}
    theirs = open_study(tmp_path / "j.log")
    theirs.set_user_attr("sweep.parent_run_id", "abc")  # another worker writes it
    assert internals.study_user_attrs(mine) == {"sweep.parent_run_id": "abc"}


def test_hydra_internals_are_where_the_adapter_looks():
    from hydra.plugins.launcher import Launcher

    launcher = internals.basic_launcher()
    assert issubclass(launcher, Launcher)
    assert callable(launcher.launch) and callable(launcher.setup)
    assert callable(internals.hydra_utils().run_and_report)
