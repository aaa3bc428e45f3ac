"""Atomic file writes: every output appears complete or not at all."""
from __future__ import annotations

import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path

import nibabel as nib
import numpy as np


_UMASK = os.umask(0)
os.umask(_UMASK)


@contextmanager
def atomic_path(path: str | os.PathLike):
    """Yield a temporary path beside ``path``; rename it onto ``path`` only on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Keep the real suffixes (nibabel picks the format and compression from them).
    suffix = "".join(path.suffixes)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name.split('.')[0]}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_UMASK)   # mkstemp makes 0600; outputs are shared like any other file
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_text(path, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def write_json(path, data: dict) -> Path:
    return write_text(path, json.dumps(data, indent=2, sort_keys=False, default=_json_default) + "\n")


def write_tsv(path, frame) -> Path:
    """Write a pandas DataFrame as a BIDS TSV (tab-separated, n/a for missing)."""
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, sep="\t", index=False, na_rep="n/a")
    return Path(path)


def write_nifti(path, data: np.ndarray, like: nib.Nifti1Image, dtype=np.uint8, intent: str | None = None) -> Path:
    """Save ``data`` on the grid of ``like`` (same affine, sform/qform codes and spatial units)."""
    header = like.header.copy()
    header.set_data_dtype(dtype)
    header.set_xyzt_units(xyz="mm", t="sec")
    img = nib.Nifti1Image(np.asarray(data).astype(dtype), like.affine, header)
    img.set_sform(like.affine, code=int(like.header["sform_code"]) or 1)
    img.set_qform(like.affine, code=int(like.header["qform_code"]) or 1)
    if dtype != np.uint8:
        img.header.set_slope_inter(1.0, 0.0)
    if intent:
        img.header.set_intent(intent)
    with atomic_path(path) as tmp:
        nib.save(img, tmp)
    return Path(path)


def _json_default(obj):
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating,)):
        return None if not np.isfinite(obj) else float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj)}")
