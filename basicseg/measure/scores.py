"""Segmentation metrics with explicit geometry (shared by evaluation and the group level).

Pure numpy/scipy functions on boolean masks (anything non-zero counts as foreground). Geometry is
always explicit: ``spacing`` is the voxel size in mm along each array axis, ``affine`` a NIfTI
voxel-to-world matrix. Conventions:

* **Dice** of two empty masks is ``empty`` -- NaN by default, so empty slices or images drop out of
  means (``np.nanmean``) instead of counting as perfect (pass ``empty=1.0`` for the other convention).
* **HD95** is the 95th percentile of the pooled symmetric surface distances, in mm: the distances from
  every surface voxel of A to the nearest surface voxel of B and from every surface voxel of B to the
  nearest surface voxel of A, taken together. A surface voxel is a foreground voxel with a
  face-neighbour (6-connectivity in 3D) in the background or on the array's border. Distances are
  between voxel centres, by a Euclidean distance transform with ``sampling=spacing``. NaN when either
  mask is empty.
* **Lesion-wise detection** (the lesion-wise F1 of the MS lesion challenges, e.g. MSSEG-2016, and of
  SCIseg): lesions are the 3D connected components of each mask. A reference lesion is detected (TP)
  when at least ``min_overlap_voxels`` predicted voxels fall inside it, else it is missed (FN); a
  predicted component is a false positive (FP) when fewer than ``min_overlap_voxels`` of its voxels fall
  inside the reference. Recall (lesion-wise sensitivity) = TP / n_ref; precision (lesion-wise PPV) =
  (n_pred - FP) / n_pred, counted on the predicted side so that one prediction split into pieces or
  one prediction merging two lesions is judged fairly on each side; F1 = their harmonic mean.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage

_CONNECTIVITY = {3: {6: 1, 18: 2, 26: 3}, 2: {4: 1, 8: 2}}


def _pair(a, b) -> tuple[np.ndarray, np.ndarray]:
    a, b = np.asarray(a).astype(bool, copy=False), np.asarray(b).astype(bool, copy=False)
    if a.shape != b.shape:
        raise ValueError(f"masks differ in shape: {a.shape} vs {b.shape}")
    return a, b


def _spacing(spacing, ndim: int) -> tuple[float, ...]:
    spacing = (1.0,) * ndim if spacing is None else tuple(float(s) for s in np.atleast_1d(spacing))
    if len(spacing) == 1:
        spacing = spacing * ndim
    if len(spacing) != ndim or min(spacing) <= 0:
        raise ValueError(f"spacing must give {ndim} positive voxel sizes, got {spacing}")
    return spacing


def dice(a: np.ndarray, b: np.ndarray, empty: float = np.nan) -> float:
    """Dice coefficient 2|A & B| / (|A| + |B|); ``empty`` (NaN by default) when both masks are empty."""
    a, b = _pair(a, b)
    total = int(a.sum()) + int(b.sum())
    return float(2.0 * np.count_nonzero(a & b) / total) if total else float(empty)


def dice_per_slice(ref: np.ndarray, pred: np.ndarray, axis: int = 2, empty: float = np.nan) -> np.ndarray:
    """Dice of every slice along ``axis`` (2 = axial in canonical RAS order); ``empty`` where both are empty."""
    ref, pred = _pair(ref, pred)
    ref, pred = np.moveaxis(ref, axis, 0), np.moveaxis(pred, axis, 0)
    n = ref.shape[0]
    inter = (ref & pred).reshape(n, -1).sum(axis=1)
    total = ref.reshape(n, -1).sum(axis=1) + pred.reshape(n, -1).sum(axis=1)
    out = np.full(n, float(empty))
    has = total > 0
    out[has] = 2.0 * inter[has] / total[has]
    return out


def _surface(mask: np.ndarray) -> np.ndarray:
    """Foreground voxels with a face-neighbour in the background (or beyond the array's border)."""
    structure = ndimage.generate_binary_structure(mask.ndim, 1)
    return mask & ~ndimage.binary_erosion(mask, structure=structure, border_value=0)


def surface_distances(a: np.ndarray, b: np.ndarray, spacing) -> tuple[np.ndarray, np.ndarray]:
    """Distances (mm) from each surface voxel of ``a`` to the surface of ``b``, and from ``b``'s to ``a``'s."""
    a, b = _pair(a, b)
    spacing = _spacing(spacing, a.ndim)
    if not a.any() or not b.any():
        raise ValueError("surface distances need two non-empty masks")
    # the joint bounding box plus one background voxel (where the array allows) changes no distance
    idx = np.nonzero(a | b)
    box = tuple(slice(max(0, int(i.min()) - 1), int(i.max()) + 2) for i in idx)
    sa, sb = _surface(a[box]), _surface(b[box])
    a_to_b = ndimage.distance_transform_edt(~sb, sampling=spacing)[sa]
    b_to_a = ndimage.distance_transform_edt(~sa, sampling=spacing)[sb]
    return a_to_b, b_to_a


def hausdorff95(a: np.ndarray, b: np.ndarray, spacing) -> float:
    """95th percentile (mm) of the pooled symmetric surface distances; NaN when either mask is empty."""
    a, b = _pair(a, b)
    if not a.any() or not b.any():
        return float("nan")
    a_to_b, b_to_a = surface_distances(a, b, spacing)
    return float(np.percentile(np.concatenate([a_to_b, b_to_a]), 95))


def volume_mm3(mask: np.ndarray, affine: np.ndarray) -> float:
    """Foreground voxel count times the voxel volume |det(affine[:3, :3])| (mm^3)."""
    affine = np.asarray(affine, float)
    return float(np.count_nonzero(mask) * abs(np.linalg.det(affine[:3, :3])))


def relative_volume_error(ref: np.ndarray, pred: np.ndarray) -> float:
    """(|pred| - |ref|) / |ref| (signed; -1 = nothing predicted); NaN when the reference is empty."""
    ref, pred = _pair(ref, pred)
    n = int(ref.sum())
    return float((int(pred.sum()) - n) / n) if n else float("nan")


def lesion_detection(ref: np.ndarray, pred: np.ndarray, spacing=None, connectivity: int = 26,
                     min_overlap_voxels: int = 1, min_volume_mm3: float = 0.0) -> dict:
    """Lesion-wise detection counts and scores (see the module docstring for the definition).

    ``connectivity``: 6, 18 or 26 in 3D (4 or 8 in 2D) for the connected components.
    ``min_volume_mm3``: components (reference and predicted) smaller than this are ignored; needs
    ``spacing`` (voxel sizes, mm) when above 0 -- otherwise ``spacing`` is not used.
    Returns ``n_ref, n_pred, tp`` (detected reference lesions), ``tp_pred`` (predicted components that
    hit a lesion), ``fp, fn, precision, recall, f1``. Precision is NaN without predicted components,
    recall NaN without reference lesions, F1 NaN when both are absent and 0 when only one is.
    """
    ref, pred = _pair(ref, pred)
    try:
        structure = ndimage.generate_binary_structure(ref.ndim, _CONNECTIVITY[ref.ndim][connectivity])
    except KeyError:
        raise ValueError(f"connectivity {connectivity} is not defined for {ref.ndim}D masks") from None
    ref_lab, n_ref = ndimage.label(ref, structure)
    pred_lab, n_pred = ndimage.label(pred, structure)
    if min_volume_mm3 > 0:
        voxel = float(np.prod(_spacing(spacing, ref.ndim))) if spacing is not None else None
        if voxel is None:
            raise ValueError("min_volume_mm3 needs the voxel spacing")
        ref_lab, n_ref = _drop_small(ref_lab, n_ref, min_volume_mm3 / voxel, structure)
        pred_lab, n_pred = _drop_small(pred_lab, n_pred, min_volume_mm3 / voxel, structure)
    both = (ref_lab > 0) & (pred_lab > 0)
    hits_per_ref = np.bincount(ref_lab[both], minlength=n_ref + 1)[1:]
    hits_per_pred = np.bincount(pred_lab[both], minlength=n_pred + 1)[1:]
    tp = int(np.count_nonzero(hits_per_ref >= min_overlap_voxels))
    tp_pred = int(np.count_nonzero(hits_per_pred >= min_overlap_voxels))
    precision = tp_pred / n_pred if n_pred else float("nan")
    recall = tp / n_ref if n_ref else float("nan")
    if n_ref and n_pred:
        f1 = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
    else:
        f1 = 0.0 if (n_ref or n_pred) else float("nan")
    return {"n_ref": int(n_ref), "n_pred": int(n_pred), "tp": tp, "tp_pred": tp_pred, "fp": int(n_pred - tp_pred),
            "fn": int(n_ref - tp), "precision": float(precision), "recall": float(recall), "f1": float(f1)}


def _drop_small(labels: np.ndarray, n: int, min_voxels: float, structure) -> tuple[np.ndarray, int]:
    sizes = np.bincount(labels.ravel(), minlength=n + 1)
    keep = sizes >= min_voxels
    keep[0] = False
    return ndimage.label(keep[labels], structure)
