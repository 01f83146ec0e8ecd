"""The one way fcnlab writes a file: to a temporary name in the target's folder, then renamed over it.

A killed run, a full disk or a read-only folder never leaves a half-written file under the real name;
readers see the old file or the new one. Every writer (JSON records, PNGs, figures, tables, ONNX,
pretrained weights) goes through :func:`atomic_path`; a whole folder (a generated or converted
dataset) through :func:`atomic_dir`. Writers that jobs running side by side share (the generated
data, the pretrained backbone) build under :func:`exclusive`, so one builds and the others reuse it.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from fcnlab.errors import FCNLabError


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it is renamed to ``path``, on any error removed.

    ``OSError`` (disk full, permissions) becomes one :class:`FCNLabError` line naming ``path``.
    The temporary name keeps the suffix (``.x.png.1234.tmp.png``) for writers that pick a format by it.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp{path.suffix}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        yield tmp
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise FCNLabError(f"{path}: cannot write ({e.strerror or e}); free space or fix permissions") from e
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json(path: str | os.PathLike, data: dict | list) -> None:
    """JSON (indented, non-JSON values as ``str``), written atomically."""
    write_text(path, json.dumps(data, indent=1, default=str) + "\n")


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield an empty temporary folder beside ``path``; on success it takes ``path``'s place, on any
    error it is removed. An empty folder at ``path`` is replaced; a full one (the caller decided it may
    go) is moved aside first and deleted after the swap, so no moment shows a half-built tree."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.partial-", dir=path.parent))
    try:
        yield tmp
        if path.is_dir() and any(path.iterdir()):
            old = Path(tempfile.mkdtemp(prefix=f".{path.name}.stale-", dir=path.parent))
            os.replace(path, old / "tree")
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            if path.is_dir():
                path.rmdir()
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


@contextlib.contextmanager
def exclusive(target: str | os.PathLike) -> Iterator[None]:
    """Hold an exclusive lock for building ``target``, waiting while another process holds it.

    The lock is the hidden file ``.<name>.lock`` beside ``target`` (it stays; it is free once the
    holder exits, even killed). The one who waited then finds ``target`` built and reuses it.
    """
    target = Path(target)
    lock = target.with_name(f".{target.name}.lock")
    try:
        lock.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
        raise FCNLabError(f"{lock}: cannot write ({e.strerror or e}); free space or fix permissions") from e
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock
