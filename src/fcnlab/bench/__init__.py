"""Measurement: ``make bench`` (:mod:`fcnlab.bench.bench`, run by ``fcnlab-bench``) and ``make gpu-check``.

``fcnlab.bench.peers`` imports the peer implementation, torchfcn; ``fcnlab.bench.gpu_check`` stands alone.
"""
