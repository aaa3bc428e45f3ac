"""One typed configuration per run, resolved once from the command line and passed to every step."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from basicseg.networks.registry import DEFAULT_MODELS
from basicseg.segment.backends import DEFAULT_BACKEND


@dataclass
class Config:
    """Everything a run needs, resolved once from the command line."""
    bids_dir: Path
    output_dir: Path
    analysis_level: str
    work_dir: Path | None = None
    participant_label: list[str] = field(default_factory=list)
    session_label: list[str] = field(default_factory=list)
    bids_filter_file: Path | None = None
    nprocs: int | None = None
    skip_bids_validation: bool = False
    overwrite: bool = False
    cord_model: str = DEFAULT_MODELS["cord"]
    lesion_model: str | None = DEFAULT_MODELS["lesion"]
    localiser_model: str = DEFAULT_MODELS["localiser"]
    backend: str = DEFAULT_BACKEND      # what runs the networks: onnx (ONNX Runtime) or tensorflow
    centerline: str = "auto"
    save_probabilities: bool = False
    outcome: list[str] = field(default_factory=list)
    predictor: list[str] = field(default_factory=list)
    compare: dict = field(default_factory=dict)
    reference_method: str = "basicseg"
