"""Hyperintensity: keep the lesions the image shows as brighter than the same cord tissue at its normal levels.

Oedema is hyperintense on T2 and T2* (Talbott et al. 2015). A 2D network sees one level at a time, so it
cannot tell a focal hyperintensity from tissue that is bright along the whole cord: on cords as bright as
their CSF, with the grey matter visible, the shipped lesion network called the healthy grey matter a lesion
on every image (424-1619 mm3, docs/qc.md). The image itself tells them apart. Each lesion component is
compared with the normal cord within :data:`REFERENCE_MM` above and below it, and not with all of it: with
its brightest voxels, as large a share of each normal slice's interior as the component takes of its own
slices' interior. A grey-matter-shaped component is then compared with the normal grey matter, a whole
section with the whole section. A component less than the lesion card's ``min_lesion_contrast`` brighter
(:data:`LESION_CONTRAST_MIN` by default) is not reported.
A component with too little normal cord near it (a lesion over the whole field of view) is kept: the image
cannot judge it.

Arrays are in the image's closest canonical (RAS+) voxel order, axial slices along axis 2, ``zooms`` the
voxel size (mm) along those axes.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np
from scipy import ndimage

from basicseg.segment.postprocess import components

NAN = float("nan")

# the cord more than CORE_MM in from its edge, with all 8 in-plane neighbours in the cord: the tissue without partial
# volume with the CSF, whose bright voxels would otherwise be the reference's brightest
CORE_MM = 1.0
# the normal cord a lesion is compared with: the lesion-free slices more than REFERENCE_GAP_MM and at most
# REFERENCE_MM above or below it (close enough that a bias field changes it little; beyond the fringe of a lesion
# the network outlined short), when they hold at least REFERENCE_VOXELS voxels of the cord's core. Its level is the median
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
IN_PLANE_8 = np.ones((3, 3, 1), bool)
MAGNITUDE_MARGIN_MM = 5.0    # the neighbourhood of the cord whose minimum must not be negative (magnitude)
# a log-ratio of 0.1 (1.105): a component less than ~10 % brighter than that normal tissue is not one the image
# shows (the QC prior of lesion_not_hyperintense before; the SIMULATED oedema is >= 1.5x the cord; healthy grey
# matter made as bright as on the unseen site read -0.03 to +0.06, tests/test_hyperintensity.py)
LESION_CONTRAST_MIN = 0.1


def cord_interior(cord: np.ndarray, zooms, depth_mm: float) -> np.ndarray:
    """The cord more than ``depth_mm`` in from its edge on each slice (in-plane distance to the nearest voxel
    outside it)."""
    inner = np.zeros_like(cord, dtype=bool)
    box = _cord_box(cord)
    if box is None:
        return inner
    # within the cord's box and one voxel round it: the nearest voxel outside the cord is never farther away
    for k in np.flatnonzero(cord.any(axis=(0, 1))):
        inner[box[:2] + (k,)] = ndimage.distance_transform_edt(cord[box[:2] + (k,)], sampling=zooms[:2]) > depth_mm
    return inner


def _cord_box(cord: np.ndarray) -> tuple | None:
    """The cord's bounding box, one voxel wider in-plane (None without cord)."""
    found = ndimage.find_objects(cord.astype(np.uint8))
    if not found:
        return None
    return tuple(slice(max(0, s.start - 1), s.stop + 1) for s in found[0][:2]) + (found[0][2],)


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

    def cropped(self, box: tuple) -> "Tissue":
        """The same tissue on a box of the grid (one that holds the whole cord's slices)."""
        return Tissue(self.image[box], self.ranked[box], self.core[box], self.zooms)


def tissue(image: np.ndarray, cord: np.ndarray, zooms) -> Tissue:
    cord = np.asarray(cord, bool)
    image = magnitude(np.asarray(image, np.float32), cord, zooms)
    ranked = np.zeros_like(image)
    core = cord_interior(cord, zooms, CORE_MM)
    box = _cord_box(cord)
    if box is not None:     # only the core is ranked: the cord's box holds every core voxel's neighbours
        ranked[box] = ndimage.correlate(image[box], NEIGHBOURS / NEIGHBOURS.sum(), mode="nearest")
        # deep enough in mm and in voxels: from ~0.71 mm in-plane a voxel one voxel in is deeper than a voxel size
        # from the CSF it touches diagonally, and its neighbours' mean, holding that CSF, would rank it brightest
        core[box] &= ndimage.binary_erosion(cord[box], IN_PLANE_8)
    return Tissue(image, ranked, core, tuple(float(z) for z in zooms))


def lesion_contrasts(labels: np.ndarray, t: Tissue) -> np.ndarray:
    """ln(median image in component i / the level of the matched normal cord near it), for the components
    1..n of ``labels``; NaN where there is too little normal cord near a component or a level is not positive."""
    n = int(labels.max()) if labels.size else 0
    out = np.full(n, NAN)
    core_voxels = t.core.sum(axis=(0, 1))
    normal = np.flatnonzero((core_voxels > 0) & ~(labels > 0).any(axis=(0, 1)))
    for i, box in enumerate(ndimage.find_objects(labels)):
        if box is None:
            continue
        component = labels[box] == i + 1
        first, last = box[2].start, box[2].stop - 1
        own = int(core_voxels[first:last + 1].sum())
        # the component's share of its slices' core; a component on slices without core (a cord too thin for one)
        # is compared with the whole normal core, the most lenient reference
        share = int(np.count_nonzero(component & t.core[box])) / own if own else 1.0
        share = min(max(share, MIN_SHARE), 1.0)
        near = normal[_within_reach(normal, first, last, t.zooms[2])]
        if core_voxels[near].sum() < REFERENCE_VOXELS:
            continue
        levels = [np.median(_brightest(t.image[:, :, k][t.core[:, :, k]], t.ranked[:, :, k][t.core[:, :, k]], share))
                  for k in near]
        # all of the component, also where it leaves the cord mask: lesions are kept whole (postprocess.lesion_mask)
        level, inside = float(np.median(levels)), float(np.median(t.image[box][component]))
        if level > 0 and inside > 0:
            out[i] = np.log(inside / level)
    return out


def _within_reach(slices: np.ndarray, first: int, last: int, slice_mm: float) -> np.ndarray:
    """Which ``slices`` lie more than REFERENCE_GAP_MM and at most REFERENCE_MM beyond [first, last] (in mm,
    with a tolerance for the float32 voxel sizes of NIfTI headers)."""
    away_mm = np.where(slices < first, first - slices, slices - last) * slice_mm
    tolerance = 1e-3 * slice_mm
    return (away_mm > REFERENCE_GAP_MM + tolerance) & (away_mm <= REFERENCE_MM + tolerance)


def _brightest(values: np.ndarray, rank_by: np.ndarray, share: float) -> np.ndarray:
    """``values`` where ``rank_by`` is in its top ``share``."""
    return values[rank_by >= np.quantile(rank_by, 1.0 - share)]


def hyperintense_lesions(lesion: np.ndarray, t: Tissue,
                         min_contrast: float | None = LESION_CONTRAST_MIN) -> tuple[np.ndarray, float]:
    """(``lesion`` without its 3D components (26-connected) that are less than ``min_contrast`` (ln) brighter
    than the matched normal cord near them, the least contrast among the components kept: NaN when none could
    be judged). Components the rule cannot judge are kept; ``None`` keeps every component (and still measures)."""
    labels, sizes = components(lesion)
    n = len(sizes)
    if n == 0:
        return lesion, NAN
    contrasts = lesion_contrasts(labels, t)
    faint = np.zeros(n, bool) if min_contrast is None else contrasts < min_contrast    # NaN compares False
    kept = contrasts[~faint]
    least = float(np.nanmin(kept)) if np.isfinite(kept).any() else NAN
    return (lesion & ~np.isin(labels, np.flatnonzero(faint) + 1) if faint.any() else lesion), least
