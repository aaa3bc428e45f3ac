#!/usr/bin/env python3
"""Validate the mapped atlas grey matter against the manual GM masks of the gm-challenge images.

    PYTHONPATH=$PWD python3 scripts/validate_atlas.py [SPINE_PUBLIC] [--variants]

For sub-9418, sub-9584 and sub-9604 (run-1, axial T2*w), the atlas is mapped onto the MANUAL cord mask
(so the figure measures the atlas and its registration, not a cord segmentation), thresholded at
GM probability 0.5, and compared with the manual GM mask on every slice where both the cord and the
manual GM are present: Dice per slice, median per image and over all slices. ``--variants`` also
prints the ablations (mean template vs level by shape, affine only vs with the radial deformation).
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from basicseg.atlas.mapping import map_atlas
from basicseg.segment.load import load_axial, load_mask

REPO = Path(__file__).resolve().parent.parent
CANDIDATES = [REPO.parent / "shared" / "data" / "spine-public", Path("/work/shared/data/spine-public")]
SUBJECTS = ("sub-9418", "sub-9584", "sub-9604")


def paths(root: Path, sub: str):
    anat = root / sub / "anat"
    labels = root / "derivatives" / "labels" / sub / "anat"
    stem = f"{sub}_run-1_T2starw"
    return anat / f"{stem}.nii.gz", labels / f"{stem}_seg-manual.nii.gz", labels / f"{stem}_gmseg-manual.nii.gz"


def dice(a: np.ndarray, b: np.ndarray) -> float:
    s = a.sum() + b.sum()
    return float(2 * (a & b).sum() / s) if s else float("nan")


def per_slice_dice(root: Path, sub: str, level: str = "auto", deform: bool = False):
    image, cord_path, gm_path = paths(root, sub)
    vol = load_axial(image)
    cord, gm_manual = load_mask(cord_path, vol), load_mask(gm_path, vol)
    mapped = map_atlas(cord, vol.zooms, level=level, deform=deform)
    ks = [k for k in range(cord.shape[2]) if cord[:, :, k].any() and gm_manual[:, :, k].any()]
    return {k: dice(mapped.gm[:, :, k], gm_manual[:, :, k] & cord[:, :, k]) for k in ks}, mapped


def report(root: Path, level: str, deform: bool) -> float:
    print(f"\n## level={level} deform={deform}")
    print("| image | slices | median Dice | IQR | min |")
    print("|---|---|---|---|---|")
    everything = []
    for sub in SUBJECTS:
        scores, mapped = per_slice_dice(root, sub, level, deform)
        d = np.array(list(scores.values()))
        everything += list(d)
        q1, q3 = np.percentile(d, [25, 75])
        print(f"| {sub} | {len(d)} | {np.median(d):.3f} | {q1:.3f}-{q3:.3f} | {d.min():.3f} |")
    everything = np.array(everything)
    print(f"| all | {len(everything)} | {np.median(everything):.3f} | "
          f"{np.percentile(everything, 25):.3f}-{np.percentile(everything, 75):.3f} | {everything.min():.3f} |")
    return float(np.median(everything))


def main(argv) -> None:
    args = [a for a in argv if not a.startswith("--")]
    root = Path(args[0]) if args else next((p for p in CANDIDATES if p.is_dir()), CANDIDATES[0])
    variants = [("auto", False)]          # the library's default (map_atlas)
    if "--variants" in argv:
        variants += [("auto", True), ("mean", False), ("mean", True)]
    for level, deform in variants:
        report(root, level, deform)


if __name__ == "__main__":
    main(sys.argv[1:])
