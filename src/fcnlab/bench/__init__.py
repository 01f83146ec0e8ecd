"""``make bench``: fcnlab's FCNs timed beside torchfcn and this machine's measured peak.

``fcnlab-bench`` (:mod:`fcnlab.cli.bench`) runs it (``--help`` for the filters); each model is
measured in its own process by :mod:`fcnlab.bench.child`, and the result lands in ``results/bench.json``.
"""
