"""Morphometrics on analytic phantoms whose true values are known.

The phantom: a cylindrical cord of radius R along the slice normal, holding an ellipsoidal lesion with
semi-axes A (left-right), B (anterior-posterior), C (inferior-superior), its centre D mm anterior
(ventral) of the cord axis.  True values:

    cord CSA = pi R^2                    lesion volume = 4/3 pi A B C
    lesion length = 2C                   maximal A-P width = 2B (= midsagittal width)
    max axial damage ratio = A B / R^2   (on the lesion's central slice)
    ventral bridge = R - (D + B)         dorsal bridge = R - (B - D)        total = 2 (R - B)
    midsagittal length = 2C

Geometries: isotropic 0.5 mm voxels; 0.5 x 0.5 x 3 mm voxels; an oblique affine (10 deg rotation about
the inferior-superior axis and a shear of the slice stack, c2 = (0.6, 0.6, 3) mm, so |c2| != slice
spacing); and a cord tilted 20 deg in the sagittal plane (tests the angle correction; there the
ellipsoid's long axis follows the cord).  The phantom is built in the slice frame (the anatomy
rotates with the grid, as when the slices are planned on the patient); the cord axis and the lesion
centre sit at a sub-voxel offset (0.23, 0.37 voxel) to avoid ties on voxel centres; the lesion centre
is on a slice centre.

Tolerances (discretisation, not fudge):
* areas and cord volume (CSA mean 2 %, CSA min 4 %): a digitised disc of radius 8 pixels has a
  lattice-count error of a few pixels out of 201 (Gauss circle problem); the minimum over slices picks
  the worst one;
* lesion volume (3 %, thick slices 6 %): in-plane digitisation of a 5 x 4-pixel ellipse, and through
  3 mm slices the midpoint rule over 5 slices overestimates 4/3 pi A B C by 2 % (10.2 vs 10 pi A B);
* lengths (one slice spacing): a lesion tip can end anywhere within a slice;
* widths and bridges (one A-P pixel, 0.5 mm): each of the two edges is placed to within half a
  pixel;
* damage ratio (0.02 absolute, ~6 %): ratio of two digitised areas (63 and 201 pixels);
* counts and slice numbers: exact.
Run ``python tests/test_morphometrics.py`` to print the phantom table.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

from basicseg.measure.lesions import COLUMNS as LESION_COLUMNS
from basicseg.measure.morphometrics import (
    KEYS,
    compute_morphometrics,
    csa_per_slice,
    measure_masks,
    qc_flags,
    slice_geometry,
)

R, A, B, C, D = 4.0, 2.5, 2.0, 7.5, 1.0
TILT_DEG = 20.0


def rot_z(deg):
    t = math.radians(deg)
    return np.array([[math.cos(t), -math.sin(t), 0], [math.sin(t), math.cos(t), 0], [0, 0, 1.0]])


GEOMETRIES = {
    # name: (3x3 columns of the affine, shape, sagittal tilt of the cord in degrees)
    "isotropic 0.5 mm": (np.diag([0.5, 0.5, 0.5]), (48, 48, 60), 0.0),
    "anisotropic 0.5x0.5x3 mm": (np.diag([0.5, 0.5, 3.0]), (48, 48, 11), 0.0),
    "oblique (10 deg + shear)": (rot_z(10) @ np.array([[0.5, 0, 0.6], [0, 0.5, 0.6], [0, 0, 3.0]]), (72, 72, 11), 0.0),
    "cord tilted 20 deg (0.5 mm)": (np.diag([0.5, 0.5, 0.5]), (48, 80, 60), TILT_DEG),
}


def phantom(cols, shape, tilt_deg=0.0, lesion_centre=(0.0, 0.0, 0.0), offset=D):
    """Cord and lesion masks and the affine.  ``lesion_centre`` shifts the lesion (u, v, w mm)."""
    affine = np.eye(4)
    affine[:3, :3] = cols
    affine[:3, 3] = [-10.0, 20.0, -30.0]
    g = slice_geometry(affine)
    centre = np.array([(shape[0] - 1) / 2 + 0.23, (shape[1] - 1) / 2 + 0.37, (shape[2] - 1) // 2])
    p0 = cols @ centre + affine[:3, 3]
    ijk = np.indices(shape).reshape(3, -1).astype(float)
    rel = cols @ ijk + affine[:3, 3:4] - p0[:, None]
    u, v, w = g.e0 @ rel, g.e1 @ rel, g.normal @ rel
    t = math.radians(tilt_deg)
    v_perp = v * math.cos(t) - w * math.sin(t)       # across the cord, in the sagittal plane
    w_axis = v * math.sin(t) + w * math.cos(t)       # along the cord
    cord = (u ** 2 + v_perp ** 2 <= R ** 2).reshape(shape)
    lu, lv, lw = lesion_centre
    lesion = (((u - lu) / A) ** 2 + ((v_perp - offset - lv) / B) ** 2 + ((w_axis - lw) / C) ** 2 <= 1).reshape(shape)
    return cord, lesion, affine


def truth(name):
    cols, shape, tilt = GEOMETRIES[name]
    t = math.radians(tilt)
    g = slice_geometry(np.block([[cols, np.zeros((3, 1))], [np.zeros((1, 3)), np.ones((1, 1))]]))
    # in an axial slice, the tilted cord is an ellipse R x R/cos(t); the lesion's central chord along A-P
    h = 1.0 / math.sqrt(math.cos(t) ** 2 / B ** 2 + math.sin(t) ** 2 / C ** 2)
    return {
        "cord_volume_mm3": math.pi * R ** 2 / math.cos(t) * shape[2] * g.dz,
        "csa_mean_mm2": math.pi * R ** 2,
        "csa_min_mm2": math.pi * R ** 2,
        "n_cord_slices": shape[2],
        "lesion_volume_mm3": 4 / 3 * math.pi * A * B * C,
        "lesion_count": 1,
        "lesion_length_mm": 2 * C,
        "lesion_max_width_mm": 2 * B,
        "max_axial_damage_ratio": A * h / (R * R / math.cos(t)),
        "midsagittal_lesion_length_mm": 2 * C,
        "midsagittal_lesion_width_mm": 2 * B,
        "tissue_bridge_dorsal_mm": R - (B - D),
        "tissue_bridge_ventral_mm": R - (B + D),
        "tissue_bridges_total_mm": 2 * (R - B),
        "lesion_outside_cord_mm3": 0.0,
        # SCT's largest axial lesion area x cos(theta_3d) = pi A h cos(t)
        "max_equivalent_diameter_mm": 2 * math.sqrt(A * h * math.cos(t)),
        # SCT's plane: the cord centre's left-right voxel position (the cord is straight in the slice frame)
        "midsagittal_plane_x": (shape[0] - 1) / 2 + 0.23,
        # basicseg's variants: the same truth for a single lesion
        "lesion_length_union_mm": 2 * C,
        "max_axial_damage_ratio_all_lesions": A * h / (R * R / math.cos(t)),
        "midsagittal_lesion_length_perslice_plane_mm": 2 * C,
        "midsagittal_lesion_width_perslice_plane_mm": 2 * B,
        "tissue_bridge_dorsal_perslice_plane_mm": R - (B - D),
        "tissue_bridge_ventral_perslice_plane_mm": R - (B + D),
        "tissue_bridges_total_perslice_plane_mm": 2 * (R - B),
    }


def tolerance(name, key):
    """(absolute tolerance, why) for a quantity on a geometry."""
    cols, shape, _ = GEOMETRIES[name]
    g = slice_geometry(np.block([[cols, np.zeros((3, 1))], [np.zeros((1, 3)), np.ones((1, 1))]]))
    t = truth(name)[key]
    thick = g.dz > 1.0
    table = {
        "cord_volume_mm3": (0.02 * t, "2 %: disc digitisation"),
        "csa_mean_mm2": (0.02 * t, "2 %: disc digitisation"),
        "csa_min_mm2": (0.04 * t, "4 %: worst slice's digitisation"),
        "n_cord_slices": (0, "exact"),
        "lesion_volume_mm3": ((0.06 if thick else 0.03) * t,
                              "6 %: midpoint rule over 5 slices (+2 %) and digitisation" if thick
                              else "3 %: digitisation"),
        "lesion_count": (0, "exact"),
        "lesion_length_mm": (g.dz, "one slice spacing"),
        "lesion_max_width_mm": (g.dy, "one A-P pixel"),
        "max_axial_damage_ratio": (0.02, "0.02: ratio of digitised areas"),
        "midsagittal_lesion_length_mm": (g.dz, "one slice spacing"),
        "midsagittal_lesion_width_mm": (g.dy, "one A-P pixel"),
        "tissue_bridge_dorsal_mm": (g.dy, "one A-P pixel"),
        "tissue_bridge_ventral_mm": (g.dy, "one A-P pixel"),
        "tissue_bridges_total_mm": (2 * g.dy, "two A-P pixels (two minima)"),
        "lesion_outside_cord_mm3": (0.0, "exact"),
        "max_equivalent_diameter_mm": (0.05 * t, "5 %: half the relative error of a digitised area"),
        "midsagittal_plane_x": (0.1, "0.1 voxel: centre of mass of a digitised disc"),
    }
    for variant, key_of in (("_perslice_plane_mm", "_mm"), ("_union_mm", "_mm"), ("_all_lesions", "")):
        if key.endswith(variant):
            return table[key[: -len(variant)] + key_of]
    return table[key]


_CACHE: dict = {}


def measured(name):
    if name not in _CACHE:
        cord, lesion, affine = phantom(*GEOMETRIES[name])
        _CACHE[name] = compute_morphometrics(cord, lesion, affine)
    return _CACHE[name]


@pytest.mark.parametrize("name", list(GEOMETRIES))
def test_phantom_values_within_tolerance(name):
    got = measured(name)
    assert list(got) == list(KEYS)
    failures = []
    for key in KEYS:
        tol, why = tolerance(name, key)
        true = truth(name)[key]
        if not abs(got[key] - true) <= tol + 1e-9:
            failures.append(f"{key}: true {true:.4g}, measured {got[key]:.4g}, tolerance {tol:.3g} ({why})")
    assert not failures, f"{name}:\n" + "\n".join(failures)


def test_types():
    got = measured("isotropic 0.5 mm")
    assert isinstance(got["n_cord_slices"], int) and isinstance(got["lesion_count"], int)
    assert all(isinstance(got[k], float) for k in KEYS if k not in ("n_cord_slices", "lesion_count"))


def test_oblique_geometry_is_exact():
    cols = GEOMETRIES["oblique (10 deg + shear)"][0]
    affine = np.eye(4)
    affine[:3, :3] = cols
    g = slice_geometry(affine)
    assert g.pixel_area == pytest.approx(0.25, abs=1e-12)          # |c0 x c1|, not the affine's diagonal
    assert g.dz == pytest.approx(3.0, abs=1e-12)                   # not |c2| = 3.117
    assert g.voxel_volume == pytest.approx(0.75, abs=1e-12)
    assert np.linalg.norm(cols[:, 2]) > 3.1
    # the straight cord of the sheared stack is straight: no angle correction
    cord, lesion, aff = phantom(*GEOMETRIES["oblique (10 deg + shear)"])
    table = csa_per_slice(cord, aff, lesion=lesion)
    assert table["angle_deg"].max() < 1.0


def test_tilted_cord_angle_is_recovered():
    cord, lesion, affine = phantom(*GEOMETRIES["cord tilted 20 deg (0.5 mm)"])
    table = csa_per_slice(cord, affine, lesion=lesion)
    assert np.allclose(table["angle_deg"], TILT_DEG, atol=0.5)
    # uncorrected axial areas overestimate the CSA by 1 / cos(20 deg) = 6 %
    assert table["cord_area_mm2"].mean() > 1.05 * math.pi * R ** 2
    assert table["csa_mm2"].mean() == pytest.approx(math.pi * R ** 2, rel=0.02)


def test_csa_per_slice_table():
    cord, lesion, affine = phantom(*GEOMETRIES["anisotropic 0.5x0.5x3 mm"])
    cord[:, :, 0] = False
    table = csa_per_slice(cord, affine, lesion=lesion)
    assert len(table) == cord.shape[2]                             # every slice, with or without cord
    for column in ("slice", "z_mm", "csa_mm2", "lesion_area_mm2", "damage_ratio"):
        assert column in table
    assert np.isnan(table["csa_mm2"].iloc[0]) and table["cord_area_mm2"].iloc[0] == 0
    assert np.allclose(np.diff(table["z_mm"]), 3.0)
    centre = cord.shape[2] // 2
    assert table["damage_ratio"].iloc[centre] == pytest.approx(A * B / R ** 2, abs=0.02)
    assert table["damage_ratio"].max() == table["damage_ratio"].iloc[centre]
    # without a lesion mask: the lesion columns are there, empty
    table = csa_per_slice(cord, affine)
    assert table["lesion_area_mm2"].isna().all()


def test_empty_lesion():
    cord, lesion, affine = phantom(*GEOMETRIES["isotropic 0.5 mm"])
    got = compute_morphometrics(cord, np.zeros_like(lesion), affine)
    assert got["lesion_volume_mm3"] == 0 and got["lesion_count"] == 0 and got["lesion_outside_cord_mm3"] == 0
    for key in ("lesion_length_mm", "lesion_max_width_mm", "max_axial_damage_ratio", "midsagittal_lesion_length_mm",
                "midsagittal_lesion_width_mm", "tissue_bridge_dorsal_mm", "tissue_bridge_ventral_mm",
                "tissue_bridges_total_mm"):
        assert math.isnan(got[key]), key
    assert got["csa_mean_mm2"] == pytest.approx(math.pi * R ** 2, rel=0.02)
    # no lesion model at all: every lesion metric is NaN
    got = compute_morphometrics(cord, None, affine)
    assert all(math.isnan(got[k]) for k in KEYS if k.startswith(("lesion", "max_axial", "midsag", "tissue")))


def test_lesion_partly_outside_cord():
    cols, shape, _ = GEOMETRIES["isotropic 0.5 mm"]
    # the lesion's centre 3.5 mm anterior: it crosses the cord's anterior edge
    cord, lesion, affine = phantom(cols, shape, offset=3.5)
    outside = int((lesion & ~cord).sum())
    assert outside > 0
    got = compute_morphometrics(cord, lesion, affine)
    assert got["lesion_outside_cord_mm3"] == pytest.approx(outside * 0.125)
    # SCT >= 7.1: the lesion is masked by the cord before every metric, volume included
    assert got["lesion_volume_mm3"] == pytest.approx((lesion & cord).sum() * 0.125)
    assert got["tissue_bridge_ventral_mm"] == 0.0                   # the lesion reaches the cord's edge
    assert got["tissue_bridge_dorsal_mm"] == pytest.approx(R - (B - 3.5), abs=0.5)
    assert 0 < got["max_axial_damage_ratio"] <= 1
    assert "lesion_outside_cord" in qc_flags(cord, lesion)


def test_lesion_entirely_outside_cord_and_no_cord():
    cols, shape, _ = GEOMETRIES["isotropic 0.5 mm"]
    cord, lesion, affine = phantom(cols, shape, offset=8.0)
    assert not (lesion & cord).any() and lesion.any()
    got = compute_morphometrics(cord, lesion, affine)
    # no lesion in the cord: as an empty lesion mask, with the outside volume reported
    assert got["lesion_outside_cord_mm3"] == pytest.approx(lesion.sum() * 0.125) and got["lesion_outside_cord_mm3"] > 0
    assert got["lesion_volume_mm3"] == 0 and got["lesion_count"] == 0
    assert math.isnan(got["max_axial_damage_ratio"])
    assert math.isnan(got["tissue_bridge_dorsal_mm"]) and math.isnan(got["lesion_length_mm"])
    # no cord at all
    got = compute_morphometrics(np.zeros_like(cord), lesion, affine)
    assert got["n_cord_slices"] == 0 and got["cord_volume_mm3"] == 0 and math.isnan(got["csa_mean_mm2"])
    assert got["lesion_outside_cord_mm3"] > 0 and got["lesion_volume_mm3"] == 0
    assert qc_flags(np.zeros_like(cord), lesion) == ["no_cord", "lesion_outside_cord"]
    assert qc_flags(np.zeros_like(cord), None) == ["no_cord"]


def test_parasagittal_lesion_off_the_midsagittal_plane():
    cols, shape, _ = GEOMETRIES["isotropic 0.5 mm"]
    cord, lesion, affine = phantom(cols, shape, lesion_centre=(3.0, 0.0, 0.0), offset=0.0)   # spans 0.5-5.5 mm lateral
    lesion &= cord
    got = compute_morphometrics(cord, lesion, affine)
    assert got["lesion_volume_mm3"] > 0 and got["lesion_length_mm"] > 0
    # SCT >= 7.3: midsagittal length and width 0; bridges half the cord's A-P diameter on the plane (2R)
    assert got["midsagittal_lesion_length_mm"] == 0 and got["midsagittal_lesion_width_mm"] == 0
    assert got["tissue_bridges_total_mm"] == pytest.approx(2 * R, abs=0.5)
    assert got["tissue_bridge_dorsal_mm"] == got["tissue_bridge_ventral_mm"] == got["tissue_bridges_total_mm"] / 2
    # basicseg's per-slice-plane variant has no bridges there
    assert math.isnan(got["tissue_bridge_dorsal_perslice_plane_mm"])
    assert math.isnan(got["midsagittal_lesion_length_perslice_plane_mm"])


def test_lesion_count_18_connectivity():
    cord = np.zeros((10, 10, 10), bool)
    cord[2:8, 2:8, :] = True
    lesion = np.zeros_like(cord)
    lesion[3, 3, 3] = lesion[4, 4, 3] = True                        # edge-touching: one lesion (SCT, 18-conn.)
    lesion[5, 5, 4] = True                                          # corner-touching: a lesion of its own
    lesion[6, 6, 8] = lesion[6, 6, 9] = True                        # separate
    lesion[0, 0, 5] = True                                          # outside the cord: not a lesion
    got = compute_morphometrics(cord, lesion, np.diag([1.0, 1.0, 1.0, 1.0]))
    assert got["lesion_count"] == 3
    assert got["lesion_volume_mm3"] == 5.0 and got["lesion_outside_cord_mm3"] == 1.0
    assert got["lesion_length_mm"] == pytest.approx(4.0)            # SCT's sum over lesions: 1 + 1 + 2 slices
    assert got["lesion_length_union_mm"] == pytest.approx(4.0)      # slices 3, 4, 8, 9


def test_measure_masks_per_lesion_table_and_totals():
    cols, shape, _ = GEOMETRIES["isotropic 0.5 mm"]
    cord, lesion, affine = phantom(cols, shape)
    # a second, smaller lesion 12 mm superior, on the dorsal side and off the midline: its own row
    _, second, _ = phantom(cols, shape, lesion_centre=(3.5, 0.0, 12.0), offset=-1.5)   # 1-6 mm lateral
    both = lesion | (second & cord)
    row, per_slice, per_lesion = measure_masks(cord, both, affine)
    assert list(per_lesion.columns) == list(LESION_COLUMNS) and list(per_lesion["label"]) == [1, 2]
    off = per_lesion.loc[per_lesion["volume_mm3"].idxmin()]
    assert not off["on_midsagittal_plane"] and off["midsagittal_length_mm"] == 0
    assert off["tissue_bridges_total_mm"] == pytest.approx(2 * R, abs=0.5)     # the cord's A-P diameter
    first = per_lesion.loc[per_lesion["volume_mm3"].idxmax()]
    t = truth("isotropic 0.5 mm")
    for column, key in (("length_mm", "lesion_length_mm"), ("max_width_mm", "lesion_max_width_mm"),
                        ("tissue_bridge_ventral_mm", "tissue_bridge_ventral_mm")):
        assert abs(first[column] - t[key]) <= tolerance("isotropic 0.5 mm", key)[0] + 1e-9, column
    # SCT's aggregation: sums of volume and length, maximum width, the narrowest bridge
    assert row["lesion_count"] == 2
    assert row["lesion_volume_mm3"] == pytest.approx(per_lesion["volume_mm3"].sum())
    assert row["lesion_length_mm"] == pytest.approx(per_lesion["length_mm"].sum())
    assert row["lesion_max_width_mm"] == per_lesion["max_width_mm"].max()
    assert row["tissue_bridge_ventral_mm"] == per_lesion["tissue_bridge_ventral_mm"].min()
    assert row["midsagittal_plane_x"] == pytest.approx(t["midsagittal_plane_x"], abs=0.1)
    # the per-slice table and the image row are the public functions' own
    assert row == compute_morphometrics(cord, both, affine)
    assert per_slice.equals(csa_per_slice(cord, affine, lesion=both))
    # no lesion model: an empty per-lesion table with the same columns
    _, _, empty = measure_masks(cord, None, affine)
    assert len(empty) == 0 and list(empty.columns) == list(LESION_COLUMNS)


def test_qc_flags():
    cord, lesion, affine = phantom(*GEOMETRIES["anisotropic 0.5x0.5x3 mm"])
    assert qc_flags(cord, lesion) == []
    prob = np.where(cord, 0.9, 0.0)
    assert qc_flags(cord, lesion, prob) == []
    assert qc_flags(cord, lesion, np.where(cord, 0.6, 0.0)) == ["low_confidence"]
    assert qc_flags(cord, lesion, np.where(cord, 0.6, 0.0), min_mean_prob=0.5) == []
    gap = cord.copy()
    gap[:, :, 4] = False
    assert qc_flags(gap, lesion & gap) == ["discontinuous_cord", "missing_cord_slices:4"]
    ends = cord.copy()
    ends[:, :, [0, 1, 2, 10]] = False
    assert qc_flags(ends, lesion) == ["missing_cord_slices:0-2,10"]
    blob = cord.copy()
    blob[0, 0, 5] = True                                            # a second 3D component
    assert qc_flags(blob, lesion) == ["discontinuous_cord"]


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError):
        compute_morphometrics(np.zeros((4, 4, 4), bool), np.zeros((4, 4, 5), bool), np.eye(4))


def phantom_table() -> str:
    rows = ["| geometry | quantity | true | measured | tolerance |", "|---|---|---|---|---|"]
    for name in GEOMETRIES:
        got = measured(name)
        for key in KEYS:
            tol, why = tolerance(name, key)
            rows.append(f"| {name} | {key} | {truth(name)[key]:.4g} | {got[key]:.4g} | ±{tol:.3g} ({why}) |")
    return "\n".join(rows)


if __name__ == "__main__":
    print(phantom_table())
