"""Write: BIDS derivatives of the participant level (masks, sidecars, morphometrics, reports).

Layout (the output_dir is the derivative dataset root)::

    dataset_description.json  .bidsignore  logs/
    sub-X.html  sub-X/figures/
    sub-X/[ses-Y/]anat/<prefix>_space-orig_label-SC_mask.nii.gz (+ .json)
    sub-X/[ses-Y/]anat/<prefix>_space-orig_label-lesion_mask.nii.gz (+ .json)
    sub-X/[ses-Y/]anat/<prefix>_space-orig_label-{SC,lesion}_probseg.nii.gz   (--save-probabilities)
    sub-X/[ses-Y/]anat/<prefix>_morphometrics.tsv           one row: the image's biomarkers
    sub-X/[ses-Y/]anat/<prefix>_desc-perslice_morphometrics.tsv   cross-sectional area and centreline per slice
    sub-X/[ses-Y/]anat/<prefix>_desc-lesions_morphometrics.tsv    one row per lesion (SCT 7.4 definitions)
    sub-X/[ses-Y/]anat/<prefix>_space-orig_dseg.nii.gz (+ .json)  0 background, 1 cord, 2 lesion (dseg.tsv at the root)

    sub-X/[ses-Y/]anat/<prefix>_desc-basicseg_manifest.json    written last: the image is complete

``<prefix>`` is the input's name without its suffix (``sub-01_ses-1_acq-axial``). The writer only
writes what the run computed. One image's files are staged under temporary names and renamed together
(``basicseg.io.Transaction``); its manifest follows, so a killed run never leaves an image that
looks done.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd

from basicseg import __version__
from basicseg.io import Transaction, temp_path, write_json, write_nifti, write_tsv
from bidsapp import manifest
from bidsapp.citation import HOW_TO_ACKNOWLEDGE
from bidsapp.discovery import ImageJob

from bidsapp.naming import (DSEG, HAEMORRHAGE_MASK, IMAGE_OUTPUTS, LESION_MASK, LESION_PROB, LESIONS, MORPHOMETRICS,  # noqa: F401
                            PER_SLICE, SC_MASK, SC_PROB)

# basicseg outputs that the BIDS specification has no name for (folder patterns without a trailing
# slash: bids-validator-deno does not match "group/")
BIDSIGNORE = """*_morphometrics.tsv
*_manifest.json
*.html
sub-*/figures
logs
group
"""

DSEG_TSV = "index\tname\tabbreviation\n0\tbackground\tBG\n1\tspinal cord\tSC\n2\tlesion\tlesion\n"

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
        "HowToAcknowledge": HOW_TO_ACKNOWLEDGE,
    }


def _create_once(path: Path, text: str) -> None:
    """Write ``path`` unless it exists; safe when many tasks of a job array race to create it."""
    if path.exists():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(path)
    try:
        tmp.write_text(text)
        os.chmod(tmp, 0o644)
        os.link(tmp, path)        # atomic and exclusive: exactly one task wins
    except FileExistsError:
        pass
    finally:
        tmp.unlink(missing_ok=True)


def write_dataset_description(output_dir: Path, bids_dir: Path) -> None:
    _create_once(Path(output_dir) / "dataset_description.json",
                 json.dumps(dataset_description(bids_dir), indent=2) + "\n")
    _create_once(Path(output_dir) / ".bidsignore", BIDSIGNORE)
    _create_once(Path(output_dir) / "README", README.format(version=__version__))
    _create_once(Path(output_dir) / "dseg.tsv", DSEG_TSV)


# --- one image --------------------------------------------------------------------------------------------------

def identity(job: ImageJob) -> dict:
    return {"participant_id": f"sub-{job.subject}",
            "session_id": f"ses-{job.session}" if job.session else "n/a",
            "acquisition": job.entities.get("acquisition", "n/a"), "run": job.entities.get("run", "n/a"),
            "suffix": job.suffix, "source": job.relpath}


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


def _masks(seg, models) -> list[tuple]:
    """(file, mask, model, kind, description, sidecar fields beyond mask_sidecar's) of one image."""
    masks = [(SC_MASK, seg.cord, models.cord, "SC", "Spinal cord mask (BASICseg U-Net), on the input image's grid",
              {})]
    if seg.lesion is not None:
        masks.append((LESION_MASK, seg.lesion, models.lesion, "lesion",
                       "Intramedullary lesion mask (BASICseg U-Net trained on SIMULATED contusion-like lesions), "
                       "on the input image's grid",
                       # postprocess.lesion_mask's rule: smaller 3D components are not reported, and each
                       # one found is outlined at the extent threshold; hyperintensity: fainter ones are dropped
                       {"MinimumComponentVolumeMM3": models.lesion.min_volume_mm3,
                        "ExtentThreshold": models.lesion.extent_threshold,
                        "MinimumLogContrast": models.lesion.min_contrast}))
    return masks


def _stage_probabilities(txn: Transaction, job: ImageJob, seg, models, out: Path) -> None:
    for name, prob, model, kind in ((SC_PROB, seg.cord_prob, models.cord, "SC"),
                                    (LESION_PROB, seg.lesion_prob, models.lesion, "lesion")):
        if prob is None:
            continue
        write_json(job.output(out, name.replace(".nii.gz", ".json")),
                   mask_sidecar(job, model, kind, f"{kind} probability (0-1) from the network"), txn)
        write_nifti(job.output(out, name), seg.volume.to_native(prob), seg.volume.native, np.float32, txn=txn)


def stage_image(txn: Transaction, job: ImageJob, result, models, config) -> None:
    """Every output file of one image, under temporary names until the transaction commits."""
    out, seg = Path(config.output_dir), result.seg
    write_tsv(job.output(out, PER_SLICE), result.per_slice, txn)
    for name, mask, model, kind, description, fields in _masks(seg, models):
        write_json(job.output(out, name.replace(".nii.gz", ".json")),
                   mask_sidecar(job, model, kind, description) | fields, txn)
        write_nifti(job.output(out, name), seg.volume.to_native(mask), seg.volume.native, np.uint8, txn=txn)
    if seg.lesion is not None:
        write_tsv(job.output(out, LESIONS), result.per_lesion, txn)
    _stage_dseg(txn, job, seg, models, out)
    if result.haemorrhage is not None:
        _stage_haemorrhage(txn, job, seg, result.haemorrhage, models, out)
    if config.save_probabilities:
        _stage_probabilities(txn, job, seg, models, out)
    write_tsv(job.output(out, MORPHOMETRICS), pd.DataFrame([result.row]), txn)


def _stage_haemorrhage(txn: Transaction, job: ImageJob, seg, haemorrhage, models, out: Path) -> None:
    sidecar = mask_sidecar(job, models.lesion, "lesion", "T2-hypointense foci inside the lesion (haemorrhage), relative "
                           "to the cord's normal signal; EXPERIMENTAL: validated on SIMULATED lesions only")
    sidecar.pop("Threshold")
    write_json(job.output(out, HAEMORRHAGE_MASK.replace(".nii.gz", ".json")), sidecar, txn)
    write_nifti(job.output(out, HAEMORRHAGE_MASK), seg.volume.to_native(haemorrhage), seg.volume.native, np.uint8,
                txn=txn)


def _stage_dseg(txn: Transaction, job: ImageJob, seg, models, out: Path) -> None:
    """The BIDS discrete segmentation: 1 cord, 2 lesion (lesion wins where both are set)."""
    dseg = seg.cord.astype(np.uint8)
    if seg.lesion is not None:
        dseg[seg.lesion] = 2
    sidecar = mask_sidecar(job, models.cord, "dseg", "Discrete segmentation: labels in dseg.tsv at the dataset root")
    sidecar["Model"] = models.provenance()
    for key in ("Type", "Threshold"):    # a mask's fields; a dseg's labels are in dseg.tsv
        sidecar.pop(key)
    write_json(job.output(out, DSEG.replace(".nii.gz", ".json")), sidecar, txn)
    write_nifti(job.output(out, DSEG), seg.volume.to_native(dseg), seg.volume.native, np.uint8, txn=txn)


def replace_outputs(txn: Transaction, job: ImageJob, output_dir: Path, previous: dict | None) -> list[Path]:
    """Swap in the staged files: the old manifest goes first (an interrupted swap then reads as not
    done), the new files are renamed, and old outputs that the new set lacks are removed last."""
    manifest.manifest_path(job, output_dir).unlink(missing_ok=True)
    written = txn.commit()
    keep = {p.relative_to(output_dir).as_posix() for p in written}
    for name in (previous or {}).get("outputs", {}):
        if name not in keep:
            (Path(output_dir) / name).unlink(missing_ok=True)
    return written


def write_image(job: ImageJob, result, models, config, want, previous: dict | None) -> list[Path]:
    """Write one image's derivatives and then its manifest; nothing old is replaced before all is staged."""
    out = Path(config.output_dir)
    txn = Transaction()
    try:
        stage_image(txn, job, result, models, config)
        written = replace_outputs(txn, job, out, previous)
    finally:
        txn.abort()      # after a commit there is nothing left to abort
    manifest.write(job, out, want, "ok", manifest.outputs_record(written, out))
    return written


def remove_outputs(job: ImageJob, output_dir: Path, previous: dict | None) -> None:
    """An image's outputs that are no longer true: what its manifest lists and the known names."""
    names = set((previous or {}).get("outputs", {}))
    names |= {job.output(Path(output_dir), n).relative_to(output_dir).as_posix() for n in IMAGE_OUTPUTS}
    for name in names:
        (Path(output_dir) / name).unlink(missing_ok=True)


def write_status(job: ImageJob, config, want, status: str, reason: str, previous: dict | None) -> None:
    """A failed or skipped image: its stale outputs removed, a morphometrics row saying why (the group
    level lists it in exclusions.tsv) and a manifest that makes the next run try again."""
    out = Path(config.output_dir)
    remove_outputs(job, out, previous)
    row = {**identity(job), "status": status, "qc_flags": status, "error": reason.replace("\t", " ")}
    path = write_tsv(job.output(out, MORPHOMETRICS), pd.DataFrame([row]))
    if want is not None:
        manifest.write(job, out, want, status, manifest.outputs_record([path], out), error=reason)


# --- per-subject report -------------------------------------------------------------------------------------------

def report_path(output_dir: Path, subject: str) -> Path:
    return Path(output_dir) / f"sub-{subject}.html"
