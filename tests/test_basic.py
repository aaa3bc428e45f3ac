"""BASIC score and tract-wise lesion load (basicseg.measure.basic) on SIMULATED lesions of the demo."""
from __future__ import annotations

import numpy as np
import pytest

from basicseg.atlas import map_atlas
from basicseg.measure import basic
from basicseg.training.patterns import simulate_pattern

CENTRE = 8


@pytest.fixture(scope="module")
def demo(demo_t2star):
    vol, cord = demo_t2star
    grader_map = map_atlas(cord, vol.zooms, slices=range(4, 13))           # the grader's (auto) mapping
    sim_gm = map_atlas(cord, vol.zooms, level="mean", deform=True, slices=range(2, 15)).gm   # another one
    return vol, cord, grader_map, sim_gm


def test_lesion_free_is_grade_0(demo):
    vol, cord, grader_map, _ = demo
    row, haem = basic.grade_image(vol.data, vol.affine, cord, np.zeros_like(cord), grader_map)
    assert set(row) == set(basic.COLUMNS)
    assert row["basic_score"] == 0 and np.isnan(row["basic_epicentre_slice"]) and not haem.any()
    assert row["basic_status"] == "experimental: validated on simulated lesions only"
    assert all(row[c] == 0.0 for c in basic.COLUMNS if c.startswith("tract_"))
    assert basic.grade_image(vol.data, vol.affine, cord, None, grader_map)[0]["basic_score"] == 0


@pytest.mark.parametrize("pattern, haem, overrides, grade", [
    ("gm", False, {"length_mm": 15.0}, 1),
    ("gm", True, {"length_mm": 15.0, "haem_radius_mm": 1.2}, 1),
    ("rim", False, {"length_mm": 18.0, "rim_mm": 0.5}, 2),
    ("rim", True, {"length_mm": 18.0, "rim_mm": 1.0}, 2),
    ("whole", False, {"length_mm": 21.0, "full_fraction": 0.4}, 3),
    ("whole", True, {"length_mm": 21.0, "full_fraction": 0.4, "haem_contrast": 0.6}, 4)])
def test_each_simulated_pattern_gets_its_grade(demo, pattern, haem, overrides, grade):
    vol, cord, grader_map, sim_gm = demo
    sim = simulate_pattern(vol.data, cord, sim_gm, vol.zooms, pattern, haem, 11, centre_slice=CENTRE,
                           n_extra_foci=0, **overrides)
    assert sim.grade == grade
    atlas_map = grader_map if np.array_equal(sim.cord, cord) else None   # swollen cord: map it afresh
    row, found = basic.grade_image(sim.image, vol.affine, sim.cord, sim.lesion, atlas_map)
    assert row["basic_score"] == grade, row
    # the slice of greatest involvement: the simulated centre, or its neighbour where the cord is smaller
    assert abs(row["basic_epicentre_slice"] - CENTRE) <= 1
    assert row["basic_haemorrhage_at_epicentre"] == int(haem)
    assert row["basic_wm_rim_spared"] == int(pattern != "whole")
    if pattern == "gm":
        assert row["basic_lesion_in_gm_share"] >= basic.GM_CONFINED_SHARE
        assert row["basic_section_involved_share"] < 0.3
    if pattern == "whole":
        assert row["basic_section_involved_share"] == 1.0 and row["basic_rim_spared_share"] == 0.0
        assert all(row[f"tract_{g}_epicentre_pct"] == 100.0 for g in basic.TRACT_GROUPS)
    assert not (found & ~sim.lesion).any()


def test_tract_load_of_a_left_hemicord_lesion(demo):
    vol, cord, grader_map, _ = demo
    lesion = np.zeros_like(cord)
    ii = np.nonzero(cord[:, :, CENTRE])[0]
    left = np.arange(cord.shape[0])[:, None] < ii.mean() - 1     # canonical RAS: left = low axis-0 index
    lesion[:, :, CENTRE] = cord[:, :, CENTRE] & left
    row, _ = basic.grade_image(vol.data, vol.affine, cord, lesion, grader_map)
    assert row["tract_lcst_left_epicentre_pct"] > 90 and row["tract_lcst_right_epicentre_pct"] == 0
    assert row["tract_ventral_horn_left_epicentre_pct"] > 80 and row["tract_ventral_horn_right_epicentre_pct"] < 5
    voxel = float(np.prod(vol.zooms))
    assert row["tract_lcst_right_volume_mm3"] == 0.0
    assert row["tract_lateral_funiculi_volume_mm3"] <= lesion.sum() * voxel
    assert row["tract_lcst_left_volume_mm3"] <= row["tract_lateral_funiculi_volume_mm3"]   # LCST is in it
    assert row["basic_score"] == 2                  # beyond the GM, rim half spared
