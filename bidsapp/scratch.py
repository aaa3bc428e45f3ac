"""Scratch: a writable temporary folder and caches, even under `docker run --read-only` (no tmpfs on
/tmp) and with a foreign UID whose HOME is not writable. Called before TensorFlow, matplotlib or
pybids are imported."""
from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

from basicseg.io import scratch_name

_CACHE_VARS = {"MPLCONFIGDIR": "mpl", "KERAS_HOME": "keras", "XDG_CACHE_HOME": "cache", "DENO_DIR": "deno"}


def _writable(folder) -> bool:
    try:
        Path(folder).mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            return True
    except OSError:
        return False


def ensure_scratch(work_dir: Path | None, output_dir: Path) -> Path | None:
    """Nothing changes when the system temp folder works; otherwise use <work_dir>/tmp, or a hidden
    <output_dir>/.basicseg-tmp-<host>-<pid>-scratch removed at exit (or by the next run if killed). Unwritable HOME and cache folders move there too."""
    tempfile.tempdir = None
    try:
        tempfile.gettempdir()           # raises when no candidate folder is writable
        fallback = None
    except FileNotFoundError:
        if work_dir is not None:
            fallback = Path(work_dir) / "tmp"
        else:
            fallback = Path(output_dir) / scratch_name()
            atexit.register(shutil.rmtree, fallback, ignore_errors=True)
        fallback.mkdir(parents=True, exist_ok=True)
        tempfile.tempdir = str(fallback)
        os.environ["TMPDIR"] = str(fallback)
    base = Path(tempfile.gettempdir())
    if not _writable(os.path.expanduser("~")):
        os.environ["HOME"] = str(base)
    for var, name in _CACHE_VARS.items():
        if var in os.environ and not _writable(os.environ[var]):
            os.environ[var] = str(base / f"basicseg-{name}")
    return fallback


def mpl_config_fallback(work_dir=None) -> None:
    """Point ``MPLCONFIGDIR`` at a fresh temporary folder when it is unset and HOME is not writable
    (a read-only container running as a random UID), so matplotlib neither warns nor fails.
    Must run before matplotlib is imported; a user's MPLCONFIGDIR is left alone."""
    if os.environ.get("MPLCONFIGDIR"):
        return
    home = os.environ.get("HOME") or os.path.expanduser("~")
    if home and os.path.isdir(home) and os.access(home, os.W_OK):
        return
    base = str(work_dir) if work_dir and os.access(work_dir, os.W_OK) else None
    try:
        os.environ["MPLCONFIGDIR"] = tempfile.mkdtemp(prefix="basicseg-mpl-", dir=base)
    except OSError:
        pass        # no writable temp folder either: matplotlib copes (and warns)
