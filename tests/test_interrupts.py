"""A Ctrl-C that library code swallowed is still seen (sweep/search/interrupts.py).

.venv/bin/python -m pytest tests/test_interrupts.py
"""

from __future__ import annotations

import os
import signal

import pytest

from sweep.search import interrupts


def swallowing_release() -> None:
    """What Optuna's journal lock release does when the interrupt lands before its rename."""
    try:
        os.kill(os.getpid(), signal.SIGINT)
        signal.pthread_sigmask(signal.SIG_BLOCK, [])  # a call: the handler runs here at the latest
    except BaseException:
        raise FileNotFoundError("lock.rename") from None


def test_a_swallowed_ctrl_c_is_raised_again_and_the_handler_restored():
    before = signal.getsignal(signal.SIGINT)
    assert before is signal.default_int_handler  # conftest installs Python's default
    unwatch = interrupts.watch()
    try:
        interrupts.check()  # nothing arrived yet
        with pytest.raises(FileNotFoundError):
            swallowing_release()
        with pytest.raises(KeyboardInterrupt):
            interrupts.check()
    finally:
        unwatch()
    assert signal.getsignal(signal.SIGINT) is before
    interrupts.watch()()  # a new watch forgets the earlier interrupt
    interrupts.check()


def test_an_inherited_ignore_is_left_alone():
    before = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        unwatch = interrupts.watch()
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
        os.kill(os.getpid(), signal.SIGINT)  # ignored: nothing to see
        interrupts.check()
        unwatch()
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, before)
