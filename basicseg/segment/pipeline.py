"""Segment one axial volume: centreline -> crop -> infer -> back-project -> postprocess.

Each step is the module of ``basicseg.segment`` named after it; this module only puts them in order.
"""
from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from basicseg.segment.backends import DEFAULT_BACKEND
from basicseg.segment.backproject import uncrop_slices
from basicseg.segment.centerline import (centres_from_mask, centreline_from_file, centreline_from_probabilities,
                                         centreline_sct, localiser_inputs, smooth_path)
from basicseg.segment.crop import crop_slices
from basicseg.segment.hyperintensity import hyperintense_lesions, tissue
from basicseg.segment.infer import Model, load_model
from basicseg.segment.load import AxialVolume
from basicseg.segment.normalise import normalise
from basicseg.segment.postprocess import components, cord_mask, lesion_mask

RECENTRE_PASSES = 1      # boxes recentred on the cord found by the previous pass (the localiser works at 1 mm
                         # and sits mm off where the cord lies against the canal wall; training boxes are cord-centred)
RECENTRE_SMOOTH_MM = 2.0  # smoothing of the recentred path along inferior-superior (sigma, mm)
RECENTRE_MIN_PIECE = 0.1  # a piece of cord with a tenth of the largest piece's voxels still places the path


@dataclass
class Segmentation:
    """Everything one image produced, in canonical voxel order."""
    volume: AxialVolume
    centres: np.ndarray
    confidence: np.ndarray | None
    cord_prob: np.ndarray
    lesion_prob: np.ndarray | None
    cord: np.ndarray
    lesion: np.ndarray | None
    timings: dict = field(default_factory=dict)
    # the least hyperintense lesion component's contrast as the lesion rule judged it (hyperintensity; NaN: none
    # judged; None: not judged, QC then measures it itself)
    lesion_contrast: float | None = None


@dataclass
class Models:
    cord: Model
    lesion: Model | None
    localiser: Model | None

    @classmethod
    def load(cls, cord: str, lesion: str | None, localiser: str | None, backend: str = DEFAULT_BACKEND,
             nprocs: int | None = None) -> "Models":
        def one(name):
            return load_model(name, backend, nprocs) if name else None
        return cls(one(cord), one(lesion), one(localiser))

    def with_tta(self, mode: str) -> "Models":
        """Every network under the test-time augmentation ``mode`` (registry.TTA_MODES; infer.card_settings)."""
        def one(model):
            return model.with_tta(mode) if model is not None else None
        return Models(one(self.cord), one(self.lesion), one(self.localiser))

    def provenance(self) -> dict:
        return {role: m.provenance() for role, m in
                (("cord", self.cord), ("lesion", self.lesion), ("localiser", self.localiser)) if m is not None}


# --- one image ------------------------------------------------------------------------------------------------

def find_centreline(volume: AxialVolume, models: Models, source: str | Path = "auto"):
    """Centre (i, j) of the cord on every axial slice, and the localiser's per-slice confidence.

    ``source``: "auto" (the shipped localiser), "sct" (``sct_get_centerline``) or a centreline mask file."""
    if str(source) == "auto":
        x, grid, slices = localiser_inputs(volume)
        prob = models.localiser.predict(x)
        return centreline_from_probabilities(prob, grid, volume, slices)
    if str(source) == "sct":
        return centreline_sct(volume), None
    return centreline_from_file(Path(source), volume), None


def boxes_on_path(volume: AxialVolume, centres: np.ndarray, t: dict) -> np.ndarray:
    """The paper's normalised 128 x 128 boxes around the path on every slice (seconds added to t)."""
    t0 = time.perf_counter()
    boxes = normalise(crop_slices(volume.data, volume.zooms, centres))[..., None]
    t["crop"] += time.perf_counter() - t0
    return boxes


def predict_on_path(model: Model, boxes: np.ndarray, volume: AxialVolume, centres: np.ndarray, t: dict) -> np.ndarray:
    """infer -> back-project: one network's probability map on the native grid (seconds added to t)."""
    t0 = time.perf_counter()
    prob_boxes = model.predict(boxes)
    t1 = time.perf_counter()
    prob = uncrop_slices(prob_boxes, volume.data.shape, volume.zooms, centres)
    t["inference"] += t1 - t0
    t["backprojection"] += time.perf_counter() - t1
    return prob


def recentre(cord_prob: np.ndarray, centres: np.ndarray, zooms, threshold: float) -> np.ndarray:
    """The path through the found cord's centroids. Every large piece of cord counts, not only the largest: where
    the boxes missed the cord on some slices (a localiser confidently off it) the cord splits in two, and the
    slices between its pieces take a path interpolated between them, so the next pass finds the cord there.
    Slices beyond the cord found keep their previous centre."""
    found = centres_from_mask(cord_pieces(cord_prob >= threshold))
    on = np.isfinite(found).all(axis=1)
    if not on.any():
        return centres
    z = np.arange(len(centres))
    between = (z > np.flatnonzero(on)[0]) & (z < np.flatnonzero(on)[-1])
    merged = np.where(on[:, None], found, np.where(between[:, None], np.nan, centres))
    return smooth_path(merged, zooms, smooth_mm=RECENTRE_SMOOTH_MM)


def cord_pieces(mask: np.ndarray) -> np.ndarray:
    """The 3D components of ``mask`` of at least :data:`RECENTRE_MIN_PIECE` x the largest one's voxels (the cord,
    whole or in pieces, without the specks a network leaves off it)."""
    labels, sizes = components(mask)
    if len(sizes) <= 1:
        return mask
    keep = np.flatnonzero(sizes >= RECENTRE_MIN_PIECE * sizes.max()) + 1
    return np.isin(labels, keep)


def segment(volume: AxialVolume, models: Models, centreline: str | Path = "auto",
            recentre_passes: int = RECENTRE_PASSES) -> Segmentation:
    """The whole image through the networks (their test-time augmentation: ``Models.with_tta``)."""
    t = defaultdict(float)      # seconds per stage, summed over the passes
    t0 = time.perf_counter()
    centres, confidence = find_centreline(volume, models, centreline)
    t["centreline"] = time.perf_counter() - t0

    boxes = boxes_on_path(volume, centres, t)
    cord_prob = predict_on_path(models.cord, boxes, volume, centres, t)
    for _ in range(recentre_passes):
        t0 = time.perf_counter()
        centres = recentre(cord_prob, centres, volume.zooms, models.cord.threshold)
        t["recentre"] += time.perf_counter() - t0
        boxes = boxes_on_path(volume, centres, t)
        cord_prob = predict_on_path(models.cord, boxes, volume, centres, t)
    lesion_prob = predict_on_path(models.lesion, boxes, volume, centres, t) if models.lesion else None

    cord, lesion, contrast = postprocess(volume, models, cord_prob, lesion_prob, t)
    return Segmentation(volume, centres, confidence, cord_prob, lesion_prob, cord, lesion, dict(t), contrast)


def postprocess(volume: AxialVolume, models: Models, cord_prob, lesion_prob, t: dict):
    """(cord, lesion) masks from the probabilities, and the least contrast among the lesions kept (seconds added
    to t). A lesion is dropped where the image shows it no brighter than the same tissue at its normal levels
    (:mod:`.hyperintensity`), judged on the cord network's own mask; one without such normal cord is kept.

    The lesion is added to the cord. For cord networks trained without lesions in their label (BASICseg-1,
    -2) this keeps bright oedema and swelling that they cut out of the cord. The default BASICseg-3 learnt
    SIMULATED lesions as cord, and the union no longer changes its cord: on the clinical patterns of the
    fold-C held-out sites its cord Dice on lesion slices was the same with and without it (0.951 / 0.951
    T2*w, 0.903 / 0.903 T2w; docs/models.md). It is kept because the morphometrics mask the lesion by the
    cord (SCT's definitions): a lesion voxel at the edge of the cord mask would leave the lesion's volume."""
    t0 = time.perf_counter()
    cord = cord_mask(cord_prob, models.cord.threshold)
    lesion, contrast = None, float("nan")
    if lesion_prob is not None:
        lesion = lesion_mask(lesion_prob, cord, volume.zooms, models.lesion.threshold, models.lesion.min_volume_mm3,
                             models.lesion.extent_threshold)
        if lesion.any():
            lesion, contrast = hyperintense_lesions(lesion, tissue(volume.data, cord, volume.zooms),
                                                    models.lesion.min_contrast)
        cord |= lesion      # an intramedullary lesion at the cord's (swollen) edge is cord tissue
    t["postprocess"] = time.perf_counter() - t0
    return cord, lesion, contrast
