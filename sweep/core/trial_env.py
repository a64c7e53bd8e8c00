"""The environment variables that carry a trial's context to its job.

A job launched in another process (Hydra's joblib or submitit launchers) cannot see the sweeper's
objects, so the sweeper exports the study and the parent run here and each job gets its trial
number through `hydra.job.env_set`. The names are stated once, for both sides.
"""

STUDY_SPEC = "SWEEP_STUDY_SPEC"  # the study's StudySpec as JSON (sweep/search/study.py)
TRIAL_NUMBER = "SWEEP_TRIAL_NUMBER"  # per job: the Optuna trial it runs
PARENT_RUN_ID = "SWEEP_PARENT_RUN_ID"  # the sweep's MLflow parent run; empty when none
OBJECTIVE = "SWEEP_OBJECTIVE"  # the metric the trial reports as its value
PRUNE_ON = "SWEEP_PRUNE_ON"  # the metric the pruner sees; empty: the objective
# per job: a confirmation run's context (sweep/search/confirm.py: ConfirmContext.encode)
CONFIRM = "SWEEP_CONFIRM"

# local helper workers (sweep/search/workers.py)
HELPER_OF = "SWEEP_HELPER_OF"  # set in a helper's environment: the main worker's pid
HELPER_READY = "SWEEP_HELPER_READY"  # the file the main worker writes once the stores exist

TRIAL_CONTEXT = (STUDY_SPEC, TRIAL_NUMBER, PARENT_RUN_ID, OBJECTIVE, PRUNE_ON)
