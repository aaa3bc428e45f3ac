"""SIMULATED clinical lesion patterns (basicseg.training.patterns) on the real demo T2*w image."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from basicseg.atlas import map_atlas
from basicseg.training.patterns import simulate_pattern

CENTRE = 8


@pytest.fixture(scope="module")
def demo(demo_t2star):
    vol, cord = demo_t2star
    gm = map_atlas(cord, vol.zooms, level="mean", slices=range(2, 15)).gm
    return vol, cord, gm


def sim(demo, pattern, haem=False, seed=1, **kw):
    vol, cord, gm = demo
    return simulate_pattern(vol.data, cord, gm, vol.zooms, pattern, haem, seed, centre_slice=CENTRE, **kw)


def outer_layer(cord2d):
    return cord2d & ~ndimage.binary_erosion(cord2d)


def test_gm_confined_lies_in_the_mapped_gm(demo):
    _, cord, gm = demo
    r = sim(demo, "gm", length_mm=15.0)
    assert r.grade == 1 and r.lesion[:, :, CENTRE].any()
    assert not (r.lesion & ~gm).any()                      # every lesion voxel is mapped GM
    assert (r.lesion[:, :, CENTRE] == gm[:, :, CENTRE]).all()   # the whole GM at the epicentre
    assert np.array_equal(r.cord, cord)


def test_rim_sparing_keeps_a_white_matter_rim(demo):
    _, cord, gm = demo
    r = sim(demo, "rim", length_mm=18.0, rim_mm=0.5)
    assert r.grade == 2
    for k in np.flatnonzero(r.lesion.any(axis=(0, 1))):
        assert not (r.lesion[:, :, k] & outer_layer(cord[:, :, k])).any(), k
    lesion, g = r.lesion[:, :, CENTRE], gm[:, :, CENTRE]
    assert (lesion & ~g).sum() / lesion.sum() > 0.5          # mostly beyond the GM
    assert 0.3 < lesion.sum() / cord[:, :, CENTRE].sum() < 0.95


def test_whole_section_covers_the_swollen_section(demo):
    _, cord, _ = demo
    r = sim(demo, "whole", length_mm=24.0, full_fraction=0.5, swelling=0.2)
    assert r.grade == 3
    assert np.array_equal(r.lesion[:, :, CENTRE], r.cord[:, :, CENTRE])
    swell = r.cord[:, :, CENTRE].sum() / cord[:, :, CENTRE].sum()
    assert 1.2 < swell < 1.6                                  # (1 + 0.2)^2 in area, to the grid
    assert not (r.lesion & ~r.cord).any() and not (r.gm & ~r.cord).any()


@pytest.mark.parametrize("pattern, grade", [("gm", 1), ("rim", 2), ("whole", 4)])
def test_haemorrhage_is_inside_the_lesion_and_dark(demo, pattern, grade):
    vol, cord, _ = demo
    r = sim(demo, pattern, haem=True, haem_contrast=0.6, haem_length_mm=9.0, haem_radius_mm=1.5)
    assert r.grade == grade
    assert r.haemorrhage[:, :, CENTRE].any()
    assert not (r.haemorrhage & ~r.lesion).any()
    normal = np.median(vol.data[cord & ~r.lesion])
    assert r.image[r.haemorrhage].mean() < 0.75 * normal
    assert r.image[r.lesion & ~r.haemorrhage].mean() > 1.3 * normal


def test_multiple_foci_and_lengths(demo):
    _, cord, _ = demo
    r = sim(demo, "rim", length_mm=9.0, n_extra_foci=2, extra_lengths_mm=[6.0, 6.0], extra_sides=[1, -1])
    ks = np.flatnonzero(r.lesion.any(axis=(0, 1)))
    _, n = ndimage.label(r.lesion.any(axis=(0, 1)))
    assert n == 3, ks                                          # three separate foci along the cord
    short = sim(demo, "gm", length_mm=9.0, n_extra_foci=0)
    long = sim(demo, "gm", length_mm=30.0, n_extra_foci=0)
    n_short = short.lesion.any(axis=(0, 1)).sum()
    n_long = long.lesion.any(axis=(0, 1)).sum()
    assert n_short == 3 and n_long == 11                      # 9 mm and 30 mm at 3 mm slices (tips included)


def test_deterministic_and_local(demo):
    vol, _, _ = demo
    a, b = sim(demo, "rim", seed=7), sim(demo, "rim", seed=7)
    assert np.array_equal(a.image, b.image) and np.array_equal(a.lesion, b.lesion)
    far = ndimage.distance_transform_edt(~a.lesion, sampling=vol.zooms) > 3 * a.params["edge_mm"] + 0.5
    assert np.array_equal(a.image[far], vol.data[far])
    assert a.params["simulated"] is True


def test_gm_none_maps_the_atlas(demo):
    vol, cord, _ = demo
    one = np.zeros_like(cord)
    one[:, :, 6:11] = cord[:, :, 6:11]                 # five slices keep the mapping quick
    r = simulate_pattern(vol.data, one, None, vol.zooms, "gm", False, 2, centre_slice=CENTRE, length_mm=9.0)
    assert r.grade == 1 and r.lesion.any() and not (r.lesion & ~r.gm).any()
    assert 0.05 < r.gm[:, :, CENTRE].sum() / one[:, :, CENTRE].sum() < 0.3
