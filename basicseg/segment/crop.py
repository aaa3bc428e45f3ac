"""Crop and resample: cut the paper's box around the cord on every axial slice, and put it back.

McCoy et al. (2019) cut a 26 x 26 mm box around the cord centreline on each axial slice and resampled
it to 0.2 mm in-plane, a 128 x 128 matrix (128 x 0.2 mm = 25.6 mm). ``crop_slices`` does that by
sampling the slice on a grid centred on the centreline point; ``uncrop_slices`` takes per-box maps
(network probabilities) back onto the native in-plane grid. Training uses the same ``crop_slices``
with an extra in-plane transform per slice (rotation, scaling, flips) for augmentation, so that
training and inference share one code path.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage

MATRIX = 128          # box matrix (pixels)
PIXEL_MM = 0.2        # box pixel size (mm)
BOX_MM = MATRIX * PIXEL_MM


def box_offsets(matrix: int = MATRIX, pixel_mm: float = PIXEL_MM) -> np.ndarray:
    """Physical offsets (mm) of the box pixel centres from the box centre, along one axis."""
    return (np.arange(matrix) - (matrix - 1) / 2.0) * pixel_mm


def crop_slices(data: np.ndarray, zooms, centres: np.ndarray, slices=None, transforms: np.ndarray | None = None,
                matrix: int = MATRIX, pixel_mm: float = PIXEL_MM, order: int = 1) -> np.ndarray:
    """Sample a ``matrix`` x ``matrix`` box of ``pixel_mm`` pixels around ``centres`` on axial slices.

    data: canonical volume (axial slices along axis 2); zooms: its voxel sizes (mm);
    centres: (n, 2) voxel coordinates (i, j) of the box centre on each selected slice;
    slices: the slice indices (default: all, in order); transforms: optional (n, 2, 2) in-plane
    matrices applied to the box's physical offsets (augmentation). Returns (n, matrix, matrix) float32.
    """
    slices = np.arange(data.shape[2]) if slices is None else np.asarray(slices)
    centres = np.asarray(centres, dtype=np.float64)
    u = box_offsets(matrix, pixel_mm)
    du, dv = np.meshgrid(u, u, indexing="ij")                      # (matrix, matrix) mm offsets
    offsets = np.stack([du, dv])                                    # (2, m, m)
    if transforms is None:
        mm = np.broadcast_to(offsets, (len(slices), 2, matrix, matrix))
    else:
        mm = np.einsum("nab,bij->naij", transforms, offsets)
    ii = centres[:, 0, None, None] + mm[:, 0] / zooms[0]
    jj = centres[:, 1, None, None] + mm[:, 1] / zooms[1]
    kk = np.broadcast_to(slices[:, None, None].astype(np.float64), ii.shape)
    out = ndimage.map_coordinates(data, [ii, jj, kk], order=order, mode="nearest", prefilter=order > 1)
    return out.astype(np.float32, copy=False)
