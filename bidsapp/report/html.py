"""What both reports (the subject pages and the group page) share: HTML escaping, number formatting,
safe file names, relative links, PNG saving and the matplotlib configuration-folder fallback.

Nothing here imports matplotlib at module level: :func:`mpl_config_fallback` (from ``bidsapp.scratch``,
the one home of the temp/HOME/cache fallbacks) must run before the first
matplotlib import, and the helpers stay cheap to import for code that writes no figure.
"""
from __future__ import annotations

import html
import math
import os
import re
from pathlib import Path

import numpy as np

from basicseg.io import atomic_path
from bidsapp.scratch import mpl_config_fallback  # noqa: F401  (re-exported for the reports)

NA = "n/a"
MISSING_TEXT = ("", "nan", "NaN", "None", NA)
SMALL = 1e-3                # below this (and not zero), fixed-point hides the value: use scientific notation
UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def escape(value) -> str:
    """Text for HTML content and single- or double-quoted attribute values."""
    return html.escape(str(value), quote=True)


def format_number(value, digits: int | None = None, integer: bool = False) -> str:
    """A value as a table cell: ``n/a`` for missing, ``yes``/``no`` for booleans.

    Floats get ``digits`` decimals (scientific below 1e-3) when ``digits`` is given; otherwise the
    precision adapts to the magnitude (3 decimals below 10, 2 below 1000, then 1). ``integer`` prints a
    whole float without decimals (slice counts stored as floats)."""
    if value is None:
        return NA
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        v = float(value)
        if not math.isfinite(v):
            return NA
        if integer and v == int(v):
            return str(int(v))
        if digits is not None:
            return f"{v:.2e}" if v != 0 and abs(v) < SMALL else f"{v:.{digits}f}"
        return f"{v:.3f}" if abs(v) < 10 else f"{v:.2f}" if abs(v) < 1000 else f"{v:.1f}"
    text = str(value)
    return NA if text in MISSING_TEXT else text


def safe_name(name: str, default: str = "image") -> str:
    """``name`` reduced to characters that are safe in a file name and a URL."""
    return UNSAFE.sub("_", str(name)) or default


def relative_link(path: Path, root: Path) -> str:
    """POSIX link from ``root`` to ``path``: the output folder can be moved or zipped."""
    return Path(os.path.relpath(path, root)).as_posix()


def save_png(fig, path: Path, dpi: int = 100, tight: bool = False) -> Path:
    """Render a matplotlib ``Figure`` (no pyplot, no global backend) to ``path`` atomically.

    Raises OSError when the file cannot be written (a full disk): the caller decides what that costs."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi, facecolor=fig.get_facecolor(),
                    bbox_inches="tight" if tight else None)
    return Path(path)
