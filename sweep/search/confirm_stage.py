"""The confirmation stage of a sweep command: who confirms, how the work is shared, when it ends.

Once the budget is met (or the timeout ended the search), every worker of the study arrives here
(sweep/search/confirm.py has the stages themselves: plan, runs, choice, the winner):

- Among the main workers of a study (several `python train.py -m` on one storage: a team sweep)
  one *leads*: it holds `LEADER` in the study, refreshed from a thread; the others end.
- Each main worker publishes a *plan* for its own local helpers (sweep/search/workers.py) under
  its own key, `PLAN.<main key>`: the leader the jobs to do, any other main worker an empty plan.
  Nobody else writes that key, so another worker ending at the same moment cannot hide a plan.
- The leader and its helpers claim jobs of the plan under the study lock (`CLAIM.<main key>.
  <trial>-<seed>`) and run them until none is left; the leader then waits for its helpers,
  chooses the winner, scores and registers it.

Every wait is bounded by what it waits for: a helper waits for its main worker's plan only while
that worker lives, and an empty plan ends the wait at once; the leader waits for helpers that
have a plan, so they end once the plan has no unclaimed job.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig

from sweep.core import internals
from sweep.core.bad_input import describe
from sweep.search import confirm as cf
from sweep.search import interrupts, refit, workers

log = logging.getLogger(__name__)

LEADER = "sweep.confirm.leader"  # study user attr: {"pid", "host", "at"[, "done"]}
PLAN = "sweep.confirm.plan"  # + .<main key>: {"jobs": [[trial, seed], ...]}
CLAIM = "sweep.confirm.claim"  # + .<main key>.<trial>-<seed>: the pid of the worker running it
PLAN_POLL = 0.5  # seconds between a helper's looks at the study while it waits for its plan


# --------------------------------------------------------------------------- the plan


def publish_plan(study, lock, key: str, jobs: list[tuple[int, int]]) -> None:
    """The plan of the main worker `key` for its helpers: (trial number, seed) pairs, maybe none."""
    with lock:
        study.set_user_attr(f"{PLAN}.{key}", {"jobs": [[int(n), int(s)] for n, s in jobs]})


def read_plan(study, key: str) -> list[tuple[int, int]] | None:
    """The plan of the main worker `key`; None while it has published none."""
    plan = internals.study_user_attrs(study).get(f"{PLAN}.{key}")
    if plan is None:
        return None
    return [(int(n), int(s)) for n, s in plan.get("jobs", [])]


def await_plan(
    study, key: str, alive: Callable[[], bool], poll: float = PLAN_POLL
) -> list[tuple[int, int]]:
    """In a helper: its main worker's plan once published ([] when the plan names nothing, or
    when the main worker ended without publishing one). Another worker's plan is never read."""
    while True:
        jobs = read_plan(study, key)
        if jobs is not None:
            return jobs
        if not alive():  # it ended without publishing one: none will come
            return read_plan(study, key) or []
        interrupts.check()
        time.sleep(poll)


# --------------------------------------------------------------------------- the leader


def _alive(held: dict, grace_period: float) -> bool:
    """Whether the confirming worker `held` describes is still at work."""
    if time.time() - float(held.get("at", 0)) > grace_period:
        return False
    if held.get("host") == socket.gethostname():
        try:
            os.kill(int(held["pid"]), 0)
        except ProcessLookupError:
            return False
        except (PermissionError, KeyError, ValueError):
            pass
    return True


class Leader:
    """The confirming worker's claim on the study, refreshed from a thread until stop()."""

    def __init__(self, study, me: dict, interval: float):
        self.study, self.me = study, dict(me)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(interval,), daemon=True)
        self._thread.start()

    @classmethod
    def take(cls, study, lock, grace_period: float, interval: float) -> Leader | None:
        """Become the study's one confirming worker, unless another live one is: a leader is
        gone when its process on this host is, or when it has not refreshed its claim for
        `grace_period` seconds."""
        me = {"pid": os.getpid(), "host": socket.gethostname(), "at": time.time()}
        with lock:
            held = internals.study_user_attrs(study).get(LEADER) or {}
            if held and not held.get("done") and _alive(held, grace_period):
                print(
                    f"note: confirmation is done by the worker pid {held.get('pid')} on "
                    f"{held.get('host')}; this worker ends here",
                    file=sys.stderr,
                )
                return None
            study.set_user_attr(LEADER, me)
        return cls(study, me, interval)

    def _run(self, interval: float) -> None:
        while not self._stop.wait(interval):
            with contextlib.suppress(Exception):
                self.study.set_user_attr(LEADER, {**self.me, "at": time.time()})

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        with contextlib.suppress(Exception):
            self.study.set_user_attr(LEADER, {**self.me, "at": time.time(), "done": True})


# --------------------------------------------------------------------------- the stage


@dataclass
class Stage:
    """The confirmation stage of one sweep command (`run` is the sweeper's state of it)."""

    run: Any  # sweep.search.sweeper._Run
    opts: DictConfig  # hydra.sweeper.*
    launcher: Any
    job_config: Callable[[list[str]], DictConfig]  # overrides -> a job's composed config

    def confirm(self) -> cf.Choice | None:
        """Take part in confirmation; the Choice on the leader, else None."""
        run = self.run
        k, n_seeds = int(self.opts.confirm.top_k), int(self.opts.confirm.seeds)
        if not k or run.parent.tracker is None:
            if k and not run.helper:
                print(
                    "note: confirmation needs MLflow tracking (tracking=none): no winner chosen",
                    file=sys.stderr,
                )
            return None
        key = workers.main_key()
        root = cf.model_dir(os.getcwd(), run.study_name)
        if run.helper:
            self._help(key, root)
            return None
        # the budget is met, or the timeout ended the search: confirm what it found (not after
        # the failure limit)
        leader = None
        if not run.exit_code:
            leader = Leader.take(
                run.study, run.lock, self.opts.grace_period, self.opts.heartbeat_interval
            )
        if leader is None:  # another worker confirms the study, or nothing is to be confirmed
            publish_plan(run.study, run.lock, key, [])
            return None
        try:
            return self._lead(k, n_seeds, root, key)
        finally:
            leader.stop()

    def _help(self, key: str, root: str) -> None:
        run = self.run
        wanted = set(await_plan(run.study, key, workers.main_alive))
        if not wanted:
            return
        every = cf.top_from_study(run.study, len(run.study.trials), run.objectives, run.fixed)
        jobs = [(c, s) for c in every for n, s in sorted(wanted) if c.number == n]
        self._run_jobs(jobs, root, key)

    def _lead(self, k: int, n_seeds: int, root: str, key: str) -> cf.Choice | None:
        run = self.run
        tracker = run.parent.tracker
        candidates = cf.top_from_study(run.study, k, run.objectives, run.fixed)
        seeds = cf.seeds_for(run.base.trainer.seed, n_seeds)
        done = cf.finished(tracker.client, tracker.experiment_id, run.parent.run_id, run.objective)
        jobs = [(c, s) for c in candidates for s in seeds if (c.run_id, s) not in done]
        # an empty plan tells the helpers that there is nothing to confirm
        publish_plan(run.study, run.lock, key, [(c.number, s) for c, s in jobs])
        if not candidates:
            what = "feasible complete" if run.objectives.bounds else "complete"
            print(f"note: no {what} trial to confirm: no winner chosen", file=sys.stderr)
            return None
        if jobs:
            log.info(
                "confirming the %d best configurations with %d new seeds each: %d runs to do",
                len(candidates),
                len(seeds),
                len(jobs),
            )
            self._run_jobs(jobs, root, key)
            for problem in run.helpers.wait():
                log.warning(problem)
            done = cf.finished(
                tracker.client, tracker.experiment_id, run.parent.run_id, run.objective
            )
        return self._choose(candidates, seeds, done, root)

    def _choose(self, candidates: list, seeds: list[int], done: dict, root: str) -> cf.Choice:
        """The winner from the finished confirmation runs; scored, registered and tagged."""
        run = self.run
        choice = cf.choose(candidates, seeds, done, run.direction)
        choice.rule = f"{run.objectives.rule()}, by its mean over the confirmation seeds"
        if choice.missing:
            shown = ", ".join(f"trial {n} seed {s}" for n, s in choice.missing)
            choice.notes.append(
                f"confirmation runs did not finish ({shown}): no winner chosen; re-run the same "
                "command to complete them"
            )
        cf.finalize(
            choice,
            uri=run.tracker_uri,
            experiment=run.base.tracking.experiment,
            experiment_id=run.parent.tracker.experiment_id,
            study_name=run.study_name,
            model_root=root,
            # the winner's config as its job composed it: its overrides and its seed
            config_of=lambda run_id: self.job_config(
                [*choice.winner.candidate.overrides, f"trainer.seed={choice.winner_run.seed}"]
            ),
        )
        if self.opts.confirm.get("refit"):
            self._refit(choice, root)
        return choice

    def _refit(self, choice: cf.Choice, root: str) -> None:
        """hydra.sweeper.confirm.refit: the winner's configuration trained on train + validation
        by the launcher, one more job, then registered as the champion (sweep/search/refit.py)."""
        run, d = self.run, choice.winner_run
        if d is None:
            return
        number = choice.winner.candidate.number
        ctx = refit.RefitContext(run.study_name, run.parent.run_id, d.run_id, number, d.seed, root)
        overrides = choice.winner.candidate.overrides
        shared = any(o.startswith("trainer.threads=") for o in overrides)
        given = shared and run.base.trainer.get("threads") is None  # by the sweeper, not the user
        threads = workers.threads_each(1) if given else None
        config = refit.config_overrides(overrides, d.seed, threads)
        refit.refit_winner(
            choice,
            uri=run.tracker_uri,
            experiment=run.base.tracking.experiment,
            experiment_id=run.parent.tracker.experiment_id,
            parent_run_id=run.parent.run_id,
            context=ctx,
            train=lambda c: refit.launch(self.launcher, refit.job_line(config, c)),
            config=lambda: self.job_config(config),
        )

    def _claim(self, jobs: list, key: str, size: int) -> list:
        """Up to `size` unclaimed jobs of the plan, claimed for this process under the lock."""
        run, mine = self.run, []
        with run.lock:
            attrs = internals.study_user_attrs(run.study)
            for c, seed in jobs:
                name = f"{CLAIM}.{key}.{c.number}-{seed}"
                if name in attrs:
                    continue
                run.study.set_user_attr(name, os.getpid())
                mine.append((c, seed))
                if len(mine) == size:
                    break
        return mine

    def _run_jobs(self, jobs: list, root: str, key: str) -> None:
        """Claim planned jobs (as many as the launcher runs at once) and run them until none is
        left. Each is a full run of a candidate's overrides with a new `trainer.seed`, told it is
        a confirmation run through its own overrides (hydra.job.env_set), never through this
        process's environment."""
        in_process = isinstance(self.launcher, internals.basic_launcher())
        size = 1 if in_process else max(1, int(self.opts.n_jobs))
        while True:
            interrupts.check()
            mine = self._claim(jobs, key, size)
            if not mine:
                return
            lines = [self._job_line(c, seed, root) for c, seed in mine]
            try:
                returns = self.launcher.launch(lines, initial_job_idx=10_000)
            except Exception as e:  # noqa: BLE001 - e.g. a worker process was killed
                log.error("the launcher failed during confirmation (%s)", e)
                continue
            for ret in returns:
                value = internals.job_value(ret)
                if isinstance(value, BaseException):
                    log.warning("a confirmation run failed: %s", describe(value))

    def _job_line(self, c: cf.Candidate, seed: int, root: str) -> list[str]:
        run = self.run
        ctx = cf.ConfirmContext(
            study_name=run.study_name,
            parent_run_id=run.parent.run_id,
            confirms=c.run_id,
            trial=c.number,
            seed=seed,
            model_dir=root,
        )
        return [
            *c.overrides,
            f"trainer.seed={seed}",
            f"hydra.sweep.subdir=confirm-{c.number}-seed{seed}",
            ctx.override(),
        ]
