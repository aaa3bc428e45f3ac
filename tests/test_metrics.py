"""Segmentation metrics on analytic phantoms whose answers are known by hand."""
import numpy as np
import pytest

from basicseg.measure.scores import dice, dice_per_slice, hausdorff95, lesion_detection, relative_volume_error, surface_distances, volume_mm3

SHAPE = (30, 30, 30)


def cube(lo, hi, shape=SHAPE):
    m = np.zeros(shape, bool)
    m[tuple(slice(a, b) for a, b in zip(lo, hi))] = True
    return m


def ball(centre_mm, radius_mm, spacing, shape=(48, 48, 48)):
    grid = np.meshgrid(*[np.arange(n) * s for n, s in zip(shape, spacing)], indexing="ij")
    return sum((g - c) ** 2 for g, c in zip(grid, centre_mm)) <= radius_mm ** 2


# --- Dice ------------------------------------------------------------------------------------------------

def test_dice_of_offset_cubes():
    a = cube((5, 5, 5), (15, 15, 15))
    assert dice(a, cube((10, 5, 5), (20, 15, 15))) == pytest.approx(0.5)       # 500 / 1000 shared
    assert dice(a, cube((10, 10, 5), (20, 20, 15))) == pytest.approx(0.25)     # 250 / 1000
    assert dice(a, cube((5, 5, 5), (10, 15, 15))) == pytest.approx(2 * 500 / 1500)   # a half-cube inside
    assert dice(a, a) == 1.0 and dice(a, cube((20, 20, 20), (25, 25, 25))) == 0.0
    assert dice(a.astype(np.uint8) * 2, a) == 1.0                              # any non-zero is foreground


def test_dice_of_empty_masks():
    empty = np.zeros(SHAPE, bool)
    assert np.isnan(dice(empty, empty))                                        # empty slices do not count
    assert dice(empty, empty, empty=1.0) == 1.0
    assert dice(empty, cube((0, 0, 0), (2, 2, 2))) == 0.0
    with pytest.raises(ValueError, match="shape"):
        dice(empty, empty[:-1])


def test_dice_per_slice():
    ref = cube((0, 0, 0), (4, 4, 2), (10, 10, 4))       # 16 voxels on slices 0 and 1
    pred = cube((0, 0, 1), (4, 2, 3), (10, 10, 4))      # 8 voxels on slices 1 and 2
    d = dice_per_slice(ref, pred)
    assert d.shape == (4,)
    assert d[0] == 0 and d[1] == pytest.approx(2 * 8 / (16 + 8)) and d[2] == 0 and np.isnan(d[3])
    assert dice_per_slice(ref, pred, empty=0.0)[3] == 0.0
    along0 = dice_per_slice(ref, pred, axis=0)          # slices 0-3 along axis 0: 2 * 2 / (8 + 4)
    assert np.allclose(along0[:4], 1 / 3) and np.isnan(along0[4:]).all()
    assert np.nanmean(d) == pytest.approx((0 + 2 / 3 + 0) / 3)


# --- HD95 ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("axis, shift, spacing, expected", [
    (0, 4, (1, 1, 1), 4.0),
    (0, 4, (0.5, 1, 1), 2.0),          # the shift runs along the 0.5 mm axis
    (2, 2, (0.5, 0.5, 3), 6.0),        # two 3 mm slices
])
def test_hd95_of_offset_cubes_is_the_shift_in_mm(axis, shift, spacing, expected):
    """Two 10-voxel cubes offset along one axis: every surface distance is at most the shift, and the
    two back faces (>= 20 % of all surface voxels) are exactly the shift away, so HD95 = shift in mm."""
    a = cube((8, 8, 8), (18, 18, 18))
    b = np.roll(a, shift, axis=axis)
    assert hausdorff95(a, b, spacing) == pytest.approx(expected)
    a_to_b, b_to_a = surface_distances(a, b, spacing)
    assert len(a_to_b) == len(b_to_a) == 1000 - 512 and max(a_to_b.max(), b_to_a.max()) == pytest.approx(expected)


def test_hd95_of_single_voxels_uses_anisotropic_spacing():
    a, b = np.zeros(SHAPE, bool), np.zeros(SHAPE, bool)
    a[2, 3, 4] = b[5, 7, 4] = True
    assert hausdorff95(a, b, (1, 1, 1)) == pytest.approx(5.0)                   # 3-4-5
    assert hausdorff95(a, b, (0.5, 2, 3)) == pytest.approx(np.hypot(1.5, 8.0))
    assert hausdorff95(a, a, (1, 1, 1)) == 0.0


@pytest.mark.parametrize("spacing", [(1, 1, 1), (0.5, 0.5, 1.0)])
def test_hd95_of_concentric_spheres_within_one_voxel(spacing):
    """Radii 6 and 10 mm about the same centre: every surface point is 4 mm from the other surface."""
    centre = [23 * s for s in spacing]
    inner, outer = ball(centre, 6, spacing), ball(centre, 10, spacing)
    assert hausdorff95(inner, outer, spacing) == pytest.approx(4.0, abs=max(spacing))


def test_hd95_of_shifted_spheres_matches_the_continuous_value():
    """Spheres of radius r whose centres are s apart: a surface point at cos(angle) = u lies
    |sqrt(r^2 + s^2 - 2 r s u) - r| from the other sphere, with u uniform on [-1, 1] (equal areas)."""
    r, s = 10.0, 4.0
    u = np.linspace(-1, 1, 200001)
    expected = np.percentile(np.abs(np.sqrt(r * r + s * s - 2 * r * s * u) - r), 95)
    a, b = ball((22, 24, 24), r, (1, 1, 1)), ball((26, 24, 24), r, (1, 1, 1))
    assert hausdorff95(a, b, (1, 1, 1)) == pytest.approx(expected, abs=1.0)
    # scaling every voxel size scales the distances exactly
    assert hausdorff95(a, b, (2, 2, 2)) == pytest.approx(2 * hausdorff95(a, b, (1, 1, 1)))


def test_hd95_of_empty_masks_and_the_array_border():
    a = cube((0, 0, 0), (5, 5, 5))                      # touches the border: its border faces are surface
    empty = np.zeros(SHAPE, bool)
    assert np.isnan(hausdorff95(a, empty, (1, 1, 1))) and np.isnan(hausdorff95(empty, a, (1, 1, 1)))
    assert np.isnan(hausdorff95(empty, empty, (1, 1, 1)))
    # the faces on the array's border are surface too: only the 3 x 3 x 3 core is interior
    assert len(surface_distances(a, a, (1, 1, 1))[0]) == 125 - 27
    with pytest.raises(ValueError, match="spacing"):
        hausdorff95(a, a, (1, 1))


# --- volumes ---------------------------------------------------------------------------------------------

def test_volumes_use_the_affine_determinant():
    a = cube((0, 0, 0), (2, 5, 4))                                              # 40 voxels
    assert volume_mm3(a, np.diag([0.5, 0.5, 3.0, 1])) == pytest.approx(40 * 0.75)
    rot = np.eye(4)
    t = np.deg2rad(30)
    rot[:3, :3] = np.array([[np.cos(t), -np.sin(t), 0], [np.sin(t), np.cos(t), 0], [0, 0, 1]]) @ np.diag([-0.5, 0.5, 3])
    assert volume_mm3(a, rot) == pytest.approx(40 * 0.75)                       # rotated, flipped (LAS-like)
    assert volume_mm3(np.zeros(SHAPE, bool), np.eye(4)) == 0.0


def test_relative_volume_error():
    ref = cube((0, 0, 0), (2, 5, 4))
    assert relative_volume_error(ref, cube((0, 0, 0), (1, 5, 4))) == pytest.approx(-0.5)
    assert relative_volume_error(ref, cube((0, 0, 0), (3, 5, 4))) == pytest.approx(0.5)
    assert relative_volume_error(ref, np.zeros(SHAPE, bool)) == -1.0
    assert np.isnan(relative_volume_error(np.zeros(SHAPE, bool), ref))


# --- lesion-wise detection -------------------------------------------------------------------------------

def test_detection_one_hit_one_miss_one_false_positive():
    ref = cube((2, 2, 2), (5, 5, 5)) | cube((20, 20, 20), (23, 23, 23))
    pred = cube((4, 4, 4), (6, 6, 6)) | cube((10, 10, 10), (12, 12, 12))
    r = lesion_detection(ref, pred)
    assert (r["n_ref"], r["n_pred"], r["tp"], r["fp"], r["fn"]) == (2, 2, 1, 1, 1)
    assert r["precision"] == 0.5 and r["recall"] == 0.5 and r["f1"] == 0.5


def test_detection_split_and_merge():
    ref = cube((2, 2, 2), (12, 6, 6))
    split = cube((2, 2, 2), (5, 6, 6)) | cube((8, 2, 2), (12, 6, 6))            # two pieces of one lesion
    r = lesion_detection(ref, split)
    assert (r["tp"], r["tp_pred"], r["fp"], r["fn"], r["f1"]) == (1, 2, 0, 0, 1.0)
    two = cube((2, 2, 2), (5, 6, 6)) | cube((8, 2, 2), (12, 6, 6))
    r = lesion_detection(two, ref)                                              # one prediction over both
    assert (r["n_ref"], r["n_pred"], r["tp"], r["fp"], r["fn"], r["f1"]) == (2, 1, 2, 0, 0, 1.0)
    r = lesion_detection(ref, split | cube((20, 20, 20), (22, 22, 22)))          # plus a false positive
    assert r["precision"] == pytest.approx(2 / 3) and r["recall"] == 1.0 and r["f1"] == pytest.approx(0.8)


def test_detection_connectivity_and_minimum_overlap():
    corner = cube((0, 0, 0), (3, 3, 3)) | cube((3, 3, 3), (6, 6, 6))            # touch at one corner only
    assert lesion_detection(corner, corner)["n_ref"] == 1                      # 26-connected by default
    assert lesion_detection(corner, corner, connectivity=6)["n_ref"] == 2
    assert lesion_detection(corner, corner, connectivity=18)["n_ref"] == 2
    ref = cube((5, 5, 5), (10, 10, 10))
    graze = cube((9, 9, 9), (12, 12, 12))                                       # shares exactly one voxel
    assert lesion_detection(ref, graze)["tp"] == 1
    r = lesion_detection(ref, graze, min_overlap_voxels=2)
    assert (r["tp"], r["fp"], r["fn"]) == (0, 1, 1) and r["f1"] == 0.0
    with pytest.raises(ValueError, match="connectivity"):
        lesion_detection(ref, ref, connectivity=8)
    flat = np.zeros((6, 6), bool)
    flat[0, 0] = flat[1, 1] = True
    assert lesion_detection(flat, flat, connectivity=8)["n_ref"] == 1
    assert lesion_detection(flat, flat, connectivity=4)["n_ref"] == 2


def test_detection_minimum_volume_needs_spacing():
    ref = cube((5, 5, 5), (10, 10, 10))
    pred = ref | cube((20, 20, 20), (21, 21, 22))                               # a 2-voxel speck
    assert lesion_detection(ref, pred)["fp"] == 1
    r = lesion_detection(ref, pred, spacing=(1, 1, 1), min_volume_mm3=3.0)
    assert (r["n_pred"], r["fp"], r["f1"]) == (1, 0, 1.0)
    assert lesion_detection(ref, pred, spacing=(1, 1, 2), min_volume_mm3=3.0)["fp"] == 1   # 4 mm^3 stays
    with pytest.raises(ValueError, match="spacing"):
        lesion_detection(ref, pred, min_volume_mm3=3.0)


def test_detection_empty_cases():
    lesion = cube((2, 2, 2), (5, 5, 5))
    empty = np.zeros(SHAPE, bool)
    r = lesion_detection(empty, empty)
    assert (r["tp"], r["fp"], r["fn"]) == (0, 0, 0) and np.isnan(r["precision"]) and np.isnan(r["recall"])
    assert np.isnan(r["f1"])
    r = lesion_detection(lesion, empty)                                         # all missed
    assert r["fn"] == 1 and r["recall"] == 0.0 and np.isnan(r["precision"]) and r["f1"] == 0.0
    r = lesion_detection(empty, lesion)                                         # nothing to find
    assert r["fp"] == 1 and r["precision"] == 0.0 and np.isnan(r["recall"]) and r["f1"] == 0.0
