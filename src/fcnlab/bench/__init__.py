"""Measurement: ``make bench`` (:mod:`fcnlab.bench.bench`; torchfcn via ``peers``) and ``make gpu-check``."""
