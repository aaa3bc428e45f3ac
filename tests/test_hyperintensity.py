"""The hyperintensity rule on a real T2*w image with its manual grey matter: the healthy grey matter made as
bright as on the unseen site is no lesion; SIMULATED grey-matter oedema on it is one."""
import numpy as np
import pytest
from scipy import ndimage

from basicseg.segment.hyperintensity import LESION_CONTRAST_MIN, hyperintense_lesions, lesion_contrasts, tissue


@pytest.fixture(scope="module")
def t2star(spine_public):
    """(image, cord, gm, zooms) of sub-9604's T2*w (0.6 x 0.6 x 3 mm), canonical voxel order."""
    from basicseg.segment.load import load_axial, load_mask
    stem = "sub-9604_run-1_T2starw"
    vol = load_axial(spine_public / "sub-9604" / "anat" / f"{stem}.nii.gz")
    labels = spine_public / "derivatives" / "labels" / "sub-9604" / "anat"
    cord = load_mask(labels / f"{stem}_seg-manual.nii.gz", vol)
    gm = load_mask(labels / f"{stem}_gmseg-manual.nii.gz", vol) & cord
    return vol.data, cord, gm, vol.zooms


def _contrasts(lesion, image, cord, zooms):
    labels, _ = ndimage.label(lesion, structure=np.ones((3, 3, 3), bool))
    return lesion_contrasts(labels, tissue(image, cord, zooms))


def test_bright_healthy_grey_matter_is_no_lesion_and_grey_matter_oedema_is(t2star):
    """On the cord recoloured as bright as its CSF, grey matter 1.3x the white matter (training.contrast), the
    healthy grey matter of four levels reads as bright as the grey matter of the other levels and is dropped;
    a SIMULATED grey-matter-confined lesion (training.patterns, at least 1.5x the cord) is kept whole."""
    from basicseg.training.contrast import bright_cord
    from basicseg.training.patterns import simulate_pattern

    image, cord, gm, zooms = t2star
    bright = bright_cord(image, cord, gm, zooms)
    on = np.flatnonzero(gm.any(axis=(0, 1)))
    middle = on[len(on) // 2 - 2: len(on) // 2 + 2]
    false = np.zeros_like(gm)
    false[:, :, middle] = gm[:, :, middle]
    [healthy] = _contrasts(false, bright, cord, zooms)
    assert abs(healthy) < LESION_CONTRAST_MIN
    assert not hyperintense_lesions(false, tissue(bright, cord, zooms)).any()

    sim = simulate_pattern(bright, cord, gm, zooms, "gm", False, np.random.default_rng(3))
    assert sim.lesion.any() and (sim.lesion & ~gm).sum() == 0
    oedema = _contrasts(sim.lesion, sim.image, cord | sim.lesion, zooms)      # one contrast per focus
    assert (oedema > 2 * LESION_CONTRAST_MIN).all()
    kept = hyperintense_lesions(sim.lesion, tissue(sim.image, cord | sim.lesion, zooms))
    assert (kept == sim.lesion).all()


def test_a_lesion_over_the_whole_cord_cannot_be_judged_and_is_kept(t2star):
    image, cord, gm, zooms = t2star
    assert np.isnan(_contrasts(gm, image, cord, zooms)).all()
    assert (hyperintense_lesions(gm, tissue(image, cord, zooms)) == gm).all()


def test_noise_alone_reads_no_contrast():
    """A uniform noisy cord: any region of it reads ~0 however small, because the reference's brightest voxels
    are chosen on the smoothed image (chosen on the noise itself they would read ~1.4 sigma high)."""
    rng = np.random.default_rng(0)
    shape, zooms = (40, 40, 40), (0.5, 0.5, 1.0)
    I, J, _ = np.indices(shape)
    cord = np.broadcast_to(((I - 20) ** 2 + (J - 20) ** 2 <= 64)[:, :, :1], shape) | np.zeros(shape, bool)
    image = (100 + 15 * rng.standard_normal(shape)).astype(np.float32)
    small = np.zeros(shape, bool)
    small[19:22, 19:22, 18:22] = True                  # 5 % of the interior on its slices
    [contrast] = _contrasts(small, image, cord, zooms)
    assert abs(contrast) < LESION_CONTRAST_MIN
    assert hyperintense_lesions(small, tissue(image, cord, zooms), None) is small
