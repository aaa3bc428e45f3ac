"""Postprocess: from back-projected probabilities to masks."""
from __future__ import annotations

import numpy as np
from scipy import ndimage

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
                min_volume_mm3: float = LESION_MIN_VOLUME_MM3) -> np.ndarray:
    """Threshold, then keep the 3D components of at least ``min_volume_mm3`` that touch the cord, whole.

    A component touching the cord is intramedullary; one that does not is a bright structure outside it
    (CSF, fat). It is kept whole rather than clipped to the cord mask because the cord network, trained on
    lesion-free cords, cuts bright oedema and swelling out of the cord: clipping lost up to 3/4 of large
    simulated lesions (fold B sub-9418: lesion Dice 0.22 clipped, 0.85 whole)."""
    mask = prob >= threshold
    labels, sizes = components(mask)
    volumes_mm3 = sizes * float(np.prod(zooms[:3]))
    touching = np.unique(labels[cord & mask])
    keep = [i for i in touching if i and volumes_mm3[i - 1] >= min_volume_mm3]
    return np.isin(labels, keep)
