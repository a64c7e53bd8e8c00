"""The thin shim Hydra needs to discover our sweeper (`hydra/sweeper=optuna`).

Hydra imports every module under `hydra_plugins` at each start and registers a plugin only when
the class is *defined* here, so this module defines a small subclass and imports the real
implementation (and Optuna) lazily, keeping start-up and its fail-fast checks quick.
"""

from __future__ import annotations

import sys
from typing import Any

from hydra.plugins.sweeper import Sweeper

from sweep.core.config import register_sweeper_config
from sweep.core.errors import UserError, exit_on_user_error

register_sweeper_config()


class OptunaSweeper(Sweeper):
    def __init__(self, **kwargs: Any) -> None:
        self.kwargs = kwargs
        self._impl = None

    def setup(self, *, hydra_context, task_function, config) -> None:
        from sweep.search.sweeper import SweepRunner

        self._impl = SweepRunner(**self.kwargs)
        self._impl.setup(hydra_context=hydra_context, task_function=task_function, config=config)

    def sweep(self, arguments: list[str]) -> Any:
        """The sweep command's exits: bad input 2 (one `error:` line), Ctrl-C 130 (the trials in
        flight were re-enqueued), the failure limit 1."""
        assert self._impl is not None, "setup() was not called"
        try:
            result = self._impl.sweep(arguments)
        except UserError as e:
            exit_on_user_error(e)
        except KeyboardInterrupt:
            sys.exit(130)
        if result.exit_code:
            sys.exit(result.exit_code)
        return result.summary
