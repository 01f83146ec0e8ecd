"""What a run records about itself: git sha, library versions, hardware."""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path


def git_sha(cwd: str | os.PathLike | None = None) -> str:
    """The checked-out commit (with ``-dirty`` for uncommitted changes), or "unknown"."""
    cwd = cwd or Path(__file__).resolve().parent
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return sha + ("-dirty" if dirty else "")


def versions() -> dict[str, str]:
    import hydra
    import lightning
    import torch
    import torchmetrics
    import torchvision

    import fcnlab

    mods = {
        "fcnlab": fcnlab,
        "torch": torch,
        "torchvision": torchvision,
        "lightning": lightning,
        "hydra": hydra,
        "torchmetrics": torchmetrics,
    }
    return {"python": platform.python_version(), **{k: m.__version__ for k, m in mods.items()}}


def cpu_model() -> str:
    """The CPU's model name: /proc/cpuinfo's ``model name`` (``lscpu``'s Model name), else the platform's."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def hardware() -> str:
    import torch

    if torch.cuda.is_available():
        return f"{torch.cuda.device_count()}x {torch.cuda.get_device_name(0)}"
    return f"CPU {cpu_model()}, {os.cpu_count()} cores, {torch.get_num_threads()} threads"
