"""Join: the per-image table with ``participants.tsv`` and ``phenotype/*.tsv``, by participant (and session).

Every table goes through :func:`bidsapp.group.tsv.read_tsv_defensively`; its notes (file and line)
reach the report and the log, and the join goes on with the valid rows.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from bidsapp.discovery import strip_prefix
from bidsapp.group.state import INPUTS, GroupState
from bidsapp.group.tsv import read_tsv_defensively

log = logging.getLogger("basicseg")

KEYS = ("participant_id", "session_id")
NO_PHENOTYPE = ("No phenotype data (bids_dir/phenotype/*.tsv): motor-score regressions are not possible; "
                "the segmentation comparisons still run.")


def descriptions(path: Path, state: GroupState) -> dict | None:
    """The JSON data dictionary beside a TSV: column -> Description; None without one."""
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        state.note(INPUTS, f"{path.name}: unreadable JSON data dictionary ({exc}); column descriptions ignored")
        return None
    if not isinstance(data, dict):
        state.note(INPUTS, f"{path.name}: the JSON data dictionary is not an object; ignored")
        return None
    return {str(k): str(v.get("Description", "")) if isinstance(v, dict) else "" for k, v in data.items()}


def _normalise_ids(frame: pd.DataFrame) -> pd.DataFrame:
    """``01`` and ``sub-01`` name the same participant (likewise sessions)."""
    frame = frame.copy()
    for key, prefix in (("participant_id", "sub-"), ("session_id", "ses-")):
        if key in frame:
            frame[key] = [v if not isinstance(v, str) else f"{prefix}{strip_prefix(v, prefix)}" for v in frame[key]]
    return frame


def numeric_columns(frame: pd.DataFrame, label: str, state: GroupState) -> pd.DataFrame:
    """Columns with at least one number become numeric; other text in them is missing, with a note naming lines."""
    for col in frame.columns:
        if col in KEYS:
            continue
        num = pd.to_numeric(frame[col], errors="coerce")
        if num.notna().sum() == 0:
            continue
        bad = num.isna() & frame[col].notna()
        if bad.any():
            examples = ", ".join(f"line {i}: {frame.at[i, 'participant_id']}={frame.at[i, col]!r}"
                                 for i in frame.index[bad][:5])
            state.note(INPUTS, f"{label}: {int(bad.sum())} non-numeric value(s) in {col} treated as missing "
                               f"({examples})")
        frame[col] = num
    return frame


def read_table(path: Path, label: str, state: GroupState) -> pd.DataFrame:
    """A participants or phenotype table: read defensively, ids normalised, numbers typed."""
    described = descriptions(path.with_suffix(".json"), state)
    frame, notes = read_tsv_defensively(path, label=label, keys=KEYS, described=described)
    for note in notes:
        state.note(INPUTS, note, level=None)
    state.descriptions.update({k: v for k, v in (described or {}).items() if v})
    return numeric_columns(_normalise_ids(frame), label, state)


def _join_participants(bids_dir: Path, joined: pd.DataFrame, state: GroupState) -> tuple[pd.DataFrame, set | None]:
    path = bids_dir / "participants.tsv"
    if not path.is_file():
        state.note(INPUTS, "no participants.tsv in the BIDS dataset")
        return joined, None
    table = read_table(path, "participants.tsv", state)
    if "participant_id" not in table:
        return joined, None
    table = table.drop(columns=[c for c in ("session_id",) if c in table])
    return joined.merge(table, on="participant_id", how="left", suffixes=("", "_participants")), \
        set(table["participant_id"])


def _phenotype_keys(table: pd.DataFrame, label: str, has_sessions: bool, state: GroupState):
    """Join keys of one phenotype table: by session only when both the table and the images have sessions."""
    if "session_id" not in table:
        return table, ["participant_id"]
    if has_sessions:
        return table, list(KEYS)
    first = table.drop(columns="session_id").drop_duplicates("participant_id")
    if len(first) < len(table):
        state.note(INPUTS, f"{label}: has session_id but the images have no sessions; the first row per "
                           "participant is used")
    return first, ["participant_id"]


def _join_phenotype(path: Path, joined: pd.DataFrame, known_ids, images: set, state: GroupState) -> pd.DataFrame:
    label = f"phenotype/{path.name}"
    table = read_table(path, label, state)
    if "participant_id" not in table or table.empty:
        return joined
    unknown = sorted(set(table["participant_id"]) - known_ids) if known_ids is not None else []
    if unknown:
        state.note(INPUTS, f"{label}: participant(s) not in participants.tsv: {', '.join(unknown)}")
    no_images = sorted(set(table["participant_id"]) - images)
    if no_images:
        state.note(INPUTS, f"{label}: no processed image for {', '.join(no_images)}")
    table, keys = _phenotype_keys(table, label, joined["session_id"].notna().any(), state)
    clash = [c for c in table.columns if c in joined.columns and c not in keys]
    table = table.rename(columns={c: f"{c}_{path.stem}" for c in clash})
    return joined.merge(table, on=keys, how="left")


def join(bids_dir: Path, morph: pd.DataFrame, state: GroupState) -> pd.DataFrame:
    """The per-image table with every participant and phenotype column (left join: images are never lost)."""
    bids_dir = Path(bids_dir)
    joined = morph.copy()
    joined["session_id"] = joined["session_id"].replace({"n/a": np.nan})
    joined, known_ids = _join_participants(bids_dir, joined, state)
    tables = sorted((bids_dir / "phenotype").glob("*.tsv")) if (bids_dir / "phenotype").is_dir() else []
    if not tables:
        state.note(INPUTS, NO_PHENOTYPE, level=logging.INFO)
    for path in tables:
        joined = _join_phenotype(path, joined, known_ids, set(morph["participant_id"]), state)
    return joined
