"""The one way fcnlab writes a file: to a temporary name in the target's folder, then renamed over it.

A killed run, a full disk or a read-only folder never leaves a half-written file under the real name;
readers see the old file or the new one. Every writer (JSON records, PNGs, figures, tables, ONNX,
pretrained weights) goes through :func:`atomic_path`; a whole folder (a generated or converted
dataset) through :func:`atomic_dir`. Writers that jobs running side by side share (the generated
data, the pretrained backbone) build under :func:`exclusive`, so one builds and the others reuse it.

It is also the one home of the overwrite rule: a command replaces or deletes only files it wrote
itself (:func:`foreign_files` / :func:`own_outputs`: a manifest in each folder it writes into), unless
the user says so (``overwrite=true``, named in the refusal); and a run folder is never a data root or
inside one (:func:`data_root_clash`).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
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


# -- whose file is it: a command replaces or deletes only files it wrote itself ------------------------

OUTPUTS_MANIFEST = ".fcnlab-outputs.json"  # per folder: the files fcnlab commands wrote there


def _manifest(folder: Path) -> dict[str, dict]:
    try:
        entries = json.loads((folder / OUTPUTS_MANIFEST).read_text()).get("files", {})
    except (OSError, ValueError, AttributeError):
        return {}
    return entries if isinstance(entries, dict) else {}


def _stamp(path: Path) -> dict:
    stat = path.stat()
    return {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def foreign_files(folder: str | os.PathLike, names: Iterable[str]) -> list[Path]:
    """The files among ``folder/<name>`` that exist and that no fcnlab command wrote (or that were
    changed since): what a command may not replace unless the user says so.

    A file is fcnlab's when ``folder``'s manifest (:data:`OUTPUTS_MANIFEST`, kept by :func:`own_outputs`)
    lists it with its size and modification time, or lists it as about to be written (a run killed
    between the two leaves such entries; the same command again takes the files over).
    """
    folder = Path(folder)
    entries = _manifest(folder)
    foreign = []
    for name in names:
        path = folder / name
        if not path.exists() and not path.is_symlink():
            continue
        entry = entries.get(name)
        if not isinstance(entry, dict):
            foreign.append(path)
        elif entry.get("size") is None:  # claimed by a run that was killed before it stamped it
            continue
        elif not path.is_file() or _stamp(path) != {k: entry.get(k) for k in ("size", "mtime_ns")}:
            foreign.append(path)  # replaced or edited since fcnlab wrote it: the user's now
    return foreign


@contextlib.contextmanager
def _folder_locked(folder: Path) -> Iterator[None]:
    """An exclusive ``flock`` on the folder itself (no lock file left among the outputs)."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _update_manifest(folder: Path, command: str, names: list[str], stamped: bool) -> None:
    manifest = folder / OUTPUTS_MANIFEST
    with _folder_locked(folder):  # two commands writing into one folder: each keeps the other's entries
        entries = _manifest(folder)
        for name in names:
            path = folder / name
            if not stamped:
                entries[name] = {"by": command, "size": None}
            elif path.is_file():
                entries[name] = {"by": command, **_stamp(path)}
            else:  # claimed, never written (the run failed first)
                entries.pop(name, None)
        if not entries:  # nothing written after all (the command failed first): no trace
            manifest.unlink(missing_ok=True)
            return
        about = "files fcnlab commands wrote here, which they may replace"
        write_json(manifest, {"about": about, "files": entries})


@contextlib.contextmanager
def own_outputs(folder: str | os.PathLike, names: Iterable[str], command: str) -> Iterator[None]:
    """Record ``folder/<name>`` as ``command``'s own while it writes them: claimed before (so a run
    killed half-way still owns what it wrote), stamped after with the size and time of each one written.

    The caller has checked :func:`foreign_files` (or the user said overwrite): this records, it does not
    refuse.
    """
    folder, names = Path(folder), list(names)
    folder.mkdir(parents=True, exist_ok=True)
    _update_manifest(folder, command, names, stamped=False)
    try:
        yield
    finally:
        _update_manifest(folder, command, names, stamped=True)


def refuse_foreign(paths: Iterable[str | os.PathLike], command: str, what_to_do: str) -> None:
    """One line for the first of ``paths`` that exists and ``command`` may not replace (see
    :func:`foreign_files`): ``<path> exists and <command> did not write it; <what_to_do>``, where
    ``what_to_do`` names the option that allows it (e.g. ``give another --out, or --overwrite to
    replace it``). Call it before the work, so a refusal costs nothing."""
    for path in map(Path, paths):
        if foreign_files(path.parent, [path.name]):
            raise FCNLabError(f"{path} exists and {command} did not write it; {what_to_do}")


def write_owned_json(path: str | os.PathLike, data: dict | list, command: str) -> None:
    """:func:`write_json`, recorded as ``command``'s own (the same command may replace it next time)."""
    path = Path(path)
    with own_outputs(path.parent, [path.name], command):
        write_json(path, data)


def lock_holder(lock: str | os.PathLike) -> str | None:
    """The pid written in ``lock`` while another live process holds its ``flock``; None when it is free.

    (The holder writes its pid into the file; the kernel drops the lock with the process.)
    """
    try:
        fd = os.open(lock, os.O_RDONLY)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            return os.read(fd, 64).decode(errors="replace").strip() or "?"
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


# -- run folders and data roots -------------------------------------------------------------------------

# What a dataset's root holds (fcnlab's layouts: VOC/SBD as they unpack, generated, the folder layout;
# a predict output holds classes.txt too, but no images/).
DATASET_MARKERS = (
    ("VOCdevkit",),
    ("benchmark_RELEASE",),
    ("fcnlab_synthetic.json",),
    ("classes.txt", "images"),
)


def looks_like_data_root(folder: str | os.PathLike) -> bool:
    folder = Path(folder)
    return any(all((folder / m).exists() for m in marker) for marker in DATASET_MARKERS)


def data_root_clash(run_dir: str | os.PathLike, data_root: str | os.PathLike | None) -> Path | None:
    """The data root ``run_dir`` is, or lies inside (``data_root``, or ``run_dir`` itself when it holds
    a dataset's files); None when the run folder is clear of data."""
    run = Path(run_dir).expanduser().resolve()
    if data_root not in (None, ""):
        root = Path(str(data_root)).expanduser().resolve()
        if run == root or root in run.parents:
            return root
    return run if looks_like_data_root(run) else None


def check_not_data(folder: str, option: str, data_root: object) -> None:
    """A run or sweep folder is never a data root nor inside one (``data_root``: the config's)."""
    root = data_root_clash(folder, data_root)
    if root is None:
        return
    if Path(folder).expanduser().resolve() != root:
        where = f"lies inside the data root {root}"
    elif data_root not in (None, "") and Path(str(data_root)).expanduser().resolve() == root:
        where = f"is the data root (data.root={data_root})"
    else:
        where = "holds a dataset"
    raise FCNLabError(
        f"{option}={folder} {where}; a run writes split lists, checkpoints and logs into its folder: "
        "choose one outside the data"
    )
