"""Postprocess: from back-projected probabilities to masks."""
from __future__ import annotations

import numpy as np
from scipy import ndimage

# Smaller components are not reported as lesions. The leave-site-out fold networks leave recurring fragments
# of high probability at fixed places in normal cord (median 7 mm3): at their last epoch 46 of 53 false
# components were under 20 mm3, against 2 true-positive components, 12 and 17 mm3 fragments of missed 170-570
# mm3 lesions (simulated lesions; docs/models.md). 20 mm3 is a disc 2.9 mm wide on one 3 mm slice; the simulator's
# smallest spindles (~14 mm3) fall under it, so lesions that small are not claimed detectable.
LESION_MIN_VOLUME_MM3 = 20.0


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
                min_volume_mm3: float = LESION_MIN_VOLUME_MM3, extent_threshold: float | None = None) -> np.ndarray:
    """Threshold, then keep the 3D components of at least ``min_volume_mm3`` that touch the cord, whole.

    With ``extent_threshold`` below ``threshold`` (hysteresis), each lesion so found is reported with its
    extent at ``extent_threshold`` inside the cord: the component of ``prob >= extent_threshold`` around it,
    grown only into the cord mask (the found component itself stays whole). Detection keeps
    the specificity of ``threshold`` and ``min_volume_mm3``; the outline no longer stops where the network's
    probability falls under 0.5, which under-measured the lesions it was least sure of (GM-confined oedema:
    median Dice 0.44 at 0.5 against 0.61 at 0.3 on the leave-site-out folds; docs/models.md).

    A component touching the cord is intramedullary; one that does not is a bright structure outside it
    (CSF, fat). It is kept whole rather than clipped to the cord mask because cord networks trained on
    lesion-free cords (BASICseg-1, -2) cut bright oedema and swelling out of the cord: clipping lost up to
    3/4 of large simulated lesions (fold B sub-9418: lesion Dice 0.22 clipped, 0.85 whole). The pipeline
    then adds the lesion to the cord (:func:`basicseg.segment.pipeline.postprocess`)."""
    mask = prob >= threshold
    labels, sizes = components(mask)
    volumes_mm3 = sizes * float(np.prod(zooms[:3]))
    touching = np.unique(labels[cord & mask])
    keep = [i for i in touching if i and volumes_mm3[i - 1] >= min_volume_mm3]
    found = np.isin(labels, keep)
    if extent_threshold is None or extent_threshold >= threshold or not found.any():
        return found
    extent, _ = components(prob >= extent_threshold)
    # the outline grows into the cord, not into the CSF: the pipeline adds the lesion to the cord mask
    return found | (np.isin(extent, np.unique(extent[found])) & cord)
