"""Augmentation geometry: the oblique-slice stretch and the box transforms it is part of."""
import numpy as np

from basicseg.training import augment
from basicseg.segment.crop import crop_slices


def test_oblique_stretch_is_a_cosine_shrink_along_one_direction(monkeypatch):
    monkeypatch.setattr(augment, "OBLIQUE_PROB", 1.0)
    m = augment.oblique_stretch(np.random.default_rng(0), 500)
    sv = np.linalg.svd(m, compute_uv=False)
    np.testing.assert_allclose(sv[:, 0], 1.0, atol=1e-12)                     # across the tilt: unchanged
    assert (sv[:, 1] >= np.cos(np.deg2rad(augment.OBLIQUE_MAX_DEG)) - 1e-12).all()
    assert sv[:, 1].min() < 0.75 and np.allclose(m, np.swapaxes(m, 1, 2))     # symmetric, tilts up to 45 deg


def test_oblique_box_shows_an_elongated_cord(monkeypatch):
    """A 3 mm-radius disc cut with a 40-degree tilt along the first axis is 1/cos(40) longer along it."""
    zooms = (0.5, 0.5, 1.0)
    ii, jj = np.meshgrid(np.arange(80), np.arange(80), indexing="ij")
    disc = (((ii - 40) * zooms[0]) ** 2 + ((jj - 40) * zooms[1]) ** 2 <= 9.0).astype(np.float32)
    volume = np.repeat(disc[..., None], 3, axis=2)
    tilt = np.deg2rad(40.0)
    tf = np.array([[[np.cos(tilt), 0.0], [0.0, 1.0]]])
    box = crop_slices(volume, zooms, np.array([[40.0, 40.0]]), [1], transforms=tf)[0] > 0.5
    extent = [box.any(axis=1).sum(), box.any(axis=0).sum()]            # pixels along axis 0 and 1
    assert abs(extent[0] / extent[1] - 1 / np.cos(tilt)) < 0.05
    monkeypatch.setattr(augment, "OBLIQUE_PROB", 0.0)
    np.testing.assert_array_equal(augment.oblique_stretch(np.random.default_rng(1), 4), np.broadcast_to(np.eye(2), (4, 2, 2)))
