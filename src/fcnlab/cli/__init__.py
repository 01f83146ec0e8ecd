"""fcnlab's commands, one module each, each thin: parse, call the library, print, exit.

``fcnlab-train`` (:mod:`.train`), ``fcnlab-eval``, ``fcnlab-predict``, ``fcnlab-export`` (Hydra apps,
configs in ``conf/``); ``fcnlab-report``, ``fcnlab-verify``, ``fcnlab-bench``, ``fcnlab-gpu-check``,
``fcnlab-models``, ``fcnlab-data`` (argparse). Separate commands rather than one with sub-commands:
each Hydra app owns its command line (its primary config, ``-m`` sweeps, the job command that DDP
ranks and SLURM re-run), which a dispatcher in front would have to rewrite.
"""
