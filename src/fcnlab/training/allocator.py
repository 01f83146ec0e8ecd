"""glibc's allocator told to keep freed memory for the next training step instead of returning it.

A CPU training step allocates and frees the same few large tensors every step (the upsampled logits
and their gradients: 22 MB each for the tiny default's batch of 16 at 128 px). Under glibc's default,
blocks that large are mapped fresh and unmapped on free, or the heap above them is trimmed, so every
step page-faults and zeroes them again. A fixed mmap threshold at glibc's 64-bit maximum (32 MiB, which
also stops glibc from moving it) and a 1 GiB trim threshold make them reuse heap memory (the measured
gain: docs/performance.md). The peak resident memory is what the step needs anyway; freed memory up to
1 GiB stays with the process until it exits. ``fcnlab-train`` and each of ``make bench``'s timed
processes call :func:`keep_freed_memory`: the one place fcnlab tunes glibc.
"""

from __future__ import annotations

import ctypes
import ctypes.util

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters (malloc.h)
MMAP_THRESHOLD = 32 * 2**20
TRIM_THRESHOLD = 2**30


def keep_freed_memory() -> bool:
    """Apply the two thresholds to this process; False where the C library has no glibc mallopt."""
    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
