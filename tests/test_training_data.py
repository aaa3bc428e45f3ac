"""Training pairs on real demo images: the clinical patterns inside the cord label, lesion-free negatives,
domain randomisation that keeps the masks, and hard-negative mining."""
from __future__ import annotations

import numpy as np
import pytest

from basicseg.training import augment, data
from basicseg.training.data import crop_to_cord, load_examples, prepare_variants
from basicseg.training.samplers import BoxSampler, mine_hard_negatives


@pytest.fixture(scope="module")
def examples(demo_dataset):
    """sub-unf01 (T2w, 1 mm 3D) and sub-9418 (T2*w), cut to the cord, with their grey matter."""
    found = load_examples(demo_dataset, ("T2w", "T2starw"), {"sub-unf01", "sub-9418"}, with_gm=True)
    return [crop_to_cord(e) for e in found]


def test_grey_matter_prior_lies_inside_the_cord_on_every_cord_slice(examples):
    for e in examples:
        assert e.gm_source.startswith("atlas prior") and not (e.gm & ~e.cord).any()
        on_cord = e.cord.any(axis=(0, 1))
        assert e.gm[:, :, on_cord].any(axis=(0, 1)).all()
        assert 0.05 < e.gm.sum() / e.cord.sum() < 0.4      # the cervical GM is 10-25 % of the section


def test_cut_keeps_the_cord_and_moves_the_affine(examples, demo_dataset):
    full = load_examples(demo_dataset, ("T2w",), {"sub-unf01"})[0]
    cut = [e for e in examples if e.subject == "sub-unf01"][0]
    assert cut.cord.sum() == full.cord.sum() and cut.volume.data.shape[2] == full.volume.data.shape[2]
    ii, jj, kk = np.argwhere(cut.cord)[0]
    world_cut = cut.volume.affine @ [ii, jj, kk, 1]
    i0 = np.argwhere(full.cord)[0]
    np.testing.assert_allclose(world_cut, full.volume.affine @ [*i0, 1], atol=1e-4)


def test_cord_networks_learn_the_lesions_as_cord(examples):
    rng = np.random.default_rng(0)
    e = examples[0]
    prepare_variants(e, "cord", rng)
    with_lesion = [v for v in e.variants if v.lesion is not None]
    assert len(with_lesion) >= data.CORD_LESION_VARIANTS
    for v in with_lesion:
        assert v.lesion.any() and not (v.lesion & ~v.target).any()       # the lesion is inside the cord label
        assert (v.target == v.cord).all()


def test_lesion_networks_get_every_kind_and_lesion_free_volumes(examples, monkeypatch):
    rng = np.random.default_rng(1)
    kinds = {data.draw_lesion_kind(rng)[0] for _ in range(200)}
    assert kinds == set(data.LESION_KINDS)
    e = examples[1]
    prepare_variants(e, "lesion", rng, lesions=4)
    healthy = [v for v in e.variants if v.lesion is None]
    assert healthy and all(not v.target.any() for v in healthy)
    assert all(v.target.any() and (v.target == v.lesion).all() for v in e.variants if v.lesion is not None)


def test_tissue_contrast_changes_the_classes_not_the_geometry():
    rng = np.random.default_rng(2)
    ii, jj = np.meshgrid(np.arange(128), np.arange(128), indexing="ij")
    r = np.hypot(ii - 64, jj - 64)
    cord, gm = (r < 25)[None], (r < 8)[None]
    box = np.where(r < 25, 0.3, np.where(r < 40, 0.9, 0.1)).astype(np.float32)[None]
    ratios = []
    for _ in range(40):
        out = augment.tissue_contrast(rng, box, cord, gm)
        assert out.shape == box.shape and 0 <= out.min() and out.max() <= 1
        ratios.append(out[0][(r > 12) & (r < 20)].mean() / out[0][(r > 28) & (r < 36)].mean())
    # the cord-to-CSF contrast is randomised: from far below the original 1/3 to near (or above) one
    assert min(ratios) < 0.3 and max(ratios) > 0.8


def test_hard_negatives_are_the_boxes_the_network_scores_highest(examples):
    rng = np.random.default_rng(3)
    for e in examples:
        prepare_variants(e, "lesion", rng, lesions=1)
    sampler = BoxSampler(examples, "lesion", rng)

    def brightest(x):       # a stand-in network: "lesion" where the box is bright
        return x[..., 0]

    mine_hard_negatives(brightest, sampler, 8)
    x, y = sampler.hard
    assert x.shape == (8, 128, 128, 1) and not y.any()                    # negatives only
    pool, _ = sampler.sample(64, lesion_free=True)
    assert x.reshape(8, -1).max(axis=1).min() >= np.median(pool.reshape(64, -1).max(axis=1)) - 1e-6
    batch, labels = sampler.sample(32)
    assert sum(any(np.array_equal(b, h) for h in x) for b in batch) == 8  # they are in the next batches


def test_bright_cord_contrast_puts_the_cord_near_its_csf(demo_t2star):
    """basicseg.training.contrast: the white matter at 0.9 x the CSF ring's median, the grey matter 1.3 x
    brighter, nothing changed far from the cord."""
    from scipy import ndimage

    from basicseg.training.contrast import CORD_TO_CSF, CSF_RING_MM, GM_TO_WM, bright_cord

    volume, cord = demo_t2star
    zooms = volume.zooms
    inside = np.zeros(cord.shape)        # mm from the cord's edge, per slice (in: > 0, out: < 0)
    for k in np.flatnonzero(cord.any(axis=(0, 1))):
        inside[:, :, k] = (ndimage.distance_transform_edt(cord[:, :, k], sampling=zooms[:2])
                           - ndimage.distance_transform_edt(~cord[:, :, k], sampling=zooms[:2]))
    gm = inside > 2.5                    # a GM stand-in: the cord's core
    out = bright_cord(volume.data, cord, gm, zooms)
    ring = cord.any(axis=(0, 1))[None, None, :] & (inside < 0) & (inside >= -CSF_RING_MM)
    wm = (inside > 0.8) & (inside < 1.5)             # white matter clear of the soft edges
    assert np.median(out[wm]) / np.median(out[ring]) == pytest.approx(CORD_TO_CSF, rel=0.2)
    assert np.median(out[inside > 3.2]) / np.median(out[wm]) == pytest.approx(GM_TO_WM, rel=0.15)
    far = ndimage.distance_transform_edt(~cord) * zooms[0] > 10
    np.testing.assert_allclose(out[far], volume.data[far], rtol=1e-5)


def test_a_partly_labelled_image_is_recoloured_on_its_labelled_slices_only(examples):
    """bright-cord cuts the image to the slices its cord mask covers: a slice the mask misses could not be
    recoloured, and the networks would read its native contrast as the normal cord. The affine follows the cut."""
    from dataclasses import replace

    from basicseg.training.contrast import with_contrast

    e = [e for e in examples if e.subject == "sub-9418"][0]
    cord = e.cord.copy()
    cord[:, :, :3] = cord[:, :, -2:] = False          # labelled on slices 3..n-3
    partial = replace(e, cord=cord)
    out = with_contrast(partial, "bright-cord")
    n = e.cord.shape[2]
    assert out.volume.data.shape[2] == out.cord.shape[2] == out.gm.shape[2] == n - 5
    assert out.cord.any(axis=(0, 1)).all()
    np.testing.assert_allclose(out.volume.affine @ [0, 0, 0, 1], e.volume.affine @ [0, 0, 3, 1])
    assert with_contrast(e, "bright-cord").volume.data.shape == e.volume.data.shape   # labelled throughout
