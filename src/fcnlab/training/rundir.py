"""A job's output folder: one process at a time, a readable checkpoint to resume, results never lost.

``lock_run_dir`` holds an exclusive ``flock`` on ``<dir>/.fcnlab.lock`` for the job's life: a second
``fcnlab-train`` on the same folder is refused, and a lock left by a killed process is free again (the
kernel drops it with the process), so the same command resumes. ``readable_checkpoint`` picks what to
resume from when ``last.ckpt`` is broken, and ``may_record_failure`` keeps a failed re-run from writing
over a finished record or into a folder that belongs to someone else.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
from pathlib import Path

from fcnlab.errors import FCNLabError

log = logging.getLogger("fcnlab.train")
LOCK_NAME = ".fcnlab.lock"
_held: dict[str, int] = {}  # resolved folder -> fd of the lock this process holds


def _drop_in_child() -> None:
    # A forked child (a loader worker) shares the lock's open file; closing its copy keeps the lock
    # the parent's alone, so it goes when the parent dies, even while the child is still exiting.
    for fd in _held.values():
        with contextlib.suppress(OSError):
            os.close(fd)
    _held.clear()


os.register_at_fork(after_in_child=_drop_in_child)


def _key(out_dir: Path) -> str:
    return str(Path(out_dir).resolve())


def lock_run_dir(out_dir: Path) -> None:
    """Take ``out_dir``'s lock (non-blocking); refuse in one line if another live process holds it."""
    key = _key(out_dir)
    if key in _held:
        return
    try:
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        fd = os.open(Path(out_dir) / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
        raise FCNLabError(f"{out_dir}: cannot write there ({e.strerror}); choose another folder") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        try:
            holder = os.read(fd, 64).decode(errors="replace").strip() or "?"
        finally:
            os.close(fd)
        raise FCNLabError(
            f"{out_dir} is in use by another fcnlab-train (pid {holder}); wait for it to finish, "
            "or use another hydra.run.dir / hydra.sweep.dir"
        ) from None
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    _held[key] = fd


def unlock_run_dir(out_dir: Path) -> None:
    """Release ``out_dir``'s lock if this process holds it (the lock file stays: it is free now)."""
    fd = _held.pop(_key(out_dir), None)
    if fd is not None:
        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def locked_by_other(out_dir: Path) -> bool:
    """True when another process holds ``out_dir``'s lock right now."""
    if _key(out_dir) in _held:
        return False
    path = Path(out_dir) / LOCK_NAME
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    except OSError:
        return True
    finally:
        os.close(fd)


def may_record_failure(out_dir: Path, overrides: list[str]) -> bool:
    """Whether a failed run may write its ``results.json`` into ``out_dir``.

    Never over a finished (status ok) record, never into a folder another job owns (``job.json``
    of other overrides) or another process is using.
    """
    out_dir = Path(out_dir)
    try:
        record = json.loads((out_dir / "results.json").read_text())
        if isinstance(record, dict) and record.get("status") == "ok":
            return False
    except (OSError, ValueError):
        pass
    try:
        owner = json.loads((out_dir / "job.json").read_text())["overrides"]
    except (OSError, ValueError, KeyError, TypeError):
        owner = None
    if owner is not None and owner != overrides:
        return False
    return not locked_by_other(out_dir)


def read_checkpoint(path: str | os.PathLike) -> dict | None:
    """The checkpoint at ``path`` (mapped, not read into memory), or None if it cannot be read."""
    from fcnlab.models.weights import load_file

    try:
        saved = load_file(path, mmap=True)
    except Exception:  # truncated zip, foreign pickle, empty file: torch raises several types
        return None
    return saved if isinstance(saved, dict) else None


def resumable_last(last: Path) -> Path | None:
    """``last.ckpt`` if readable; else ``best.ckpt`` beside it (said in one line); None if neither exists.

    A ``last.ckpt`` that cannot be read and has no readable ``best.ckpt`` beside it is refused: every
    re-run would fail on it.
    """
    if not last.is_file():
        return None
    if read_checkpoint(last) is not None:
        return last
    best = last.with_name("best.ckpt")
    saved = read_checkpoint(best) if best.is_file() else None
    if saved is not None and "state_dict" in saved:
        log.warning(
            "%s: not a readable checkpoint (truncated?); resuming from %s instead",
            last,
            best,
        )
        return best
    raise FCNLabError(
        f"{last}: not a readable checkpoint (truncated?) and no readable best.ckpt beside it; "
        "delete it to start over, or rerun with resume=never"
    )
