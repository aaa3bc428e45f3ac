"""Segmentation metrics with explicit geometry (shared by evaluation and the group level)."""
from __future__ import annotations

import numpy as np
from scipy import ndimage


def dice(a: np.ndarray, b: np.ndarray, empty: float = np.nan) -> float:
    """Dice of two boolean masks; ``empty`` when both are empty (NaN: such slices do not count)."""
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    total = a.sum() + b.sum()
    return float(2.0 * np.logical_and(a, b).sum() / total) if total else empty


def dice_per_slice(ref: np.ndarray, pred: np.ndarray, axis: int = 2, empty: float = np.nan) -> np.ndarray:
    ref, pred = np.moveaxis(np.asarray(ref, bool), axis, 0), np.moveaxis(np.asarray(pred, bool), axis, 0)
    inter = np.logical_and(ref, pred).reshape(len(ref), -1).sum(1)
    total = ref.reshape(len(ref), -1).sum(1) + pred.reshape(len(pred), -1).sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, 2.0 * inter / np.maximum(total, 1), empty)


def _surface(mask: np.ndarray) -> np.ndarray:
    return mask & ~ndimage.binary_erosion(mask, structure=np.ones((3,) * mask.ndim), border_value=0)


def hausdorff95(a: np.ndarray, b: np.ndarray, spacing) -> float:
    """95th percentile of the symmetric surface distances (mm); NaN when either mask is empty."""
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    if not a.any() or not b.any():
        return float("nan")
    sa, sb = _surface(a), _surface(b)
    to_b = ndimage.distance_transform_edt(~sb, sampling=spacing)[sa]
    to_a = ndimage.distance_transform_edt(~sa, sampling=spacing)[sb]
    return float(np.percentile(np.concatenate([to_b, to_a]), 95))


def volume_mm3(mask: np.ndarray, affine: np.ndarray) -> float:
    return float(np.asarray(mask, bool).sum() * abs(np.linalg.det(np.asarray(affine)[:3, :3])))


def relative_volume_error(ref: np.ndarray, pred: np.ndarray) -> float:
    """(|pred| - |ref|) / |ref|; NaN when the reference is empty."""
    n = np.asarray(ref, bool).sum()
    return float((np.asarray(pred, bool).sum() - n) / n) if n else float("nan")


def lesion_detection(ref: np.ndarray, pred: np.ndarray, spacing=None, connectivity: int = 26,
                     min_overlap_voxels: int = 1) -> dict:
    """Lesion-wise detection: a reference lesion (3D connected component) is detected (TP) when predicted
    voxels overlap it; a predicted component overlapping no reference lesion is a false positive.
    Precision = TP_pred / n_pred, recall = TP_ref / n_ref, F1 their harmonic mean (NaN when undefined)."""
    structure = ndimage.generate_binary_structure(3, {6: 1, 18: 2, 26: 3}[connectivity])
    ref_lab, n_ref = ndimage.label(np.asarray(ref, bool), structure)
    pred_lab, n_pred = ndimage.label(np.asarray(pred, bool), structure)
    hit_ref = sum(np.count_nonzero(pred_lab[ref_lab == i]) >= min_overlap_voxels for i in range(1, n_ref + 1))
    hit_pred = sum(np.count_nonzero(ref_lab[pred_lab == i]) >= min_overlap_voxels for i in range(1, n_pred + 1))
    precision = hit_pred / n_pred if n_pred else float("nan")
    recall = hit_ref / n_ref if n_ref else float("nan")
    f1 = (2 * precision * recall / (precision + recall) if n_pred and n_ref and (precision + recall) > 0
          else (0.0 if (n_pred or n_ref) else float("nan")))
    return {"n_ref": n_ref, "n_pred": n_pred, "tp": int(hit_ref), "fp": int(n_pred - hit_pred),
            "fn": int(n_ref - hit_ref), "precision": precision, "recall": recall, "f1": f1}
