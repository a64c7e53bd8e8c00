"""A Ctrl-C that library code swallowed still stops the sweep.

Python turns SIGINT into KeyboardInterrupt wherever the main thread is. When that is inside
library code that cleans up in a `finally` which itself fails (an interrupted release of Optuna's
journal-file lock raises FileNotFoundError), the KeyboardInterrupt is
replaced by another exception, the trial is told FAIL like any failure, and the worker goes on
with the next trial as if nobody had pressed Ctrl-C. `watch` records that SIGINT arrived; the
sweep loop calls `check` between steps, which raises KeyboardInterrupt again, so the trial is
failed and re-enqueued as an interrupted one and the worker stops.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable

_seen = threading.Event()


def watch() -> Callable[[], None]:
    """Record SIGINTs from now on; returns the function that restores the previous handler.
    An inherited "ignore" (or any handler but Python's default) is left as it is."""
    prior = signal.getsignal(signal.SIGINT)
    if prior is not signal.default_int_handler or threading.current_thread() is not (
        threading.main_thread()
    ):
        return lambda: None
    _seen.clear()

    def on_sigint(signum, frame):
        _seen.set()
        signal.default_int_handler(signum, frame)

    signal.signal(signal.SIGINT, on_sigint)
    return lambda: signal.signal(signal.SIGINT, prior)


def check() -> None:
    """Raise KeyboardInterrupt if a SIGINT arrived since `watch`, even one that was swallowed."""
    if _seen.is_set():
        raise KeyboardInterrupt
