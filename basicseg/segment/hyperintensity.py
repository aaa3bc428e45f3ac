"""Hyperintensity: keep the lesions the image shows as brighter than the same cord tissue at its normal levels.

Oedema is hyperintense on T2 and T2* (Talbott et al. 2015). A 2D network sees one level at a time, so it
cannot tell a focal hyperintensity from tissue that is bright along the whole cord: on cords as bright as
their CSF, with the grey matter visible, the shipped lesion network called the healthy grey matter a lesion
on every image (424-1619 mm3, docs/qc.md). The image itself tells them apart. Each lesion component is
compared with the normal cord within :data:`REFERENCE_MM` above and below it, and not with all of it: with
its brightest voxels, as large a share of each normal slice's interior as the component takes of its own
slices' interior. A grey-matter-shaped component is then compared with the normal grey matter, a whole
section with the whole section. A component less than :data:`LESION_CONTRAST_MIN` brighter is not reported.
A component with too little normal cord near it (a lesion over the whole field of view) is kept: the image
cannot judge it.

Arrays are in the image's closest canonical (RAS+) voxel order, axial slices along axis 2, ``zooms`` the
voxel size (mm) along those axes.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np
from scipy import ndimage

NAN = float("nan")

# the cord more than CORE_MM, and more than one voxel, in from its edge: the tissue without partial volume with the
# CSF, whose bright voxels would otherwise be the reference's brightest (an edge voxel is one voxel from the edge)
CORE_MM = 1.0
# the normal cord a lesion is compared with: the lesion-free slices more than REFERENCE_GAP_MM and at most
# REFERENCE_MM above or below it (close enough that a bias field changes it little; beyond the fringe of a lesion
# the network outlined short), when they hold at least REFERENCE_VOXELS interior voxels. Its level is the median
# over those slices of each one's median, so that a few slices still touched by the lesion do not set it
REFERENCE_GAP_MM = 3.0
REFERENCE_MM = 20.0
REFERENCE_VOXELS = 20
MIN_SHARE = 0.05             # a component under 5 % of its slices' interior meets the brightest 5 % of theirs
# the brightest voxels are chosen by the mean of their 8 in-plane neighbours, then read themselves: chosen on
# their own noise they would read ~2 sigma above its mean (the brightest 5 %), which a lesion's median does not
# share. Tissue (grey matter, oedema) is wider than a voxel, so its neighbours choose it as well
NEIGHBOURS = np.ones((3, 3, 1), np.float32)
NEIGHBOURS[1, 1, 0] = 0
MAGNITUDE_MARGIN_MM = 5.0    # the neighbourhood of the cord whose minimum must not be negative (magnitude)
# ln 1.1: a component less than ~10 % brighter than that normal tissue is not one the image shows (the QC prior of
# lesion_not_hyperintense before; the SIMULATED oedema is >= 1.5x the cord, healthy grey matter read ln -0.03-0.06)
LESION_CONTRAST_MIN = 0.1


def cord_interior(cord: np.ndarray, zooms, depth_mm: float) -> np.ndarray:
    """The cord more than ``depth_mm`` in from its edge on each slice (in-plane distance to the nearest voxel
    outside it)."""
    inner = np.zeros_like(cord, dtype=bool)
    for k in np.flatnonzero(cord.any(axis=(0, 1))):
        inner[:, :, k] = ndimage.distance_transform_edt(cord[:, :, k], sampling=zooms[:2]) > depth_mm
    return inner


def magnitude(image: np.ndarray, cord: np.ndarray, zooms) -> np.ndarray:
    """``image`` raised so that its minimum around the cord is 0 when that minimum is negative: MR magnitude is
    never negative and the contrast ratios need positive levels (a negated image then reads as the inverted
    contrast it is). Around the cord (its bounding box, :data:`MAGNITUDE_MARGIN_MM` wider in-plane), so that
    negative padding elsewhere in the field of view changes nothing."""
    if not cord.any():
        return image
    ii, jj, kk = np.nonzero(cord)
    margin = [int(np.ceil(MAGNITUDE_MARGIN_MM / float(z))) for z in zooms[:2]]
    box = image[max(0, ii.min() - margin[0]):ii.max() + margin[0] + 1,
                max(0, jj.min() - margin[1]):jj.max() + margin[1] + 1, kk.min():kk.max() + 1]
    low = float(np.min(box))
    return image - low if low < 0 else image


class Tissue(NamedTuple):
    """What the lesions of one image are compared with (:func:`tissue`)."""
    image: np.ndarray        # the magnitude image
    ranked: np.ndarray       # the mean of each voxel's in-plane neighbours, to choose the brightest voxels by
    core: np.ndarray         # the cord's interior: :data:`CORE_MM` and at least one voxel in from its edge
    zooms: tuple


def tissue(image: np.ndarray, cord: np.ndarray, zooms) -> Tissue:
    cord = np.asarray(cord, bool)
    image = magnitude(np.asarray(image, np.float32), cord, zooms)
    ranked = ndimage.correlate(image, NEIGHBOURS / NEIGHBOURS.sum(), mode="nearest")
    core = cord_interior(cord, zooms, max(CORE_MM, *map(float, zooms[:2])))
    return Tissue(image, ranked, core, tuple(float(z) for z in zooms))


def lesion_contrasts(labels: np.ndarray, t: Tissue) -> np.ndarray:
    """ln(median image in component i / the level of the matched normal cord near it), for the components
    1..n of ``labels``; NaN where there is too little normal cord near a component or a level is not positive."""
    n = int(labels.max()) if labels.size else 0
    out = np.full(n, NAN)
    normal = np.flatnonzero(t.core.any(axis=(0, 1)) & ~(labels > 0).any(axis=(0, 1)))
    gap, reach = REFERENCE_GAP_MM / t.zooms[2], REFERENCE_MM / t.zooms[2]
    for i, box in enumerate(ndimage.find_objects(labels)):
        if box is None:
            continue
        component = labels == i + 1
        first, last = box[2].start, box[2].stop - 1
        own = t.core[:, :, first:last + 1]
        share = float(component[:, :, first:last + 1][own].mean()) if own.any() else 1.0
        share = min(max(share, MIN_SHARE), 1.0)
        away = np.where(normal < first, first - normal, normal - last)
        reference = [_brightest(t.image[:, :, k][t.core[:, :, k]], t.ranked[:, :, k][t.core[:, :, k]], share)
                     for k in normal[(away > gap) & (away <= reach)]]
        if sum(len(r) for r in reference) < REFERENCE_VOXELS:
            continue
        level = float(np.median([np.median(r) for r in reference if len(r)]))
        inside = float(np.median(t.image[component]))
        if level > 0 and inside > 0:
            out[i] = np.log(inside / level)
    return out


def _brightest(values: np.ndarray, rank_by: np.ndarray, share: float) -> np.ndarray:
    """``values`` where ``rank_by`` is in its top ``share``."""
    return values[rank_by >= np.quantile(rank_by, 1.0 - share)]


def hyperintense_lesions(lesion: np.ndarray, t: Tissue, min_contrast: float | None = LESION_CONTRAST_MIN) -> np.ndarray:
    """``lesion`` without its 3D components (26-connected) that are less than ``min_contrast`` (ln) brighter than
    the matched normal cord near them (:func:`lesion_contrasts`); those it cannot judge are kept. ``None``
    keeps every component."""
    if min_contrast is None or not lesion.any():
        return lesion
    labels, _ = ndimage.label(lesion, structure=np.ones((3, 3, 3), bool))
    faint = np.flatnonzero(lesion_contrasts(labels, t) < min_contrast) + 1      # NaN compares False: kept
    return lesion & ~np.isin(labels, faint)
