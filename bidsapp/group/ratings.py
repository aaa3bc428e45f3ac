"""Visual QC ratings (``group --qc-ratings FILE [FILE ...]``): the TSVs exported from the subject pages.

Columns (:data:`bidsapp.report.rating.COLUMNS`): ``participant_id``, ``session_id``, ``source`` (the
image path relative to the BIDS root, as in the morphometrics TSV), ``rating`` (``pass``, ``fail`` or
``artefact``; ``artifact`` is read as ``artefact``), ``note``, ``rater`` and ``timestamp``; only
``source`` and ``rating`` are required.  Every file goes through the defensive reader
(:mod:`bidsapp.group.tsv`): a malformed line is a note naming file and line, never an exception.

Several files (one per reviewer, or one per subject page) are combined per image; when the reviewers
disagree the most severe rating wins (fail > artefact > pass) and the report says so.  An image rated
``fail`` is excluded from every analysis (reason ``rated fail`` plus the notes); ``artefact`` is listed in
the report and kept.  A rating for an image this run did not collect is a note (file and line).  A
file that does not exist or cannot be opened is exit 66 (NO_INPUT) before anything is written.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from basicseg import errors as exits
from bidsapp.discovery import strip_prefix
from bidsapp.group.state import NA, QC, GroupState
from bidsapp.group.tsv import read_tsv_defensively

SEVERITY = {"pass": 0, "artefact": 1, "fail": 2}
ALIASES = {"artifact": "artefact", "passed": "pass", "failed": "fail", "ok": "pass"}
FAIL, ARTEFACT = "fail", "artefact"
COLUMN = "qc_rating"            # added to morphometrics.tsv and joined.tsv when ratings are given


@dataclass
class Rating:
    """One usable line of one ratings file."""
    reviewer: str
    rating: str
    note: str
    where: str                  # 'file line N'
    participant_id: str | None = None


@dataclass
class ImageRating:
    """Every rating of one image and the one that counts (the most severe)."""
    source: str
    participant_id: str
    session_id: str
    ratings: list[Rating] = field(default_factory=list)

    @property
    def rating(self) -> str:
        return max((r.rating for r in self.ratings), key=SEVERITY.__getitem__)

    @property
    def disagree(self) -> bool:
        return len({r.rating for r in self.ratings}) > 1

    @property
    def notes(self) -> str:
        """The notes given with the winning rating, each once."""
        seen = [r.note for r in self.ratings if r.rating == self.rating and r.note]
        return "; ".join(dict.fromkeys(seen))

    def who(self) -> str:
        return ", ".join(f"{r.reviewer}: {r.rating}" for r in self.ratings)

    def reason(self) -> str:
        text = f"rated {self.rating}" + (f": {self.notes}" if self.notes else "")
        if self.disagree:
            text += f" (reviewers disagree, {self.who()}; the most severe rating is used)"
        return text


def as_paths(value) -> list[Path]:
    """``Config.qc_ratings`` as a list: None, one path or several."""
    if value is None or value == "":
        return []
    if isinstance(value, (str, Path)):
        return [Path(value)]
    return [Path(v) for v in value]


def check_files(paths: list[Path]) -> None:
    """Every ratings file exists and opens; raises BasicsegError NO_INPUT (66) otherwise."""
    for path in paths:
        if not path.is_file():
            what = "is a folder, not a file" if path.is_dir() else "no such file"
            raise exits.BasicsegError(f"--qc-ratings {path}: {what}", exits.NO_INPUT)
        try:
            with open(path, "rb"):
                pass
        except OSError as exc:
            raise exits.BasicsegError(f"--qc-ratings {path}: cannot be read ({exc.strerror or exc})",
                                      exits.NO_INPUT) from exc


def _text(value) -> str:
    return "" if value is None or (isinstance(value, float) and value != value) else str(value).strip()


def _line_rating(row, label: str, number: int, state: GroupState) -> Rating | None:
    """One line as a Rating, or None with a note naming file and line."""
    where = f"{label} line {number}"
    value = _text(row.get("rating")).lower()
    value = ALIASES.get(value, value)
    if not value:
        state.note(QC, f"{where}: no rating for {_text(row.get('source'))}; line ignored")
        return None
    if value not in SEVERITY:
        state.note(QC, f"{where}: rating {_text(row.get('rating'))!r} is not pass, fail or artefact; line ignored")
        return None
    pid = _text(row.get("participant_id"))
    return Rating(reviewer=_text(row.get("rater")) or label, rating=value, note=_text(row.get("note")),
                  where=where, participant_id=f"sub-{strip_prefix(pid, 'sub-')}" if pid else None)


def read_file(path: Path, state: GroupState) -> list[tuple[str, Rating]]:
    """(source, rating) for every usable line of one file."""
    label = str(path)
    frame, notes = read_tsv_defensively(path, label=label, keys=("source", "rater"))
    for note in notes:
        state.note(QC, note, level=None)
    if len(frame.columns) and "rating" not in frame.columns and "source" in frame.columns:
        state.note(QC, f"{label}: no rating column; the file is ignored")
        return []
    out = []
    for number, row in frame.iterrows():
        source = _text(row.get("source")).removeprefix("./")
        if source == "source":          # a header repeated by concatenating exported files
            continue
        rating = _line_rating(row, label, number, state)
        if rating is not None:
            out.append((source, rating))
    return out


def _known(morph: pd.DataFrame) -> dict[str, tuple[str, str]]:
    """source -> (participant_id, session_id) of every collected image."""
    return {str(r["source"]): (str(r["participant_id"]), _text(r.get("session_id")) or NA)
            for _, r in morph.iterrows()}


def combine(paths: list[Path], morph: pd.DataFrame, state: GroupState) -> dict[str, ImageRating]:
    """Every file's ratings by image; ratings of unknown images are notes naming file and line."""
    known = _known(morph)
    images: dict[str, ImageRating] = {}
    for path in paths:
        for source, rating in read_file(path, state):
            if source not in known:
                state.note(QC, f"{rating.where}: {source or 'no source'} is not an image of this run "
                               f"(not in the collected morphometrics); rating ignored")
                continue
            pid, ses = known[source]
            if rating.participant_id and rating.participant_id != pid:
                state.note(QC, f"{rating.where}: participant_id {rating.participant_id} but {source} belongs to "
                               f"{pid}; the rating is used for {source}")
            images.setdefault(source, ImageRating(source, pid, ses)).ratings.append(rating)
    return images


def apply_ratings(config, state: GroupState) -> None:
    """Read ``config.qc_ratings`` into ``state.ratings``, mark ``qc_rating`` on ``state.morph`` and exclude
    the images rated fail. Without ratings files nothing changes."""
    paths = as_paths(getattr(config, "qc_ratings", None))
    if not paths:
        return
    state.ratings = combine(paths, state.morph, state)
    state.rating_files = [str(p) for p in paths]
    state.morph[COLUMN] = [state.ratings[s].rating if s in state.ratings else NA for s in state.morph["source"]]
    for image in state.ratings.values():
        if image.disagree:
            state.note(QC, f"{image.source}: reviewers disagree ({image.who()}); the most severe, "
                           f"{image.rating}, is used")
        if image.rating == FAIL:
            state.exclude(image.reason(), image.participant_id, image.session_id, image.source)


def analysed(frame: pd.DataFrame) -> pd.DataFrame:
    """The rows that enter the analyses: all but the images rated fail."""
    if COLUMN not in frame:
        return frame
    return frame[frame[COLUMN] != FAIL]
