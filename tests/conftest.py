"""Shared fixtures: a small generated dataset in the real VOC/SBD layouts, built once per session."""

from __future__ import annotations

import os

# The suite checks the CPU path (exact resumes, DDP over gloo), also on a machine with a GPU: GPUs stay
# hidden from it and its subprocesses, so trainer=auto means the CPU. `make gpu-check` runs on CUDA.
os.environ["CUDA_VISIBLE_DEVICES"] = ""

import pytest
import torch

from fcnlab.data.synthetic import SyntheticConfig, generate

torch.set_flush_denormal(True)

TINY_DATA = SyntheticConfig(
    seed=3,
    sbd_train=24,
    sbd_val=6,
    voc_val=12,
    voc_val_in_sbd_train=4,
    voc_train=6,
    min_size=96,
    max_size=128,
    voc2012=True,
    classification_train=40,
    classification_val=20,
    classification_size=96,
)


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> str:
    """Root of a generated VOC2011 + VOC2012 + SBD tree (read-only: copy it before damaging it)."""
    return str(generate(tmp_path_factory.mktemp("data") / "shapes", TINY_DATA, workers=1))
