"""One exception type for mistakes a user can fix (bad option, missing file); bugs stay tracebacks.

Every CLI runs inside :func:`exit_on_user_error`: an :class:`FCNLabError` becomes one ``error: <line>``
on stderr and exit status 2; Ctrl-C becomes one ``interrupted; nothing half-written left in <where>``
and exit status 130 (every writer is atomic, so the line is true).
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator

INTERRUPTED = 130  # 128 + SIGINT, what a shell reports for a process Ctrl-C stopped


class FCNLabError(ValueError):
    """A user-fixable error whose message names the file or option and what to do about it."""


def one_line(error: BaseException) -> str:
    """The last line of an error's message (the part a user reads), without the class prefix."""
    lines = str(error).strip().splitlines() or [type(error).__name__]
    return lines[-1].removeprefix("fcnlab.errors.FCNLabError: ")


def interrupted_line(where: str | os.PathLike | None) -> str:
    return f"interrupted; nothing half-written left in {where if where is not None else os.getcwd()}"


def by_ctrl_c(error: BaseException) -> bool:
    """Ctrl-C, or the ``sys.exit`` a library (Lightning's fit) turned it into."""
    return isinstance(error, KeyboardInterrupt) or (
        isinstance(error, SystemExit) and isinstance(error.__context__, KeyboardInterrupt)
    )


@contextlib.contextmanager
def exit_on_user_error(where: str | os.PathLike | None = None) -> Iterator[None]:
    """Run a CLI's body: a user's mistake is ``error: <one line>`` and exit 2, Ctrl-C one line naming
    ``where`` (the command's output) and exit 130, anything else a traceback."""
    try:
        yield
    except FCNLabError as e:
        print(f"error: {one_line(e)}", file=sys.stderr)
        sys.exit(2)
    except (KeyboardInterrupt, SystemExit) as e:
        if not by_ctrl_c(e):
            raise
        print(interrupted_line(where), file=sys.stderr, flush=True)
        sys.exit(INTERRUPTED)
