"""How long a test waits for a subprocess before calling it hung: an hour.

A guard against a hang, never a speed check: the slowest single command of the suite takes a few
minutes on a loaded 2-core machine, so no machine that can run the suite at all reaches it. Tests that
wait for a process to reach a point (a step, a job's folder) wait on that event, not on a time.
"""

HANG_GUARD_S = 3600
