#!/usr/bin/env python3
"""Build the embedded demo dataset demo/ds-demo from ../shared/data/spine-public.

    python scripts/make_demo.py [SPINE_PUBLIC] [OUT]

* sub-ms01: the real native axial thick-slice T2w of an MS patient, byte-identical (real lesions, no labels).
* sub-errsm11, sub-errsm21, sub-test001, sub-unf01: real 1 mm T2w images and their real manual cord
  masks, cropped around the cord (40 axial slices, 64 mm in-plane) to keep the demo small, with ONE
  SIMULATED contusion-like lesion each (basicseg.simulate, fixed seeds), its exact mask as
  ``_label-lesion_mask`` and SIMULATED lower-extremity motor scores in phenotype/motor.tsv.
* sub-9418: the real axial T2*w run-1, cropped, with its manual cord mask (for --bids-filter-file).
Deterministic: the same inputs give the same files.
"""
from __future__ import annotations

import gzip
import hashlib
import json
import shutil
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parent.parent
SRC = Path(sys.argv[1]) if len(sys.argv) > 1 else REPO.parent / "shared" / "data" / "spine-public"
OUT = Path(sys.argv[2]) if len(sys.argv) > 2 else REPO / "demo" / "ds-demo"

N_SLICES = 40          # axial slices kept (1 mm volumes)
INPLANE_MM = 64.0      # in-plane field of view kept around the cord
LESIONS = {            # subject -> (seed, lesion length mm): a spread of lesion burdens
    "errsm11": (11, 10.0), "errsm21": (21, 18.0), "test001": (1, 26.0), "unf01": (101, 8.0)}
T2STAR = {"9418": "sub-9418_run-1_T2starw"}


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def save(img: nib.Nifti1Image, path: Path) -> None:
    """Save with a fixed gzip header (no mtime, no file name) so rebuilds are byte-identical."""
    path.parent.mkdir(parents=True, exist_ok=True)
    raw = img.to_bytes()
    with open(path, "wb") as fh, gzip.GzipFile(filename="", mode="wb", fileobj=fh, mtime=0) as gz:
        gz.write(raw)


def crop_window(img: nib.Nifti1Image, mask: np.ndarray, n_slices: int | None) -> tuple:
    """Native-index slices: INPLANE_MM around the cord and n_slices along the axis nearest I-S."""
    ornt = nib.orientations.io_orientation(img.affine)
    si_axis = int(np.nonzero(ornt[:, 0] == 2)[0][0])
    zooms = img.header.get_zooms()[:3]
    idx = np.argwhere(mask)
    centre = idx.mean(axis=0)
    window = []
    for axis in range(3):
        if axis == si_axis:
            half = n_slices / 2 if n_slices else img.shape[axis]
        else:
            half = INPLANE_MM / 2 / zooms[axis]
        lo = int(max(0, round(centre[axis] - half)))
        hi = int(min(img.shape[axis], round(centre[axis] + half)))
        window.append(slice(lo, hi))
    return tuple(window)


def main() -> int:
    from basicseg.training.simulate import simulate_lesion_nifti

    if OUT.exists():
        shutil.rmtree(OUT)
    (OUT / "phenotype").mkdir(parents=True)
    provenance, participants, motor = [], [], []

    # the real axial MS image, untouched
    ms = SRC / "sub-ms01/anat/sub-ms01_acq-axial_T2w.nii.gz"
    dst = OUT / "sub-ms01/anat/sub-ms01_acq-axial_T2w.nii.gz"
    dst.parent.mkdir(parents=True)
    shutil.copyfile(ms, dst)
    provenance.append((dst, ms, "byte-identical copy"))
    participants.append({"participant_id": "sub-ms01", "site": "n/a", "contrast": "T2w",
                         "lesion": "real (MS), unlabelled", "license": "MIT"})
    motor.append({"participant_id": "sub-ms01", "LEMS_admission": "n/a", "LEMS_discharge": "n/a"})

    rng = np.random.default_rng(2019)
    for subject, (seed, length) in LESIONS.items():
        image = SRC / f"sub-{subject}/anat/sub-{subject}_T2w.nii.gz"
        label = SRC / f"derivatives/labels/sub-{subject}/anat/sub-{subject}_T2w_seg-manual.nii.gz"
        img, lab = nib.load(image), nib.load(label)
        window = crop_window(img, np.asanyarray(lab.dataobj) > 0.5, N_SLICES)
        img_c, lab_c = img.slicer[window], lab.slicer[window]
        lab_c = nib.Nifti1Image((np.asanyarray(lab_c.dataobj) > 0.5).astype(np.uint8), lab_c.affine, lab_c.header)
        lab_c.set_data_dtype(np.uint8)
        # no swelling: the demo keeps the real manual cord mask, which a swollen cord would no longer match
        sim_img, lesion_img, params = simulate_lesion_nifti(img_c, lab_c, seed, length_mm=length, swelling=0.0)
        data = np.asanyarray(sim_img.dataobj)
        out_img = nib.Nifti1Image(np.round(data).astype(np.int16), img_c.affine, img_c.header)
        out_img.set_data_dtype(np.int16)
        out_img.header.set_slope_inter(1, 0)
        stem = f"sub-{subject}_T2w"
        img_path = OUT / f"sub-{subject}/anat/{stem}.nii.gz"
        save(out_img, img_path)
        (img_path.with_name(stem + ".json")).write_text(json.dumps({
            "Description": "Real T2w image cropped around the cord, with ONE SIMULATED contusion-like lesion "
                           "inserted by basicseg.simulate (not a real lesion)."}, indent=2) + "\n")
        labels = OUT / f"derivatives/labels/sub-{subject}/anat"
        save(lab_c, labels / f"{stem}_seg-manual.nii.gz")
        (labels / f"{stem}_seg-manual.json").write_text(json.dumps({
            "Description": "Manual spinal cord mask from the source dataset, cropped with the image."}, indent=2) + "\n")
        lesion = nib.Nifti1Image((np.asanyarray(lesion_img.dataobj) > 0).astype(np.uint8), img_c.affine)
        lesion.set_data_dtype(np.uint8)
        save(lesion, labels / f"{stem}_label-lesion_mask.nii.gz")
        (labels / f"{stem}_label-lesion_mask.json").write_text(json.dumps({
            "Type": "Lesion", "Description": "SIMULATED lesion: the exact mask of the lesion inserted by "
            "basicseg.simulate. Not a manual label of a real lesion.",
            "SimulationParameters": {k: (v if not isinstance(v, (np.floating, np.integer)) else v.item())
                                     for k, v in params.items()}}, indent=2, default=str) + "\n")
        provenance.append((img_path, image, f"cropped to {[(s.start, s.stop) for s in window]}; simulated lesion "
                                            f"(seed {seed}, length {length} mm)"))
        provenance.append((labels / f"{stem}_seg-manual.nii.gz", label, "cropped with the image"))
        volume = float(params.get("lesion_volume_mm3", np.asanyarray(lesion.dataobj).sum() *
                                  np.prod(img_c.header.get_zooms()[:3])))
        # SIMULATED motor scores: fall with lesion volume, plus noise; discharge improves on admission
        admission = float(np.clip(50 - 0.06 * volume + rng.normal(0, 3), 0, 50))
        discharge = float(np.clip(admission + 4 + rng.normal(0, 2), 0, 50))
        src_row = pd.read_csv(SRC / "participants.tsv", sep="\t").set_index("participant_id").loc[f"sub-{subject}"]
        participants.append({"participant_id": f"sub-{subject}", "site": src_row["site"], "contrast": "T2w",
                             "lesion": "SIMULATED contusion-like", "license": src_row["license"]})
        motor.append({"participant_id": f"sub-{subject}", "LEMS_admission": round(admission, 1),
                      "LEMS_discharge": round(discharge, 1)})

    for subject, stem in T2STAR.items():
        image = SRC / f"sub-{subject}/anat/{stem}.nii.gz"
        label = SRC / f"derivatives/labels/sub-{subject}/anat/{stem}_seg-manual.nii.gz"
        img, lab = nib.load(image), nib.load(label)
        window = crop_window(img, np.asanyarray(lab.dataobj) > 0.5, None)
        save(img.slicer[window], OUT / f"sub-{subject}/anat/{stem}.nii.gz")
        save(lab.slicer[window], OUT / f"derivatives/labels/sub-{subject}/anat/{stem}_seg-manual.nii.gz")
        shutil.copyfile(SRC / f"sub-{subject}/anat/{stem}.json", OUT / f"sub-{subject}/anat/{stem}.json")
        provenance.append((OUT / f"sub-{subject}/anat/{stem}.nii.gz", image, "cropped in-plane around the cord"))
        participants.append({"participant_id": f"sub-{subject}", "site": "UCL", "contrast": "T2starw",
                             "lesion": "none", "license": "CC0-1.0"})
        motor.append({"participant_id": f"sub-{subject}", "LEMS_admission": "n/a", "LEMS_discharge": "n/a"})

    (OUT / "dataset_description.json").write_text(json.dumps({
        "Name": "basicseg demo: real spinal cord MRI with SIMULATED lesions and SIMULATED motor scores",
        "BIDSVersion": "1.9.0", "DatasetType": "raw",
        "License": "Mixed: MIT / CC0-1.0 / CC-BY-4.0-derived, per participant (see participants.tsv and README)",
        "GeneratedBy": [{"Name": "basicseg scripts/make_demo.py"}],
        "SourceDatasets": [{"URL": "https://github.com/spinalcordtoolbox/spinalcordtoolbox"},
                           {"URL": "https://github.com/ivadomed/ivadomed"},
                           {"URL": "https://github.com/ivadomed/data-testing"},
                           {"URL": "https://github.com/sct-pipeline/gm-challenge-data"},
                           {"URL": "https://github.com/spinalcordtoolbox/sct_tutorial_data"}]}, indent=2) + "\n")
    (OUT / "derivatives/labels/dataset_description.json").write_text(json.dumps({
        "Name": "Reference masks: real manual cord masks, SIMULATED lesion masks", "BIDSVersion": "1.9.0",
        "DatasetType": "derivative", "GeneratedBy": [{"Name": "manual (cord)"}, {"Name": "basicseg.simulate (lesion)"}]},
        indent=2) + "\n")
    pd.DataFrame(participants).to_csv(OUT / "participants.tsv", sep="\t", index=False, na_rep="n/a")
    (OUT / "participants.json").write_text(json.dumps({
        "site": {"Description": "Acquisition site when known"},
        "contrast": {"Description": "Contrast of the image"},
        "lesion": {"Description": "What lesion the image shows: real (unlabelled), SIMULATED, or none"},
        "license": {"Description": "Licence of the source data"}}, indent=2) + "\n")
    pd.DataFrame(motor).to_csv(OUT / "phenotype/motor.tsv", sep="\t", index=False, na_rep="n/a")
    (OUT / "phenotype/motor.json").write_text(json.dumps({
        "MeasurementToolMetadata": {"Description": "SIMULATED lower-extremity motor scores (ISNCSCI LEMS, 0-50): "
                                    "generated from the simulated lesion volume plus noise. Not patient data."},
        "LEMS_admission": {"Description": "SIMULATED lower-extremity motor score at admission", "Units": "points"},
        "LEMS_discharge": {"Description": "SIMULATED lower-extremity motor score at discharge", "Units": "points"}}, indent=2) + "\n")
    rows = ["path\tsource\tsource_sha256\tsha256\tmodification"]
    for dst, src, note in provenance:
        rows.append(f"{dst.relative_to(OUT)}\t{src.relative_to(SRC)}\t{sha256(src)}\t{sha256(dst)}\t{note}")
    (OUT / "_provenance.tsv").write_text("\n".join(rows) + "\n")
    (OUT / ".bidsignore").write_text("_provenance.tsv\n")
    shutil.copyfile(REPO / "demo" / "README.template.md", OUT / "README")
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
