"""A stopwatch that charges every second of a process to exactly one named stage (no torch imported).

:class:`StageClock` always has one current stage; :meth:`~StageClock.switch` charges the time since the
last change to it and names the next. :meth:`~StageClock.push` / :meth:`~StageClock.pop` nest a stage
inside another (a checkpoint write inside validation) and return to the outer one, so the stages'
seconds never overlap and add up to the span clocked.

Times are ``time.monotonic()`` (CLOCK_MONOTONIC, one clock for every process on Linux), so a parent
can hand its start time to a child. ``PROCESS_MARKS`` holds moments a process notes before the
profiling callback exists (:mod:`fcnlab.cli.profiled_train` fills it).
"""

from __future__ import annotations

import atexit
import os
import time
from collections.abc import Callable
from pathlib import Path

PROCESS_MARKS: dict[str, float] = {}
T0_ENV = "FCNLAB_PROFILE_T0"  # the parent's time.monotonic() just before it started this process
_LAST_AT_EXIT: list[Callable[[], None]] = []


def at_last_exit(fn: Callable[[], None]) -> None:
    """Call ``fn`` at exit after every ``atexit`` handler registered after this module was imported.

    ``atexit`` runs handlers last-registered first; this module's one handler is registered when it
    is first imported, which :mod:`fcnlab.cli.profiled_train` does before torch and Lightning.
    """
    _LAST_AT_EXIT.append(fn)


@atexit.register
def _run_last() -> None:
    for fn in _LAST_AT_EXIT:
        fn()


class StageClock:
    """Exclusive seconds per stage: at any moment exactly one stage is being charged."""

    def __init__(self, stage: str, start: float | None = None) -> None:
        self.start = time.monotonic() if start is None else start
        self.current, self.since = stage, self.start
        self.seconds: dict[str, float] = {stage: 0.0}
        self.entries: dict[str, int] = {stage: 1}
        self._outer: list[str] = []

    def _charge(self, now: float | None) -> float:
        now = time.monotonic() if now is None else now
        self.seconds[self.current] = self.seconds.get(self.current, 0.0) + max(now - self.since, 0.0)
        self.since = max(now, self.since)
        return now

    def switch(self, stage: str, now: float | None = None) -> None:
        """Charge the time so far to the current stage; from ``now`` on, charge ``stage``."""
        self._charge(now)
        if stage != self.current:
            self.entries[stage] = self.entries.get(stage, 0) + 1
            self.seconds.setdefault(stage, 0.0)
        self.current = stage

    def push(self, stage: str, now: float | None = None) -> None:
        """Enter ``stage`` inside the current one; :meth:`pop` returns to it."""
        self._outer.append(self.current)
        self.switch(stage, now)

    def pop(self, now: float | None = None) -> None:
        """Leave the innermost pushed stage (no-op if none is pushed)."""
        if self._outer:
            self.switch(self._outer.pop(), now)

    def stop(self, now: float | None = None) -> float:
        """Charge up to ``now`` (default: now); returns that moment. The clock can go on afterwards."""
        return self._charge(now)

    def record(self) -> dict:
        """The stages in the order first entered, with seconds and how often each was entered."""
        return {
            "start_monotonic": self.start,
            "end_monotonic": self.since,
            "stages": [
                {"stage": s, "seconds": self.seconds[s], "entries": self.entries.get(s, 0)}
                for s in self.seconds
            ],
        }


def process_start() -> float:
    """When this process started, on the ``time.monotonic()`` clock.

    The parent's ``FCNLAB_PROFILE_T0`` if it set one, else Linux's ``/proc/self/stat`` start time
    (clock ticks since boot, 10 ms resolution), else now.
    """
    if T0_ENV in os.environ:
        return float(os.environ[T0_ENV])
    try:
        fields = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
        started = int(fields[19]) / os.sysconf("SC_CLK_TCK")  # field 22 of stat(5): starttime
        age = time.clock_gettime(time.CLOCK_BOOTTIME) - started
    except (OSError, ValueError, IndexError, AttributeError):
        return time.monotonic()
    return time.monotonic() - max(age, 0.0)
