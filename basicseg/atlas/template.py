"""The shipped 2D AMU7T atlas (``data/amu7t_2d.npz``, made by ``scripts/make_atlas.py``; MIT licence).

Per cervical level C1..C7 and their mean ("mean"), the template's average axial cross-section: cord and
grey-matter probabilities and the 50 atlas labels (IDs of AMU7T ``info_label.txt``), on a 96 x 96 grid
of 0.176 mm in canonical RAS in-plane order (axis 0 toward the subject's right, axis 1 anterior).
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

DATA = Path(__file__).resolve().parent / "data" / "amu7t_2d.npz"
NO_LABEL = 255

# Tract groups for tract-wise lesion load: AMU7T atlas IDs (info_label.txt). The funiculi follow the
# atlas's own combined labels (59 dorsal columns 0:3, 60 lateral funiculi 4:13, 61 ventral funiculi
# 14:29); the lateral corticospinal tracts (IDs 4, 5) carry the motor output whose sparing predicts
# recovery, and the ventral horns (combined labels 50, 51) hold the lower motor neurons of the segment.
TRACT_GROUPS = {
    "lcst_left": (4,),
    "lcst_right": (5,),
    "dorsal_columns": (0, 1, 2, 3),
    "lateral_funiculi": tuple(range(4, 14)),
    "ventral_funiculi": tuple(range(14, 30)),
    "ventral_horn_left": (32, 33, 34),
    "ventral_horn_right": (35, 36, 37),
}
GM_IDS = tuple(range(32, 49))   # combined label 58: grey matter incl. the central canal


@dataclass(frozen=True)
class Atlas2D:
    cord: np.ndarray          # (n_levels, N, N) float32 probability
    gm: np.ndarray            # (n_levels, N, N) float32 probability
    labels: np.ndarray        # (n_levels, N, N) uint8 atlas ID, NO_LABEL outside
    pixel_mm: float
    level_names: tuple        # "C1".."C7", "mean"
    label_names: tuple

    def level_index(self, name: str) -> int:
        return self.level_names.index(name)


@lru_cache(maxsize=1)
def load_atlas(path: str | Path = DATA) -> Atlas2D:
    with np.load(path) as z:
        return Atlas2D(cord=z["cord"].astype(np.float32) / 255, gm=z["gm"].astype(np.float32) / 255,
                       labels=z["labels"].copy(), pixel_mm=float(z["pixel_mm"]),
                       level_names=tuple(str(s) for s in z["level_names"]),
                       label_names=tuple(str(s) for s in z["label_names"]))
