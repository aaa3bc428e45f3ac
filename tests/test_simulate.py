"""The contusion-lesion simulator on real images with their manual cord masks."""
import nibabel as nib
import numpy as np
import pytest

from basicseg.labels import find_reference
from basicseg.load import load_axial, load_mask
from basicseg.simulate import UNCHANGED_WEIGHT, simulate_lesion, simulate_lesion_nifti

IMAGES = ["sub-errsm11/anat/sub-errsm11_T2w.nii.gz",          # 1 mm 3D, PSR on disk
          "sub-9418/anat/sub-9418_run-1_T2starw.nii.gz"]      # 0.5 x 0.5 x 3 mm axial, LAS on disk


@pytest.fixture(scope="module", params=IMAGES)
def real(request, spine_public):
    path = spine_public / request.param
    vol = load_axial(path)
    return path, vol, load_mask(find_reference(path, "cord"), vol)


def test_lesion_inside_cord_brighter_and_local(real):
    _, vol, cord = real
    img, lesion, p = simulate_lesion(vol.data, cord, vol.zooms, 5, swelling=0.0, haemorrhage=False)
    assert lesion.any() and not (lesion & ~cord).any()
    ks = np.nonzero(lesion.any(axis=(0, 1)))[0]
    spared = cord[:, :, ks] & ~lesion[:, :, ks]
    assert img[lesion].mean() > 1.2 * vol.data[:, :, ks][spared].mean()
    # beyond the spindle's tips plus three edge widths nothing changed, bit for bit
    reach = int(np.ceil((p.length_mm / 2 + 3 * p.edge_mm) / vol.zooms[2]))
    far = np.ones(cord.shape, bool)
    far[:, :, max(0, ks.min() - reach):ks.max() + reach + 1] = False
    assert np.array_equal(img[far], vol.data[far])
    changed = img != vol.data
    assert changed.sum() < 20 * lesion.sum()


def test_mask_is_where_the_weight_reaches_half(real):
    """The exact mask: voxels changed by at least half the way to the lesion signal are in the mask."""
    _, vol, cord = real
    img, lesion, p = simulate_lesion(vol.data, cord, vol.zooms, 11, swelling=0.0, haemorrhage=False, contrast=1.0)
    ks = np.nonzero(lesion.any(axis=(0, 1)))[0]
    target = np.median(vol.data[:, :, ks][cord[:, :, ks]]) * 2.0
    with np.errstate(invalid="ignore", divide="ignore"):
        weight = (img - vol.data) / (target - vol.data)
    inside = cord & np.isfinite(weight) & (np.abs(target - vol.data) > 1e-3 * target)
    assert np.all(weight[lesion & inside] >= 0.5 - 1e-3)
    assert np.all(weight[~lesion & inside] < 0.5 + 1e-3)


def test_haemorrhage_is_darker_and_swelling_stays_in_cord(real):
    _, vol, cord = real
    plain, les_plain, _ = simulate_lesion(vol.data, cord, vol.zooms, 2, haemorrhage=False, swelling=0.0)
    haem, les_haem, p = simulate_lesion(vol.data, cord, vol.zooms, 2, haemorrhage=True, swelling=0.0,
                                        haemorrhage_contrast=0.6)
    assert p.haemorrhage and haem[les_haem].min() < plain[les_plain].min()
    swollen, les_sw, p = simulate_lesion(vol.data, cord, vol.zooms, 2, swelling=0.2)
    assert les_sw.any() and p.swelling == 0.2


def test_length_follows_the_parameters(real):
    _, vol, cord = real
    _, lesion, p = simulate_lesion(vol.data, cord, vol.zooms, 4, length_mm=20.0, swelling=0.0, edge_mm=0.5)
    ks = np.nonzero(lesion.any(axis=(0, 1)))[0]
    length = (ks.max() - ks.min() + 1) * vol.zooms[2]
    assert abs(length - 20.0) <= 0.5 * 20.0 + vol.zooms[2]        # the raised-cosine tips fall below 0.5


def test_seeded(real):
    _, vol, cord = real
    a = simulate_lesion(vol.data, cord, vol.zooms, 9)
    b = simulate_lesion(vol.data, cord, vol.zooms, 9)
    c = simulate_lesion(vol.data, cord, vol.zooms, 10)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1]) and a[2] == b[2]
    assert not np.array_equal(a[1], c[1])


def test_nifti_wrapper_keeps_the_input_grid(real):
    path, vol, cord = real
    img = nib.load(path)
    ref = nib.load(find_reference(path, "cord"))
    out, lesion, info = simulate_lesion_nifti(img, ref, 3)
    assert out.shape == img.shape == lesion.shape
    assert np.allclose(out.affine, img.affine) and np.allclose(lesion.affine, img.affine)
    les = np.asanyarray(lesion.dataobj) > 0
    assert les.any() and not (les & ~(np.asanyarray(ref.dataobj) > 0.5)).any() or info["swelling"] > 0
    assert info["simulated"] and info["lesion_volume_mm3"] == pytest.approx(les.sum() * np.prod(vol.zooms))


def test_empty_cord_is_refused():
    with pytest.raises(ValueError, match="empty"):
        simulate_lesion(np.zeros((8, 8, 8)), np.zeros((8, 8, 8), bool), (1, 1, 1), 0)
