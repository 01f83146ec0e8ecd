"""fcnlab's commands, one module each, each thin: parse, call the library, print, exit.

``fcnlab-train`` (:mod:`.train`), ``fcnlab-eval``, ``fcnlab-predict``, ``fcnlab-export`` (Hydra apps,
configs in ``conf/``); ``fcnlab-report``, ``fcnlab-verify``, ``fcnlab-bench``, ``fcnlab-gpu-check``,
``fcnlab-models``, ``fcnlab-data`` (argparse). Separate commands rather than one with sub-commands:
each Hydra app owns its command line (its primary config, ``-m`` sweeps, the job command that DDP
ranks and SLURM re-run), which a dispatcher in front would have to rewrite.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable

from fcnlab.errors import INTERRUPTED, interrupted_line


def _command(module: str) -> Callable[[], None]:
    """The console script of ``fcnlab.cli.<module>``: its ``main``, imported only once this runs.

    Each command turns Ctrl-C into one line once its body runs; this covers the seconds before (the
    imports of torch and Lightning, Hydra composing the config), which would otherwise end in a
    ``KeyboardInterrupt`` traceback. Nothing of the command's own has been written by then.
    """

    def run() -> None:
        try:
            importlib.import_module(f"fcnlab.cli.{module}").main()
        except KeyboardInterrupt:
            print(interrupted_line(None), file=sys.stderr, flush=True)
            sys.exit(INTERRUPTED)

    run.__name__ = run.__qualname__ = f"{module}_main"
    return run


# The console scripts (pyproject.toml); named apart from the modules, which importing them binds here.
train_main = _command("train")
eval_main = _command("eval")
predict_main = _command("predict")
export_main = _command("export")
report_main = _command("report")
verify_main = _command("verify")
bench_main = _command("bench")
gpu_check_main = _command("gpu_check")
models_main = _command("models")
data_main = _command("data")
