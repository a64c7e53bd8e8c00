"""`hydra/launcher=slurm`: each job of a sweep is one SLURM job, submitted with submitit.

Hydra's submitit launcher waits for its jobs in order and raises at the first failed one, while
the others may still run; it also reads job states from `sacct`, which needs SLURM's accounting
database. This launcher submits with submitit and waits for every job on its own terms:

- a job is done when submitit's result file exists (what the job returned, or its error);
- a job that a working `squeue` no longer lists, and whose result file is still missing a few
  seconds later, was cancelled, timed out or lost its node: it comes back as `JobLost` (the
  sweeper fails the trial and retries its params);
- a failed `squeue` (a controller restart, a timeout) proves nothing about any job: it is asked
  again with backoff for up to `controller_grace` seconds; past that, the batch's jobs are
  cancelled where the controller lets us, the sweep stops with one `error:` line, and the jobs
  that could not be cancelled are written down so that the next sweep from this directory
  cancels them before it submits anything (their trials go back to the queue: no trial's work
  may run twice at once);
- submitting while the controller cannot be reached (nothing reached it: no job exists) is
  retried the same way;
- SLURM never requeues a job (`--no-requeue`, and no timeout resubmission by submitit): a retry
  must be a new Optuna trial, never the same trial twice;
- Ctrl-C while waiting cancels (`scancel`) every job not yet done, then re-raises.

A job finds its trial in its own overrides (sweep.core.trial_env), pickled by submitit with the
job's config: no password goes there (sweep/search/remote.py refuses one in a URL, and any
value under a secret-like key).
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from collections.abc import Iterable
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
# the longest wait between two looks at a controller that does not answer: a controller back
# after a restart is seen within this long
MAX_BACKOFF = 30.0
# what a SLURM client says when it reached no controller at all: nothing was submitted, so
# submitting again cannot make a second job
UNREACHED = "Unable to contact slurm controller"
# jobs a sweep could not cancel when it stopped (its controller was away), relative to the
# working directory beside the default study journal (.sweep/): the next sweep from there
# cancels them first, since their trials went back to the queue and will run again
LEFT_RUNNING = Path(".sweep") / "slurm-jobs-left-running"


@dataclass
class SlurmLauncherConf:
    _target_: str = "hydra_plugins.sweep_engines.sweep_engines.SlurmLauncher"
    # submitit's folder: each job's pickles, sbatch script and logs (%j: the SLURM job id)
    submitit_folder: str = "${hydra.sweep.dir}/.submitit/%j"
    partition: str | None = None
    cpus_per_task: int = 1
    # GPUs per job: `gpus_per_task=1` gives each trial (one job, one task) one GPU of its own,
    # which SLURM names in the job's CUDA_VISIBLE_DEVICES; `gpus_per_node` asks for them per
    # node instead (the same on one node; set one of the two)
    gpus_per_task: int | None = None
    gpus_per_node: int | None = None
    mem_gb: float | None = None
    timeout_min: int = 60
    job_name: str = "${hydra.job.name}"
    setup: list[str] = field(default_factory=list)  # shell lines run before the job
    additional_parameters: dict[str, Any] = field(default_factory=dict)  # more sbatch options
    poll_interval: float = 2.0  # seconds between looks at squeue and the result files
    # seconds the controller may stay unreachable (a restart, a failover) while jobs are out
    controller_grace: float = 300.0


class ControllerAway(RuntimeError):
    """One call to the SLURM controller failed (its message is the client's last line)."""


class ControllerGone(RuntimeError):
    """The controller has not answered for longer than the grace."""

    def __init__(self, away_for: float, grace: float, why: str):
        super().__init__(
            f"the SLURM controller has not answered for {away_for:.0f} s, past "
            f"hydra.launcher.controller_grace={grace:g} ({why})"
        )
        self.away_for, self.grace = away_for, grace


def queue_states(job_ids: list[str]) -> dict[str, str]:
    """{job id: state} for the jobs `squeue` still lists (it lists finished jobs only briefly;
    a job it does not list has left the queue). ControllerAway when squeue got no answer."""
    if not job_ids:
        return {}
    try:
        out = subprocess.run(
            ["squeue", "-h", "-o", "%i %T", "-j", ",".join(job_ids)],
            capture_output=True,
            text=True,
            timeout=60,
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        raise ControllerAway(f"squeue: {e}") from None
    if out.returncode != 0 and "Invalid job id" not in out.stderr:
        raise ControllerAway((out.stderr.strip().splitlines() or ["squeue failed"])[-1])
    states = {}
    for line in out.stdout.splitlines():
        job, _, state = line.strip().partition(" ")
        states[job] = state.strip()
    return states


def check_options(opts) -> None:
    """The launcher options no SLURM would take, refused before the controller is asked (their
    types are the schema's: Hydra refuses `gpus_per_task=one`)."""
    for name, least in (("cpus_per_task", 1), ("gpus_per_task", 0), ("gpus_per_node", 0)):
        value = opts.get(name)
        if value is not None and int(value) < least:
            raise UserError(f"hydra.launcher.{name}={value}: at least {least}")
    if opts.get("gpus_per_task") and opts.get("gpus_per_node"):
        raise UserError(
            f"hydra.launcher.gpus_per_task={opts.gpus_per_task} and "
            f"gpus_per_node={opts.gpus_per_node}: set one (gpus_per_task=1: one GPU per trial)"
        )
    if float(opts.get("poll_interval", 1)) <= 0:
        raise UserError(f"hydra.launcher.poll_interval={opts.poll_interval}: more than 0 seconds")
    if float(opts.get("controller_grace", 0)) < 0:
        raise UserError(f"hydra.launcher.controller_grace={opts.controller_grace}: 0 or more")


@dataclass
class Look:
    """What one look at squeue decided."""

    lost: list[str]  # jobs proven gone without a result
    wait: float  # seconds until the next look
    away_for: float | None = None  # seconds the controller has not answered; None: it answers


@dataclass
class QueueWatch:
    """What the looks at squeue so far prove about a batch's jobs: a function of those looks
    and the clock, so its rules are tested without a cluster.

    - A job is lost only when a squeue that answered no longer lists it as waiting or running,
      and its result is still missing `settle` seconds later (a shared filesystem may show the
      result file late). A squeue that failed proves nothing about any job: a lost job is
      retried as a new trial, and one still running would then run twice.
    - While squeue fails, look again after `poll`, 2 `poll`, 4 `poll`, ... (at most MAX_BACKOFF
      seconds), for up to `grace` seconds from the first failure since it last answered; a
      failed look after that raises ControllerGone."""

    poll: float
    grace: float
    settle: float
    away_since: float | None = None
    failures: int = 0
    gone_since: dict[str, float] = field(default_factory=dict)

    def look(
        self, states: dict[str, str] | None, pending: Iterable[str], now: float, why: str = ""
    ) -> Look:
        """`states`: what squeue listed at `now` (None: it failed, saying `why`); `pending`:
        the jobs whose result is not there."""
        if states is None:
            return self._away(now, why or "no answer")
        self.away_since, self.failures = None, 0
        lost = []
        for job in pending:
            if states.get(job) in WAITING:
                self.gone_since.pop(job, None)
            elif now - self.gone_since.setdefault(job, now) >= self.settle:
                lost.append(job)
        return Look(lost, self.poll)

    def _away(self, now: float, why: str) -> Look:
        self.failures += 1
        if self.away_since is None:
            self.away_since = now
        away = now - self.away_since
        left = self.grace - away
        if left <= 0:
            raise ControllerGone(away, self.grace, why)
        wait = min(self.poll * 2 ** (self.failures - 1), MAX_BACKOFF, left)
        return Look([], wait, away)


class SlurmLauncher(ClusterLauncher):
    engine = "slurm"

    def check(self) -> None:
        """The options must make sense and the SLURM client must answer before anything is
        submitted; jobs an earlier sweep from this directory left running are cancelled first."""
        check_options(self.opts)
        try:
            out = subprocess.run(
                ["squeue", "-h", "-u", str(os.getuid())], capture_output=True, text=True, timeout=30
            )
        except (OSError, subprocess.TimeoutExpired) as e:
            raise UserError(f"hydra/launcher=slurm: cannot run squeue ({e})") from None
        if out.returncode != 0:
            first = (out.stderr.strip().splitlines() or ["no message"])[-1]
            raise UserError(f"hydra/launcher=slurm: the SLURM controller does not answer: {first}")
        cancel_left_running(Path.cwd() / LEFT_RUNNING)

    def _executor(self, folder: str):
        import submitit

        o = self.opts
        executor = submitit.SlurmExecutor(folder=folder, max_num_timeout=0)
        params: dict[str, Any] = {
            "ntasks_per_node": 1,  # one task: the trial (what --gpus-per-task counts per)
            "cpus_per_task": int(o.cpus_per_task),
            "time": int(o.timeout_min),
            "job_name": str(o.job_name),
            "setup": list(o.setup or []),
            "additional_parameters": {"no_requeue": True, **dict(o.additional_parameters or {})},
        }
        if o.partition:
            params["partition"] = str(o.partition)
        for gpus in ("gpus_per_task", "gpus_per_node"):
            if o.get(gpus):
                params[gpus] = int(o[gpus])
        if o.mem_gb:
            params["mem"] = f"{int(float(o.mem_gb) * 1024)}MB"
        executor.update_parameters(**params)
        return executor

    def _watch(self) -> QueueWatch:
        poll = float(self.opts.poll_interval)
        grace = float(self.opts.get("controller_grace", SlurmLauncherConf.controller_grace))
        return QueueWatch(poll=poll, grace=grace, settle=max(3 * poll, 5))

    def launch(self, job_overrides, initial_job_idx: int) -> list[JobReturn]:
        assert self.config is not None and self.hydra_context is not None
        setup_globals()
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        Path(str(self.config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)
        folder = OmegaConf.to_container(self.config.hydra.launcher, resolve=True)["submitit_folder"]
        executor = self._executor(str(folder))
        state = Singleton.get_state()
        jobs: list = []
        try:
            configs = job_configs(self.hydra_context, self.config, job_overrides, initial_job_idx)
            for idx, cfg, shown in configs:
                job = self._submit(executor, (self.hydra_context, self.task_function, cfg, state))
                log.info("slurm: job #%d is SLURM job %s: %s", idx, job.job_id, shown)
                jobs.append(job)
            return self._wait(jobs)
        except ControllerGone as e:
            # the trials go back to the queue (a UserError): none is lost while its job may run
            raise UserError(f"hydra/launcher=slurm: {e}; {self._cancel(jobs, gone=True)}") from None
        except BaseException:
            # Ctrl-C, a refused submission, a bug: no job of the batch may run on unwatched
            note = self._cancel(jobs)
            if note:
                print(note, file=sys.stderr)
            raise

    def _submit(self, executor, args: tuple):
        """Submit one job. A controller that could not be reached at all is tried again with
        backoff, within the grace; any other refusal is the user's (bad options)."""
        watch = self._watch()
        while True:
            started = time.time()
            try:
                return executor.submit(run_here, *args, os.getcwd())
            except Exception as e:  # noqa: BLE001 - submitit wraps sbatch's error text
                lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()] or [repr(e)]
                if UNREACHED not in str(e):
                    raise UserError(
                        f"hydra/launcher=slurm: sbatch refused the job: {lines[0]}"
                    ) from None
                look = watch.look(None, [], started, why=lines[-1])  # ControllerGone: past grace
                if watch.failures == 1:
                    log.warning("slurm: sbatch: %s; trying again", UNREACHED)
                time.sleep(look.wait)

    def _cancel(self, jobs, gone: bool = False) -> str:
        """scancel every job of `jobs` without a result; what happened, in one sentence. Jobs
        it could not cancel are written down for the next sweep from this directory."""
        ids = [j.job_id for j in jobs if not j.paths.result_pickle.exists()]
        if not ids:
            return "re-run the same command to resume" if gone else ""
        try:
            out = subprocess.run(["scancel", *ids], capture_output=True, text=True, timeout=60)
            # any other complaint is about a job already ended or ending: nothing left to stop
            failed = next((ln.strip() for ln in out.stderr.splitlines() if UNREACHED in ln), "")
        except (OSError, subprocess.TimeoutExpired) as e:
            failed = str(e)
        if not failed:
            return f"cancelled SLURM jobs {' '.join(ids)}" + (
                "; re-run the same command to resume" if gone else ""
            )
        path = Path.cwd() / LEFT_RUNNING
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a") as f:
            f.write("".join(f"{i}\n" for i in ids))
        return (
            f"could not cancel SLURM jobs {' '.join(ids)} ({failed}); they may still run: "
            "the same command run again from this directory cancels them before it submits "
            f"anything (or scancel them yourself; the list is in {LEFT_RUNNING})"
        )

    def _wait(self, jobs) -> list[JobReturn]:
        """Every job's return, once each has a result or is proven lost (QueueWatch)."""
        results: dict[int, JobReturn] = {}
        watch = self._watch()
        while True:
            started = time.time()
            pending = [i for i in range(len(jobs)) if i not in results]
            why = ""
            try:
                states: dict[str, str] | None = queue_states([jobs[i].job_id for i in pending])
            except ControllerAway as e:
                states, why = None, str(e)
            for i in pending:  # results need no controller: read them after squeue's answer
                if jobs[i].paths.result_pickle.exists():
                    results[i] = self._result(jobs[i])
            pending = [i for i in pending if i not in results]
            if not pending:
                return [results[i] for i in range(len(jobs))]
            was_away = watch.away_since is not None
            look = watch.look(states, [jobs[i].job_id for i in pending], started, why)
            if states is None and not was_away:
                log.warning(
                    "slurm: the SLURM controller does not answer (%s): looking again for up to "
                    "%g s (hydra.launcher.controller_grace) before giving up on the batch",
                    why,
                    watch.grace,
                )
            elif states is not None and was_away:
                log.warning("slurm: the SLURM controller answers again")
            for i in pending:
                if jobs[i].job_id in look.lost:
                    results[i] = internals.failed_job(self._lost(jobs[i], states))
            time.sleep(look.wait)

    @staticmethod
    def _lost(job, states: dict[str, str] | None) -> JobLost:
        state = (states or {}).get(job.job_id)
        return JobLost(
            f"SLURM job {job.job_id} ended ({state or 'left the queue'}) without a result; "
            f"its log: {job.paths.stderr}"
        )

    @staticmethod
    def _result(job) -> JobReturn:
        try:
            return job.result()
        except Exception as e:  # noqa: BLE001 - the job's own code raised outside run_job
            return internals.failed_job(e)


def cancel_left_running(path: Path, timeout: float = 300) -> None:
    """Cancel the jobs listed in `path` that still wait or run, and wait until they have left
    the queue (SIGTERM, then SIGKILL after SLURM's KillWait): their trials were put back in
    the queue, and must not run again beside them. The list goes once they are gone."""
    if not path.is_file():
        return
    ids = sorted({ln.strip() for ln in path.read_text().splitlines() if ln.strip()})
    deadline = time.time() + timeout
    try:
        live = [j for j, s in queue_states(ids).items() if s in WAITING]
        if live:
            subprocess.run(["scancel", *live], capture_output=True, timeout=60, check=True)
            print(
                f"cancelled SLURM jobs {' '.join(live)}, left running by an earlier sweep "
                "from this directory that lost its controller",
                file=sys.stderr,
            )
        while live and time.time() < deadline:
            time.sleep(1)
            live = [j for j, s in queue_states(live).items() if s in WAITING]
    except (ControllerAway, OSError, subprocess.SubprocessError) as e:
        raise UserError(
            f"hydra/launcher=slurm: cannot cancel the SLURM jobs in {path} ({e}), which an "
            "earlier sweep left running; scancel them and delete that file"
        ) from None
    if live:
        raise UserError(
            f"hydra/launcher=slurm: SLURM jobs {' '.join(live)} (listed in {path}) are still "
            f"there {timeout:.0f} s after scancel; wait for them to end, then delete that file"
        )
    path.unlink()
