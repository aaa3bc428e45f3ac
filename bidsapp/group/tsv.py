"""The one reader of every TSV the group level reads: ``read_tsv_defensively(path) -> (frame, notes)``.

User-edited tables (participants.tsv, phenotype/*.tsv) break in ordinary ways: a row with an extra
field (pandas raises ParserError), a first row longer than its header (pandas silently shifts every
column onto the index), an empty file, a duplicated participant, a column the data dictionary does not
describe.  Each gives a note naming the file and line; what is valid is kept, nothing raises.

The frame holds text (cells stripped, BIDS ``n/a`` and blanks as missing); its index is the file's
line number (the header is line 1), so later steps can name lines too.
"""
from __future__ import annotations

import logging
from collections import defaultdict
from pathlib import Path

import pandas as pd

log = logging.getLogger("basicseg")

MISSING = ("", "n/a", "NA", "nan", "NaN")
MAX_LINES_NAMED = 10        # a note lists at most this many line numbers


def _lines(numbers: list[int]) -> str:
    shown = ", ".join(str(n) for n in numbers[:MAX_LINES_NAMED])
    more = f" and {len(numbers) - MAX_LINES_NAMED} more" if len(numbers) > MAX_LINES_NAMED else ""
    return f"line{'s' if len(numbers) > 1 else ''} {shown}{more}"


def _decode(raw: bytes, label: str, notes: list[str]) -> str:
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        notes.append(f"{label}: not UTF-8 (byte {exc.start}); read as Latin-1, check non-ASCII values")
        return raw.decode("latin-1")


def _header(line: str, label: str, notes: list[str]) -> list[str | None]:
    """Column names; None marks a column that cannot be used (blank or repeated name)."""
    names: list[str | None] = []
    for n, name in enumerate(field.strip() for field in line.split("\t")):
        if not name:
            notes.append(f"{label} line 1: column {n + 1} has no name; ignored")
            names.append(None)
        elif name in names:
            notes.append(f"{label} line 1: column {name!r} appears twice; the first is used")
            names.append(None)
        else:
            names.append(name)
    return names


def _rows(lines: list[str], width: int, label: str, notes: list[str]) -> dict[int, list[str]]:
    """Data rows by line number, each exactly ``width`` fields; ragged rows noted."""
    rows, problems = {}, defaultdict(list)
    for number, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        fields = [f.strip() for f in line.split("\t")]
        if len(fields) > width:
            if any(fields[width:]):
                # which field is the extra one cannot be known: keeping the row could shift values
                problems[f"more fields than the header's {width}; row ignored"].append(number)
                continue
            problems["trailing empty field(s) ignored"].append(number)
            fields = fields[:width]
        elif len(fields) < width:
            problems[f"fewer fields than the header's {width}; the missing ones read as n/a"].append(number)
            fields += [""] * (width - len(fields))
        rows[number] = fields
    for what, numbers in problems.items():
        notes.append(f"{label} {_lines(numbers)}: {what}")
    return rows


def _drop_duplicates(frame: pd.DataFrame, keys: list[str], label: str, notes: list[str]) -> pd.DataFrame:
    blank = frame[keys[0]].isna()
    if blank.any():
        notes.append(f"{label} {_lines(list(frame.index[blank]))}: no {keys[0]}; row ignored")
        frame = frame[~blank]
    first: dict[tuple, int] = {}
    dropped = []
    for number, key in zip(frame.index, map(tuple, frame[keys].astype(str).to_numpy())):
        if key in first:
            notes.append(f"{label} line {number}: duplicated {'/'.join(keys)} {'/'.join(key)} (first at line "
                         f"{first[key]}); the first row is used")
            dropped.append(number)
        else:
            first[key] = number
    return frame.drop(index=dropped)


def read_tsv_defensively(path: Path, label: str | None = None, keys: tuple[str, ...] = (),
                         described: set[str] | None = None) -> tuple[pd.DataFrame, list[str]]:
    """Read a BIDS TSV without ever raising.

    label: how notes name the file (default: its name). keys: identifying columns, the first required
    (rows without it are dropped; without the column the frame is empty); duplicated keys keep the first
    row; ``session_id`` is used as a key only where the file has it. described: the columns the JSON
    data dictionary describes (None: no dictionary), others are noted as unknown. Every note is logged."""
    path, label = Path(path), label or Path(path).name
    notes: list[str] = []
    frame = _parse(path, label, notes)
    if keys and len(frame.columns):
        if keys[0] not in frame.columns:
            notes.append(f"{label}: no {keys[0]} column; the file is ignored")
            frame = frame.iloc[0:0]
        else:
            frame = _drop_duplicates(frame, [k for k in keys if k in frame.columns], label, notes)
    if described is not None:
        for col in frame.columns:
            if col not in described and col not in keys:
                notes.append(f"{label} line 1: unknown column {col!r} (not described in its JSON sidecar); "
                             "kept")
    for note in notes:
        log.warning("%s", note)
    return frame, notes


def _parse(path: Path, label: str, notes: list[str]) -> pd.DataFrame:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        notes.append(f"{label}: cannot be read ({exc.strerror or exc}); ignored")
        return pd.DataFrame()
    if not raw.strip():
        notes.append(f"{label}: empty file ({len(raw)} bytes, no header); ignored")
        return pd.DataFrame()
    lines = _decode(raw, label, notes).splitlines()
    names = _header(lines[0], label, notes)
    rows = _rows(lines, len(names), label, notes)
    keep = [n for n, name in enumerate(names) if name is not None]
    frame = pd.DataFrame([[fields[n] for n in keep] for fields in rows.values()],
                         index=pd.Index(list(rows), name="line"), columns=[names[n] for n in keep], dtype=object)
    return frame.mask(frame.isin(MISSING))
