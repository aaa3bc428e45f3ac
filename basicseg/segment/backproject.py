"""Back-project: put per-box probability maps back onto the image's native canonical grid.

The inverse of ``crop.crop_slices``: each box was sampled on a 0.2 mm grid centred on the centreline,
so a native pixel reads the box at its own position after the box is averaged over one native
pixel's footprint (down-sampling without aliasing).
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage

from basicseg.segment.crop import PIXEL_MM


def uncrop_slices(boxes: np.ndarray, shape, zooms, centres: np.ndarray, slices=None,
                  pixel_mm: float = PIXEL_MM) -> np.ndarray:
    """Back-project per-slice box maps (n, m, m) onto the native canonical grid ``shape``.

    Each native pixel takes the box value at its centre after the box is averaged over one native
    pixel's footprint, so down-sampling from 0.2 mm to native pixels does not alias. Pixels outside
    every box get 0.
    """
    boxes = np.asarray(boxes, dtype=np.float32)
    n, matrix, _ = boxes.shape
    slices = np.arange(shape[2]) if slices is None else np.asarray(slices)
    footprint = [max(1, int(round(z / pixel_mm))) for z in zooms[:2]]
    half = (matrix - 1) / 2.0
    reach = [(matrix * pixel_mm) / 2.0 / z for z in zooms[:2]]  # box half-width in voxels
    out = np.zeros(shape, dtype=np.float32)
    for box, (ci, cj), k in zip(boxes, centres, slices):
        if not (np.isfinite(ci) and np.isfinite(cj)):
            continue
        i0, i1 = max(0, int(np.floor(ci - reach[0]))), min(shape[0], int(np.ceil(ci + reach[0])) + 1)
        j0, j1 = max(0, int(np.floor(cj - reach[1]))), min(shape[1], int(np.ceil(cj + reach[1])) + 1)
        if i0 >= i1 or j0 >= j1:
            continue
        smooth = ndimage.uniform_filter(box, size=footprint, mode="constant") if max(footprint) > 1 else box
        ii, jj = np.meshgrid(np.arange(i0, i1), np.arange(j0, j1), indexing="ij")
        a = (ii - ci) * zooms[0] / pixel_mm + half
        b = (jj - cj) * zooms[1] / pixel_mm + half
        out[i0:i1, j0:j1, k] = ndimage.map_coordinates(smooth, [a, b], order=1, mode="constant", cval=0.0)
    return out
