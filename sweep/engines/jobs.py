"""What every cluster launcher does the same way: compose each job's config on the submitting
side (a bad override fails there, not on a node), and run one job where it lands."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, filter_overrides, run_job, setup_globals
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf, open_dict

from sweep.core import trial_env


def job_configs(
    hydra_context: HydraContext,
    config: DictConfig,
    job_overrides: Sequence[Sequence[str]],
    initial_job_idx: int,
) -> Iterator[tuple[int, DictConfig, str]]:
    """(job index, the job's full config, its overrides as shown in the log) per job."""
    for i, overrides in enumerate(job_overrides):
        idx = initial_job_idx + i
        cfg = hydra_context.config_loader.load_sweep_config(config, list(overrides))
        with open_dict(cfg):
            cfg.hydra.job.id = f"{cfg.hydra.job.name}_{idx}"
            cfg.hydra.job.num = idx
        # the per-job context token (sweep.core.trial_env) is long and means nothing to a reader
        shown = [o for o in filter_overrides(overrides) if not trial_env.is_context(o)]
        yield idx, cfg, " ".join(shown)


def run_here(
    hydra_context: HydraContext,
    task_function: TaskFunction,
    config: DictConfig,
    singleton_state: dict[Any, Any],
    cwd: str | None,
) -> JobReturn:
    """Run one job in this process (a SLURM job, a Ray worker), from `cwd` when this machine
    has it (a shared filesystem): relative paths in the config mean what they meant there."""
    if cwd and os.path.isdir(cwd):
        os.chdir(cwd)
    setup_globals()
    Singleton.set_state(singleton_state)
    HydraConfig.instance().set_config(config)
    return run_job(
        hydra_context=hydra_context,
        task_function=task_function,
        config=config,
        job_dir_key="hydra.sweep.dir",
        job_subdir_key="hydra.sweep.subdir",
    )


class ClusterLauncher(Launcher):
    """A Hydra launcher whose jobs go to a cluster engine (`engine` names it for the checks in
    sweep/search/remote.py); `opts` are its `hydra.launcher.*` options."""

    engine = ""

    def __init__(self, **kwargs: Any) -> None:
        self.opts = OmegaConf.create(kwargs)
        self.config: DictConfig | None = None
        self.task_function: TaskFunction | None = None
        self.hydra_context: HydraContext | None = None

    def setup(
        self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig
    ) -> None:
        self.config, self.task_function, self.hydra_context = config, task_function, hydra_context
