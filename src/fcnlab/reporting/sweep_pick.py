"""Which folder ``make reproduce-table2`` / ``-table1`` sweeps into: the same one until the code changes.

The folder is ``<runs>/table2_seeds<N>_<fingerprint>`` (Table 1: ``table1_...``), where the
fingerprint is a short hash of the files that decide a run (the package's Python, ``conf/``,
``sweeps/``) and the pinned library versions.
Running the same command again after a kill therefore lands in the same folder, where
``resume=auto`` skips the finished rows and continues the interrupted one. A changed code base gets
a new folder, so old results are never reported as the new code's. ``fresh=True`` starts a new folder
of the same key (``..._<timestamp>``); later runs without it continue that one, the newest.

Reads and hashes files only: no torch, no Lightning.
"""

from __future__ import annotations

import datetime
import hashlib
import re
from collections.abc import Iterable
from importlib import metadata
from pathlib import Path

from fcnlab.errors import FCNLabError

# Parts of the package that never change what a training job computes.
NOT_TRAINING = ("bench", "reporting")
LIBRARIES = ("torch", "torchvision", "lightning", "hydra-core", "numpy", "torchmetrics")
_STAMP = re.compile(r"^_(\d{8}_\d{6})(?:_(\d+))?$")


def code_fingerprint(roots: Iterable[Path], libraries: Iterable[str] = LIBRARIES, length: int = 8) -> str:
    """A short hash of every ``*.py`` / ``*.yaml`` under ``roots`` (path and bytes) and the library versions.

    Files under a folder named in ``NOT_TRAINING`` (directly below a root) are left out.
    """
    digest = hashlib.sha256()
    for root in roots:
        root = Path(root)
        files = sorted(p for ext in ("*.py", "*.yaml") for p in root.rglob(ext) if p.is_file())
        for path in files:
            rel = path.relative_to(root)
            if rel.parts[0] in NOT_TRAINING or "__pycache__" in rel.parts:
                continue
            digest.update(f"{root.name}/{rel.as_posix()}\0".encode())
            digest.update(path.read_bytes())
            digest.update(b"\0")
    for name in libraries:
        try:
            version = metadata.version(name)
        except metadata.PackageNotFoundError:
            version = "absent"
        digest.update(f"{name}=={version}\0".encode())
    return digest.hexdigest()[:length]


def sweep_key(seeds: int, fingerprint: str, table: str = "table2") -> str:
    """The folder name a ``table`` sweep of ``seeds`` seeds of this code gets (no timestamp)."""
    if seeds < 1:
        raise FCNLabError(f"SEEDS={seeds}: the number of seeds must be at least 1")
    return f"{table}_seeds{seeds}_{fingerprint}"


def _order(name: str, key: str) -> tuple[str, int] | None:
    """Sort key of a folder of ``key`` (the plain one first, then by timestamp); None: not of ``key``."""
    if name == key:
        return ("", 0)
    if not name.startswith(key):
        return None
    match = _STAMP.match(name[len(key) :])
    return (match.group(1), int(match.group(2) or 0)) if match else None


def sweeps_of(runs_dir: Path, key: str) -> list[Path]:
    """The folders of ``key`` under ``runs_dir``, oldest first."""
    if not runs_dir.is_dir():
        return []
    found = [(order, p) for p in runs_dir.iterdir() if p.is_dir() and (order := _order(p.name, key))]
    return [p for _, p in sorted(found)]


def pick_sweep(
    runs_dir: Path,
    seeds: int,
    fingerprint: str,
    fresh: bool = False,
    now: datetime.datetime | None = None,
    table: str = "table2",
) -> Path:
    """The sweep folder for this code and seed count: the newest existing one, else the plain name.

    ``fresh``: a new, not yet existing ``<key>_<YYYYmmdd_HHMMSS>`` folder (``_2``, ``_3`` ... if that
    second's name is taken).
    """
    runs_dir = Path(runs_dir)
    key = sweep_key(seeds, fingerprint, table)
    existing = sweeps_of(runs_dir, key)
    if not fresh:
        return existing[-1] if existing else runs_dir / key
    stamp = (now or datetime.datetime.now()).strftime("%Y%m%d_%H%M%S")
    candidate, n = runs_dir / f"{key}_{stamp}", 1
    while candidate.exists():
        n += 1
        candidate = runs_dir / f"{key}_{stamp}_{n}"
    return candidate
