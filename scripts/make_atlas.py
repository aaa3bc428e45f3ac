#!/usr/bin/env python3
"""Derive the compact 2D cord atlas shipped in ``basicseg/atlas/data`` from the AMU7T template.

    python scripts/make_atlas.py [AMU7T_DIR] [OUT_DIR]

Input: the AMU7T template and atlas (MIT, spinalcordtoolbox/template_AMU7T), by default
``../shared/data/templates/AMU7T`` (or ``/work/shared/data/templates/AMU7T``). Run once by a
developer; nothing is downloaded and the library never reads the template at run time.

Output ``amu7t_2d.npz`` (uint8 arrays in the in-plane order of basicseg's canonical RAS grids: axis 0
index increases toward the subject's right, axis 1 toward anterior; the template's LAS axis 0 is flipped):

* ``cord``, ``gm``: (n_levels, N, N) probabilities x 255, the mean cross-section of the template's
  axial slices of each vertebral level (C1..C7) plus, last, the mean over all levels ("mean");
* ``labels``: (n_levels, N, N) atlas ID (0..49 as in ``info_label.txt``, not the file's intensity
  codes) of the most frequent label of each pixel over the level's slices, 255 = no label;
* ``pixel_mm`` (0.176), ``level_names``, ``label_names``, and the source commit.

The template is straight and centred (PAM50 space), so slices are averaged without re-centring.
Deterministic: the same inputs give the same arrays (the zip container stores its write time).
"""
from __future__ import annotations

import hashlib
import shutil
import sys
from pathlib import Path

import nibabel as nib
import numpy as np

REPO = Path(__file__).resolve().parent.parent
CANDIDATES = [REPO.parent / "shared" / "data" / "templates" / "AMU7T", Path("/work/shared/data/templates/AMU7T")]
OUT = REPO / "basicseg" / "atlas" / "data"
SOURCE_COMMIT = "c9f69954f4bf00f481ced5ef5e37ad55b41c73ec"   # spinalcordtoolbox/template_AMU7T
# Crop of the template's 256 x 256 axial grid: the cord (p > 0.05) spans i 89..166, j 109..156 at
# 0.176 mm; a 96-pixel square (16.9 mm) centred on the canal keeps a margin of >= 1.5 mm all round.
CROP_I, CROP_J, N = 80, 84, 96
LEVEL_NAMES = ("C1", "C2", "C3", "C4", "C5", "C6", "C7")   # AMU7T_levels values 1..7
NO_LABEL = 255
N_IDS = 50


def _intensity_to_id(atlas_dir: Path) -> dict[int, int]:
    """Label_intensities_description.txt: atlas ID -> intensity in AMU7T_50_labels (not ID + 1)."""
    table = {}
    for line in (atlas_dir / "Label_intensities_description.txt").read_text().splitlines()[1:]:
        parts = line.split()
        if len(parts) >= 4 and parts[0].isdigit():
            table[int(parts[-1])] = int(parts[0])
    assert len(table) == N_IDS, f"expected {N_IDS} labels, read {len(table)}"
    return table


def _label_names(atlas_dir: Path) -> list[str]:
    names = {}
    for line in (atlas_dir / "info_label.txt").read_text().splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) == 3 and parts[0].isdigit() and int(parts[0]) < N_IDS:
            names[int(parts[0])] = parts[1]
    return [names[i] for i in range(N_IDS)]


def _to_ras(volume: np.ndarray) -> np.ndarray:
    """The template grid is LAS; flipping axis 0 gives RAS (index increasing toward the subject's right)."""
    return volume[::-1]


def _level_stack(sc, gm, ids, levels):
    cords, gms, labels = [], [], []
    groups = [levels == v for v in range(1, len(LEVEL_NAMES) + 1)]
    groups.append(levels > 0)
    for g in groups:
        ks = np.flatnonzero(g.any(axis=(0, 1)))
        cords.append(sc[:, :, ks].mean(axis=2))
        gms.append(gm[:, :, ks].mean(axis=2))
        counts = np.stack([(ids[:, :, ks] == i).sum(axis=2) for i in range(N_IDS)])
        lab = counts.argmax(axis=0).astype(np.uint8)
        lab[counts.max(axis=0) == 0] = NO_LABEL
        labels.append(lab)
    as_u8 = lambda a: np.clip(np.rint(np.stack(a) * 255), 0, 255).astype(np.uint8)
    return as_u8(cords), as_u8(gms), np.stack(labels)


def main(src: Path, out: Path) -> None:
    load = lambda rel: np.asanyarray(nib.load(src / rel).dataobj)
    img = nib.load(src / "template" / "AMU7T_sc.nii.gz")
    assert nib.aff2axcodes(img.affine) == ("L", "A", "S"), nib.aff2axcodes(img.affine)
    pixel_mm = float(abs(img.affine[0, 0]))
    crop = (slice(CROP_I, CROP_I + N), slice(CROP_J, CROP_J + N), slice(None))
    sc = _to_ras(load("template/AMU7T_sc.nii.gz").astype(np.float32))[crop]
    gm = _to_ras(load("template/AMU7T_gm.nii.gz").astype(np.float32))[crop]
    levels = _to_ras(load("template/AMU7T_levels.nii.gz"))[crop]
    raw = _to_ras(load("atlas/AMU7T_50_labels.nii.gz"))[crop]
    code = _intensity_to_id(src / "atlas")
    ids = np.full(raw.shape, NO_LABEL, np.uint8)
    for intensity, i in code.items():
        ids[raw == intensity] = i
    cord, grey, labels = _level_stack(sc, gm, ids, levels)
    out.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out / "amu7t_2d.npz", cord=cord, gm=grey, labels=labels, pixel_mm=np.float32(pixel_mm),
                        level_names=np.array(LEVEL_NAMES + ("mean",)), label_names=np.array(_label_names(src / "atlas")),
                        source=np.array(f"spinalcordtoolbox/template_AMU7T@{SOURCE_COMMIT}"))
    shutil.copyfile(src / "LICENSE", out / "LICENSE.AMU7T")
    digest = lambda p: hashlib.sha256(p.read_bytes()).hexdigest()
    rows = ["path\tderived_from\tsha256"]
    for rel in ("template/AMU7T_sc.nii.gz", "template/AMU7T_gm.nii.gz", "template/AMU7T_levels.nii.gz",
                "atlas/AMU7T_50_labels.nii.gz", "atlas/Label_intensities_description.txt", "atlas/info_label.txt"):
        rows.append(f"amu7t_2d.npz\tspinalcordtoolbox/template_AMU7T@{SOURCE_COMMIT}:{rel}\t{digest(src / rel)}")
    rows.append(f"amu7t_2d.npz\t(this file, made by scripts/make_atlas.py)\t{digest(out / 'amu7t_2d.npz')}")
    (out / "_provenance.tsv").write_text("\n".join(rows) + "\n")
    print(f"wrote {out / 'amu7t_2d.npz'} ({(out / 'amu7t_2d.npz').stat().st_size} bytes)")


if __name__ == "__main__":
    source = Path(sys.argv[1]) if len(sys.argv) > 1 else next((p for p in CANDIDATES if p.is_dir()), CANDIDATES[0])
    main(source, Path(sys.argv[2]) if len(sys.argv) > 2 else OUT)
