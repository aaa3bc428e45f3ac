"""Participant level: every selected image through load -> segment (centreline -> crop -> infer ->
back-project -> postprocess) -> morphometrics -> write, then one visual report per subject.

One bad image never stops the others; the run's exit code says whether any failed.
"""
from __future__ import annotations

import logging
import time
import traceback
from collections import defaultdict

from basicseg.errors import DATA_ERR, FAILURE, OK, BasicsegError
from basicseg.segment.load import axial_problem, load_axial, load_image
from basicseg.segment.pipeline import Models, Segmentation, segment
from bidsapp import write as outputs
from bidsapp.discovery import ImageJob

log = logging.getLogger("basicseg")


def process_image(job: ImageJob, models: Models, config) -> tuple[Segmentation, dict]:
    if job.problem:
        raise BasicsegError(job.problem, DATA_ERR)
    t0 = time.perf_counter()
    volume = load_axial(job.path)
    load_s = time.perf_counter() - t0
    seg = segment(volume, models, job.centreline or config.centerline)
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
                         config.localiser_model if config.centerline == "auto" else None,
                         backend=config.backend, nprocs=config.nprocs) if todo else None

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
