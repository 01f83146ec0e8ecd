"""fcnlab.training.allocator: with it, a large tensor freed and allocated again reuses heap memory."""

from __future__ import annotations

import subprocess
import sys

import pytest

from fcnlab.training.allocator import keep_freed_memory
from helpers.hang import HANG_GUARD_S

ROUNDS = """
import resource, sys, torch
from fcnlab.training.allocator import keep_freed_memory
if sys.argv[1] == "tuned":
    assert keep_freed_memory()
n = 22 * 2**20 // 4  # one upsampled-logits tensor of the default's batch (float32)

def step():  # as a training step: the logits, their log-probabilities and gradient, then all freed
    tensors = [torch.empty(n) for _ in range(3)]
    for t in tensors:
        t.fill_(1)

step()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(5):
    step()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def page_faults(mode: str) -> int:
    proc = subprocess.run(
        [sys.executable, "-c", ROUNDS, mode], capture_output=True, text=True, timeout=HANG_GUARD_S
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return int(proc.stdout.split()[-1])


def test_freed_large_tensors_are_reused_instead_of_faulted_in_again():
    if not keep_freed_memory():
        pytest.skip("this C library has no glibc mallopt")
    pages = 22 * 2**20 // 4096  # one tensor's pages
    # The counts vary from process to process (seen on a 2-core Xeon, 16 draws: default 22k, 39k or 84k
    # faults, tuned 11k or 17k), so the claim is the bounds the mechanism gives, not a ratio of two draws.
    one_step = 3 * pages + 256  # a step's three tensors, and 1 MiB for whatever else the loop touches
    default, tuned = page_faults("default"), page_faults("tuned")
    assert tuned <= one_step  # tuned: over 5 steps at most one step's tensors are faulted in again
    assert default > one_step  # glibc's default: more than that, steps map (or re-grow) them afresh
