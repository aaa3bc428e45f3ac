"""Intensity normalisation shared by the localiser (full slices) and the networks (boxes)."""
from __future__ import annotations

import numpy as np


def normalise(boxes: np.ndarray, low: float = 0.5, high: float = 99.5) -> np.ndarray:
    """Scale each 2D image of a stack (n, h, w) -- boxes or full-field slices -- to [0, 1] between its
    ``low`` and ``high`` percentiles (robust to bias fields and scanner gain; no bias correction or
    denoising, as in the paper)."""
    lo = np.percentile(boxes, low, axis=(1, 2), keepdims=True)
    hi = np.percentile(boxes, high, axis=(1, 2), keepdims=True)
    return np.clip((boxes - lo) / np.maximum(hi - lo, 1e-6), 0.0, 1.0).astype(np.float32)
