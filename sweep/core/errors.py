"""Bad input, told apart from bugs by one base class.

Every error that means "the user asked for something that cannot work" (a bad key or value, a
missing file, an unreachable store, an unknown run) derives from `UserError`. The entry points
(`train.py`, `python -m sweep`, the Hydra sweeper shim) print it as one `error:` line and exit
with `EXIT_CODE`; anything else is a bug and keeps its traceback. Each subclass also keeps the
builtin base it always had (ValueError, RuntimeError), so existing `except` clauses still hold.
"""

from __future__ import annotations

import sys

EXIT_CODE = 2


class UserError(Exception):
    """Bad input: one line for the user, exit code 2."""


def exit_on_user_error(e: BaseException | str) -> None:
    """Print `e` as one `error:` line and exit 2: the one exit for bad input, called only by the
    entry points and the Hydra error hook train.py installs (sweep.core.bad_input)."""
    print(f"error: {e}", file=sys.stderr)
    sys.exit(EXIT_CODE)


class JobLost(RuntimeError):
    """A launched job ended without returning: its process, node or cluster job was killed.
    Not the trial's fault, so the sweeper retries its params (a trial that raised is not)."""
