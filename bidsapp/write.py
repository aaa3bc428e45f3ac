"""Write: BIDS derivatives of the participant level (masks, sidecars, morphometrics, reports).

Layout (the output_dir is the derivative dataset root)::

    dataset_description.json  .bidsignore  logs/
    sub-X.html  sub-X/figures/
    sub-X/[ses-Y/]anat/<prefix>_space-orig_label-SC_mask.nii.gz (+ .json)
    sub-X/[ses-Y/]anat/<prefix>_space-orig_label-lesion_mask.nii.gz (+ .json)
    sub-X/[ses-Y/]anat/<prefix>_space-orig_label-{SC,lesion}_probseg.nii.gz   (--save-probabilities)
    sub-X/[ses-Y/]anat/<prefix>_morphometrics.tsv           one row: the image's biomarkers
    sub-X/[ses-Y/]anat/<prefix>_desc-perslice_morphometrics.tsv   cross-sectional area and centreline per slice

``<prefix>`` is the input's name without its suffix (``sub-01_ses-1_acq-axial``). Every file is
written to a temporary name and renamed.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from basicseg import __version__
from bidsapp.discovery import ImageJob
from basicseg.io import write_json, write_nifti, write_tsv
from basicseg.references import image_stem
from basicseg.segment.postprocess import LESION_MIN_VOLUME_MM3

from bidsapp.naming import LESION_MASK, LESION_PROB, MORPHOMETRICS, PER_SLICE, SC_MASK, SC_PROB  # noqa: F401

# basicseg outputs that the BIDS specification has no name for (folder patterns without a trailing
# slash: bids-validator-deno does not match "group/")
BIDSIGNORE = """*_morphometrics.tsv
*.html
sub-*/figures
logs
group
"""

README = """# basicseg derivatives

Spinal cord (label-SC) and intramedullary lesion (label-lesion) masks on each input image's own grid,
per-image morphometrics and visual reports, written by basicseg {version} (BASICseg U-Nets,
McCoy et al., AJNR 2019). Lesion models were trained on SIMULATED lesions; see each mask's sidecar
for the model, its SHA-256 and threshold, and the subject reports (sub-*.html) for quality control.
"""


# --- dataset level ------------------------------------------------------------------------------------------------

def dataset_description(bids_dir: Path) -> dict:
    container = os.environ.get("BASICSEG_CONTAINER")
    generated = {"Name": "basicseg", "Version": __version__,
                 "Description": "BASICseg spinal cord and lesion segmentation (McCoy et al., AJNR 2019)"}
    if container:
        generated["Container"] = {"Type": "docker", "Tag": container}
    return {
        "Name": "basicseg derivatives",
        "BIDSVersion": "1.9.0",
        "DatasetType": "derivative",
        "GeneratedBy": [generated],
        "SourceDatasets": [{"URL": Path(bids_dir).resolve().as_uri()}],
        "DatasetLinks": {"raw": Path(bids_dir).resolve().as_uri()},
    }


def _create_once(path: Path, text: str) -> None:
    """Write ``path`` unless it exists; safe when many tasks of a job array race to create it."""
    if path.exists():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.chmod(tmp, 0o644)
    try:
        os.link(tmp, path)        # atomic and exclusive: exactly one task wins
    except FileExistsError:
        pass
    finally:
        os.unlink(tmp)


def write_dataset_description(output_dir: Path, bids_dir: Path) -> None:
    _create_once(Path(output_dir) / "dataset_description.json",
                 json.dumps(dataset_description(bids_dir), indent=2) + "\n")
    _create_once(Path(output_dir) / ".bidsignore", BIDSIGNORE)
    _create_once(Path(output_dir) / "README", README.format(version=__version__))


# --- one image --------------------------------------------------------------------------------------------------

def is_done(job: ImageJob, output_dir: Path) -> bool:
    return job.output(output_dir, SC_MASK).is_file() and job.output(output_dir, MORPHOMETRICS).is_file()


def identity(job: ImageJob) -> dict:
    return {"participant_id": f"sub-{job.subject}",
            "session_id": f"ses-{job.session}" if job.session else "n/a",
            "acquisition": job.entities.get("acquisition", "n/a"), "run": job.entities.get("run", "n/a"),
            "suffix": job.suffix, "source": job.relpath}


def morphometrics_row(job: ImageJob, seg, models) -> dict:
    from basicseg.measure.morphometrics import compute_morphometrics, qc_flags

    # lesion=None (no lesion model ran) gives NaN lesion metrics: unknown, not zero
    metrics = compute_morphometrics(seg.cord, seg.lesion, seg.volume.affine)
    flags = qc_flags(seg.cord, seg.lesion, seg.cord_prob)
    return {**identity(job), "status": "ok", **metrics,
            "mean_cord_probability": float(seg.cord_prob[seg.cord].mean()) if seg.cord.any() else float("nan"),
            "qc_flags": ";".join(flags),
            "cord_model": models.cord.name, "lesion_model": models.lesion.name if models.lesion else "n/a",
            "error": "n/a"}


def per_slice_table(seg) -> pd.DataFrame:
    from basicseg.measure.morphometrics import csa_per_slice

    table = csa_per_slice(seg.cord, seg.volume.affine, lesion=seg.lesion)
    table["centerline_i"] = np.round(seg.centres[:, 0], 2)
    table["centerline_j"] = np.round(seg.centres[:, 1], 2)
    if seg.confidence is not None:
        table["localiser_confidence"] = np.round(seg.confidence, 3)
    return table


def mask_sidecar(job: ImageJob, model, kind: str, description: str) -> dict:
    return {
        "Type": "ROI" if kind == "SC" else "Lesion",
        "Description": description,
        "Sources": [f"bids:raw:{job.relpath}"],
        "SpatialReference": f"bids:raw:{job.relpath}",
        "Model": model.provenance(),
        "Threshold": model.threshold,
        "Software": {"Name": "basicseg", "Version": __version__},
    }


def write_image_outputs(job: ImageJob, seg, row: dict, models, config) -> None:
    out = Path(config.output_dir)
    native = seg.volume.native
    to_native = seg.volume.to_native
    # (file, mask, model, kind, description, sidecar fields beyond mask_sidecar's)
    outputs = [(SC_MASK, seg.cord, models.cord, "SC",
                "Spinal cord mask (BASICseg U-Net), on the input image's grid", {})]
    if seg.lesion is not None:
        outputs.append((LESION_MASK, seg.lesion, models.lesion, "lesion",
                        "Intramedullary lesion mask (BASICseg U-Net trained on SIMULATED contusion-like lesions), "
                        "on the input image's grid",
                        # postprocess.lesion_mask's rule: smaller 3D components are not reported
                        {"MinimumComponentVolumeMM3": LESION_MIN_VOLUME_MM3}))
    # sidecars first, masks last: a mask on disk means the image is complete (is_done)
    write_tsv(job.output(out, PER_SLICE), per_slice_table(seg))
    for name, mask, model, kind, description, fields in outputs:
        sidecar = mask_sidecar(job, model, kind, description) | fields
        write_json(job.output(out, name.replace(".nii.gz", ".json")), sidecar)
    if config.save_probabilities:
        for name, prob, model, kind in ((SC_PROB, seg.cord_prob, models.cord, "SC"),
                                        (LESION_PROB, seg.lesion_prob, models.lesion, "lesion")):
            if prob is None:
                continue
            write_json(job.output(out, name.replace(".nii.gz", ".json")),
                       mask_sidecar(job, model, kind, f"{kind} probability (0-1) from the network"))
            write_nifti(job.output(out, name), to_native(prob), native, dtype=np.float32)
    for name, mask, *_ in reversed(outputs):
        write_nifti(job.output(out, name), to_native(mask), native, dtype=np.uint8)
    write_tsv(job.output(out, MORPHOMETRICS), pd.DataFrame([row]))


def write_failure(job: ImageJob, exc: Exception, config) -> None:
    """A failed image still gets a morphometrics row (status failed, the error) for the group level."""
    row = {**identity(job), "status": "failed", "qc_flags": "failed", "error": str(exc).replace("\t", " ")}
    write_tsv(job.output(Path(config.output_dir), MORPHOMETRICS), pd.DataFrame([row]))


# --- per-subject report -------------------------------------------------------------------------------------------

def report_path(output_dir: Path, subject: str) -> Path:
    return Path(output_dir) / f"sub-{subject}.html"


def write_report(subject: str, jobs: list[ImageJob], results: dict, models, config) -> Path:
    from bidsapp.report.subject import write_subject_report

    images = [_image_report(job, results.get(job.relpath), models, config) for job in jobs]
    return write_subject_report(Path(config.output_dir), subject, images)


def _image_report(job: ImageJob, result, models, config):
    from basicseg.segment.load import load_axial, load_mask
    from bidsapp.report.subject import ImageReport

    out = Path(config.output_dir)
    name = image_stem(job.path)
    if isinstance(result, Exception) or (result is None and not is_done(job, out)):
        error = str(result) if result is not None else "not processed"
        return ImageReport(name=name, source=job.relpath, anat=None, affine=None, cord=None, lesion=None,
                           cord_prob=None, centerline=None, morphometrics={}, models={}, warnings=[],
                           status="failed", error=error)
    if result is not None:
        seg, row = result
        volume, cord, lesion, prob, centres = seg.volume, seg.cord, seg.lesion, seg.cord_prob, seg.centres
    else:   # done in an earlier run: rebuild from what is on disk
        volume = load_axial(job.path)
        cord = load_mask(job.output(out, SC_MASK), volume)
        lesion_path = job.output(out, LESION_MASK)
        lesion = load_mask(lesion_path, volume) if lesion_path.is_file() else None
        row = pd.read_csv(job.output(out, MORPHOMETRICS), sep="\t").iloc[0].to_dict()
        per_slice = pd.read_csv(job.output(out, PER_SLICE), sep="\t")
        centres = per_slice[["centerline_i", "centerline_j"]].to_numpy(float) if "centerline_i" in per_slice else None
        prob = None
    flags = [f for f in str(row.get("qc_flags", "")).split(";") if f and f != "nan"]
    model_info = {}
    for role in ("cord", "lesion", "localiser"):
        m = getattr(models, role, None) if models is not None else None
        if m is not None:
            model_info[role] = m.provenance()
    if not model_info:
        model_info = {"cord": {"Name": row.get("cord_model")}, "lesion": {"Name": row.get("lesion_model")}}
    metrics = {k: v for k, v in row.items() if k not in ("participant_id", "session_id", "source", "suffix",
                                                            "acquisition", "run", "status", "error", "qc_flags")}
    return ImageReport(name=name, source=job.relpath, anat=volume.data, affine=volume.affine, cord=cord,
                       lesion=lesion, cord_prob=prob, centerline=centres, morphometrics=metrics, models=model_info,
                       warnings=flags, status="ok", error=None)
