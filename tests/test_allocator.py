"""fcnlab.training.allocator: with it, a large tensor freed and allocated again reuses heap memory."""

from __future__ import annotations

import subprocess
import sys

import pytest

from fcnlab.training.allocator import keep_freed_memory

ROUNDS = """
import resource, sys, torch
from fcnlab.training.allocator import keep_freed_memory
if sys.argv[1] == "tuned":
    assert keep_freed_memory()
n = 22 * 2**20 // 4  # one upsampled-logits tensor of the default's batch (float32)
x = torch.empty(n); x.fill_(1); del x
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(5):
    y = torch.empty(n); y.fill_(1); del y
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def page_faults(mode: str) -> int:
    proc = subprocess.run([sys.executable, "-c", ROUNDS, mode], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return int(proc.stdout.split()[-1])


def test_freed_large_tensors_are_reused_instead_of_faulted_in_again():
    if not keep_freed_memory():
        pytest.skip("this C library has no glibc mallopt")
    pages = 22 * 2**20 // 4096  # one tensor's pages
    default, tuned = page_faults("default"), page_faults("tuned")
    assert default >= 4 * pages  # glibc's default maps each round's tensor afresh
    assert tuned < pages // 4  # tuned: the five rounds reuse the first one's memory
