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
    kept, least = hyperintense_lesions(false, tissue(bright, cord, zooms))
    assert not kept.any() and np.isnan(least)

    sim = simulate_pattern(bright, cord, gm, zooms, "gm", False, np.random.default_rng(3))
    assert sim.lesion.any() and (sim.lesion & ~gm).sum() == 0
    # judged as the pipeline does, on the cord mask before the lesion is added to it
    oedema = _contrasts(sim.lesion, sim.image, cord, zooms)      # one contrast per focus
    assert (oedema > 2 * LESION_CONTRAST_MIN).all()
    kept, least = hyperintense_lesions(sim.lesion, tissue(sim.image, cord, zooms))
    assert (kept == sim.lesion).all() and least == pytest.approx(oedema.min())
    # negative intensities (a scanner's offset) change nothing: the image is read as a magnitude
    [shifted] = _contrasts(false, bright - bright[cord].max() - 100.0, cord, zooms)
    assert abs(shifted) < LESION_CONTRAST_MIN


def test_a_lesion_over_the_whole_cord_cannot_be_judged_and_is_kept(t2star):
    image, cord, gm, zooms = t2star
    assert np.isnan(_contrasts(gm, image, cord, zooms)).all()
    kept, least = hyperintense_lesions(gm, tissue(image, cord, zooms))
    assert (kept == gm).all() and np.isnan(least)


def test_noise_alone_reads_no_contrast():
    """A uniform noisy cord: any region of it reads ~0 however small, because the reference's brightest voxels
    are chosen on the smoothed image (chosen on the noise itself they would read ~2 sigma high)."""
    rng = np.random.default_rng(0)
    shape, zooms = (40, 40, 40), (0.5, 0.5, 1.0)
    I, J, _ = np.indices(shape)
    cord = np.broadcast_to(((I - 20) ** 2 + (J - 20) ** 2 <= 64)[:, :, :1], shape) | np.zeros(shape, bool)
    image = (100 + 15 * rng.standard_normal(shape)).astype(np.float32)
    small = np.zeros(shape, bool)
    small[19:22, 19:22, 18:22] = True                  # 5 % of the interior on its slices
    [contrast] = _contrasts(small, image, cord, zooms)
    assert abs(contrast) < LESION_CONTRAST_MIN
    kept, least = hyperintense_lesions(small, tissue(image, cord, zooms), None)       # the rule off: measured only
    assert kept is small and least == pytest.approx(contrast)


def test_the_reference_slices_lie_beyond_the_gap_and_within_reach():
    """3 mm of gap and 20 mm of reach, in mm, whatever the float32 slice spacing: on 0.6 mm slices the slice
    exactly 3 mm away is excluded, the one exactly 20 mm away included."""
    from basicseg.segment.hyperintensity import REFERENCE_GAP_MM, REFERENCE_MM, _within_reach
    for spacing in (np.float32(0.6), np.float32(0.8), 1.0, 3.0):
        slices = np.arange(0, 200)
        lesion_first = lesion_last = 100
        near = slices[_within_reach(slices, lesion_first, lesion_last, float(spacing))]
        away = np.abs(near - 100) * float(spacing)
        assert away.min() > REFERENCE_GAP_MM * (1 - 1e-6) and away.max() <= REFERENCE_MM * (1 + 1e-6)
        assert np.isclose(away.max(), REFERENCE_MM, rtol=0.2) and (away > REFERENCE_GAP_MM + 1e-4 * spacing).all()
        assert len(near) == 2 * (int(np.floor(REFERENCE_MM / float(spacing) + 1e-3))
                                 - int(np.floor(REFERENCE_GAP_MM / float(spacing) + 1e-3)))


def test_the_pipeline_drops_the_faint_component_and_qc_reads_what_it_judged(t2star):
    """postprocess: the healthy bright grey matter of four levels and a SIMULATED GM lesion ten levels away,
    both found by the "network"; the first is dropped, the second kept, and the QC summary's lesion contrast is
    the rule's own figure for the lesion kept, so lesion_not_hyperintense is not raised."""
    from types import SimpleNamespace
    from basicseg.measure.confidence import confidence_flags, confidence_summary
    from basicseg.segment.pipeline import postprocess
    from basicseg.training.contrast import bright_cord
    from basicseg.training.patterns import simulate_pattern

    image, cord, gm, zooms = t2star
    bright = bright_cord(image, cord, gm, zooms)
    sim = simulate_pattern(bright, cord, gm, zooms, "gm", False, np.random.default_rng(5), centre_slice=14,
                           length_mm=9.0, n_extra_foci=0)
    false = np.zeros_like(gm)
    false[:, :, 2:6] = gm[:, :, 2:6]
    assert not (false & sim.lesion).any()
    models = SimpleNamespace(cord=SimpleNamespace(threshold=0.5),
                             lesion=SimpleNamespace(threshold=0.7, min_volume_mm3=10.0, extent_threshold=0.7,
                                                    min_contrast=LESION_CONTRAST_MIN))
    volume = SimpleNamespace(data=sim.image, zooms=zooms)
    cord_prob = np.where(cord, 0.95, 0.02)
    lesion_prob = np.where(false | sim.lesion, 0.9, 0.01)
    cord_out, lesion, contrast = postprocess(volume, models, cord_prob, lesion_prob, {})
    assert (lesion == sim.lesion).all() and contrast > 2 * LESION_CONTRAST_MIN
    summary = confidence_summary(cord_prob, cord_out, lesion_prob, lesion, zooms, sim.image, contrast)
    assert summary["lesion_min_contrast"] == contrast
    assert "lesion_not_hyperintense" not in confidence_flags(summary)


@pytest.mark.parametrize("in_plane_mm", [0.5, 1.0])
def test_healthy_grey_matter_is_no_lesion_at_1_mm_in_plane(in_plane_mm):
    """A cord with brighter grey matter and bright CSF round it (T2), on a 0.5 and a 1 mm grid (spine-generic's
    T2w is 0.8-1 mm): two levels of its healthy grey matter read as bright as the grey matter elsewhere. At 1 mm
    a voxel one voxel in from the cord's edge touches the CSF diagonally; were it core, its neighbours' mean
    would rank it as the brightest, the reference would be white matter, and the grey matter a lesion (0.11)."""
    rng = np.random.default_rng(1)
    fov_mm, zooms = 24.0, (in_plane_mm, in_plane_mm, 3.0)
    n = int(round(fov_mm / in_plane_mm))
    x, y = (np.indices((n, n)) + 0.5) * in_plane_mm - fov_mm / 2
    section = (x / 5.0) ** 2 + (y / 3.5) ** 2 <= 1                   # 10 x 7 mm, a cervical cord
    grey = section & ((x / 2.5) ** 2 + (y / 1.5) ** 2 <= 1)
    csf = ~section & ((x / 7.0) ** 2 + (y / 5.5) ** 2 <= 1)
    plane = np.where(grey, 130.0, np.where(section, 100.0, np.where(csf, 300.0, 20.0)))
    shape = (n, n, 20)
    image = (plane[:, :, None] + 3.0 * rng.standard_normal(shape)).astype(np.float32)
    cord = np.repeat(section[:, :, None], 20, axis=2)
    false = np.zeros(shape, bool)
    false[:, :, 9:11] = grey[:, :, None]
    [contrast] = _contrasts(false, image, cord, zooms)
    assert abs(contrast) < LESION_CONTRAST_MIN / 2
    kept, _ = hyperintense_lesions(false, tissue(image, cord, zooms))
    assert not kept.any()
