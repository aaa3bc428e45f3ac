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
from .centerline import (centreline_from_file, centreline_from_probabilities, centreline_sct, localiser_inputs)
from .crop import crop_slices, normalise, uncrop_slices
from .discovery import ImageJob
from .exits import DATA_ERR, FAILURE, OK, BasicsegError
from .infer import Model, load_model
from .load import AxialVolume, axial_problem, load_axial, load_image
from .postprocess import cord_mask, lesion_mask

log = logging.getLogger("basicseg")


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


def segment(volume: AxialVolume, models: Models, centreline: str = "auto", job: ImageJob | None = None) -> Segmentation:
    t = {}
    t0 = time.perf_counter()
    centres, confidence = find_centreline(volume, models, centreline, job)
    t["centreline"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    boxes = normalise(crop_slices(volume.data, volume.zooms, centres))[..., None]
    t["crop"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    cord_boxes = models.cord.predict(boxes)
    lesion_boxes = models.lesion.predict(boxes) if models.lesion else None
    t["inference"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    shape, zooms = volume.data.shape, volume.zooms
    cord_prob = uncrop_slices(cord_boxes, shape, zooms, centres)
    lesion_prob = uncrop_slices(lesion_boxes, shape, zooms, centres) if lesion_boxes is not None else None
    t["backprojection"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    cord = cord_mask(cord_prob, models.cord.threshold)
    lesion = lesion_mask(lesion_prob, cord, zooms, models.lesion.threshold) if lesion_prob is not None else None
    if lesion is not None:
        cord |= lesion      # an intramedullary lesion at the cord's (swollen) edge is cord tissue
    t["postprocess"] = time.perf_counter() - t0
    return Segmentation(volume, centres, confidence, cord_prob, lesion_prob, cord, lesion, t)


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
