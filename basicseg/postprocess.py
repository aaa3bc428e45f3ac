"""Postprocess: from back-projected probabilities to masks."""
from __future__ import annotations

import numpy as np
from scipy import ndimage

LESION_CORD_MARGIN_MM = 1.0   # a lesion may touch the cord edge: keep it inside the cord dilated by this
LESION_MIN_VOLUME_MM3 = 4.0   # smaller components are noise: below the smallest contusion that can be outlined
                              # (4 voxels at 1 mm; the simulator's smallest spindle is ~10 mm3)


def components(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """3D components (26-connected): the label image and each component's voxel count (label i at i - 1)."""
    labels, n = ndimage.label(mask, structure=np.ones((3, 3, 3)))
    return labels, ndimage.sum(mask, labels, index=np.arange(1, n + 1))


def cord_mask(prob: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """Threshold, keep the largest 3D component (the cord is one tube), fill holes slice by slice
    (a hypointense haemorrhage or grey matter must not punch holes in the cord)."""
    mask = prob >= threshold
    labels, sizes = components(mask)
    if len(sizes) > 1:
        mask = labels == (int(np.argmax(sizes)) + 1)
    for k in np.nonzero(mask.any(axis=(0, 1)))[0]:
        mask[:, :, k] = ndimage.binary_fill_holes(mask[:, :, k])
    return mask


def lesion_mask(prob: np.ndarray, cord: np.ndarray, zooms, threshold: float = 0.5,
                margin_mm: float = LESION_CORD_MARGIN_MM, min_volume_mm3: float = LESION_MIN_VOLUME_MM3) -> np.ndarray:
    """Threshold, keep only what lies inside the slightly dilated cord (intramedullary lesions), then drop
    3D components smaller than ``min_volume_mm3``."""
    mask = prob >= threshold
    if not mask.any():
        return mask
    radius = [max(0, int(round(margin_mm / z))) for z in zooms[:2]]
    structure = np.zeros((2 * radius[0] + 1, 2 * radius[1] + 1, 1), bool)
    ii, jj = np.meshgrid(np.arange(-radius[0], radius[0] + 1), np.arange(-radius[1], radius[1] + 1), indexing="ij")
    structure[..., 0] = (ii * zooms[0]) ** 2 + (jj * zooms[1]) ** 2 <= margin_mm ** 2 + 1e-6
    allowed = ndimage.binary_dilation(cord, structure=structure) if structure.sum() > 1 else cord
    mask &= allowed
    labels, sizes = components(mask)
    volumes_mm3 = sizes * float(np.prod(zooms[:3]))
    return np.isin(labels, 1 + np.nonzero(volumes_mm3 >= min_volume_mm3)[0])
