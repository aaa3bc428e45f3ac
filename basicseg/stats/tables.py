"""Plain-text tables for ``summary()`` methods, formatted like R's printouts."""
from __future__ import annotations


import numpy as np
import pandas as pd


def _fmt(v) -> str:
    if isinstance(v, (float, np.floating)):
        if not np.isfinite(v):
            return "NA"
        a = abs(v)
        if a != 0 and (a < 1e-3 or a >= 1e5):
            return f"{v:.3e}"
        return f"{v:.4f}"
    return str(v)


def format_table(frame: pd.DataFrame, title: str | None = None, index: bool = False) -> str:
    cols = list(frame.columns)
    rows = [[_fmt(v) for v in frame[c]] for c in cols]
    idx = [str(i) for i in frame.index] if index else []
    widths = [max(len(c), *(len(r) for r in col)) for c, col in zip(cols, rows)]
    iw = max([len(i) for i in idx] + [0])
    out = [title] if title else []
    out.append(" " * iw + ("  " if index else "") + "  ".join(c.rjust(w) for c, w in zip(cols, widths)))
    for k in range(len(frame)):
        lead = (idx[k].ljust(iw) + "  ") if index else ""
        out.append(lead + "  ".join(col[k].rjust(w) for col, w in zip(rows, widths)))
    return "\n".join(out)
