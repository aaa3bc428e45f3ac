"""Simulate: insert a contusion-like lesion into a real spinal-cord image, using its cord mask.

There are no public contusion-lesion labels, so the lesion models are trained, validated and tested
on lesions made here. Every figure or table built on them must say "simulated".

Geometry
--------
Arrays are in closest-canonical RAS voxel order: axis 0 left->right, axis 1 posterior->anterior,
axis 2 inferior->superior (axial slices ``[:, :, k]``), with voxel sizes ``zooms`` in mm (anisotropic
grids such as 0.5 x 0.5 x 3 mm are fine: every distance below is computed in mm).

Model of an acute traumatic contusion on axial T2-weighted MRI (cf. McCoy et al. AJNR 2019 and the
axial BASIC grades of Talbott et al. 2015: intramedullary T2 hyperintensity, sometimes with a T2-dark
haemorrhagic focus, and cord swelling; acute contusions typically span one to three vertebral segments):

* **spindle** -- centred on slice ``c``, it covers the slices whose centre lies within ``length_mm / 2``
  of slice ``c`` and that hold cord (so its inferior-superior extent is ``length_mm`` to within one slice
  thickness, less only where the cord mask or the image ends first). On such a slice at distance ``d``
  (mm) from the centre its cross-section is the disc of radius
  ``rho(d) = width_fraction * R_k * cos(pi * d / length_mm)`` (its area follows a raised-cosine, i.e.
  cos^2, taper), where ``R_k`` is the local cord radius (equivalent-area radius of the cord mask on
  that slice). The disc is centred on the cord's own centroid on that slice -- so the lesion bends with
  the cord -- plus ``offset_fraction * R_k`` (L-R, A-P; positive = right, anterior). The hard spindle
  ``H`` is the set of cord voxels inside those discs; where a disc holds no cord voxel centre (the thin
  tips) the cord voxel nearest to the disc's centre is taken, so every slice of the extent is present.
* **soft weight** -- ``w = Phi(-sd / edge_mm)`` (Phi the standard normal CDF), ``sd`` the signed distance
  in mm from a voxel centre to the boundary of ``H`` (``sd = dist_to_H - h`` outside, ``-(dist_to_outside
  - h)`` inside, ``h`` = half the smallest voxel size, distances by an anisotropic Euclidean distance
  transform). This is the Gaussian blur (sigma ``edge_mm``, the same in mm along every axis) of ``H`` in
  the local half-space approximation. Unlike blurring the voxel mask literally, its half-maximum contour
  is exactly the spindle's surface and thin lesions still reach full contrast, so the mask below is the
  drawn spindle and its length matches ``length_mm``. ``w`` is set to exactly 0 where ``sd > 3 * edge_mm``.
* **mask** -- ``lesion = (w >= 0.5)``, which is exactly ``H``: a subset of the (swollen) cord mask.
* **signal** -- the reference cord signal ``S`` is the median of the cord voxels on the lesion's slices
  (after swelling). The image is blended toward ``S * (1 + contrast)`` with the weight ``w``, keeping its
  own fine texture (noise) so that the lesion is not unnaturally flat:
  ``out = image + w * (T - m)``, where ``m`` is the image's local mean (in-plane Gaussian of sigma
  ``TEXTURE_MM`` normalised within the cord and, separately, outside it) and ``T`` the target signal.
  Where ``w = 1`` the local mean of the output is therefore ``S * (1 + contrast)``.
* **haemorrhage** (optional) -- a smaller spindle of the same shape, ``haemorrhage_fraction`` of the
  lesion's length and radius, inside ``H`` and centred with it; its own soft weight ``c`` (edge
  ``edge_mm / 2``) pulls the target toward ``S * (1 - haemorrhage_contrast)``:
  ``T = S * (1 + contrast) * (1 - c) + S * (1 - haemorrhage_contrast) * c``. The haemorrhagic core is part
  of the lesion mask (the whole contusion is one label) and is returned on its own too.
* **swelling** (optional) -- before the lesion is drawn, on each lesion slice the image and the cord mask
  are warped radially around the cord's centroid: a dilation by ``1 + a_k`` up to ``1.5 R_k`` from the
  centroid, fading smoothly to the identity at ``SWELL_REACH = 3 R_k`` (monotone, so no folding), with
  ``a_k = swelling * cos^2(pi * d_k / length_mm)`` (linear interpolation). The lesion is then drawn in the
  swollen cord, which is returned too (:func:`simulate_lesion_detailed`, ``return_cord`` of
  :func:`simulate_lesion_nifti`): the lesion mask lies inside the *swollen* cord, not necessarily inside
  the original one.

Exact guarantees (tested on real images)
-----------------------------------------
* ``lesion == (weight >= 0.5)``, ``lesion`` is a subset of the returned (swollen) cord, non-empty on
  every slice of the extent that holds cord, and ``haemorrhage`` is a subset of ``lesion``.
* With ``swelling == 0``: ``out[weight == 0]`` is bit-for-bit ``image[weight == 0]`` (as float32), and
  ``weight == 0`` at every voxel whose centre is more than ``3 * edge_mm + min(zooms) / 2`` mm from the
  nearest lesion voxel's centre. Hence every such voxel is unchanged, in particular every slice farther
  than ``length_mm / 2 + 3 * edge_mm + min(zooms) / 2`` from the centre slice.
* With ``swelling > 0`` the image may also change (by the warp's interpolation) within ``3 R_k`` of the
  cord centroid on the lesion slices; everything else obeys the rule above.
* The same seed (or an identically seeded Generator) and inputs give identical outputs.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import NamedTuple

import nibabel as nib
import numpy as np
from scipy import ndimage
from scipy.special import erfc

# Documented sampling ranges of :func:`sample_params` (uniform unless stated).
LENGTH_MM = (6.0, 40.0)            # I-S extent: acute contusions span about one to three vertebral segments
WIDTH_FRACTION = (0.3, 0.9)        # maximal axial radius / local cord radius
OFFSET_FRACTION = 0.35             # centre offset, uniform in the disc of this radius (fraction of cord radius)
CONTRAST = (0.4, 1.5)              # lesion signal = cord signal x (1 + contrast): T2 edema
EDGE_MM = (0.3, 1.5)               # Gaussian sigma (mm) of the edema-like soft edge
HAEMORRHAGE_PROB = 0.3             # probability of a hypointense haemorrhagic core
HAEMORRHAGE_FRACTION = (0.2, 0.5)  # core length and radius / lesion length and radius
HAEMORRHAGE_CONTRAST = (0.3, 0.7)  # core signal = cord signal x (1 - haemorrhage_contrast)
SWELLING_PROB = 0.4                # probability of cord swelling; otherwise swelling = 0
SWELLING = (0.05, 0.25)            # radial dilation of the cord at the lesion centre

EDGE_CUTOFF = 3.0                  # the weight is exactly 0 beyond EDGE_CUTOFF x edge_mm (+ half a voxel)
TEXTURE_MM = 1.0                   # in-plane sigma of the local mean whose residual (texture) is kept
SWELL_FLAT, SWELL_REACH = 1.5, 3.0  # warp: full dilation up to 1.5 cord radii, identity from 3 cord radii


@dataclass(frozen=True)
class LesionParams:
    """Parameters of one simulated lesion (ranges sampled by :func:`sample_params` in the constants above)."""
    length_mm: float                 # inferior-superior extent (mm)
    width_fraction: float            # maximal axial radius as a fraction of the local cord radius
    offset_fraction: tuple           # (L-R, A-P) centre offset as a fraction of the local cord radius
    contrast: float                  # lesion signal = cord signal x (1 + contrast)
    edge_mm: float                   # Gaussian sigma (mm) of the soft edge
    haemorrhage: bool                # hypointense core present
    haemorrhage_fraction: float      # core length and radius relative to the lesion's
    haemorrhage_contrast: float      # core signal = cord signal x (1 - haemorrhage_contrast)
    swelling: float                  # radial dilation of the cord at the lesion centre (0 = none)

    def __post_init__(self):
        offset = tuple(float(v) for v in self.offset_fraction)
        object.__setattr__(self, "offset_fraction", offset)
        problems = [name for name, ok in [
            ("length_mm > 0", self.length_mm > 0),
            ("0 < width_fraction <= 1.5", 0 < self.width_fraction <= 1.5),
            ("offset_fraction has 2 finite values", len(offset) == 2 and all(map(math.isfinite, offset))),
            ("contrast > -1", self.contrast > -1),
            ("edge_mm > 0", self.edge_mm > 0),
            ("0 < haemorrhage_fraction <= 1", 0 < self.haemorrhage_fraction <= 1),
            ("0 <= haemorrhage_contrast <= 1", 0 <= self.haemorrhage_contrast <= 1),
            ("0 <= swelling <= 1", 0 <= self.swelling <= 1)] if not ok]
        if problems:
            raise ValueError(f"invalid lesion parameters ({', '.join(problems)}): {self}")


class SimulatedLesion(NamedTuple):
    image: np.ndarray          # float32, the image with the lesion (and swelling)
    lesion: np.ndarray         # bool, the exact lesion mask == (weight >= 0.5)
    params: LesionParams
    weight: np.ndarray         # float32 soft weight in [0, 1]
    cord: np.ndarray           # bool, the cord after swelling (equal to the input cord when swelling == 0)
    haemorrhage: np.ndarray    # bool, the haemorrhagic core (subset of lesion; empty without haemorrhage)
    centre_slice: int          # axial slice of the lesion centre
    cord_signal: float         # reference cord signal S


def sample_params(rng: np.random.Generator, **overrides) -> LesionParams:
    """Draw lesion parameters from the documented ranges; ``overrides`` fix any field. The same number of
    random values is drawn whatever the overrides, so a seed gives the same geometry with or without them."""
    u = rng.uniform
    length, width = u(*LENGTH_MM), u(*WIDTH_FRACTION)
    angle, radius = u(0, 2 * np.pi), OFFSET_FRACTION * np.sqrt(u())
    contrast, edge = u(*CONTRAST), u(*EDGE_MM)
    haem = rng.random() < HAEMORRHAGE_PROB
    haem_fraction, haem_contrast = u(*HAEMORRHAGE_FRACTION), u(*HAEMORRHAGE_CONTRAST)
    swell, swelling = rng.random() < SWELLING_PROB, u(*SWELLING)
    values = dict(length_mm=float(length), width_fraction=float(width),
                  offset_fraction=(float(radius * np.cos(angle)), float(radius * np.sin(angle))),
                  contrast=float(contrast), edge_mm=float(edge), haemorrhage=bool(haem),
                  haemorrhage_fraction=float(haem_fraction), haemorrhage_contrast=float(haem_contrast),
                  swelling=float(swelling) if swell else 0.0)
    unknown = set(overrides) - set(values)
    if unknown:
        raise TypeError(f"unknown lesion parameter(s): {sorted(unknown)}")
    return LesionParams(**(values | overrides))


# --- helpers -------------------------------------------------------------------------------------------

def _as_rng(rng_or_seed) -> np.random.Generator:
    return rng_or_seed if isinstance(rng_or_seed, np.random.Generator) else np.random.default_rng(rng_or_seed)


def _slice_geometry(mask2d: np.ndarray, zooms) -> tuple[float, float, float]:
    """Centroid (voxel coordinates) and equivalent-area radius (mm) of a 2D mask."""
    ii, jj = np.nonzero(mask2d)
    return float(ii.mean()), float(jj.mean()), float(np.sqrt(len(ii) * zooms[0] * zooms[1] / np.pi))


def _choose_centre(has_cord: np.ndarray, reach: int, rng: np.random.Generator) -> int:
    """A random cord slice from which the whole extent (+-reach slices) lies on cord slices if possible,
    else one from the middle half of the cord's slices."""
    cord_slices = np.flatnonzero(has_cord)
    n = len(has_cord)
    full = [k for k in cord_slices if k - reach >= 0 and k + reach < n and has_cord[k - reach:k + reach + 1].all()]
    if not full:
        q = len(cord_slices) // 4
        full = cord_slices[q:len(cord_slices) - q] if len(cord_slices) - 2 * q > 0 else cord_slices
    return int(rng.choice(np.asarray(full)))


def _spindle_slice(cord2d, ci, cj, rho, zooms) -> np.ndarray:
    """Cord voxels within ``rho`` mm of (ci, cj); the nearest cord voxel when none is."""
    ii, jj = np.ogrid[:cord2d.shape[0], :cord2d.shape[1]]
    q = np.hypot((ii - ci) * zooms[0], (jj - cj) * zooms[1])
    inside = cord2d & (q <= rho)
    if not inside.any() and cord2d.any():
        flat = np.where(cord2d, q, np.inf).argmin()
        inside.flat[flat] = True
    return inside


def _soft_weight(hard: np.ndarray, sigma_mm: float, zooms) -> np.ndarray:
    """Phi(-sd / sigma) of the signed distance (mm) to the boundary of ``hard``; exactly 0 beyond 3 sigma."""
    h = 0.5 * min(zooms)
    d_out = ndimage.distance_transform_edt(~hard, sampling=zooms)
    d_in = ndimage.distance_transform_edt(hard, sampling=zooms)
    sd = np.where(hard, h - d_in, d_out - h)
    weight = 0.5 * erfc(sd / (np.sqrt(2.0) * sigma_mm))
    weight[sd > EDGE_CUTOFF * sigma_mm] = 0.0
    return weight


def _local_mean(image: np.ndarray, cord: np.ndarray, zooms) -> np.ndarray:
    """In-plane Gaussian local mean, normalised separately within the cord and outside it."""
    sigma = (TEXTURE_MM / zooms[0], TEXTURE_MM / zooms[1], 0)
    image = image.astype(np.float64)
    mean = np.empty_like(image)
    for region in (cord, ~cord):
        w = ndimage.gaussian_filter(region.astype(np.float64), sigma)
        m = ndimage.gaussian_filter(image * region, sigma) / np.maximum(w, 1e-12)
        mean[region] = m[region]
    return mean


def _swell(image, cord, zooms, slices, amounts):
    """Radial dilation of image and cord around the cord centroid on each of ``slices`` (in place)."""
    for k, a in zip(slices, amounts):
        if a <= 0 or not cord[:, :, k].any():
            continue
        ci, cj, radius = _slice_geometry(cord[:, :, k], zooms)
        reach = SWELL_REACH * radius
        lo_i, hi_i = max(0, int(ci - reach / zooms[0]) - 1), min(image.shape[0], int(ci + reach / zooms[0]) + 2)
        lo_j, hi_j = max(0, int(cj - reach / zooms[1]) - 1), min(image.shape[1], int(cj + reach / zooms[1]) + 2)
        ii, jj = np.meshgrid(np.arange(lo_i, hi_i), np.arange(lo_j, hi_j), indexing="ij")
        u = np.hypot((ii - ci) * zooms[0], (jj - cj) * zooms[1]) / radius
        inside = u < SWELL_REACH
        fade = np.clip((u - SWELL_FLAT) / (SWELL_REACH - SWELL_FLAT), 0, 1)
        scale = 1 + a * 0.5 * (1 + np.cos(np.pi * fade))
        src = [(ci + (ii - ci) / scale)[inside], (cj + (jj - cj) / scale)[inside]]
        image[ii[inside], jj[inside], k] = ndimage.map_coordinates(image[:, :, k], src, order=1, mode="nearest")
        cord_k = ndimage.map_coordinates(cord[:, :, k].astype(np.float32), src, order=1, mode="constant")
        cord[ii[inside], jj[inside], k] = cord_k >= 0.5


# --- the simulator -------------------------------------------------------------------------------------

def _checked_inputs(image, cord, zooms) -> tuple[np.ndarray, np.ndarray, tuple]:
    """The image, the cord as a boolean mask and three voxel sizes; ValueError for anything unusable."""
    image = np.asarray(image)
    cord = np.asarray(cord)
    cord = cord > 0.5 if cord.dtype.kind == "f" else cord.astype(bool)
    zooms = tuple(float(z) for z in zooms[:3])
    if image.ndim != 3 or image.shape != cord.shape:
        raise ValueError(f"image {image.shape} and cord {cord.shape} must be 3D arrays of the same shape")
    if len(zooms) != 3 or min(zooms) <= 0:
        raise ValueError(f"zooms must be three positive voxel sizes, got {zooms}")
    if not cord.any():
        raise ValueError("cord mask is empty: nowhere to put a lesion")
    return image, cord, zooms


def _lesion_slices(has_cord, params: LesionParams, zooms, rng, centre_slice) -> tuple[int, np.ndarray, np.ndarray]:
    """(centre slice, the cord slices within ``length_mm / 2`` of it, their distances to it in mm)."""
    n = len(has_cord)
    reach = int(np.floor(params.length_mm / 2 / zooms[2] + 1e-9))
    if centre_slice is None:
        centre_slice = _choose_centre(has_cord, reach, rng)
    elif not (0 <= centre_slice < n and has_cord[centre_slice]):
        raise ValueError(f"centre_slice {centre_slice} holds no cord")
    centre_slice = int(centre_slice)
    ks = np.arange(max(0, centre_slice - reach), min(n, centre_slice + reach + 1))
    ks = ks[has_cord[ks]]
    return centre_slice, ks, (ks - centre_slice) * zooms[2]


def _working_box(cord, ks, params: LesionParams, zooms) -> tuple[slice, ...]:
    """The cord on the lesion slices, padded by the edge cut-off and the texture kernel: nothing outside
    it changes, so the distance transforms and blurs run on this box only."""
    pad_mm = EDGE_CUTOFF * params.edge_mm + min(zooms) + 4 * TEXTURE_MM
    ii, jj = np.nonzero(cord[:, :, ks].any(axis=2))
    lows, highs = (ii.min(), jj.min(), ks.min()), (ii.max(), jj.max(), ks.max())
    return tuple(slice(max(0, int(lo - pad_mm / z) - 1), min(size, int(hi + pad_mm / z) + 2))
                 for lo, hi, z, size in zip(lows, highs, zooms, cord.shape))


def _spindles(cord_b, ks, dist, k0: int, params: LesionParams, zooms) -> tuple[np.ndarray, np.ndarray]:
    """The hard spindle ``H`` and the haemorrhagic core in the box (``k0``: the box's first slice)."""
    hard = np.zeros(cord_b.shape, bool)
    core = np.zeros(cord_b.shape, bool)
    core_half = params.haemorrhage_fraction * params.length_mm / 2
    for k, d in zip(ks, dist):
        kb = k - k0
        ci, cj, radius = _slice_geometry(cord_b[:, :, kb], zooms)
        ci += params.offset_fraction[0] * radius / zooms[0]
        cj += params.offset_fraction[1] * radius / zooms[1]
        rho = params.width_fraction * radius * np.cos(np.pi * d / params.length_mm)
        hard[:, :, kb] = _spindle_slice(cord_b[:, :, kb], ci, cj, rho, zooms)
        if params.haemorrhage and abs(d) <= core_half + 1e-9:
            rho_core = (params.haemorrhage_fraction * params.width_fraction * radius
                        * np.cos(np.pi * d / (2 * core_half)))
            core[:, :, kb] = _spindle_slice(hard[:, :, kb], ci, cj, rho_core, zooms)
    return hard, core


def _target_signal(cord_signal: float, core, params: LesionParams, zooms) -> np.ndarray:
    """``T``: the oedema's signal, pulled toward the haemorrhage's inside the core."""
    target = np.full(core.shape, cord_signal * (1 + params.contrast))
    if core.any():
        c = _soft_weight(core, params.edge_mm / 2, zooms)
        target = target * (1 - c) + cord_signal * (1 - params.haemorrhage_contrast) * c
    return target


def _blend(region, cord_b, weight, target, zooms, non_negative: bool) -> np.ndarray:
    """``region + w * (T - m)``, keeping the image's own texture; untouched where ``w == 0``."""
    blended = region + weight * (target - _local_mean(region, cord_b, zooms))
    if non_negative:
        blended = np.maximum(blended, 0)
    return np.where(weight > 0, blended.astype(np.float32), region)


def _on_full_grid(array, box, shape, dtype) -> np.ndarray:
    full = np.zeros(shape, dtype)
    full[box] = array
    return full


def simulate_lesion_detailed(image: np.ndarray, cord: np.ndarray, zooms, rng_or_seed,
                             params: LesionParams | None = None, centre_slice: int | None = None,
                             **overrides) -> SimulatedLesion:
    """Insert one lesion; return everything (image, mask, params, soft weight, swollen cord, core, ...).

    ``rng_or_seed``: a Generator (consumed: parameters first, then the centre slice) or a seed.
    ``params``: fixed parameters (else sampled); ``overrides``: fields to fix in either case.
    ``centre_slice``: axial slice of the lesion centre (must hold cord), else drawn at random among the
    slices from which the whole lesion lies on cord slices.
    """
    rng = _as_rng(rng_or_seed)
    params = sample_params(rng, **overrides) if params is None else replace(params, **overrides)
    image, cord, zooms = _checked_inputs(image, cord, zooms)
    centre_slice, ks, dist = _lesion_slices(cord.any(axis=(0, 1)), params, zooms, rng, centre_slice)

    out = image.astype(np.float32, copy=True)
    swollen = cord.copy()
    if params.swelling > 0:
        _swell(out, swollen, zooms, ks, params.swelling * np.cos(np.pi * dist / params.length_mm) ** 2)

    box = _working_box(swollen, ks, params, zooms)
    cord_b = swollen[box]
    hard, core = _spindles(cord_b, ks, dist, box[2].start, params, zooms)
    weight = _soft_weight(hard, params.edge_mm, zooms)
    cord_signal = float(np.median(out[:, :, ks][swollen[:, :, ks]]))
    target = _target_signal(cord_signal, core, params, zooms)
    out[box] = _blend(out[box], cord_b, weight, target, zooms, non_negative=bool(image.size and image.min() >= 0))

    shape = image.shape
    return SimulatedLesion(out, _on_full_grid(hard, box, shape, bool), params,
                           _on_full_grid(weight, box, shape, np.float32), swollen,
                           _on_full_grid(core, box, shape, bool), centre_slice, cord_signal)


def simulate_lesion(image: np.ndarray, cord: np.ndarray, zooms, rng_or_seed, params: LesionParams | None = None,
                    centre_slice: int | None = None, **overrides):
    """Return ``(image with lesion as float32, exact lesion mask (bool), params)``; arrays in canonical RAS
    voxel order (axial slices along axis 2), ``zooms`` their voxel sizes in mm. See the module docstring for
    the model and its guarantees, and :func:`simulate_lesion_detailed` for the soft weight and the swollen
    cord."""
    sim = simulate_lesion_detailed(image, cord, zooms, rng_or_seed, params, centre_slice, **overrides)
    return sim.image, sim.lesion, sim.params


def simulate_lesion_nifti(img: nib.Nifti1Image, cord_img: nib.Nifti1Image, seed, return_cord: bool = False, **kw):
    """NIfTI wrapper: simulate in closest-canonical RAS order and return images on the INPUT grid and affine.

    Returns ``(image (float32), lesion mask (uint8), info)`` -- plus the cord mask after swelling (uint8)
    when ``return_cord`` -- where ``info`` (JSON-ready, for sidecars) holds the parameters, the lesion's
    volume (mm^3) and I-S length (mm), the reference cord signal, the seed and ``"simulated": True``.
    ``kw`` goes to :func:`simulate_lesion_detailed` (``params``, ``centre_slice`` in canonical order, or
    parameter overrides such as ``length_mm=20``).
    """
    if img.ndim == 4 and img.shape[3] == 1:
        img = img.slicer[..., 0]
    if cord_img.ndim == 4 and cord_img.shape[3] == 1:
        cord_img = cord_img.slicer[..., 0]
    if img.ndim != 3 or cord_img.shape != img.shape or not np.allclose(cord_img.affine, img.affine, atol=1e-4):
        raise ValueError("the cord mask must be a 3D image on the grid of the image")
    ornt = nib.orientations.io_orientation(img.affine)
    back = nib.orientations.ornt_transform(nib.orientations.axcodes2ornt("RAS"), ornt)
    data = nib.orientations.apply_orientation(img.get_fdata(dtype=np.float32), ornt)
    cord = nib.orientations.apply_orientation(cord_img.get_fdata(dtype=np.float32) > 0.5, ornt)
    zooms = np.linalg.norm(img.affine[:3, :3], axis=0)[np.argsort(ornt[:, 0])]
    sim = simulate_lesion_detailed(data, cord, zooms, seed, **kw)

    def on_input_grid(array, dtype):
        header = img.header.copy()
        header.set_data_dtype(dtype)
        out = nib.Nifti1Image(np.ascontiguousarray(nib.orientations.apply_orientation(array, back)).astype(dtype),
                              img.affine, header)
        out.header.set_slope_inter(1, 0)
        return out

    voxel_mm3 = abs(float(np.linalg.det(img.affine[:3, :3])))
    ks = np.flatnonzero(sim.lesion.any(axis=(0, 1)))
    info = asdict(sim.params)
    info["offset_fraction"] = list(sim.params.offset_fraction)
    info |= {"lesion_volume_mm3": float(sim.lesion.sum() * voxel_mm3),
             "lesion_length_mm": float((ks.max() - ks.min() + 1) * zooms[2]) if len(ks) else 0.0,
             "cord_signal": sim.cord_signal,
             "seed": int(seed) if isinstance(seed, (int, np.integer)) else None,
             "simulated": True, "generator": "basicseg.simulate"}
    result = (on_input_grid(sim.image, np.float32), on_input_grid(sim.lesion, np.uint8), info)
    return result + (on_input_grid(sim.cord, np.uint8),) if return_cord else result
