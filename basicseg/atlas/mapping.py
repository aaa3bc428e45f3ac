"""The atlas on every axial slice: register the template cross-section onto each slice's cord mask
(:mod:`.register`) and warp the grey-matter probability and the tract labels into the image's grid.

Arrays are in closest-canonical RAS voxel order (axial slices ``[:, :, k]``), ``zooms`` in mm.

Level choice (``level``):

* ``"mean"`` -- the cross-section averaged over C1..C7 (when the level is unknown);
* ``"C1"`` .. ``"C7"`` -- that level's mean cross-section on every slice;
* ``"auto"`` -- by shape: each slice is fitted to the mean template, then refitted to every level;
  the level whose cord outline overlaps the slice's best wins if it beats the mean by at least
  ``LEVEL_MARGIN`` in soft Dice (otherwise the mean is kept: the shapes differ little, and a wrong
  level is worse than the average).

The result's GM is restricted to the cord mask (the atlas describes the cord only).

The radial deformation of :mod:`.register` is off by default (``deform=False``): on the three
gm-challenge images it did not measurably improve the GM Dice over the affine fit (overall median
0.761 vs 0.756, lower per-image median on two of three images; ``scripts/validate_atlas.py --variants``,
``docs/atlas.md``), so the simpler transform is used.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import register
from .template import NO_LABEL, load_atlas

PAD_MM = 2.0            # crop margin around the slice's cord: the atlas lives inside the cord
LEVEL_MARGIN = 0.01     # soft-Dice gain a level must bring over the mean template to be chosen
GM_THRESHOLD = 0.5      # mapped GM probability -> GM mask
MIN_CORD_PIXELS = 8     # slices with fewer cord pixels get no atlas (too small to register)


@dataclass
class AtlasMap:
    gm_prob: np.ndarray      # float32, mapped GM probability (0 outside the cord)
    labels: np.ndarray       # uint8, atlas ID per voxel (NO_LABEL outside the cord / unmapped)
    levels: list             # per slice: the template level used ("" where no cord)
    fit_dice: np.ndarray     # per slice: soft Dice of template cord vs cord mask after the fit

    @property
    def gm(self) -> np.ndarray:
        return self.gm_prob >= GM_THRESHOLD


def _crop(mask2d: np.ndarray, zooms) -> tuple[slice, slice]:
    ii, jj = np.nonzero(mask2d)
    pi, pj = int(np.ceil(PAD_MM / zooms[0])), int(np.ceil(PAD_MM / zooms[1]))
    return (slice(max(0, ii.min() - pi), min(mask2d.shape[0], ii.max() + pi + 1)),
            slice(max(0, jj.min() - pj), min(mask2d.shape[1], jj.max() + pj + 1)))


def _fit_level(mask, zooms, atlas, index, deform, start=None):
    tf = register.fit_affine(mask, zooms, atlas.cord[index], atlas.pixel_mm, start)
    if deform:
        tf = register.fit_radial(mask, zooms, atlas.cord[index], atlas.pixel_mm, tf)
    return tf


def fit_slice(mask: np.ndarray, zooms, level: str = "auto", deform: bool = False):
    """``(level name, SliceTransform)`` for one 2D cord mask (already cropped)."""
    atlas = load_atlas()
    mean = atlas.level_index("mean")
    if level != "auto":
        return level, _fit_level(mask, zooms, atlas, atlas.level_index(level), deform)
    best_name, best = "mean", register.fit_affine(mask, zooms, atlas.cord[mean], atlas.pixel_mm)
    base = best
    for i, name in enumerate(atlas.level_names):
        if name == "mean":
            continue
        tf = register.fit_affine(mask, zooms, atlas.cord[i], atlas.pixel_mm, start=base)
        if tf.dice > best.dice + (LEVEL_MARGIN if best_name == "mean" else 0):
            best_name, best = name, tf
    if deform:
        best = register.fit_radial(mask, zooms, atlas.cord[atlas.level_index(best_name)], atlas.pixel_mm, best)
    return best_name, best


def map_atlas(cord: np.ndarray, zooms, level: str = "auto", deform: bool = False, slices=None) -> AtlasMap:
    """Map the atlas onto every axial slice of ``cord`` (bool, canonical order), or only onto ``slices``
    (indices; the others stay unmapped: a lesion's grading needs only its own slices)."""
    cord = np.asarray(cord) > 0
    zooms = tuple(float(z) for z in zooms[:3])
    atlas = load_atlas()
    if level not in ("auto",) + atlas.level_names:
        raise ValueError(f"level must be 'auto' or one of {atlas.level_names}, got {level!r}")
    gm = np.zeros(cord.shape, np.float32)
    labels = np.full(cord.shape, NO_LABEL, np.uint8)
    levels, dice = [""] * cord.shape[2], np.full(cord.shape[2], np.nan)
    for k in range(cord.shape[2]) if slices is None else sorted(set(int(s) for s in slices)):
        if cord[:, :, k].sum() < MIN_CORD_PIXELS:
            continue
        box = _crop(cord[:, :, k], zooms)
        mask = cord[box + (k,)]
        levels[k], tf = fit_slice(mask, zooms, level, deform)
        dice[k] = tf.dice
        i = atlas.level_index(levels[k])
        g = register.warp_to_image(atlas.gm[i], atlas.pixel_mm, tf, mask.shape, zooms)
        lab = register.warp_to_image(atlas.labels[i].astype(np.float32), atlas.pixel_mm, tf, mask.shape, zooms,
                                     order=0, cval=NO_LABEL)
        gm[box + (k,)] = np.where(mask, g, 0)
        labels[box + (k,)] = np.where(mask, lab, NO_LABEL).astype(np.uint8)
    return AtlasMap(gm, labels, levels, dice)


def fill_labels(atlas_map: AtlasMap, cord: np.ndarray) -> np.ndarray:
    """Labels with the cord voxels the warp left unlabelled (outline mismatch) given their nearest label."""
    from scipy import ndimage
    labels = atlas_map.labels.copy()
    for k in range(cord.shape[2]):
        lab = labels[:, :, k]
        known = lab != NO_LABEL
        if not known.any():
            continue
        idx = ndimage.distance_transform_edt(~known, return_distances=False, return_indices=True)
        filled = lab[idx[0], idx[1]]
        labels[:, :, k] = np.where(cord[:, :, k], filled, NO_LABEL)
    return labels
