"""Segment several volumes at once: the same steps as ``pipeline.segment``, with each network run once
on the boxes of all the volumes together, so that a GPU or a many-core CPU gets batches it can fill.

The centreline stays per volume (the localiser's input grid differs from image to image); crop,
infer, back-project, recentre and postprocess run stage by stage over the group. The results equal
``segment`` volume by volume (the networks see the same boxes; only the batch boundaries move).
"""
from __future__ import annotations

import time
from collections import defaultdict
from pathlib import Path

import numpy as np

from basicseg.segment.backproject import uncrop_slices
from basicseg.segment.load import AxialVolume
from basicseg.segment.pipeline import (RECENTRE_PASSES, Models, Segmentation, boxes_on_path, find_centreline,
                                       postprocess, recentre)


def predict_all(model, boxes: list[np.ndarray], volumes: list[AxialVolume], centres: list[np.ndarray],
                timings: list[dict]) -> list[np.ndarray]:
    """infer -> back-project for every volume with one network call over all their boxes; the shared
    inference time is split between the volumes by their number of slices."""
    t0 = time.perf_counter()
    flat = model.predict(np.concatenate(boxes))
    share = (time.perf_counter() - t0) / max(1, len(flat))
    out, start = [], 0
    for box, volume, centre, t in zip(boxes, volumes, centres, timings):
        t["inference"] += share * len(box)
        t1 = time.perf_counter()
        out.append(uncrop_slices(flat[start:start + len(box)], volume.data.shape, volume.zooms, centre))
        t["backprojection"] += time.perf_counter() - t1
        start += len(box)
    return out


def _centrelines(volumes, models, sources, timings):
    centres, confidences = [], []
    for volume, source, t in zip(volumes, sources, timings):
        t0 = time.perf_counter()
        c, conf = find_centreline(volume, models, source)
        t["centreline"] = time.perf_counter() - t0
        centres.append(c)
        confidences.append(conf)
    return centres, confidences


def segment_batch(volumes: list[AxialVolume], models: Models, centrelines: list[str | Path] | None = None,
                  recentre_passes: int = RECENTRE_PASSES) -> list[Segmentation]:
    """``pipeline.segment`` for each volume, the networks batched across volumes."""
    if not volumes:
        return []
    sources = centrelines or ["auto"] * len(volumes)
    timings = [defaultdict(float) for _ in volumes]
    centres, confidences = _centrelines(volumes, models, sources, timings)
    boxes = [boxes_on_path(v, c, t) for v, c, t in zip(volumes, centres, timings)]
    cord_probs = predict_all(models.cord, boxes, volumes, centres, timings)
    for _ in range(recentre_passes):
        for i, (volume, t) in enumerate(zip(volumes, timings)):
            t0 = time.perf_counter()
            centres[i] = recentre(cord_probs[i], centres[i], volume.zooms, models.cord.threshold)
            t["recentre"] += time.perf_counter() - t0
            boxes[i] = boxes_on_path(volume, centres[i], t)
        cord_probs = predict_all(models.cord, boxes, volumes, centres, timings)
    lesion_probs = (predict_all(models.lesion, boxes, volumes, centres, timings) if models.lesion
                    else [None] * len(volumes))
    results = []
    for volume, c, conf, cp, lp, t in zip(volumes, centres, confidences, cord_probs, lesion_probs, timings):
        cord, lesion, contrast = postprocess(volume, models, cp, lp, t)
        results.append(Segmentation(volume, c, conf, cp, lp, cord, lesion, dict(t), contrast))
    return results
