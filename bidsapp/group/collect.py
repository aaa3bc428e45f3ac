"""Collect: every image's ``*_morphometrics.tsv`` from the output dir, one row per image.

The participant level writes a row for each image, with ``status`` ``ok``, ``failed`` or ``skipped``
(the reason in ``error``). Any status other than ``ok`` -- or a file that cannot be read -- is an
exclusion with its reason; only ``ok`` rows enter the analyses.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from basicseg import errors as exits
from basicseg.references import image_stem
from bidsapp.discovery import strip_prefix
from bidsapp.group.state import INPUTS, NA, GroupState
from bidsapp.group.tsv import read_tsv_defensively
from bidsapp.naming import MORPHOMETRICS, PER_SLICE

log = logging.getLogger("basicseg")

OK = "ok"
TEXT_COLUMNS = ("participant_id", "session_id", "source", "suffix", "status", "error", "qc_flags")
DEFAULTS = {"session_id": np.nan, "error": np.nan, "qc_flags": np.nan, "suffix": np.nan}


def morphometrics_files(output_dir: Path, participant_labels=None) -> list[Path]:
    """``sub-*/[ses-*/]anat/*_morphometrics.tsv`` (not the per-slice ``*_desc-*`` files).

    Raises BasicsegError NO_INPUT when there is none, NO_MATCH when ``participant_labels`` match none."""
    output_dir = Path(output_dir)
    pattern = f"*_{MORPHOMETRICS}"
    files = sorted(set(output_dir.glob(f"sub-*/anat/{pattern}")) | set(output_dir.glob(f"sub-*/ses-*/anat/{pattern}")))
    files = [f for f in files if not f.name.endswith(PER_SLICE) and "_desc-" not in f.name]
    if not files:
        raise exits.BasicsegError(f"{output_dir}: no participant outputs (*_{MORPHOMETRICS}); "
                                  "run the participant level first", exits.NO_INPUT)
    if participant_labels:
        wanted = {f"sub-{strip_prefix(p, 'sub-')}" for p in participant_labels}
        files = [f for f in files if f.relative_to(output_dir).parts[0] in wanted]
        if not files:
            raise exits.BasicsegError(f"participant label(s) {', '.join(sorted(wanted))} match no participant "
                                      f"output in {output_dir}", exits.NO_MATCH)
    return files


def _identity(rel: Path, suffix: str = "T2w") -> dict:
    """What the file's place says about its image (used where the row does not say it)."""
    prefix = rel.name[: -len(f"_{MORPHOMETRICS}")]
    return {"participant_id": rel.parts[0],
            "session_id": rel.parts[1] if rel.parts[1].startswith("ses-") else np.nan,
            "source": str(rel.parent / f"{prefix}_{suffix}.nii.gz")}


def _rows(path: Path, output_dir: Path, state: GroupState) -> list[dict]:
    rel = path.relative_to(output_dir)
    frame, notes = read_tsv_defensively(path, label=str(rel))
    for note in notes:
        state.note(INPUTS, note, level=None)
    where = _identity(rel)
    if frame.empty:
        state.exclude(f"morphometrics file {rel} has no usable row", **where)
        return []
    rows = []
    for _, r in frame.iterrows():
        row = {k: v for k, v in r.items() if not (isinstance(v, float) and np.isnan(v))}
        row.setdefault("participant_id", where["participant_id"])
        row.setdefault("session_id", where["session_id"])
        row.setdefault("source", _identity(rel, row.get("suffix", "T2w"))["source"])
        row.setdefault("status", OK if "status" not in frame.columns else "")   # older outputs have no status
        row["morphometrics_file"] = str(rel)
        rows.append(row)
    return rows


def _entities(source: str) -> dict:
    ents = {}
    for part in image_stem(source).split("_")[:-1]:
        key, sep, value = part.partition("-")
        if sep:
            ents[f"entity_{key}"] = value
    return ents


def _typed(table: pd.DataFrame) -> pd.DataFrame:
    """Columns that are entirely numbers become numeric; BIDS entities become columns."""
    for key, value in DEFAULTS.items():
        if key not in table:
            table[key] = value
    ents = pd.DataFrame([_entities(s) for s in table["source"]], index=table.index)
    table = pd.concat([table, ents], axis=1)
    for col in table.columns:
        if col in TEXT_COLUMNS or col.startswith("entity_") or col == "morphometrics_file":
            continue
        num = pd.to_numeric(table[col], errors="coerce")
        if num.notna().sum() == table[col].notna().sum():
            table[col] = num
    return table


def exclude_not_ok(table: pd.DataFrame, state: GroupState) -> None:
    """Images the participant level did not process: excluded once, with the status and its reason."""
    for _, r in table[table["status"] != OK].iterrows():
        why = r.get("error")
        why = why if isinstance(why, str) and why != NA else "no reason given"
        status = r["status"] if r["status"] in ("failed", "skipped") else f"status {r['status'] or NA!r} (not ok)"
        state.exclude(f"{status} at the participant level: {why}", r["participant_id"], r.get("session_id"),
                      r["source"])


def collect(output_dir: Path, state: GroupState, participant_labels=None) -> pd.DataFrame:
    """One row per image, sorted by source path; non-ok images are in ``state.exclusions``."""
    output_dir = Path(output_dir)
    rows = [row for f in morphometrics_files(output_dir, participant_labels) for row in _rows(f, output_dir, state)]
    if not rows:
        raise exits.BasicsegError(f"{output_dir}: no readable morphometrics row (see the notes above)",
                                  exits.DATA_ERR)
    table = _typed(pd.DataFrame(rows))
    table["participant_id"] = [f"sub-{strip_prefix(str(p), 'sub-')}" for p in table["participant_id"]]
    exclude_not_ok(table, state)
    return table.sort_values("source", kind="stable").reset_index(drop=True)
