"""The contusion-lesion simulator, on real images with their manual cord masks (the demo's crops of
spine-public, so a plain clone runs them): sub-errsm11 T2w (1 mm isotropic, PSR on disk) and sub-9418
run-1 T2*w (0.5 x 0.5 x 3 mm, LAS on disk)."""
import json

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

from basicseg.training import simulate as sim_mod
from basicseg.training.simulate import LesionParams, sample_params, simulate_lesion, simulate_lesion_detailed, simulate_lesion_nifti

IMAGES = {
    "errsm11": ("sub-errsm11/anat/sub-errsm11_T2w.nii.gz",
                "derivatives/labels/sub-errsm11/anat/sub-errsm11_T2w_seg-manual.nii.gz", ("P", "S", "R")),
    "9418": ("sub-9418/anat/sub-9418_run-1_T2starw.nii.gz",
             "derivatives/labels/sub-9418/anat/sub-9418_run-1_T2starw_seg-manual.nii.gz", ("L", "A", "S")),
}


class Case:
    def __init__(self, root, key):
        image, label, self.axcodes = IMAGES[key]
        self.img, self.ref = nib.load(root / image), nib.load(root / label)
        canon = nib.as_closest_canonical(self.img)
        self.data = canon.get_fdata(dtype=np.float32)
        self.cord = nib.as_closest_canonical(self.ref).get_fdata() > 0.5
        self.zooms = tuple(float(z) for z in np.linalg.norm(canon.affine[:3, :3], axis=0))   # as basicseg.segment.load
        ks = np.flatnonzero(self.cord.any(axis=(0, 1)))
        self.mid = int(ks[len(ks) // 2])


@pytest.fixture(scope="module", params=sorted(IMAGES))
def case(request, demo_dataset):
    return Case(demo_dataset, request.param)


def run(case, seed, **kw):
    return simulate_lesion_detailed(case.data, case.cord, case.zooms, seed, **kw)


def extent_mm(lesion, dz):
    ks = np.flatnonzero(lesion.any(axis=(0, 1)))
    return (ks.max() - ks.min() + 1) * dz


# --- parameters ----------------------------------------------------------------------------------------

def test_sampled_parameters_stay_in_the_documented_ranges():
    rng = np.random.default_rng(0)
    draws = [sample_params(rng) for _ in range(2000)]

    def within(values, lo_hi):
        return min(values) >= lo_hi[0] and max(values) <= lo_hi[1]

    assert within([p.length_mm for p in draws], sim_mod.LENGTH_MM)
    assert within([p.width_fraction for p in draws], sim_mod.WIDTH_FRACTION)
    assert within([p.contrast for p in draws], sim_mod.CONTRAST)
    assert within([p.edge_mm for p in draws], sim_mod.EDGE_MM)
    assert within([p.haemorrhage_fraction for p in draws], sim_mod.HAEMORRHAGE_FRACTION)
    assert within([p.haemorrhage_contrast for p in draws], sim_mod.HAEMORRHAGE_CONTRAST)
    assert max(np.hypot(*p.offset_fraction) for p in draws) <= sim_mod.OFFSET_FRACTION
    swollen = [p.swelling for p in draws if p.swelling > 0]
    assert within(swollen, sim_mod.SWELLING)
    assert abs(len(swollen) / len(draws) - sim_mod.SWELLING_PROB) < 0.05
    assert abs(np.mean([p.haemorrhage for p in draws]) - sim_mod.HAEMORRHAGE_PROB) < 0.05


def test_overrides_change_only_what_they_name():
    a = sample_params(np.random.default_rng(3))
    b = sample_params(np.random.default_rng(3), length_mm=12.0, haemorrhage=True)
    assert b.length_mm == 12.0 and b.haemorrhage and b.width_fraction == a.width_fraction
    assert b.offset_fraction == a.offset_fraction and b.swelling == a.swelling
    with pytest.raises(TypeError, match="unknown"):
        sample_params(np.random.default_rng(3), size=3)
    with pytest.raises(ValueError, match="length_mm"):
        sample_params(np.random.default_rng(3), length_mm=-1.0)


# --- the lesion on real images ---------------------------------------------------------------------------

@pytest.mark.parametrize("seed", [5, 17])
def test_mask_is_the_weight_half_region_inside_the_cord(case, seed):
    s = run(case, seed, swelling=0.0)
    assert s.lesion.any() and s.lesion.dtype == bool
    assert np.array_equal(s.lesion, s.weight >= 0.5)
    assert not (s.lesion & ~case.cord).any()
    assert np.array_equal(s.cord, case.cord)                     # no swelling: the cord is untouched
    assert s.weight.min() >= 0 and s.weight.max() <= 1
    # every slice of the extent that holds cord holds lesion
    ks = np.flatnonzero(s.lesion.any(axis=(0, 1)))
    assert np.array_equal(ks, np.arange(ks.min(), ks.max() + 1))
    assert s.centre_slice in ks


@pytest.mark.parametrize("seed, edge", [(2, 0.3), (8, 1.5)])
def test_image_unchanged_outside_the_documented_margin(case, seed, edge):
    """Exact guarantee (swelling = 0): voxels with weight 0 are bit-identical, and the weight is 0 farther
    than 3 edge_mm + min(zooms)/2 from the nearest lesion voxel."""
    s = run(case, seed, swelling=0.0, edge_mm=edge)
    assert np.array_equal(s.image[s.weight == 0], case.data[s.weight == 0])
    margin = 3 * edge + min(case.zooms) / 2
    # distances on a box around the lesion (outside it everything must be untouched anyway)
    pad = [int(np.ceil(margin / z)) + 2 for z in case.zooms]
    idx = np.nonzero(s.lesion)
    box = tuple(slice(max(0, i.min() - p), i.max() + p + 1) for i, p in zip(idx, pad))
    dist = ndimage.distance_transform_edt(~s.lesion[box], sampling=case.zooms)
    far = np.ones(case.data.shape, bool)
    far[box] = dist > margin + 1e-6
    assert np.array_equal(s.image[far], case.data[far]) and not s.weight[far].any()
    changed = s.image != case.data
    assert changed.any() and not (changed & far).any()


def test_lesion_is_brighter_than_the_spared_cord(case):
    s = run(case, 11, swelling=0.0, haemorrhage=False, contrast=1.0, width_fraction=0.8, edge_mm=0.5,
            offset_fraction=(0.0, 0.0))
    ks = np.flatnonzero(s.lesion.any(axis=(0, 1)))
    spared = case.cord[:, :, ks] & ~s.lesion[:, :, ks]
    assert s.image[s.lesion].mean() > 1.3 * s.image[:, :, ks][spared].mean()
    # on the plateau (weight ~1) the local signal is the documented cord signal x (1 + contrast)
    plateau = s.weight > 0.98
    assert plateau.sum() >= 10
    assert s.image[plateau].mean() == pytest.approx(2.0 * s.cord_signal, rel=0.1)
    assert s.cord_signal == pytest.approx(np.median(case.data[:, :, ks][case.cord[:, :, ks]]))
    assert s.image[plateau].std() > 0                           # texture (noise) is kept, not flattened


def test_haemorrhagic_core_is_darker_and_inside_the_lesion(case):
    kw = dict(swelling=0.0, width_fraction=0.8, haemorrhage_fraction=0.5, haemorrhage_contrast=0.6,
              length_mm=20.0, centre_slice=case.mid)
    plain = run(case, 2, haemorrhage=False, **kw)
    haem = run(case, 2, haemorrhage=True, **kw)
    assert np.array_equal(plain.lesion, haem.lesion)             # the core does not change the mask
    core = haem.haemorrhage
    assert core.any() and not (core & ~haem.lesion).any() and not plain.haemorrhage.any()
    rim = haem.lesion & ~ndimage.binary_dilation(core, iterations=2)
    assert haem.image[core].mean() < haem.cord_signal < haem.image[rim].mean()
    assert haem.image[core].mean() < plain.image[core].mean() - 0.5 * haem.cord_signal


def test_swelling_dilates_the_cord_and_the_lesion_stays_inside_it(case):
    s = run(case, 2, swelling=0.2, length_mm=20.0, centre_slice=case.mid)
    k = s.centre_slice
    assert s.cord[:, :, k].sum() == pytest.approx(1.2 ** 2 * case.cord[:, :, k].sum(), rel=0.15)
    assert np.array_equal(s.lesion, s.weight >= 0.5) and not (s.lesion & ~s.cord).any()
    # the warp is local: slices beyond the lesion's extent plus the edge margin and everything beyond
    # 3 cord radii from the centroid are bit-identical
    reach = int(np.ceil((s.params.length_mm / 2 + 3 * s.params.edge_mm + min(case.zooms)) / case.zooms[2]))
    changed = s.image != case.data
    ks = np.flatnonzero(changed.any(axis=(0, 1)))
    assert ks.min() >= k - reach and ks.max() <= k + reach
    ci, cj = ndimage.center_of_mass(case.cord[:, :, k])
    radius = np.sqrt(case.cord[:, :, k].sum() * case.zooms[0] * case.zooms[1] / np.pi)
    ii, jj = np.nonzero(changed[:, :, k])
    assert np.hypot((ii - ci) * case.zooms[0], (jj - cj) * case.zooms[1]).max() <= 3 * radius + 2 * max(case.zooms)
    assert np.array_equal(s.cord[:, :, :k - reach], case.cord[:, :, :k - reach])


@pytest.mark.parametrize("length", [6.0, 20.0, 33.0])
def test_length_matches_the_parameter(case, length):
    """Extent = the slices within length/2 of the centre: within one slice thickness of length_mm."""
    _, lesion, p = simulate_lesion(case.data, case.cord, case.zooms, 4, length_mm=length, swelling=0.0,
                                   centre_slice=case.mid)
    assert p.length_mm == length
    assert abs(extent_mm(lesion, case.zooms[2]) - length) <= case.zooms[2]


def test_spindle_follows_the_cord_and_tapers(case):
    s = run(case, 6, swelling=0.0, offset_fraction=(0.0, 0.0), width_fraction=0.7, length_mm=30.0,
            centre_slice=case.mid)
    ks = np.flatnonzero(s.lesion.any(axis=(0, 1)))
    tol = max(case.zooms[:2])
    for k in ks:
        lc = np.array(ndimage.center_of_mass(s.lesion[:, :, k]))
        cc = np.array(ndimage.center_of_mass(case.cord[:, :, k]))
        assert np.hypot(*((lc - cc) * case.zooms[:2])) <= tol, k
    area = s.lesion[:, :, ks].sum(axis=(0, 1))
    centre = int(np.flatnonzero(ks == s.centre_slice)[0])
    assert area[centre] >= 0.8 * area.max() and area[0] < area[centre] and area[-1] < area[centre]
    # at the centre the cross-section is about width_fraction^2 of the cord's
    ratio = area[centre] / case.cord[:, :, s.centre_slice].sum()
    assert ratio == pytest.approx(0.7 ** 2, abs=0.12)
    # an offset moves it: right by 0.3 cord radii (clipped at the cord's edge)
    right = run(case, 6, swelling=0.0, offset_fraction=(0.3, 0.0), width_fraction=0.5, length_mm=30.0,
                centre_slice=case.mid)
    k = case.mid
    shift_mm = (ndimage.center_of_mass(right.lesion[:, :, k])[0] - ndimage.center_of_mass(case.cord[:, :, k])[0])
    radius = np.sqrt(case.cord[:, :, k].sum() * case.zooms[0] * case.zooms[1] / np.pi)
    assert shift_mm * case.zooms[0] == pytest.approx(0.3 * radius, abs=max(case.zooms[:2]))


def test_seeded_and_deterministic(case):
    a = simulate_lesion(case.data, case.cord, case.zooms, 9)
    b = simulate_lesion(case.data, case.cord, case.zooms, 9)
    c = simulate_lesion(case.data, case.cord, case.zooms, 10)
    g = simulate_lesion(case.data, case.cord, case.zooms, np.random.default_rng(9))
    assert a[0].dtype == np.float32 and a[1].dtype == bool
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1]) and a[2] == b[2]
    assert np.array_equal(a[0], g[0]) and a[2] == g[2]
    assert a[2] != c[2] and not np.array_equal(a[1], c[1])
    given = simulate_lesion(case.data, case.cord, case.zooms, 0, params=a[2])
    assert given[2] == a[2]


def test_nifti_wrapper_keeps_the_input_grid(case):
    img, ref = case.img, case.ref
    assert nib.aff2axcodes(img.affine) == case.axcodes
    out, lesion, info = simulate_lesion_nifti(img, ref, 3, swelling=0.0)
    assert out.shape == img.shape == lesion.shape
    assert np.allclose(out.affine, img.affine) and np.allclose(lesion.affine, img.affine)
    assert out.header.get_xyzt_units() == img.header.get_xyzt_units()
    les = np.asanyarray(lesion.dataobj) > 0
    assert les.any() and not (les & ~(np.asanyarray(ref.dataobj) > 0.5)).any()
    # the same simulation as in canonical order, mapped back exactly (permutations and flips only)
    canon_img, canon_les, _ = simulate_lesion(case.data, case.cord, case.zooms, 3, swelling=0.0)
    assert np.array_equal(nib.as_closest_canonical(out).get_fdata(dtype=np.float32), canon_img)
    assert np.array_equal(nib.as_closest_canonical(lesion).get_fdata() > 0, canon_les)
    voxel = abs(np.linalg.det(img.affine[:3, :3]))
    assert info["simulated"] and info["seed"] == 3
    assert info["lesion_volume_mm3"] == pytest.approx(les.sum() * voxel)
    assert abs(info["lesion_length_mm"] - info["length_mm"]) <= case.zooms[2]
    json.dumps(info)
    # with swelling, the lesion lies inside the returned swollen cord (on the input grid too)
    out, lesion, info, cord = simulate_lesion_nifti(img, ref, 3, return_cord=True, swelling=0.2)
    assert cord.shape == img.shape and np.allclose(cord.affine, img.affine)
    les, swollen = np.asanyarray(lesion.dataobj) > 0, np.asanyarray(cord.dataobj) > 0
    assert les.any() and not (les & ~swollen).any()
    assert swollen.sum() > (np.asanyarray(ref.dataobj) > 0.5).sum()


def test_refusals():
    with pytest.raises(ValueError, match="empty"):
        simulate_lesion(np.zeros((8, 8, 8)), np.zeros((8, 8, 8), bool), (1, 1, 1), 0)
    cord = np.zeros((8, 8, 8), bool)
    cord[3:5, 3:5, 2:6] = True
    with pytest.raises(ValueError, match="centre_slice"):
        simulate_lesion(np.ones((8, 8, 8)), cord, (1, 1, 1), 0, centre_slice=0)
    with pytest.raises(ValueError, match="same shape"):
        simulate_lesion(np.ones((8, 8, 7)), cord, (1, 1, 1), 0)
    with pytest.raises(ValueError, match="edge_mm"):
        LesionParams(10, 0.5, (0, 0), 1.0, 0.0, False, 0.3, 0.5, 0.0)


def test_tiny_cord_still_gives_a_lesion_on_every_slice():
    """Thin spindle tips on a tiny cord: the nearest cord voxel keeps each slice of the extent."""
    img = np.full((12, 12, 20), 100.0, np.float32)
    cord = np.zeros(img.shape, bool)
    cord[5:7, 5:7, :] = True
    img[cord] = 50
    out, lesion, p = simulate_lesion(img, cord, (1, 1, 1), 1, length_mm=9.0, width_fraction=0.3, swelling=0.0,
                                     centre_slice=10)
    assert np.array_equal(np.flatnonzero(lesion.any(axis=(0, 1))), np.arange(6, 15))
    assert not (lesion & ~cord).any() and out[lesion].mean() > 50
