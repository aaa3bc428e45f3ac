"""Atomic file writes: every output appears complete or not at all.

Each file is first written to a hidden temporary name beside its target (same filesystem, so the
final rename is atomic) and renamed on success. Temporary names carry this host and process id,
``.basicseg-tmp-<host>-<pid>-<random>-<name>``, so that a later run can tell the leftovers of a killed
process (``remove_stale_temps``) from the files of a run still in progress.

``Transaction`` stages several files and renames them together at ``commit``: the writer of one
image's outputs uses it so that nothing is replaced before every new file is complete.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

import nibabel as nib
import numpy as np

TEMP_TAG = ".basicseg-tmp"
FOREIGN_TEMP_MAX_AGE_S = 24 * 3600    # another host's leftovers: removed once surely not in use

_UMASK = os.umask(0)
os.umask(_UMASK)
_LIVE: set[Path] = set()             # this process's temporary files, removed at exit


def _owner() -> str:
    return f"{socket.gethostname().split('.')[0].replace('-', '_')}-{os.getpid()}"


def scratch_name() -> str:
    """The name of this process's own scratch folder (``remove_stale_temps`` knows it as such)."""
    return f"{TEMP_TAG}-{_owner()}-scratch"


def temp_path(path: str | os.PathLike) -> Path:
    """A fresh hidden temporary name beside ``path`` that keeps its suffixes (nibabel picks the
    format and compression from them)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f"{TEMP_TAG}-{_owner()}-{uuid.uuid4().hex[:8]}-{path.name}"
    _LIVE.add(tmp)
    return tmp


def _publish(tmp: Path, path: Path) -> None:
    os.chmod(tmp, 0o666 & ~_UMASK)    # outputs are shared like any other file
    os.replace(tmp, path)
    _LIVE.discard(tmp)


def _discard(tmp: Path) -> None:
    """Remove a temporary file; one that cannot be removed (a folder turned read-only) is left to the
    next run's ``remove_stale_temps``."""
    try:
        tmp.unlink()
    except OSError:
        pass
    _LIVE.discard(tmp)


@contextmanager
def atomic_path(path: str | os.PathLike):
    """Yield a temporary path beside ``path``; rename it onto ``path`` only on success."""
    tmp = temp_path(path)
    try:
        yield tmp
        _publish(tmp, Path(path))
    finally:
        if tmp in _LIVE:
            _discard(tmp)


class Transaction:
    """Stage files under temporary names; ``commit`` renames them all, ``abort`` removes them."""

    def __init__(self):
        self.staged: list[tuple[Path, Path]] = []

    def path(self, final: str | os.PathLike) -> Path:
        tmp = temp_path(final)
        self.staged.append((tmp, Path(final)))
        return tmp

    def commit(self) -> list[Path]:
        for tmp, final in self.staged:
            _publish(tmp, final)
        done = [final for _, final in self.staged]
        self.staged = []
        return done

    def abort(self) -> None:
        for tmp, _ in self.staged:
            _discard(tmp)
        self.staged = []


def _target(path, txn: Transaction | None):
    return atomic_path(path) if txn is None else _staged(txn, path)


@contextmanager
def _staged(txn: Transaction, path):
    yield txn.path(path)


def write_text(path, text: str, txn: Transaction | None = None) -> Path:
    with _target(path, txn) as tmp:
        tmp.write_text(text)
    return Path(path)


def write_json(path, data: dict, txn: Transaction | None = None) -> Path:
    return write_text(path, json.dumps(clean_json(data), indent=2) + "\n", txn)


def write_tsv(path, frame, txn: Transaction | None = None) -> Path:
    """Write a pandas DataFrame as a BIDS TSV (tab-separated, n/a for missing)."""
    with _target(path, txn) as tmp:
        frame.to_csv(tmp, sep="\t", index=False, na_rep="n/a")
    return Path(path)


def write_nifti(path, data: np.ndarray, like: nib.Nifti1Image, dtype=np.uint8, intent: str | None = None,
                txn: Transaction | None = None) -> Path:
    """Save ``data`` on the grid of ``like``: same affine, sform/qform codes and spatial units."""
    header = like.header.copy()
    header.set_data_dtype(dtype)
    xyz_unit = like.header.get_xyzt_units()[0]
    header.set_xyzt_units(xyz=xyz_unit if xyz_unit != "unknown" else "mm", t="sec")
    img = nib.Nifti1Image(np.asarray(data).astype(dtype), like.affine, header)
    img.set_sform(like.affine, code=int(like.header["sform_code"]) or 1)
    img.set_qform(like.affine, code=int(like.header["qform_code"]) or 1)
    img.header.set_slope_inter(1.0, 0.0)     # masks and probabilities are stored as they are
    if intent:
        img.header.set_intent(intent)
    with _target(path, txn) as tmp:
        nib.save(img, tmp)
    return Path(path)


def clean_json(obj):
    """numpy scalars and arrays, paths and non-finite floats made JSON-safe (NaN -> null)."""
    if isinstance(obj, dict):
        return {str(k): clean_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [clean_json(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return clean_json(obj.tolist())
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return float(obj) if np.isfinite(obj) else None
    if isinstance(obj, (np.bool_,)):
        return bool(obj)
    if isinstance(obj, Path):
        return str(obj)
    return obj


def sha256_file(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# --- leftovers ------------------------------------------------------------------------------------------------------

def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _is_stale(name: str, mtime: float) -> bool:
    """A temporary file of a process that no longer runs (this host), or an old one (another host)."""
    try:
        host, pid = name[len(TEMP_TAG) + 1:].split("-", 2)[:2]
        pid = int(pid)
    except ValueError:
        return time.time() - mtime > FOREIGN_TEMP_MAX_AGE_S
    if host == _owner().rsplit("-", 1)[0]:
        return pid != os.getpid() and not _pid_alive(pid)
    return time.time() - mtime > FOREIGN_TEMP_MAX_AGE_S


def remove_stale_temps(root: str | os.PathLike) -> list[Path]:
    """Remove the temporary files that killed runs left under ``root``; return what was removed."""
    removed = []
    for folder, dirs, files in os.walk(root):
        for name in [d for d in dirs if d.startswith(TEMP_TAG)]:
            dirs.remove(name)                       # a scratch folder of a run: whole or not at all
            path = Path(folder) / name
            try:
                if _is_stale(name, path.lstat().st_mtime):
                    shutil.rmtree(path, ignore_errors=True)
                    removed.append(path)
            except OSError:
                continue
        for name in files:
            if not name.startswith(TEMP_TAG):
                continue
            path = Path(folder) / name
            try:
                if _is_stale(name, path.lstat().st_mtime):
                    path.unlink()
                    removed.append(path)
            except OSError:
                continue
    return removed


def remove_own_temps() -> None:
    """Called at exit and on a signal: nothing of this process stays behind."""
    for tmp in list(_LIVE):
        _discard(tmp)
