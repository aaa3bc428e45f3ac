"""Haemorrhage detection (basicseg.measure.haemorrhage): SIMULATED cores, and healthy real cords."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from basicseg.atlas import map_atlas
from basicseg.measure.haemorrhage import detect_haemorrhage
from basicseg.segment.load import load_axial, load_mask
from basicseg.training.patterns import gm_slice, simulate_pattern

DEMO = Path(__file__).resolve().parent.parent / "demo" / "ds-demo"
LABELS = DEMO / "derivatives" / "labels"
T2S = ("sub-9418", "sub-9418_run-1_T2starw")
# demo T2w images with >= 3 cord slices >= CLEAR_MM from their SIMULATED demo lesion (unf01 has none)
T2W = [("sub-errsm11", "sub-errsm11_T2w"), ("sub-errsm21", "sub-errsm21_T2w"), ("sub-test001", "sub-test001_T2w")]
CLEAR_MM = 6.0   # the demo lesion's signal is exactly unchanged beyond 3 x 1.5 mm + half a voxel


def load(sub, stem):
    vol = load_axial(DEMO / sub / "anat" / f"{stem}.nii.gz")
    cord = load_mask(LABELS / sub / "anat" / f"{stem}_seg-manual.nii.gz", vol)
    lesion_path = LABELS / sub / "anat" / f"{stem}_label-lesion_mask.nii.gz"
    demo_lesion = load_mask(lesion_path, vol) if lesion_path.exists() else np.zeros_like(cord)
    return vol, cord, demo_lesion


@pytest.fixture(scope="module")
def t2s():
    vol, cord, _ = load(*T2S)
    return vol, cord, map_atlas(cord, vol.zooms, level="mean", slices=range(2, 15)).gm


@pytest.mark.parametrize("pattern", ["gm", "rim", "whole"])
@pytest.mark.parametrize("seed", [0, 1])
def test_detects_simulated_cores(t2s, pattern, seed):
    vol, cord, gm = t2s
    sim = simulate_pattern(vol.data, cord, gm, vol.zooms, pattern, True, seed, centre_slice=8,
                           haem_contrast=0.6, haem_radius_mm=1.5, haem_length_mm=9.0)
    found, summary = detect_haemorrhage(sim.image, sim.cord, sim.lesion, vol.zooms)
    true = sim.haemorrhage
    assert true.sum() >= 8
    assert not (found & ~sim.lesion).any()
    assert 2 * (found & true).sum() / (found.sum() + true.sum()) > 0.8
    assert summary["haemorrhage_n_foci"] in (1, 2)            # a missed voxel may split a thin core
    assert summary["haemorrhage_volume_mm3"] >= 0.7 * true.sum() * np.prod(vol.zooms)


@pytest.mark.parametrize("pattern", ["gm", "rim", "whole"])
def test_no_core_no_haemorrhage(t2s, pattern):
    vol, cord, gm = t2s
    sim = simulate_pattern(vol.data, cord, gm, vol.zooms, pattern, False, 3, centre_slice=8)
    found, summary = detect_haemorrhage(sim.image, sim.cord, sim.lesion, vol.zooms)
    assert not found.any() and summary["haemorrhage_volume_mm3"] == 0.0


def false_lesions(cord, gm, ks, zooms):
    """An empty lesion, the GM of three slices, and the whole section of three slices: no real lesion."""
    g, whole = np.zeros_like(cord), np.zeros_like(cord)
    for k in ks:
        g[:, :, k] = gm_slice(gm[:, :, k], 1.0, zooms) if gm is not None else False
        whole[:, :, k] = cord[:, :, k]
    return {"empty": np.zeros_like(cord), "gm": g, "whole": whole}


def test_healthy_t2starw_has_no_haemorrhage(t2s):
    vol, cord, gm = t2s
    for k0 in (3, 7, 11):
        for name, mask in false_lesions(cord, gm, range(k0, k0 + 3), vol.zooms).items():
            found, _ = detect_haemorrhage(vol.data, cord, mask, vol.zooms)
            assert not found.any(), (k0, name, int(found.sum()))


@pytest.mark.parametrize("sub, stem", T2W)
def test_healthy_t2w_has_no_haemorrhage(sub, stem):
    """The demo T2w images, on slices >= CLEAR_MM from their (SIMULATED) demo lesion: healthy cord."""
    vol, cord, demo_lesion = load(sub, stem)
    ks = np.flatnonzero(cord.any(axis=(0, 1)))
    lesion_ks = np.flatnonzero(demo_lesion.any(axis=(0, 1)))
    far = [k for k in ks if lesion_ks.size == 0 or np.abs(lesion_ks - k).min() * vol.zooms[2] >= CLEAR_MM]
    assert len(far) >= 3
    for name, mask in false_lesions(cord, None, far[:3], vol.zooms).items():
        found, _ = detect_haemorrhage(vol.data, cord & ~demo_lesion, mask, vol.zooms)
        assert not found.any(), (name, int(found.sum()))
