"""One typed configuration per run, resolved once from the command line and passed to every step."""
from __future__ import annotations

import os
import platform
import sys
import time
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path

from basicseg import __version__
from basicseg.io import write_json
from basicseg.networks.registry import DEFAULT_MODELS, resolve_model, sha256
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
    tta: str = "full"                   # test-time augmentation (basicseg.segment.infer.TTA_MODES)
    save_probabilities: bool = False
    batch_images: int = 4
    basic_score: bool = False
    outcome: list[str] = field(default_factory=list)
    predictor: list[str] = field(default_factory=list)
    compare: dict = field(default_factory=dict)
    reference_method: str = "basicseg"
    qc_ratings: list[Path] = field(default_factory=list)    # group --qc-ratings FILE ... (bidsapp/group/ratings.py)


VERSIONED = ("numpy", "scipy", "nibabel", "pybids", "pandas", "matplotlib", "tensorflow-cpu", "tensorflow",
             "keras", "onnxruntime")


def _versions() -> dict:
    found = {"basicseg": __version__, "python": platform.python_version()}
    for name in VERSIONED:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return found


def _models(config: Config) -> dict:
    roles = {"cord": config.cord_model, "lesion": config.lesion_model, "localiser": config.localiser_model}
    out = {}
    for role, name in roles.items():
        if name:
            path = resolve_model(name)
            out[role] = {"name": name, "file": str(path), "sha256": sha256(path)}
    return out


def resolved_settings(config: Config) -> dict:
    """Everything that decided this run's results: inputs, options, models, versions and threads."""
    return {
        "command": sys.argv, "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "host": platform.node(),
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(config).items()},
        "models": _models(config) if config.analysis_level == "participant" else {},
        "versions": _versions(),
        "threads": {"nprocs": config.nprocs, "SLURM_CPUS_PER_TASK": os.environ.get("SLURM_CPUS_PER_TASK"),
                    "cpu_count": os.cpu_count()},
    }


def write_settings(config: Config) -> Path:
    """logs/settings-<time>-<pid>.json, one per run, as fMRIPrep keeps its config."""
    name = f"settings-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.json"
    return write_json(Path(config.output_dir) / "logs" / name, resolved_settings(config))
