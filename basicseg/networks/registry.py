"""The shipped networks: names, files, model cards and checksums (weights ship inside the package)."""
from __future__ import annotations

import json
import os
from functools import lru_cache
from pathlib import Path

from ..errors import NO_INPUT, BasicsegError
from ..io import sha256_file

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
# Shipped models: name -> file stem under basicseg/networks/weights. Defaults are chosen by leave-site-out
# validation on a 2-core CPU (README "Models"): BASICseg-3 for the cord and the lesion, trained with a moving
# average of their weights, on the SIMULATED clinical patterns (the cord network learnt them as cord).
DEFAULT_MODELS = {"cord": "cord-basicseg3", "lesion": "lesion-basicseg3", "localiser": "localiser"}
# test-time augmentation (--tta; basicseg.segment.infer.card_settings): "full", as each model card says (the
# validated setting: the lesion network's mirror and shift average); "mirror", the cards' mirror average without
# their shifts (about 2.5x faster on CPU); "none", one pass per network (not validated)
TTA_MODES = ("full", "mirror", "none")


def resolve_model(name_or_path: str) -> Path:
    """A shipped model name (``cord-basicseg1``) or a path to a ``.keras`` file."""
    candidate = Path(name_or_path)
    if candidate.suffix == ".keras":
        if not candidate.is_file():
            raise BasicsegError(f"model file not found: {candidate}", NO_INPUT)
        return candidate.resolve()
    shipped = WEIGHTS_DIR / f"{name_or_path}.keras"
    if not shipped.is_file():
        available = sorted(p.stem for p in WEIGHTS_DIR.glob("*.keras"))
        raise BasicsegError(f"unknown model {name_or_path!r}; shipped models: {', '.join(available) or 'none'}",
                            NO_INPUT)
    return shipped


def model_card(path: Path) -> dict:
    card = Path(path).with_suffix(".json")
    return json.loads(card.read_text()) if card.is_file() else {}


def sha256(path: str | os.PathLike) -> str:
    """A network file's SHA-256, hashed once per process: the settings, the manifests, the citation and
    the loaded model all record it. The cache is keyed on size and mtime, so a rewritten file is hashed anew."""
    stat = os.stat(path)
    return _sha256(str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns)


@lru_cache(maxsize=None)
def _sha256(path: str, size: int, mtime_ns: int) -> str:
    return sha256_file(path)
