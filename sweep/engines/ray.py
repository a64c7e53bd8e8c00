"""`hydra/launcher=ray`: each job of a sweep is one Ray task on an existing Ray cluster.

Hydra's own Ray launcher (hydra-ray-launcher 1.2.2) pins cloudpickle<3, which joblib 1.6 (our
joblib launcher) cannot use, so this is a small launcher of our own; Ray does the scheduling.

- The driver composes each job's config (a bad override fails here, not on a node) and submits
  one task per job with Ray's retries off (`max_retries=0`): a retry must be a new Optuna trial,
  never the same trial twice; the sweeper retries a lost trial's params itself.
- A job that raised comes back as a failed job (the trial is FAIL); a task whose worker, node or
  raylet died comes back as `JobLost` (the sweeper fails the trial and retries its params).
- Nothing of the driver's environment reaches a task but `env` and the names in `forward_env`
  (sent as the task's runtime_env, so they must hold no secret: names that look like one are
  refused). A job finds its trial in its own overrides (sweep.core.trial_env).
- Ctrl-C while waiting cancels the outstanding tasks (their workers are killed) and re-raises,
  so the sweeper fails and re-enqueues their trials.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import socket
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, configure_log, setup_globals
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig

from sweep.core import internals, trial_env
from sweep.core.config import is_secret_key
from sweep.core.errors import JobLost, UserError
from sweep.engines.jobs import ClusterLauncher, job_configs, run_here

log = logging.getLogger(__name__)

OFFLINE = ["HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"]


@dataclass
class RayLauncherConf:
    _target_: str = "hydra_plugins.sweep_engines.sweep_engines.RayLauncher"
    address: str | None = None  # the cluster's GCS address; default: $RAY_ADDRESS, else "auto"
    num_cpus: float = 1  # per job (torch in the job uses this many threads)
    # per job: 1 gives each trial a GPU of its own; a fraction packs trials onto one GPU (0.25:
    # four at a time). Ray counts the shares and sets each task's CUDA_VISIBLE_DEVICES; it does
    # not divide the GPU's memory, so the packed trials must fit in it together
    num_gpus: float = 0
    env: dict[str, str] = field(default_factory=dict)  # set in every job
    forward_env: list[str] = field(default_factory=lambda: list(OFFLINE))  # the driver's values
    chdir: bool = True  # run each job from the driver's working directory (a shared filesystem)


def _run_on_node(
    hydra_context: HydraContext,
    task_function: TaskFunction,
    config: DictConfig,
    singleton_state: dict[Any, Any],
    cwd: str | None,
) -> JobReturn:
    """One job, inside a Ray worker: tagged with the node it runs on."""
    import ray

    context = ray.get_runtime_context()
    os.environ[trial_env.NODE] = f"ray {context.get_node_id()}"
    # what Ray gave this task (a worker process runs many tasks: set or cleared every time)
    share = context.get_assigned_resources().get("GPU", 0)
    gpus = ",".join(str(g) for g in ray.get_gpu_ids())
    os.environ[trial_env.NODE_GPUS] = f"{gpus} x{share:g}" if gpus else ""
    return run_here(hydra_context, task_function, config, singleton_state, cwd)


def check_share(name: str, value: Any) -> float:
    """A job's share of a Ray resource as Ray takes it: a number >= 0, a fraction of one unit
    or a whole number of units (Ray refuses 1.5 GPUs)."""
    what = f"hydra.launcher.{name}={value}"
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise UserError(f"{what}: a number (e.g. 1, or 0.25 for a quarter)")
    if value < 0 or (value > 1 and value != int(value)):
        raise UserError(
            f"{what}: a job's share is a fraction up to 1 (0.25: four trials share one) or a "
            "whole number"
        )
    return float(value)


def _probe(address: str) -> None:
    """A `host:port` address that refuses connections fails here at once (ray.init would retry
    for minutes)."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or "://" in address:
        return  # "auto", or a ray:// client address: ray.init says what is wrong
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except OSError as e:
        raise UserError(
            f"hydra/launcher=ray: no Ray cluster at {address} ({e.strerror or e}); start one "
            "(`ray start --head`, then `ray start --address=...` on each node) or set "
            "hydra.launcher.address"
        ) from None


class RayLauncher(ClusterLauncher):
    engine = "ray"

    def _env(self) -> dict[str, str]:
        env = {str(k): str(v) for k, v in (self.opts.env or {}).items()}
        for name in self.opts.forward_env or []:
            if name in os.environ:
                env[str(name)] = os.environ[name]
        secret = sorted(k for k in env if is_secret_key(k.lower()) or k == trial_env.STORAGE_URL)
        if secret:
            raise UserError(
                f"hydra.launcher.env / forward_env name {', '.join(secret)}: Ray keeps a task's "
                "environment in its metadata, so no secret goes there; set it on the nodes"
            )
        return env

    def check(self) -> None:
        """Check the options, then connect to the cluster once, before any job (a clear error
        when there is none, or when no node could ever run a job)."""
        import ray

        shares = {
            name: check_share(name, self.opts.get(name, default))
            for name, default in (("num_cpus", RayLauncherConf.num_cpus), ("num_gpus", 0))
        }
        if ray.is_initialized():
            return
        address = self.opts.address or os.environ.get("RAY_ADDRESS") or "auto"
        if " " in sys.executable:
            log.warning(
                "this Python's path has a space (%s): a Ray node started from it cannot start "
                "workers (the raylet runs them through a shell, unquoted); start the nodes from "
                "an environment whose path has none",
                sys.executable,
            )
        env = self._env()
        _probe(address)
        try:
            ray.init(
                address=address,
                runtime_env={"env_vars": env} if env else None,
                logging_level=logging.WARNING,
                log_to_driver=True,
                configure_logging=False,
            )
        except (ConnectionError, RuntimeError, ValueError) as e:
            raise UserError(
                f"hydra/launcher=ray: no Ray cluster at {address} ({str(e).splitlines()[0]}); "
                "start one (`ray start --head`, then `ray start --address=...` on each node) "
                "or set hydra.launcher.address"
            ) from None
        have = ray.cluster_resources()
        for resource, name in (("CPU", "num_cpus"), ("GPU", "num_gpus")):
            if have.get(resource, 0) < shares[name]:
                raise UserError(
                    f"hydra/launcher=ray: the cluster at {address} has {have.get(resource, 0):g} "
                    f"{resource}s, a job asks for hydra.launcher.{name}={shares[name]:g}"
                )

    def launch(self, job_overrides, initial_job_idx: int) -> list[JobReturn]:
        import ray

        assert self.config is not None and self.hydra_context is not None
        setup_globals()
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        self.check()
        Path(str(self.config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)
        task = ray.remote(_run_on_node).options(
            num_cpus=float(self.opts.num_cpus),
            num_gpus=float(self.opts.num_gpus),
            max_retries=0,
            retry_exceptions=False,
        )
        state = Singleton.get_state()
        refs = []
        cwd = os.getcwd() if self.opts.chdir else None
        configs = job_configs(self.hydra_context, self.config, job_overrides, initial_job_idx)
        for idx, cfg, shown in configs:
            log.info("ray: job #%d: %s", idx, shown)
            refs.append(task.remote(self.hydra_context, self.task_function, cfg, state, cwd))
        return [self._result(ref, refs) for ref in refs]

    def _result(self, ref, refs) -> JobReturn:
        import ray

        try:
            return ray.get(ref)
        except KeyboardInterrupt:
            for other in refs:
                with contextlib.suppress(Exception):  # done already
                    ray.cancel(other, force=True)
            raise
        except ray.exceptions.RayTaskError as e:  # the job's own code raised outside run_job
            return internals.failed_job(e.as_instanceof_cause())
        except ray.exceptions.RayError as e:  # its worker, node or raylet died; cancelled
            return internals.failed_job(JobLost(f"{type(e).__name__}: {str(e).splitlines()[0]}"))
