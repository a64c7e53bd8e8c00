"""Every use of Optuna's and Hydra's private API, in one place.

Neither library offers a public way to do these few things, so the next Optuna or Hydra release
that changes them breaks this file only; tests/test_internals.py pins the behaviour relied on.
Nothing here imports optuna or torch: the functions take the objects they read.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

# --------------------------------------------------------------------------- Optuna


def storage(study: Any) -> Any:
    """The study's storage: writes to one trial (system attrs, state) without a Trial object."""
    return study._storage


def study_id(study: Any) -> int:
    return study._study_id


def trial_id(trial: Any) -> int:
    """The storage's id of a live `optuna.Trial` or a `FrozenTrial` (not its number)."""
    return trial._trial_id


def trial_id_of(study: Any, number: int) -> int:
    """The storage's id of the study's trial `number`."""
    return storage(study).get_trial_id_from_study_id_trial_number(study_id(study), number)


def study_user_attrs(study: Any) -> dict[str, Any]:
    """The study's user attrs as the storage holds them now (another process may have written
    them since this handle was loaded)."""
    return storage(study).get_study_user_attrs(study_id(study))


# --------------------------------------------------------------------------- Hydra


def basic_launcher() -> type:
    """Hydra's in-process launcher, for jobs the sweeper runs itself."""
    from hydra._internal.core_plugins.basic_launcher import BasicLauncher

    return BasicLauncher


def job_value(ret: Any) -> Any:
    """What a Hydra job returned, or the exception it raised (`JobReturn.return_value` re-raises
    a failed job's exception instead)."""
    return ret._return_value


def failed_job(e: BaseException) -> Any:
    """A `JobReturn` for a job that never ran because its launcher failed with `e`."""
    from hydra.core.utils import JobReturn, JobStatus

    return JobReturn(status=JobStatus.FAILED, _return_value=e)


def hydra_utils() -> ModuleType:
    """The module whose `run_and_report` prints Hydra's composition errors (sweep.core.bad_input
    wraps it: Hydra has no public hook for that)."""
    import hydra._internal.utils as utils

    return utils
