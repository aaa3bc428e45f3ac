"""One typed configuration per training or evaluation run, resolved once from the command line.

``basicseg-train`` and ``basicseg-eval`` parse their flags with argparse exactly as before, then turn the
Namespace into a frozen :class:`TrainConfig` / :class:`EvalConfig` that every step receives: subject labels
get their ``sub-`` prefix here, once, and nothing downstream patches the options.
"""
from __future__ import annotations

import argparse
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from basicseg.networks.registry import DEFAULT_MODELS
from basicseg.segment.pipeline import RECENTRE_PASSES

SUFFIXES = ("T2w", "T2starw")
TRAIN_TARGETS = ("cord", "lesion", "localiser")
EVAL_TARGETS = ("cord", "lesion")
LESION_SETS = ("spindle", "patterns")   # basicseg-eval: the simulator's spindles, or the clinical patterns + healthy
ARCHITECTURES = (1, 2, 3)
LEARNING_RATE = 1e-3            # McCoy et al. use 1e-5, which does not converge in a run capped at minutes
TRAIN_SEED = 20190701
EVAL_SEED = 7


def model_name(target: str, architecture: int) -> str:
    """The network's name, which is also its file stem: ``cord-basicseg1``, ``localiser``."""
    return "localiser" if target == "localiser" else f"{target}-basicseg{architecture}"


def subject_label(label: str) -> str:
    return label if label.startswith("sub-") else f"sub-{label}"


def _subjects(labels) -> frozenset | None:
    """``--subjects``: None (every subject) when not given."""
    return frozenset(subject_label(s) for s in labels) if labels else None


@dataclass(frozen=True)
class _Config:
    def to_json(self) -> dict:
        """The options as JSON values (paths as text, sets sorted), for settings.json; the command line
        itself is recorded beside them."""
        out = {}
        for key, value in asdict(self).items():
            if key == "argv":
                continue
            if isinstance(value, (set, frozenset)):
                value = sorted(value)
            elif isinstance(value, tuple):
                value = list(value)
            elif isinstance(value, Path):
                value = str(value)
            out[key] = value
        return out

    @classmethod
    def from_namespace(cls, args: argparse.Namespace, argv) -> "_Config":
        values = {f.name: getattr(args, f.name) for f in fields(cls) if hasattr(args, f.name)}
        return cls(**cls._resolve(values), argv=tuple(argv))

    @staticmethod
    def _resolve(values: dict) -> dict:
        return values


@dataclass(frozen=True)
class TrainConfig(_Config):
    """Everything a ``basicseg-train`` run needs."""
    bids_dir: Path
    out_dir: Path
    target: str = "cord"
    architecture: int = 1
    suffix: tuple = SUFFIXES
    subjects: frozenset | None = None
    val_sites: tuple = ()
    val_subjects: tuple = ()
    epochs: int = 40
    steps: int = 25
    max_minutes: float = 45.0
    learning_rate: float = LEARNING_RATE
    ema: float = 0.0
    seed: int = TRAIN_SEED
    nprocs: int | None = None
    resume: bool = False
    init_from: str | None = None
    argv: tuple = ()

    @staticmethod
    def _resolve(values: dict) -> dict:
        return values | {"bids_dir": Path(values["bids_dir"]), "out_dir": Path(values["out_dir"]),
                         "suffix": tuple(values["suffix"]), "subjects": _subjects(values["subjects"]),
                         "val_sites": tuple(values["val_sites"] or ()),
                         "val_subjects": tuple(subject_label(s) for s in values["val_subjects"] or ())}

    @property
    def model_name(self) -> str:
        return model_name(self.target, self.architecture)

    @property
    def mask_target(self) -> str:
        """What the masks of the training pairs show: lesions for lesion models, else the cord."""
        return "lesion" if self.target == "lesion" else "cord"

    @property
    def max_seconds(self) -> float:
        return self.max_minutes * 60


@dataclass(frozen=True)
class EvalConfig(_Config):
    """Everything a ``basicseg-eval`` run needs."""
    bids_dir: Path
    out_dir: Path
    target: str = "cord"
    cord_model: str = DEFAULT_MODELS["cord"]
    lesion_model: str = DEFAULT_MODELS["lesion"]
    localiser_model: str = DEFAULT_MODELS["localiser"]
    suffix: tuple = SUFFIXES
    subjects: frozenset | None = None
    sites: tuple = ()
    lesions_per_image: int = 2
    lesion_set: str = "spindle"
    recentre_passes: int = RECENTRE_PASSES
    mirror: bool | None = None
    cord_mirror: bool | None = None
    cord_shift_mm: float = 0.0           # test-time shifts of the cord network's boxes (+-mm along each axis)
    lesion_shift_mm: float = 0.0         # and of the lesion network's
    contrast: str = "native"
    lesion_rule: tuple | None = None     # (threshold, minimum volume mm3[, extent threshold]) instead of the card's
    lesion_min_contrast: str | None = None   # ln, or "none", instead of the card's (hyperintensity)
    seed: int = EVAL_SEED
    nprocs: int | None = None
    argv: tuple = ()

    @staticmethod
    def _resolve(values: dict) -> dict:
        rule = values.get("lesion_rule")
        return values | {"bids_dir": Path(values["bids_dir"]), "out_dir": Path(values["out_dir"]),
                         "suffix": tuple(values["suffix"]), "subjects": _subjects(values["subjects"]),
                         "sites": tuple(values["sites"] or ()),
                         "lesion_rule": tuple(float(v) for v in rule) if rule else None}

    @property
    def models(self) -> dict[str, str]:
        """The networks this evaluation runs, by role (no lesion network for a cord evaluation)."""
        roles = {"cord": self.cord_model, "localiser": self.localiser_model}
        return roles | ({"lesion": self.lesion_model} if self.target == "lesion" else {})
