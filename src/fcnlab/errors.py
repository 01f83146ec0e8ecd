"""One exception type for mistakes a user can fix (bad option, missing file); bugs stay tracebacks.

Every CLI runs inside :func:`exit_on_user_error`: an :class:`FCNLabError` becomes one ``error: <line>``
on stderr and exit status 2.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator


class FCNLabError(ValueError):
    """A user-fixable error whose message names the file or option and what to do about it."""


def one_line(error: BaseException) -> str:
    """The last line of an error's message (the part a user reads), without the class prefix."""
    lines = str(error).strip().splitlines() or [type(error).__name__]
    return lines[-1].removeprefix("fcnlab.errors.FCNLabError: ")


@contextlib.contextmanager
def exit_on_user_error() -> Iterator[None]:
    """Run a CLI's body: a user's mistake is ``error: <one line>`` and exit 2, anything else a traceback."""
    try:
        yield
    except FCNLabError as e:
        print(f"error: {one_line(e)}", file=sys.stderr)
        sys.exit(2)
