"""Geometry: canonical round trips, the axial decision, and crop -> back-projection round trips."""
import nibabel as nib
import numpy as np
import pytest

from basicseg.segment.centerline import centres_from_mask, smooth_path
from basicseg.segment.crop import MATRIX, crop_slices
from basicseg.segment.backproject import uncrop_slices
from basicseg.errors import DATA_ERR, BasicsegError
from basicseg.references import find_reference
from basicseg.segment.load import axial_problem, load_axial, load_mask


def dice(a, b):
    return 2 * np.logical_and(a, b).sum() / (a.sum() + b.sum())


def rotation(axis, degrees):
    t = np.deg2rad(degrees)
    c, s = np.cos(t), np.sin(t)
    m = np.eye(3)
    i, j = [a for a in range(3) if a != axis]
    m[i, i], m[i, j], m[j, i], m[j, j] = c, -s, s, c
    return m


def phantom(zooms, rot=np.eye(3), codes="RAS", shape=(96, 96, 24), radius_mm=(4.5, 3.5)):
    """An elliptic cylinder 'cord' along the third voxel axis, meandering slowly, saved in ``codes`` order."""
    ii, jj, kk = np.meshgrid(*[np.arange(s) for s in shape], indexing="ij")
    ci = shape[0] / 2 + 6 * np.sin(kk / shape[2] * np.pi) / zooms[0]
    cj = shape[1] / 2 + 3 * np.cos(kk / shape[2] * np.pi) / zooms[1]
    mask = ((ii - ci) * zooms[0] / radius_mm[0]) ** 2 + ((jj - cj) * zooms[1] / radius_mm[1]) ** 2 <= 1
    affine = np.eye(4)
    affine[:3, :3] = rot @ np.diag(zooms)
    affine[:3, 3] = [-20, 10, -50]
    img = nib.Nifti1Image(mask.astype(np.uint8), affine)
    # re-store the same voxels in another orientation, as scanners do
    target = nib.orientations.axcodes2ornt(codes)
    ornt = nib.orientations.ornt_transform(nib.orientations.io_orientation(affine), target)
    return img.as_reoriented(ornt)


@pytest.mark.parametrize("codes", ["RAS", "LAS", "PSR", "LPS", "IRP"])
def test_canonical_round_trip_is_exact(tmp_path, codes):
    img = phantom((1.0, 1.0, 1.0), codes=codes)
    path = tmp_path / "img.nii.gz"
    nib.save(img, path)
    vol = load_axial(path)
    assert np.array_equal(vol.to_native(vol.data), np.asanyarray(img.dataobj))
    assert nib.aff2axcodes(vol.affine) == ("R", "A", "S")


def test_thick_sagittal_is_refused_with_the_file_named(tmp_path):
    img = phantom((4.0, 0.5, 0.5), codes="RAS")    # 4 mm along L-R: sagittal slices
    assert "sagittal" in axial_problem(img)
    path = tmp_path / "sag.nii.gz"
    nib.save(img, path)
    with pytest.raises(BasicsegError) as err:
        load_axial(path)
    assert err.value.code == DATA_ERR and "sag.nii.gz" in str(err.value)


@pytest.mark.parametrize("zooms,rot", [
    ((0.5, 0.5, 3.0), np.eye(3)),                                        # anisotropic axial
    ((0.43, 0.43, 4.0), rotation(0, 12) @ rotation(2, 20)),              # oblique and anisotropic
    ((1.0, 1.0, 1.0), rotation(1, 8)),                                    # oblique 3D
    ((0.8, 0.6, 5.0), rotation(2, -30)),                                  # non-square pixels
])
def test_crop_backproject_round_trip(tmp_path, zooms, rot):
    img = phantom(zooms, rot, codes="LPS")
    path = tmp_path / "p.nii.gz"
    nib.save(img, path)
    vol = load_axial(path)
    mask = vol.data > 0.5
    centres = smooth_path(centres_from_mask(mask), vol.zooms)
    boxes = crop_slices(mask.astype(np.float32), vol.zooms, centres)
    assert boxes.shape == (mask.shape[2], MATRIX, MATRIX)
    back = uncrop_slices(boxes, mask.shape, vol.zooms, centres) > 0.5
    assert dice(mask, back) >= 0.98
    # and onto the native grid of the file as stored
    assert dice(vol.to_native(back), np.asanyarray(img.dataobj) > 0) >= 0.98


@pytest.mark.parametrize("image", ["sub-errsm11/anat/sub-errsm11_T2w.nii.gz",
                                   "sub-unf01/anat/sub-unf01_T2w.nii.gz",
                                   "sub-9418/anat/sub-9418_run-1_T2starw.nii.gz"])
def test_real_manual_masks_round_trip(demo_dataset, image):
    path = demo_dataset / image
    vol = load_axial(path)
    mask = load_mask(find_reference(path, "cord"), vol)
    centres = smooth_path(centres_from_mask(mask), vol.zooms)
    back = uncrop_slices(crop_slices(mask.astype(np.float32), vol.zooms, centres), mask.shape, vol.zooms,
                         centres) > 0.5
    assert dice(mask, back) >= 0.98


def test_box_is_the_papers_box():
    """26 mm box at 0.2 mm: 128 x 0.2 = 25.6 mm; a 10 mm bar spans 50 box pixels."""
    data = np.zeros((100, 100, 3), np.float32)
    data[45:55, :, :] = 1                          # 10 voxels of 1 mm along i
    boxes = crop_slices(data, (1.0, 1.0, 1.0), np.array([[49.5, 49.5]] * 3), order=0)
    assert abs(boxes[0].sum(axis=0).mean() - 50) <= 1


def test_centreline_rejects_outliers_and_fills_gaps():
    z = np.arange(30)
    centres = np.stack([50 + 0.2 * z, 40 + 0.1 * z], 1).astype(float)
    centres[10] = [90, 90]                         # a false detection far away
    centres[20:23] = np.nan                        # nothing found
    path = smooth_path(centres, (0.5, 0.5, 3.0))
    truth = np.stack([50 + 0.2 * z, 40 + 0.1 * z], 1)
    assert np.abs(path - truth).max() < 1.0


def test_no_cord_anywhere_is_a_clear_error():
    with pytest.raises(BasicsegError, match="no spinal cord"):
        smooth_path(np.full((5, 2), np.nan), (1, 1, 1))
