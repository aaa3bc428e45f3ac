"""Simulate the clinical patterns of acute traumatic cord injury on axial T2w, graded by the BASIC score.

SIMULATED lesions: there are no public contusion labels; every figure built on these must say so.

Clinical model (sources)
------------------------
* **BASIC score** (Talbott et al., J Neurosurg Spine 2015;23:495-504), read on the axial T2w slice of the
  epicentre: 0 no intramedullary signal abnormality; 1 T2 hyperintensity confined to the grey matter;
  2 hyperintensity beyond the expected GM margins into the white matter, not the entire transverse
  extent (a rim of normal white matter is spared); 3 the entire transverse extent; 4 grade 3 plus
  discrete T2-hypointense foci (haemorrhage). Grade 4 is *defined* on grade 3, so a haemorrhagic core
  in a GM-confined or rim-sparing lesion keeps grade 1 or 2 here.
* **McCoy et al., AJNR 2019** (BASICseg): the automated segmentations of oedema and cord on which the
  grading is meant to run; lesions are spindle-shaped along the cord, centred on the epicentre.
* **Oedema length and haemorrhage** (Bozzo et al., J Neurotrauma 2011; Kurpad et al., Global Spine J
  2017, review; Boldin et al., Spine 2006; Miyanji et al., Radiology 2007): intramedullary oedema
  spans from under one to several vertebral segments (longer with more severe injury); haemorrhage
  is a T2-hypointense focus centred in the grey matter at the epicentre, a few millimetres to about a
  centimetre long (Boldin: foci longer than 4 mm carry a worse prognosis); cord swelling accompanies
  the severe, whole-section injuries. The ranges below are modelling choices spanning those
  descriptions within the images' extent, not values quoted from the papers.

Patterns (``pattern``), on every slice of a spindle of length ``length_mm`` centred on the epicentre
(taper ``e(d) = cos(pi d / length_mm)`` at distance ``d`` mm):

* ``"gm"`` (grade 1): the GM voxels within ``e * R_gm`` of the GM centroid (``R_gm`` = the farthest GM
  voxel): the whole GM at the epicentre, its centre at the tips; a subset of ``gm`` by construction.
* ``"rim"`` (grade 2): cord voxels within ``e * spread`` mm of the GM, outside a spared rim of
  ``rim_mm`` (at least one voxel layer) at the cord's edge: beyond the GM, never the whole section.
* ``"whole"`` (grade 3): the cord is swollen first (radial dilation, as in :mod:`.simulate`), the whole
  swollen cross-section is lesion over the central ``full_fraction`` of the length, tapering to the
  intramedullary spindle without a rim beyond.
* ``haemorrhage`` (grade 4 with ``"whole"``): a hypointense spindle core, centred on the GM centroid at
  the epicentre, inside the lesion by construction (``core = lesion & ellipse``) and part of the lesion.
* ``n_foci`` > 1: further, smaller GM-confined foci (grade 1) above or below, separated from the main
  focus by at least one slice, so the epicentre and the grade stay those of the main focus.

Signal (the model of :mod:`.simulate`, reused): ``out = image + w (T - m)``, ``w`` the soft weight of the
lesion (Gaussian edge ``edge_mm``), ``m`` the local mean, ``T = S (1 + contrast)`` in oedema and
``S (1 - haemorrhage_contrast)`` in the core, ``S`` the median cord signal on the lesion slices.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

# The simulator's signal model and swelling warp, reused (not copied) so both simulators agree.
from .simulate import _local_mean, _soft_weight, _swell

PATTERNS = {"gm": 1, "rim": 2, "whole": 3}   # pattern -> BASIC grade (4 = "whole" + haemorrhage)
LENGTH_MM = (9.0, 36.0)            # oedema length: under one to about two and a half vertebral segments
FULL_FRACTION = (0.3, 0.6)         # "whole": share of the length over which the entire section is lesion
RIM_MM = (0.5, 1.5)                # spared white-matter rim of grade 2 (at least one voxel layer)
CONTRAST = (0.5, 1.5)              # oedema signal = S x (1 + contrast)
EDGE_MM = (0.15, 0.4)              # soft edge sigma: small, so that a spared rim stays visible
SWELLING = (0.1, 0.3)              # radial dilation of the cord at the epicentre ("whole" only)
HAEM_LENGTH_MM = (4.0, 12.0)       # haemorrhage length (Boldin 2006: > 4 mm is the severe group)
HAEM_RADIUS_MM = (0.8, 2.0)        # haemorrhage in-plane radius, centred on the central grey matter
HAEM_CONTRAST = (0.4, 0.8)         # core signal = S x (1 - haem_contrast): clearly below the cord
EXTRA_FOCI = (0, 2)                # additional small GM foci
EXTRA_LENGTH_MM = (3.0, 9.0)
EXTRA_TAPER = 0.6                  # extra foci cover at most the central 60 % of the GM: smaller than the main one


@dataclass
class PatternLesion:
    image: np.ndarray          # float32, the image with the SIMULATED lesion
    lesion: np.ndarray         # bool, exact lesion mask (haemorrhage included)
    haemorrhage: np.ndarray    # bool, haemorrhagic core (subset of lesion)
    cord: np.ndarray           # bool, cord mask (swollen for "whole")
    gm: np.ndarray             # bool, the GM used (swollen with the cord)
    grade: int                 # BASIC grade represented
    epicentre: int             # slice of the main focus's centre
    params: dict = field(default_factory=dict)


def _taper(ks, centre, length_mm, dz):
    d = (np.asarray(ks) - centre) * dz
    return np.cos(np.pi * np.clip(np.abs(d) / length_mm, 0, 0.5))


def _extent(has_cord, centre, length_mm, dz):
    reach = int(np.floor(length_mm / 2 / dz + 1e-9))
    ks = np.arange(max(0, centre - reach), min(len(has_cord), centre + reach + 1))
    return ks[has_cord[ks]]


def _xy(shape, zooms):
    ii, jj = np.meshgrid(np.arange(shape[0]), np.arange(shape[1]), indexing="ij")
    return ii * zooms[0], jj * zooms[1]


def gm_slice(gm2d, e, zooms):
    """Grade-1 cross-section: GM voxels within e x (farthest GM distance) of the GM centroid."""
    if not gm2d.any():
        return np.zeros_like(gm2d)
    x, y = _xy(gm2d.shape, zooms)
    cx, cy = x[gm2d].mean(), y[gm2d].mean()
    r = np.hypot(x - cx, y - cy)
    out = gm2d & (r <= e * r[gm2d].max() + 1e-6)
    if not out.any():
        out.flat[np.where(gm2d, r, np.inf).argmin()] = True
    return out


def _spread(cord2d, gm2d, zooms):
    """Distance (mm) from the GM to the farthest cord voxel: e x spread reaches the whole section."""
    d = ndimage.distance_transform_edt(~gm2d, sampling=zooms[:2])
    return float(d[cord2d].max()) if cord2d.any() else 0.0


def rim_slice(cord2d, gm2d, e, rim_mm, zooms):
    """Grade-2 cross-section: cord within e x spread of the GM, minus a rim of >= 1 voxel layer."""
    inner = ndimage.distance_transform_edt(cord2d, sampling=zooms[:2]) > max(rim_mm, max(zooms[:2]))
    near = ndimage.distance_transform_edt(~gm2d, sampling=zooms[:2]) <= e * _spread(cord2d, gm2d, zooms)
    return cord2d & inner & (near | gm2d)


def whole_slice(cord2d, gm2d, e, full, zooms):
    """Grade-3 cross-section: the entire section where ``full``, else the spindle without a rim."""
    if full:
        return cord2d.copy()
    near = ndimage.distance_transform_edt(~gm2d, sampling=zooms[:2]) <= e * _spread(cord2d, gm2d, zooms)
    return cord2d & (near | gm2d)


def _core_slice(lesion2d, gm2d, e, radius_mm, zooms):
    """Haemorrhage: the lesion within e x radius of the GM centroid (nearest lesion voxel if none)."""
    x, y = _xy(lesion2d.shape, zooms)
    ref = gm2d if gm2d.any() else lesion2d
    r = np.hypot(x - x[ref].mean(), y - y[ref].mean())
    out = lesion2d & (r <= e * radius_mm)
    if not out.any() and lesion2d.any():
        out.flat[np.where(lesion2d, r, np.inf).argmin()] = True
    return out


def sample_pattern_params(rng: np.random.Generator, pattern: str, haemorrhage: bool) -> dict:
    u = rng.uniform
    return dict(pattern=pattern, haemorrhage=bool(haemorrhage), length_mm=float(u(*LENGTH_MM)),
                full_fraction=float(u(*FULL_FRACTION)), rim_mm=float(u(*RIM_MM)), contrast=float(u(*CONTRAST)),
                edge_mm=float(u(*EDGE_MM)), swelling=float(u(*SWELLING)) if pattern == "whole" else 0.0,
                haem_length_mm=float(u(*HAEM_LENGTH_MM)), haem_radius_mm=float(u(*HAEM_RADIUS_MM)),
                haem_contrast=float(u(*HAEM_CONTRAST)), n_extra_foci=int(rng.integers(EXTRA_FOCI[0], EXTRA_FOCI[1] + 1)),
                extra_lengths_mm=[float(u(*EXTRA_LENGTH_MM)) for _ in range(EXTRA_FOCI[1])],
                extra_sides=[int(rng.choice([-1, 1])) for _ in range(EXTRA_FOCI[1])])


def _main_focus(cord, gm, zooms, centre, p):
    """The main focus's lesion on each slice of its extent."""
    lesion = np.zeros(cord.shape, bool)
    ks = _extent(cord.any(axis=(0, 1)), centre, p["length_mm"], zooms[2])
    for k, e in zip(ks, _taper(ks, centre, p["length_mm"], zooms[2])):
        c, g = cord[:, :, k], gm[:, :, k] & cord[:, :, k]
        if p["pattern"] == "gm":
            lesion[:, :, k] = gm_slice(g, e, zooms)
        elif p["pattern"] == "rim":
            lesion[:, :, k] = rim_slice(c, g, e, p["rim_mm"], zooms)
        else:
            full = abs(k - centre) * zooms[2] <= p["full_fraction"] * p["length_mm"] / 2 + 1e-9
            lesion[:, :, k] = whole_slice(c, g, e, full, zooms)
    return lesion, ks


def _extra_foci(cord, gm, zooms, main_ks, p):
    """Smaller GM-confined foci beyond the main one, a gap of >= 1 slice away from it."""
    extra = np.zeros(cord.shape, bool)
    has_cord = cord.any(axis=(0, 1))
    lo, hi = int(main_ks.min()), int(main_ks.max())
    for i in range(p["n_extra_foci"]):
        length, side = p["extra_lengths_mm"][i], p["extra_sides"][i]
        reach = int(np.floor(length / 2 / zooms[2] + 1e-9))
        centre = hi + 2 + reach if side > 0 else lo - 2 - reach
        if not (0 <= centre < cord.shape[2]) or not has_cord[centre]:
            continue
        ks = _extent(has_cord, centre, length, zooms[2])
        ks = ks[(ks > hi + 1) | (ks < lo - 1)]
        for k, e in zip(ks, _taper(ks, centre, length, zooms[2])):
            extra[:, :, k] = gm_slice(gm[:, :, k] & cord[:, :, k], EXTRA_TAPER * e, zooms)
        if len(ks):   # the next focus on this side goes beyond this one
            lo, hi = min(lo, int(ks.min())), max(hi, int(ks.max()))
    return extra


def _haemorrhage(lesion, gm, zooms, centre, p):
    core = np.zeros(lesion.shape, bool)
    if not p["haemorrhage"]:
        return core
    ks = _extent(lesion.any(axis=(0, 1)), centre, p["haem_length_mm"], zooms[2])
    for k, e in zip(ks, _taper(ks, centre, p["haem_length_mm"], zooms[2])):
        core[:, :, k] = _core_slice(lesion[:, :, k], gm[:, :, k], e, p["haem_radius_mm"], zooms)
    return core


def _signal(image, cord, lesion, core, zooms, p):
    """Blend toward the oedema / haemorrhage targets with the soft weights (model of simulate.py)."""
    ks = np.flatnonzero(lesion.any(axis=(0, 1)))
    s = float(np.median(image[:, :, ks][cord[:, :, ks]]))
    weight = _soft_weight(lesion, p["edge_mm"], zooms)
    target = np.full(image.shape, s * (1 + p["contrast"]), np.float64)
    if core.any():
        c = _soft_weight(core, p["edge_mm"] / 2, zooms)
        target = target * (1 - c) + s * (1 - p["haem_contrast"]) * c
    out = image + weight * (target - _local_mean(image, cord, zooms))
    if image.min() >= 0:
        out = np.maximum(out, 0)
    return np.where(weight > 0, out, image).astype(np.float32), s


def simulate_pattern(image, cord, gm, zooms, pattern: str, haemorrhage: bool, rng_or_seed,
                     centre_slice: int | None = None, **overrides) -> PatternLesion:
    """Insert one SIMULATED lesion of ``pattern`` ("gm", "rim", "whole"), with or without a haemorrhagic
    core, into ``image`` (canonical order; ``cord`` and ``gm`` bool masks on its grid; ``gm=None`` maps
    the atlas GM onto the cord: :func:`basicseg.atlas.map_atlas`). ``overrides`` fix sampled parameters."""
    if pattern not in PATTERNS:
        raise ValueError(f"pattern must be one of {sorted(PATTERNS)}, got {pattern!r}")
    rng = rng_or_seed if isinstance(rng_or_seed, np.random.Generator) else np.random.default_rng(rng_or_seed)
    p = sample_pattern_params(rng, pattern, haemorrhage) | overrides
    zooms = tuple(float(z) for z in zooms[:3])
    if gm is None:
        from basicseg.atlas import map_atlas   # lazy: the atlas is only needed when no GM is given
        gm = map_atlas(cord, zooms).gm
    image = np.asarray(image, np.float32).copy()
    cord, gm = np.asarray(cord, bool).copy(), np.asarray(gm, bool) & np.asarray(cord, bool)
    has_cord = np.flatnonzero(cord.any(axis=(0, 1)))
    if centre_slice is None:
        q = len(has_cord) // 4
        centre_slice = int(rng.choice(has_cord[q:len(has_cord) - q] if len(has_cord) > 2 * q else has_cord))
    if p["swelling"] > 0:
        ks = _extent(cord.any(axis=(0, 1)), centre_slice, p["length_mm"], zooms[2])
        amounts = p["swelling"] * _taper(ks, centre_slice, p["length_mm"], zooms[2]) ** 2
        gm_f, cord_gm = gm.astype(np.float32), cord.copy()
        _swell(gm_f, cord_gm, zooms, ks, amounts)   # the GM moves with the cord
        _swell(image, cord, zooms, ks, amounts)
        gm = (gm_f >= 0.5) & cord
    lesion, ks = _main_focus(cord, gm, zooms, centre_slice, p)
    core = _haemorrhage(lesion, gm, zooms, centre_slice, p)
    lesion |= _extra_foci(cord, gm, zooms, ks, p)
    out, s = _signal(image, cord, lesion, core, zooms, p)
    grade = 4 if pattern == "whole" and core.any() else PATTERNS[pattern]
    return PatternLesion(out, lesion, core, cord, gm, grade, int(centre_slice), p | {"cord_signal": s, "simulated": True})
