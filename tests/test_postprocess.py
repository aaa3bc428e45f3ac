"""Postprocess: thresholds, the single cord component, and the lesion rules, on real voxel geometries."""
import numpy as np
import pytest

from basicseg.segment.postprocess import LESION_MIN_VOLUME_MM3, cord_mask, lesion_mask


def tube(shape, centre, radius_vox):
    ii, jj = np.meshgrid(np.arange(shape[0]), np.arange(shape[1]), indexing="ij")
    disc = (ii - centre[0]) ** 2 + (jj - centre[1]) ** 2 <= radius_vox ** 2
    return np.repeat(disc[..., None], shape[2], axis=2)


def test_cord_keeps_largest_component_and_fills_holes():
    prob = tube((40, 40, 20), (20, 20), 6).astype(np.float32)
    prob[20, 20, 5] = 0.1                       # a dark hole (haemorrhage) inside the cord
    prob[2:4, 2:4, 2:4] = 0.9                   # a bright blob away from the cord
    mask = cord_mask(prob)
    assert mask[20, 20, 5] and not mask[2:4, 2:4, 2:4].any()
    assert mask.sum() == tube((40, 40, 20), (20, 20), 6).sum()


@pytest.mark.parametrize("zooms", [(1.0, 1.0, 1.0), (0.5, 0.5, 3.0)])
def test_lesion_components_touching_the_cord_kept_whole(zooms):
    shape = (60, 60, 12)
    cord = tube(shape, (30, 30), 4 / zooms[0])                 # 4 mm radius cord
    prob = np.zeros(shape, np.float32)
    big = tube(shape, (30, 30), 2 / zooms[0])
    big[..., :3] = big[..., 9:] = False                       # a 6-slice lesion in the cord
    prob[big] = 0.9
    prob[5:8, 5:8, 5] = 0.9                                   # outside the cord: dropped
    ii, jj = 30, int(30 + 3.5 / zooms[0])                     # one voxel in the cord, < min volume
    prob[ii, jj, 0] = 0.9
    n = int(0.9 * LESION_MIN_VOLUME_MM3 / np.prod(zooms))      # a fragment just under the minimum volume
    prob[30, 30 - n // 2:30 - n // 2 + n, 10] = 0.9
    bulge = np.zeros(shape, bool)                             # oedema the cord network left out: a lesion
    bulge[int(30 + 3 / zooms[0]):int(30 + 6 / zooms[0]), 28:33, 4:7] = True   # part in, part beyond the cord
    prob[bulge] = 0.8
    mask = lesion_mask(prob, cord, zooms)
    assert np.prod(zooms) < LESION_MIN_VOLUME_MM3
    expected = big | bulge
    assert (bulge & ~cord).any() and (bulge & cord).any()
    np.testing.assert_array_equal(mask, expected)               # kept whole, beyond the cord mask too


def test_hysteresis_outlines_the_lesions_found_at_the_extent_threshold():
    """Detection at the threshold and minimum volume, outline at the extent threshold: a lesion with a 0.6 core
    and a 0.35 halo is reported with its halo; a 0.45 blob with no core, however large, is not reported; a core
    under the minimum volume is not rescued by its halo."""
    zooms = (0.5, 0.5, 3.0)
    shape = (60, 60, 12)
    cord = tube(shape, (30, 30), 8)
    prob = np.zeros(shape, np.float32)
    halo = tube(shape, (30, 30), 5) & (np.arange(12) >= 2)[None, None, :] & (np.arange(12) <= 5)[None, None, :]
    core = tube(shape, (30, 30), 3) & halo
    prob[halo], prob[core] = 0.35, 0.6
    doubt = tube(shape, (30, 30), 6) & (np.arange(12) >= 8)[None, None, :]   # large, never above 0.45
    prob[doubt] = 0.45
    prob[26, 26, 7] = 0.7                                                   # a one-voxel core in a 0.35 halo
    prob[24:29, 24:29, 7][prob[24:29, 24:29, 7] == 0] = 0.35
    np.testing.assert_array_equal(lesion_mask(prob, cord, zooms, 0.5, 20.0), core)
    with_halo = lesion_mask(prob, cord, zooms, 0.5, 20.0, extent_threshold=0.3)
    assert (with_halo & halo).sum() == halo.sum() and not (with_halo & doubt).any() and not with_halo[..., 7].any()
    # at or above the threshold the extent changes nothing
    np.testing.assert_array_equal(lesion_mask(prob, cord, zooms, 0.5, 20.0, extent_threshold=0.5), core)
    # the outline grows into the cord only: a halo reaching past the cord's edge stops at it
    wide = tube(shape, (30, 30), 11) & halo
    prob[wide & ~core] = 0.35
    grown = lesion_mask(prob, cord, zooms, 0.5, 20.0, extent_threshold=0.3)
    np.testing.assert_array_equal(grown, core | (wide & cord))


def test_recentre_moves_boxes_onto_the_found_cord():
    """A path 3 mm posterior of the cord (the localiser against a canal wall) is moved onto the cord;
    slices where no cord was found keep their centre."""
    from basicseg.segment.pipeline import recentre

    zooms = (0.5, 0.5, 3.0)
    prob = tube((60, 60, 10), (30, 34), 8).astype(np.float32)
    prob[..., 0] = 0.0                                            # no cord found on the first slice
    centres = np.tile([30.0, 28.0], (10, 1))                      # 6 voxels = 3 mm posterior
    path = recentre(prob, centres, zooms, threshold=0.5)
    np.testing.assert_allclose(path[2:], np.tile([30.0, 34.0], (8, 1)), atol=0.05)
    assert 28.0 <= path[0, 1] <= 34.0
    np.testing.assert_array_equal(recentre(np.zeros_like(prob), centres, zooms, 0.5), centres)


def test_recentre_bridges_slices_where_the_boxes_missed_the_cord():
    """The localiser confidently 10 mm off the cord on slices 8-12 (sub-errsm20 of spine-public lost 57 of its 185
    slices so): no cord was found there, the cord splits in two pieces, and those slices take the path between the
    pieces instead of keeping the wrong centre; a speck off the cord does not move the path."""
    from basicseg.segment.pipeline import recentre

    zooms = (0.5, 0.5, 3.0)
    prob = tube((80, 80, 20), (40, 40), 8).astype(np.float32)
    prob[..., 8:13] = 0.0                                         # the boxes missed the cord here
    prob[70:72, 70:72, 3] = 1.0                                   # a speck far off the cord
    centres = np.tile([40.0, 40.0], (20, 1))
    centres[8:13] = [40.0, 20.0]                                  # 10 mm off
    path = recentre(prob, centres, zooms, threshold=0.5)
    np.testing.assert_allclose(path, np.tile([40.0, 40.0], (20, 1)), atol=0.05)
