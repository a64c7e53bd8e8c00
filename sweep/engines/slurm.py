"""`hydra/launcher=slurm`: each job of a sweep is one SLURM job, submitted with submitit.

Hydra's submitit launcher waits for its jobs in order and raises at the first failed one, while
the others may still run; it also reads job states from `sacct`, which needs SLURM's accounting
database. This launcher submits with submitit and waits for every job on its own terms:

- a job is done when submitit's result file exists (what the job returned, or its error);
- a job that left the queue (`squeue`) without a result file was cancelled, timed out or lost
  its node: it comes back as `JobLost` (the sweeper fails the trial and retries its params);
- SLURM never requeues a job (`--no-requeue`, and no timeout resubmission by submitit): a retry
  must be a new Optuna trial, never the same trial twice;
- Ctrl-C while waiting cancels (`scancel`) every job not yet done, then re-raises.

A job finds its trial in its own overrides (sweep.core.trial_env), pickled by submitit with the
job's config: no password goes there (sweep/search/remote.py refuses one in a URL).
"""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, configure_log, setup_globals
from omegaconf import OmegaConf

from sweep.core import internals
from sweep.core.errors import JobLost, UserError
from sweep.engines.jobs import ClusterLauncher, job_configs, run_here

log = logging.getLogger(__name__)

# squeue's states of a job that may still write its result
WAITING = {"PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "SUSPENDED", "RESIZING", "REQUEUED"}


@dataclass
class SlurmLauncherConf:
    _target_: str = "hydra_plugins.sweep_engines.sweep_engines.SlurmLauncher"
    # submitit's folder: each job's pickles, sbatch script and logs (%j: the SLURM job id)
    submitit_folder: str = "${hydra.sweep.dir}/.submitit/%j"
    partition: str | None = None
    cpus_per_task: int = 1
    gpus_per_node: int | None = None
    mem_gb: float | None = None
    timeout_min: int = 60
    job_name: str = "${hydra.job.name}"
    setup: list[str] = field(default_factory=list)  # shell lines run before the job
    additional_parameters: dict[str, Any] = field(default_factory=dict)  # more sbatch options
    poll_interval: float = 2.0  # seconds between looks at squeue and the result files


def queue_states(job_ids: list[str]) -> dict[str, str]:
    """{job id: state} for the jobs `squeue` still lists (it lists finished jobs only briefly;
    a job it does not list has left the queue)."""
    if not job_ids:
        return {}
    out = subprocess.run(
        ["squeue", "-h", "-o", "%i %T", "-j", ",".join(job_ids)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if out.returncode != 0 and "Invalid job id" not in out.stderr:
        raise RuntimeError(f"squeue failed: {out.stderr.strip()}")
    states = {}
    for line in out.stdout.splitlines():
        job, _, state = line.strip().partition(" ")
        states[job] = state.strip()
    return states


class SlurmLauncher(ClusterLauncher):
    engine = "slurm"

    def check(self) -> None:
        """The SLURM client must answer before anything is submitted."""
        try:
            out = subprocess.run(
                ["squeue", "-h", "-u", str(os.getuid())], capture_output=True, text=True, timeout=30
            )
        except (OSError, subprocess.TimeoutExpired) as e:
            raise UserError(f"hydra/launcher=slurm: cannot run squeue ({e})") from None
        if out.returncode != 0:
            first = (out.stderr.strip().splitlines() or ["no message"])[-1]
            raise UserError(f"hydra/launcher=slurm: the SLURM controller does not answer: {first}")

    def _executor(self, folder: str):
        import submitit

        o = self.opts
        executor = submitit.SlurmExecutor(folder=folder, max_num_timeout=0)
        params: dict[str, Any] = {
            "cpus_per_task": int(o.cpus_per_task),
            "time": int(o.timeout_min),
            "job_name": str(o.job_name),
            "setup": list(o.setup or []),
            "additional_parameters": {"no_requeue": True, **dict(o.additional_parameters or {})},
        }
        if o.partition:
            params["partition"] = str(o.partition)
        if o.gpus_per_node:
            params["gpus_per_node"] = int(o.gpus_per_node)
        if o.mem_gb:
            params["mem"] = f"{int(float(o.mem_gb) * 1024)}MB"
        executor.update_parameters(**params)
        return executor

    def launch(self, job_overrides, initial_job_idx: int) -> list[JobReturn]:
        assert self.config is not None and self.hydra_context is not None
        setup_globals()
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        Path(str(self.config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)
        folder = OmegaConf.to_container(self.config.hydra.launcher, resolve=True)["submitit_folder"]
        executor = self._executor(str(folder))
        state = Singleton.get_state()
        jobs = []
        try:
            configs = job_configs(self.hydra_context, self.config, job_overrides, initial_job_idx)
            for idx, cfg, shown in configs:
                try:
                    job = executor.submit(
                        run_here, self.hydra_context, self.task_function, cfg, state, os.getcwd()
                    )
                except Exception as e:  # noqa: BLE001 - sbatch refused it: no job, no retry
                    self._cancel(jobs)
                    first = next((ln for ln in str(e).splitlines() if ln.strip()), repr(e))
                    raise UserError(
                        f"hydra/launcher=slurm: sbatch refused the job: {first}"
                    ) from None
                log.info("slurm: job #%d is SLURM job %s: %s", idx, job.job_id, shown)
                jobs.append(job)
            return self._wait(jobs)
        except KeyboardInterrupt:
            self._cancel(jobs)
            raise

    def _cancel(self, jobs) -> None:
        ids = [j.job_id for j in jobs if not j.paths.result_pickle.exists()]
        if ids:
            with contextlib.suppress(Exception):
                subprocess.run(["scancel", *ids], capture_output=True, timeout=60)
            print(f"cancelled SLURM jobs {' '.join(ids)}", file=sys.stderr)

    def _wait(self, jobs) -> list[JobReturn]:
        poll = float(self.opts.poll_interval)
        results: dict[int, JobReturn] = {}
        gone_since: dict[int, float] = {}
        while len(results) < len(jobs):
            pending = [i for i in range(len(jobs)) if i not in results]
            states = queue_states([jobs[i].job_id for i in pending])
            for i in pending:
                job = jobs[i]
                if job.paths.result_pickle.exists():
                    results[i] = self._result(job)
                    continue
                state = states.get(job.job_id)
                if state in WAITING:
                    gone_since.pop(i, None)
                    continue
                # out of the queue, or ended, without a result: give the file system a moment
                first = gone_since.setdefault(i, time.time())
                if time.time() - first > max(3 * poll, 5):
                    results[i] = internals.failed_job(
                        JobLost(
                            f"SLURM job {job.job_id} ended ({state or 'left the queue'}) "
                            f"without a result; its log: {job.paths.stderr}"
                        )
                    )
            if len(results) < len(jobs):
                time.sleep(poll)
        return [results[i] for i in range(len(jobs))]

    @staticmethod
    def _result(job) -> JobReturn:
        try:
            return job.result()
        except Exception as e:  # noqa: BLE001 - the job's own code raised outside run_job
            return internals.failed_job(e)
