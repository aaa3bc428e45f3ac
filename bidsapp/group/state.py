"""What the group steps find, handed from step to step and finally to the report (never re-read from disk)."""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

log = logging.getLogger("basicseg")

NA = "n/a"
EXCLUSION_COLUMNS = ["participant_id", "session_id", "source", "reason"]
# where a note is shown in the report
INPUTS, ANALYSIS, COMPARISON, OUTPUTS = "inputs", "analysis", "comparison", "outputs"
QC = "qc"                   # visual QC ratings (bidsapp.group.ratings)


@dataclass
class GroupState:
    """Everything the steps compute; each step fills its part."""
    bids_dir: Path
    output_dir: Path
    morph: pd.DataFrame | None = None
    joined: pd.DataFrame | None = None
    descriptions: dict = field(default_factory=dict)        # column -> Description (JSON sidecars)
    exclusions: list[dict] = field(default_factory=list)
    notes: dict = field(default_factory=lambda: {INPUTS: [], ANALYSIS: [], COMPARISON: [], OUTPUTS: [], QC: []})
    regressions: list = field(default_factory=list)         # basicseg.stats.RegressionResult
    regression_frames: dict = field(default_factory=dict)   # (outcome, predictor) -> (x, y, participant ids)
    dice: pd.DataFrame | None = None
    methods: list[str] = field(default_factory=list)        # reference method first
    table2: pd.DataFrame | None = None
    models: list[dict] = field(default_factory=list)
    figures: dict = field(default_factory=dict)             # key -> PNG path
    write_errors: list[str] = field(default_factory=list)   # one line each: they make the exit code IO_ERR
    ratings: dict | None = None                             # source -> ratings.ImageRating (None: no --qc-ratings)
    rating_files: list[str] = field(default_factory=list)
    basic: pd.DataFrame | None = None                       # BASIC grade ~ motor scores (bidsapp.group.basic)
    basic_frames: dict = field(default_factory=dict)        # outcome -> the rows tested

    def exclude(self, reason: str, participant_id=NA, session_id=NA, source=NA) -> None:
        self.exclusions.append({"participant_id": _text(participant_id), "session_id": _text(session_id),
                                "source": _text(source), "reason": reason})

    def note(self, section: str, message: str, level: int | None = logging.WARNING) -> None:
        """A note for the report, also logged at ``level`` (None: the reader logged it already)."""
        self.notes[section].append(message)
        if level is not None:
            log.log(level, "%s", message)

    def exclusion_table(self) -> pd.DataFrame:
        return pd.DataFrame(self.exclusions, columns=EXCLUSION_COLUMNS)


def _text(value) -> str:
    return NA if value is None or (isinstance(value, float) and math.isnan(value)) else str(value)
