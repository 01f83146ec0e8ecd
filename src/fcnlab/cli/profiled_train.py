"""``python -m fcnlab.cli.profiled_train <fcnlab-train args>``: ``fcnlab-train`` with its start-up marked.

Notes when Python is up and when the imports are done (:data:`fcnlab.bench.stages.PROCESS_MARKS`),
then runs ``fcnlab.cli.train.main`` on the same command line, unchanged: the job is the real one.
:class:`fcnlab.bench.stage_profiler.StageProfiler` splits the start-up at these marks.
"""

import time

_python_up = time.monotonic()

from fcnlab.bench.stages import PROCESS_MARKS  # noqa: E402  (after the first mark on purpose)

PROCESS_MARKS["python"] = _python_up

from fcnlab.cli.train import main  # noqa: E402

PROCESS_MARKS["imports"] = time.monotonic()

if __name__ == "__main__":
    main()
