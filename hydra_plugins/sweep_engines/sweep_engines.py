"""The shim Hydra discovers for our cluster launchers (`hydra/launcher=ray`,
`hydra/launcher=slurm`). Hydra registers a plugin only when its class is defined in a module
under `hydra_plugins`, so each class is a thin subclass of the real one (sweep/engines)."""

from __future__ import annotations

from hydra.core.config_store import ConfigStore

from sweep.engines import ray as ray_engine
from sweep.engines import slurm as slurm_engine

ConfigStore.instance().store(
    group="hydra/launcher", name="ray", node=ray_engine.RayLauncherConf, provider="sweep"
)


class RayLauncher(ray_engine.RayLauncher):
    pass


ConfigStore.instance().store(
    group="hydra/launcher", name="slurm", node=slurm_engine.SlurmLauncherConf, provider="sweep"
)


class SlurmLauncher(slurm_engine.SlurmLauncher):
    pass
