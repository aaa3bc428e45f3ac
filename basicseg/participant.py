"""Participant level: every selected image through load -> centreline -> crop/resample -> infer ->
back-project -> postprocess -> morphometrics -> write, then one visual report per subject.

One bad image never stops the others; the run's exit code says whether any failed.
"""
from __future__ import annotations

import logging
import time
import traceback
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import outputs
from .centerline import (centres_from_mask, centreline_from_file, centreline_from_probabilities, centreline_sct,
                         localiser_inputs, smooth_path)
from .crop import crop_slices, normalise, uncrop_slices
from .discovery import ImageJob
from .exits import DATA_ERR, FAILURE, OK, BasicsegError
from .infer import Model, load_model
from .load import AxialVolume, axial_problem, load_axial, load_image
from .postprocess import cord_mask, lesion_mask

log = logging.getLogger("basicseg")

RECENTRE_PASSES = 1      # boxes recentred on the cord found by the previous pass (the localiser works at 1 mm
                         # and sits mm off where the cord lies against the canal wall; training boxes are cord-centred)
RECENTRE_SMOOTH_MM = 2.0  # smoothing of the recentred path along inferior-superior (sigma, mm)


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


@dataclass
class Models:
    cord: Model
    lesion: Model | None
    localiser: Model | None

    @classmethod
    def load(cls, cord: str, lesion: str | None, localiser: str | None) -> "Models":
        return cls(load_model(cord), load_model(lesion) if lesion else None,
                   load_model(localiser) if localiser else None)

    def provenance(self) -> dict:
        return {role: m.provenance() for role, m in
                (("cord", self.cord), ("lesion", self.lesion), ("localiser", self.localiser)) if m is not None}


# --- one image ------------------------------------------------------------------------------------------------

def find_centreline(volume: AxialVolume, models: Models, mode: str, job: ImageJob | None = None):
    """Centre (i, j) of the cord on every axial slice, and the localiser's per-slice confidence."""
    if mode == "auto":
        x, grid, slices = localiser_inputs(volume)
        prob = models.localiser.predict(x)
        return centreline_from_probabilities(prob, grid, volume, slices)
    if mode == "sct":
        return centreline_sct(volume), None
    path = outputs.find_centreline_mask(Path(mode), job) if job else Path(mode)
    return centreline_from_file(path, volume), None


def boxes_on_path(volume: AxialVolume, centres: np.ndarray, t: dict) -> np.ndarray:
    """The paper's normalised 128 x 128 boxes around the path on every slice (seconds added to t)."""
    t0 = time.perf_counter()
    boxes = normalise(crop_slices(volume.data, volume.zooms, centres))[..., None]
    t["crop"] += time.perf_counter() - t0
    return boxes


def predict_on_path(model: Model, boxes: np.ndarray, volume: AxialVolume, centres: np.ndarray, t: dict,
                    mirror: bool | None = None) -> np.ndarray:
    """infer -> back-project: one network's probability map on the native grid (seconds added to t)."""
    t0 = time.perf_counter()
    prob_boxes = model.predict(boxes, mirror)
    t1 = time.perf_counter()
    prob = uncrop_slices(prob_boxes, volume.data.shape, volume.zooms, centres)
    t["inference"] += t1 - t0
    t["backprojection"] += time.perf_counter() - t1
    return prob


def recentre(cord_prob: np.ndarray, centres: np.ndarray, zooms, threshold: float) -> np.ndarray:
    """The path through the found cord's centroids; slices without cord keep their previous centre."""
    found = centres_from_mask(cord_mask(cord_prob, threshold))
    if not np.isfinite(found).any():
        return centres
    merged = np.where(np.isfinite(found), found, centres)
    return smooth_path(merged, zooms, smooth_mm=RECENTRE_SMOOTH_MM)


def segment(volume: AxialVolume, models: Models, centreline: str = "auto", job: ImageJob | None = None,
            recentre_passes: int = RECENTRE_PASSES, lesion_mirror: bool | None = None) -> Segmentation:
    """The whole image through the networks; ``lesion_mirror`` overrides the lesion card's mirror averaging."""
    t = defaultdict(float)      # seconds per stage, summed over the passes
    t0 = time.perf_counter()
    centres, confidence = find_centreline(volume, models, centreline, job)
    t["centreline"] = time.perf_counter() - t0

    boxes = boxes_on_path(volume, centres, t)
    cord_prob = predict_on_path(models.cord, boxes, volume, centres, t)
    for _ in range(recentre_passes):
        t0 = time.perf_counter()
        centres = recentre(cord_prob, centres, volume.zooms, models.cord.threshold)
        t["recentre"] += time.perf_counter() - t0
        boxes = boxes_on_path(volume, centres, t)
        cord_prob = predict_on_path(models.cord, boxes, volume, centres, t)
    lesion_prob = predict_on_path(models.lesion, boxes, volume, centres, t, lesion_mirror) if models.lesion else None

    t0 = time.perf_counter()
    cord = cord_mask(cord_prob, models.cord.threshold)
    lesion = lesion_mask(lesion_prob, cord, volume.zooms, models.lesion.threshold) if lesion_prob is not None else None
    if lesion is not None:
        cord |= lesion      # an intramedullary lesion at the cord's (swollen) edge is cord tissue
    t["postprocess"] = time.perf_counter() - t0
    return Segmentation(volume, centres, confidence, cord_prob, lesion_prob, cord, lesion, dict(t))


def process_image(job: ImageJob, models: Models, config) -> tuple[Segmentation, dict]:
    t0 = time.perf_counter()
    volume = load_axial(job.path)
    load_s = time.perf_counter() - t0
    seg = segment(volume, models, config.centerline, job)
    seg.timings = {"load": load_s, **seg.timings}
    t0 = time.perf_counter()
    row = outputs.morphometrics_row(job, seg, models)
    seg.timings["metrics"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    outputs.write_image_outputs(job, seg, row, models, config)
    seg.timings["write"] = time.perf_counter() - t0
    return seg, row


# --- the run ---------------------------------------------------------------------------------------------------

def readable_as_axial(jobs: list[ImageJob]) -> list[ImageJob]:
    """Drop sagittal/coronal thick-slice images (a warning names each); unreadable files stay in and fail."""
    keep = []
    for job in jobs:
        try:
            problem = axial_problem(load_image(job.path))
        except BasicsegError:
            problem = None          # reported as a failure of that image when processed
        if problem:
            log.warning("%s skipped: %s", job.relpath, problem)
        else:
            keep.append(job)
    return keep


def run_participant(jobs: list[ImageJob], config) -> int:
    outputs.write_dataset_description(config.output_dir, config.bids_dir)
    jobs = readable_as_axial(jobs)
    if not jobs:
        raise BasicsegError("none of the selected images is an axial stack or a 3D volume", DATA_ERR)
    todo = [j for j in jobs if config.overwrite or not outputs.is_done(j, config.output_dir)]
    for job in jobs:
        if job not in todo:
            log.info("%s: outputs exist, skipped (use --overwrite to redo)", job.relpath)
    models = Models.load(config.cord_model, config.lesion_model,
                         config.localiser_model if config.centerline == "auto" else None) if todo else None

    failed: list[str] = []
    results: dict[str, object] = {}   # by relpath
    for n, job in enumerate(todo, 1):
        log.info("[%d/%d] %s", n, len(todo), job.relpath)
        try:
            seg, row = process_image(job, models, config)
            results[job.relpath] = (seg, row)
            log.info("%s: done in %.1f s (%s)", job.relpath, sum(seg.timings.values()),
                     ", ".join(f"{k} {v:.2f}" for k, v in seg.timings.items()))
        except BasicsegError as exc:
            failed.append(job.relpath)
            results[job.relpath] = exc
            log.error("%s", exc)
        except Exception as exc:  # one bad image never stops the others
            failed.append(job.relpath)
            results[job.relpath] = exc
            log.error("%s: unexpected error: %s\n%s", job.relpath, exc, traceback.format_exc())
        if isinstance(results[job.relpath], Exception):
            outputs.write_failure(job, results[job.relpath], config)

    by_subject = defaultdict(list)
    for job in jobs:
        by_subject[job.subject].append(job)
    for subject, subject_jobs in by_subject.items():
        if any(j.relpath in results for j in subject_jobs) or not outputs.report_path(config.output_dir, subject).exists():
            try:
                outputs.write_report(subject, subject_jobs, results, models, config)
            except Exception as exc:
                failed.append(f"sub-{subject} report")
                log.error("sub-%s: report failed: %s\n%s", subject, exc, traceback.format_exc())

    if failed:
        log.error("%d of %d image(s) failed: %s", len(failed), len(jobs), ", ".join(failed))
        return FAILURE
    log.info("participant level finished: %d image(s), outputs in %s", len(jobs), config.output_dir)
    return OK
