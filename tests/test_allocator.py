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
    default, tuned = page_faults("default"), page_faults("tuned")
    assert default >= 2 * 3 * pages  # glibc's default: most steps map (or re-grow) their tensors afresh
    assert 3 * tuned < default  # tuned: the steps mostly reuse the first step's memory
