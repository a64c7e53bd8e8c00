"""Hydra entry point: one fine-tuning run, or (with -m) one trial of a sweep.

    python train.py                      # one run with the offline defaults
    python train.py -m                   # the default Optuna sweep (search=lr_schedule)
    python train.py model=tiny optimizer.lr=1e-4 scheduler=cosine

Returns `trainer.objective` (default eval_f1 at the final evaluation) for the sweeper.
"""

from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig

from sweep.core.config import register_configs

register_configs()


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig):
    from sweep.core.errors import UserError, exit_on_user_error
    from sweep.train import oom
    from sweep.train.oom import OutOfMemory
    from sweep.train.runner import current_trial_context, protect_secrets, run_job

    protect_secrets(cfg)
    from sweep.search.confirm import ConfirmContext
    from sweep.search.refit import RefitContext

    # a sweep's confirmation or refit run (hydra.job.env_set)
    confirm = RefitContext.from_env() or ConfirmContext.from_env()
    if confirm is not None:
        return run_job(cfg, None, confirm=confirm)
    ctx = current_trial_context()  # set by our sweeper inside `-m`; None for a plain run
    if ctx is not None and ctx.trial is None:
        from sweep.search.study import attach_trial

        attach_trial(ctx)  # a job in another process: its trial, rebuilt from the storage
    try:
        outcome = run_job(cfg, ctx)
        if ctx is not None and ctx.spec_json:
            from sweep.search.study import record_outcome

            record_outcome(ctx.trial, outcome)  # the sweeper may lose our return value
        return outcome
    except KeyboardInterrupt:
        if ctx is not None:
            raise  # the sweeper records the trial and leaves the study resumable
        print("interrupted: the MLflow run was closed as KILLED", file=sys.stderr)
        sys.exit(130)
    except UserError as e:
        if ctx is not None:
            raise  # the trial is FAIL with this message; the sweep goes on
        exit_on_user_error(e)
    except OutOfMemory as e:
        if ctx is not None:
            raise  # the trial is FAIL with this line (sweep.fail_reason=out_of_memory)
        print(f"error: {e}", file=sys.stderr)
        sys.exit(oom.EXIT_CODE)


if __name__ == "__main__":
    from sweep.core.bad_input import own_hydra_errors

    own_hydra_errors()  # a bad key, type or option: one `error:` line and exit 2, not Hydra's 1
    main()
