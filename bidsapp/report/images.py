"""What the subject report shows for each image: drawn from what this run computed, or, for an image
done in an earlier run, from that run's outputs (its masks, tables and manifest)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from basicseg.references import image_stem
from basicseg.segment.load import load_axial, load_mask
from bidsapp import write
from bidsapp.report.subject import ImageReport

NOT_METRICS = ("participant_id", "session_id", "source", "suffix", "acquisition", "run", "status", "error",
               "qc_flags")


def _flags(row: dict) -> list[str]:
    return [f for f in str(row.get("qc_flags", "")).split(";") if f and f != "nan"]


def _metrics(row: dict) -> dict:
    return {k: v for k, v in row.items() if k not in NOT_METRICS}


def _failed(job, error: str) -> ImageReport:
    return ImageReport(name=image_stem(job.path), source=job.relpath, anat=None, affine=None, cord=None,
                       lesion=None, cord_prob=None, centerline=None, status="failed", error=error)


def epicentre(result) -> dict | None:
    """The graded image's epicentre with the atlas GM mapped onto that slice's cord (--basic-score)."""
    k = result.row.get("basic_epicentre_slice")
    if k is None or result.atlas_gm is None or not np.isfinite(float(k)):
        return None
    k = int(k)
    haem = result.haemorrhage[:, :, k] if result.haemorrhage is not None else None
    return {"slice": k, "gm": result.atlas_gm[:, :, k], "haemorrhage": haem}


def _computed(job, result, models) -> ImageReport:
    seg, row = result.seg, result.row
    return ImageReport(name=image_stem(job.path), source=job.relpath, anat=seg.volume.data,
                       affine=seg.volume.affine, cord=seg.cord, lesion=seg.lesion, cord_prob=seg.cord_prob,
                       centerline=seg.centres, morphometrics=_metrics(row), models=models.provenance(),
                       warnings=_flags(row) + list(seg.volume.warnings), epicentre=epicentre(result))


def _earlier(job, output_dir: Path) -> ImageReport:
    volume = load_axial(job.path)
    cord = load_mask(job.output(output_dir, write.SC_MASK), volume)
    lesion_path = job.output(output_dir, write.LESION_MASK)
    lesion = load_mask(lesion_path, volume) if lesion_path.is_file() else None
    row = pd.read_csv(job.output(output_dir, write.MORPHOMETRICS), sep="\t").iloc[0].to_dict()
    per_slice = pd.read_csv(job.output(output_dir, write.PER_SLICE), sep="\t")
    centres = per_slice[["centerline_i", "centerline_j"]].to_numpy(float) if "centerline_i" in per_slice else None
    models = {"cord": {"Name": row.get("cord_model")}, "lesion": {"Name": row.get("lesion_model")}}
    return ImageReport(name=image_stem(job.path), source=job.relpath, anat=volume.data, affine=volume.affine,
                       cord=cord, lesion=lesion, cord_prob=None, centerline=centres, morphometrics=_metrics(row),
                       models=models, warnings=_flags(row))


def image_report(outcome, models, config) -> ImageReport:
    if outcome.status == "failed":
        return _failed(outcome.job, outcome.error or "failed")
    if outcome.result is not None:
        return _computed(outcome.job, outcome.result, models)
    return _earlier(outcome.job, Path(config.output_dir))
