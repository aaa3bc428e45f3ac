"""Participant level: every selected image through load -> segment (centreline -> crop -> infer ->
back-project -> postprocess) -> morphometrics -> write, then one visual report per subject.

Each image runs on one guarded path: whatever fails for it (reading, computing, writing) becomes that
image's error, with a one-line message, a crash file under ``logs/`` and a ``failed`` row, and the run
goes on. An image counts as done only when its manifest says so (``bidsapp.manifest``).
"""
from __future__ import annotations

import errno
import logging
import time
import traceback
from collections import defaultdict
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from basicseg.errors import FAILURE, IO_ERR, OK, BasicsegError
from basicseg.io import write_text
from basicseg.atlas import map_atlas
from basicseg.measure.basic import grade_image
from basicseg.measure.confidence import confidence_flags, confidence_summary, row_columns
from basicseg.measure.morphometrics import measure_masks, qc_flags
from basicseg.networks.registry import resolve_model, sha256
from basicseg.segment.load import axial_problem, load_axial, load_header, resolution_problem
from basicseg.segment.batch import segment_batch
from basicseg.segment.pipeline import Models, Segmentation, segment
from bidsapp import manifest, write
from bidsapp.citation import write_citation
from bidsapp.discovery import ImageJob
from bidsapp.signals import deferred_signals

log = logging.getLogger("basicseg")

# errno values that mean the output itself cannot take the files (exit 74, not a failure of the image)
OUTPUT_IO_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EIO}


@dataclass
class ImageResult:
    """What the run computed for one image: the writer writes it and the report draws it."""
    seg: Segmentation
    row: dict
    per_slice: pd.DataFrame
    per_lesion: pd.DataFrame
    timings: dict = field(default_factory=dict)
    haemorrhage: np.ndarray | None = None      # --basic-score: T2-hypointense foci inside the lesion
    atlas_gm: np.ndarray | None = None         # --basic-score: atlas GM mapped onto the lesion's slices


@dataclass
class Outcome:
    job: ImageJob
    status: str                          # ok, failed, done (an earlier run's), skipped
    result: ImageResult | None = None
    error: str | None = None
    output_io_error: bool = False


# --- one image ---------------------------------------------------------------------------------------------------

def measure(job: ImageJob, seg: Segmentation, models: Models) -> tuple[dict, pd.DataFrame, pd.DataFrame]:
    """Morphometrics (SCT 7.4's definitions): the image's row (lesion NaN when no lesion model ran:
    unknown, not zero), its per-slice table and one row per lesion."""
    metrics, per_slice, per_lesion = measure_masks(seg.cord, seg.lesion, seg.volume.affine)
    flags = qc_flags(seg.cord, seg.lesion, seg.cord_prob)
    if seg.volume.nonfinite_voxels:
        flags.append("nonfinite_voxels")
    coarse = resolution_problem(seg.volume.zooms)
    if coarse:
        log.warning("%s: %s: its outputs are not validated (flagged)", job.relpath, coarse)
        flags.append("outside_validated_resolution")
    summary = confidence_summary(seg.cord_prob, seg.cord, seg.lesion_prob, seg.lesion, seg.volume.zooms,
                                 seg.volume.data, seg.lesion_contrast)
    flags += confidence_flags(summary)
    row = {**write.identity(job), "status": "ok", **metrics,
           **row_columns(summary),
           "nonfinite_voxels": seg.volume.nonfinite_voxels, "qc_flags": ";".join(flags),
           "cord_model": models.cord.name, "lesion_model": models.lesion.name if models.lesion else "n/a",
           "error": "n/a"}
    per_slice["centerline_i"] = seg.centres[:, 0].round(2)
    per_slice["centerline_j"] = seg.centres[:, 1].round(2)
    if seg.confidence is not None:
        per_slice["localiser_confidence"] = seg.confidence.round(3)
    per_lesion.insert(0, "source", job.relpath)
    return row, per_slice, per_lesion


def load_job(job: ImageJob) -> tuple:
    """load: the image as an axial stack, and the seconds it took."""
    if job.problem:
        raise BasicsegError(job.problem)
    t0 = time.perf_counter()
    volume = load_axial(job.path)
    return volume, {"load": time.perf_counter() - t0}


def finish(job: ImageJob, seg: Segmentation, models: Models, timings: dict, basic_score: bool = False) -> ImageResult:
    """morphometrics of one segmented image (and, with --basic-score, its experimental BASIC grade)."""
    timings = {**timings, **seg.timings}
    t0 = time.perf_counter()
    row, per_slice, per_lesion = measure(job, seg, models)
    timings["metrics"] = time.perf_counter() - t0
    haemorrhage = atlas = None
    if basic_score and seg.lesion is not None:
        t0 = time.perf_counter()
        # mapped once here: the grade and the report's epicentre figure both use it
        lesion_slices = np.flatnonzero((seg.lesion & seg.cord).any(axis=(0, 1)))
        atlas = map_atlas(seg.cord, seg.volume.zooms, slices=lesion_slices)
        grades, haemorrhage = grade_image(seg.volume.data, seg.volume.affine, seg.cord, seg.lesion, atlas_map=atlas)
        row = {**row, **grades}
        timings["basic"] = time.perf_counter() - t0
    return ImageResult(seg, row, per_slice, per_lesion, timings, haemorrhage, atlas.gm if atlas else None)


def process_image(job: ImageJob, models: Models, config) -> ImageResult:
    """load -> segment -> morphometrics for one image."""
    volume, timings = load_job(job)
    return finish(job, segment(volume, models, job.centreline or config.centerline), models, timings,
                  config.basic_score)


def process_group(jobs: list[ImageJob], models: Models, config) -> list:
    """load -> segment -> morphometrics for several images, the networks batched across them
    (``segment_batch``). Each entry is that image's ImageResult or the exception that stopped it: a
    failure in the shared step is retried image by image, so it is charged to the image it belongs to."""
    if len(jobs) == 1:
        return [_guarded(process_image, jobs[0], models, config)]
    out: list = [None] * len(jobs)
    loaded = []
    for i, job in enumerate(jobs):
        item = _guarded(load_job, job)
        if isinstance(item, Exception):
            out[i] = item
        else:
            loaded.append((i, *item))
    segs = _guarded(segment_batch, [v for _, v, _ in loaded], models,
                    [jobs[i].centreline or config.centerline for i, _, _ in loaded])
    for k, (i, volume, timings) in enumerate(loaded):
        if isinstance(segs, Exception):
            seg = _guarded(segment, volume, models, jobs[i].centreline or config.centerline)
        else:
            seg = segs[k]
        out[i] = seg if isinstance(seg, Exception) else _guarded(finish, jobs[i], seg, models, timings,
                                                                 config.basic_score)
    return out


def _guarded(step, *args):
    try:
        return step(*args)
    except Exception as exc:   # one bad image never stops the others
        return exc


def one_line(job: ImageJob, exc: BaseException, writing: bool) -> str:
    """The console's message for a failed image: the file and the cause, no traceback."""
    if isinstance(exc, BasicsegError):
        text = str(exc).splitlines()[0]
        return text if job.relpath in text or str(job.path) in text else f"{job.relpath}: {text}"
    if isinstance(exc, OSError):
        where = f" ({exc.filename})" if exc.filename else ""
        what = "cannot write its outputs" if writing else "cannot be read"
        return f"{job.relpath}: {what}: {exc.strerror or exc}{where}"
    return f"{job.relpath}: unexpected error: {type(exc).__name__}: {exc}"


def crash_file(job: ImageJob, exc: BaseException, config) -> Path | None:
    """The traceback for developers, as fMRIPrep's crash files (None when even logs/ cannot be written)."""
    name = f"crash-{time.strftime('%Y%m%d-%H%M%S')}-{job.prefix}.txt"
    text = (f"image: {job.relpath}\n{type(exc).__name__}: {exc}\n\n"
            + "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)))
    try:
        return write_text(Path(config.output_dir) / "logs" / name, text)
    except OSError:
        return None


def record_failure(job: ImageJob, exc: BaseException, config, want, previous, writing: bool) -> Outcome:
    message = one_line(job, exc, writing)
    crash = crash_file(job, exc, config)
    log.error("%s%s", message, f" (crash file: {crash})" if crash else "")
    log.debug("%s", "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)))
    io_error = writing and isinstance(exc, OSError) and exc.errno in OUTPUT_IO_ERRNOS
    if previous is not None and want is not None and manifest.stale_reason(previous, want, config.output_dir) is None:
        log.error("%s: the outputs of its previous run are kept unchanged", job.relpath)
        return Outcome(job, "failed", error=message, output_io_error=io_error)
    try:
        write.write_status(job, config, want, "failed", message, previous)
    except OSError as write_exc:
        log.error("%s: cannot record the failure either: %s", job.relpath, write_exc.strerror or write_exc)
        io_error = io_error or write_exc.errno in OUTPUT_IO_ERRNOS
    return Outcome(job, "failed", error=message, output_io_error=io_error)


def deliver(job: ImageJob, result, models: Models, config, want, previous) -> Outcome:
    """write one image's outputs (or record its failure)."""
    if isinstance(result, Exception):
        return record_failure(job, result, config, want, previous, writing=False)
    try:
        t0 = time.perf_counter()
        with deferred_signals():    # the swap of old outputs for new is never cut in half
            write.write_image(job, result, models, config, want, previous)
        result.timings["write"] = time.perf_counter() - t0
    except Exception as exc:
        return record_failure(job, exc, config, want, previous, writing=True)
    log.info("%s: done in %.1f s (%s)", job.relpath, sum(result.timings.values()),
             ", ".join(f"{k} {v:.2f}" for k, v in result.timings.items()))
    return Outcome(job, "ok", result)


def attempt(todo: list, models: Models, config) -> list[Outcome]:
    """A group of images on their guarded paths: computed together, written one by one."""
    results = process_group([job for job, _, _ in todo], models, config)
    return [deliver(job, result, models, config, want, previous)
            for (job, want, previous), result in zip(todo, results)]


# --- the run -----------------------------------------------------------------------------------------------------

def model_checksums(config) -> dict:
    """SHA-256 of each network the run would use, from the files alone (no framework is loaded)."""
    roles = {"cord": config.cord_model, "lesion": config.lesion_model,
             "localiser": config.localiser_model if config.centerline == "auto" else None}
    return {role: sha256(resolve_model(name)) for role, name in roles.items() if name}


def output_settings(config) -> dict:
    """The options that change an image's outputs: a manifest made with others is stale."""
    return {"centerline": "auto" if config.centerline == "auto" else
            "sct" if config.centerline == "sct" else "file",
            "save_probabilities": bool(config.save_probabilities), "basic_score": bool(config.basic_score),
            "tta": config.tta}


def split_axial(jobs: list[ImageJob]) -> tuple[list[ImageJob], list[tuple[ImageJob, str]]]:
    """Sagittal/coronal thick-slice images are skipped with their reason (from the header alone: each image is
    read whole once, when it is processed); unreadable files stay in and fail."""
    keep, skipped = [], []
    for job in jobs:
        try:
            problem = None if job.problem else axial_problem(load_header(job.path))
        except BasicsegError:
            problem = None
        if problem:
            skipped.append((job, f"skipped: {problem}"))
        else:
            keep.append(job)
    return keep, skipped


def record_skipped(skipped: list[tuple[ImageJob, str]], config) -> list[Outcome]:
    outcomes = []
    for job, reason in skipped:
        log.warning("%s %s", job.relpath, reason)
        try:
            write.write_status(job, config, None, "skipped", reason, manifest.read(job, config.output_dir))
        except OSError as exc:
            log.error("%s: cannot record that it was skipped: %s", job.relpath, exc.strerror or exc)
        outcomes.append(Outcome(job, "skipped", error=reason))
    return outcomes


def plan(jobs: list[ImageJob], config) -> list[tuple[ImageJob, manifest.Expected, dict | None]]:
    """The images to (re)do, each with what its manifest should record and its previous manifest."""
    checksums, settings = model_checksums(config), output_settings(config)
    todo = []
    for job in jobs:
        previous = manifest.read(job, config.output_dir)
        unread = False
        try:
            want = manifest.expected(job, checksums, settings)
        except OSError as exc:          # unreadable (discovery said why), or removed since
            job = job if job.problem else replace(job, problem=f"{job.relpath}: cannot be read: {exc.strerror or exc}")
            want, unread = manifest.expected_unread(checksums, settings), True
        reason = "--overwrite" if config.overwrite else manifest.stale_reason(previous, want, config.output_dir)
        if reason is None and unread:   # a file dropped after it was processed (datalad drop): its outputs stand
            log.warning("%s; the outputs of its earlier run are kept", job.problem)
        elif reason is None:
            log.info("%s: done in an earlier run, skipped (use --overwrite to redo)", job.relpath)
        else:                           # an unreadable input fails with its problem; the others go on
            if previous is not None or config.overwrite or job.output(config.output_dir, write.MORPHOMETRICS).exists():
                log.info("%s: redone: %s", job.relpath, reason)
            todo.append((job, want, previous))
    return todo


def exit_code(outcomes: list[Outcome], report_code: int) -> int:
    if any(o.output_io_error for o in outcomes) or report_code == IO_ERR:
        return IO_ERR
    failed = [o.job.relpath for o in outcomes if o.status == "failed"]
    if failed or report_code:
        log.error("%d of %d image(s) failed: %s", len(failed), len(outcomes), ", ".join(failed) or "none")
        return FAILURE
    return OK


def run_participant(jobs: list[ImageJob], config) -> int:
    write.write_dataset_description(config.output_dir, config.bids_dir)
    write_citation(config)
    jobs, skipped = split_axial(jobs)
    outcomes = record_skipped(skipped, config)
    todo = plan(jobs, config)
    redo = {j.relpath for j, _, _ in todo}
    done = [Outcome(job, "done") for job in jobs if job.relpath not in redo]
    models = Models.load(config.cord_model, config.lesion_model,
                         config.localiser_model if config.centerline == "auto" else None,
                         backend=config.backend, nprocs=config.nprocs).with_tta(config.tta) if todo else None
    if todo and config.tta != "full":
        log.warning("--tta %s: the networks run with less test-time augmentation than their model cards say; "
                    "the README's accuracy figures were measured with --tta full", config.tta)
    size = max(1, config.batch_images)
    for start in range(0, len(todo), size):
        group = todo[start:start + size]
        for n, (job, _, _) in enumerate(group, start + 1):
            log.info("[%d/%d] %s", n, len(todo), job.relpath)
        outcomes += attempt(group, models, config)
    outcomes += done
    code = exit_code(outcomes, write_reports(outcomes, models, config))
    if code == OK:
        log.info("participant level finished: %d image(s), outputs in %s", len(outcomes), config.output_dir)
    return code


def write_reports(outcomes: list[Outcome], models, config) -> int:
    """One report per subject whose images changed in this run (or whose report is missing). Returns 0,
    or the exit code of a report that could not be written (74 when the disk refused it)."""
    from bidsapp.report.images import image_report
    from bidsapp.report.subject import write_subject_report

    by_subject = defaultdict(list)
    for outcome in sorted(outcomes, key=lambda o: o.job.relpath):
        by_subject[outcome.job.subject].append(outcome)
    code = OK
    for subject, items in by_subject.items():
        if all(o.status == "done" for o in items) and write.report_path(config.output_dir, subject).exists():
            continue
        try:
            images = [image_report(o, models, config) for o in items if o.status != "skipped"]
            write_subject_report(Path(config.output_dir), subject, images)
        except Exception as exc:
            disk = isinstance(exc, OSError) and exc.errno in OUTPUT_IO_ERRNOS
            code = IO_ERR if disk or code == IO_ERR else FAILURE
            log.error("sub-%s: report not written (a rerun writes it): %s", subject,
                      getattr(exc, "strerror", None) or f"{type(exc).__name__}: {exc}")
            log.debug("%s", traceback.format_exc())
    return code
