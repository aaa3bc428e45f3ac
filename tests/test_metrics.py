"""Segmentation metrics on phantoms with answers known by hand."""
import numpy as np
import pytest

from basicseg.metrics import dice, dice_per_slice, hausdorff95, lesion_detection, relative_volume_error, volume_mm3


def cube(shape, lo, hi):
    m = np.zeros(shape, bool)
    m[tuple(slice(a, b) for a, b in zip(lo, hi))] = True
    return m


def test_dice_of_offset_cubes():
    a = cube((20, 20, 20), (0, 0, 0), (10, 10, 10))
    b = cube((20, 20, 20), (5, 0, 0), (15, 10, 10))
    assert dice(a, b) == pytest.approx(0.5)
    assert dice(a, a) == 1.0 and np.isnan(dice(a & False, b & False))
    assert dice(a & False, b & False, empty=1.0) == 1.0


def test_dice_per_slice():
    a = cube((10, 10, 4), (0, 0, 0), (4, 4, 2))
    b = cube((10, 10, 4), (0, 0, 1), (4, 2, 3))
    d = dice_per_slice(a, b)
    assert d[0] == 0 and d[1] == pytest.approx(2 * 8 / (16 + 8)) and d[2] == 0 and np.isnan(d[3])


def test_hd95_of_shifted_spheres_in_mm():
    ii, jj, kk = np.meshgrid(*[np.arange(40)] * 3, indexing="ij")
    a = (ii - 20) ** 2 + (jj - 20) ** 2 + (kk - 20) ** 2 <= 64
    b = (ii - 24) ** 2 + (jj - 20) ** 2 + (kk - 20) ** 2 <= 64
    assert hausdorff95(a, b, (1, 1, 1)) == pytest.approx(4, abs=1)
    assert hausdorff95(a, b, (0.5, 1, 1)) == pytest.approx(2, abs=0.5)   # shift along the 0.5 mm axis
    assert np.isnan(hausdorff95(a, np.zeros_like(a), (1, 1, 1)))


def test_volumes():
    a = cube((10, 10, 10), (0, 0, 0), (2, 5, 4))
    affine = np.diag([0.5, 0.5, 3.0, 1])
    assert volume_mm3(a, affine) == pytest.approx(40 * 0.75)
    assert relative_volume_error(a, a[:1] if False else cube((10, 10, 10), (0, 0, 0), (1, 5, 4))) == pytest.approx(-0.5)


def test_lesion_detection():
    ref = cube((30, 30, 30), (2, 2, 2), (5, 5, 5)) | cube((30, 30, 30), (20, 20, 20), (23, 23, 23))
    pred = cube((30, 30, 30), (4, 4, 4), (6, 6, 6)) | cube((30, 30, 30), (10, 10, 10), (12, 12, 12))
    r = lesion_detection(ref, pred)
    assert (r["tp"], r["fp"], r["fn"]) == (1, 1, 1)
    assert r["precision"] == 0.5 and r["recall"] == 0.5 and r["f1"] == 0.5
    assert np.isnan(lesion_detection(ref & False, pred & False)["f1"])
    assert lesion_detection(ref, pred & False)["f1"] == 0.0
