"""Simulate: insert a contusion-like lesion into a real spinal-cord image, using its cord mask.

No public contusion labels exist, so lesion models are trained and tested on lesions made here. The
model of an acute contusion on T2-weighted MRI (cf. McCoy et al. 2019; Talbott et al. BASIC score):

* **shape**: a spindle along the cord, centred on a slice, whose axial radius follows a raised-cosine
  taper of the distance from its centre (``length_mm`` = full inferior-superior extent), with a
  cross-section of ``width_fraction`` of the local cord radius, offset within the cord;
* **signal**: intramedullary T2 hyperintensity (edema): the image is blended toward
  ``cord signal x (1 + contrast)`` with a soft weight (the spindle blurred by ``edge_mm``);
* **haemorrhage** (optional): a hypointense core in the middle of the lesion;
* **swelling** (optional): the cord and its surroundings are dilated radially on the lesion slices.

Guarantees (tested): the returned lesion mask is the set of (swollen) cord voxels where the soft weight
is >= 0.5, so it lies inside the cord; with ``swelling == 0`` every voxel farther than 3 x ``edge_mm``
from the spindle (weight below 1e-3) keeps its exact original value; the same seed gives the same result.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import nibabel as nib
import numpy as np
from scipy import ndimage

# documented parameter ranges (uniform unless stated)
LENGTH_MM = (6.0, 40.0)            # acute contusions span about one to three vertebral segments
WIDTH_FRACTION = (0.35, 0.9)       # of the local cord radius
OFFSET_FRACTION = 0.35             # centre offset within the cross-section, +- fraction of cord radius
CONTRAST = (0.4, 1.5)              # hyperintensity relative to the cord's median signal
EDGE_MM = (0.3, 1.5)               # Gaussian sigma of the edema-like soft edge
HAEMORRHAGE_PROB = 0.3
HAEMORRHAGE_FRACTION = (0.2, 0.5)  # of the lesion's size
HAEMORRHAGE_CONTRAST = (0.3, 0.7)  # core signal = cord signal x (1 - this)
SWELLING_PROB = 0.4
SWELLING = (0.05, 0.25)            # radial dilation at the lesion centre
UNCHANGED_WEIGHT = 1e-3            # below this soft weight a voxel is left exactly as it was


@dataclass(frozen=True)
class LesionParams:
    length_mm: float
    width_fraction: float
    offset_fraction: tuple
    contrast: float
    edge_mm: float
    haemorrhage: bool
    haemorrhage_fraction: float
    haemorrhage_contrast: float
    swelling: float


def sample_params(rng: np.random.Generator, **overrides) -> LesionParams:
    haem = bool(rng.random() < HAEMORRHAGE_PROB)
    params = LesionParams(
        length_mm=float(rng.uniform(*LENGTH_MM)),
        width_fraction=float(rng.uniform(*WIDTH_FRACTION)),
        offset_fraction=tuple(float(v) for v in rng.uniform(-OFFSET_FRACTION, OFFSET_FRACTION, 2)),
        contrast=float(rng.uniform(*CONTRAST)),
        edge_mm=float(rng.uniform(*EDGE_MM)),
        haemorrhage=haem,
        haemorrhage_fraction=float(rng.uniform(*HAEMORRHAGE_FRACTION)),
        haemorrhage_contrast=float(rng.uniform(*HAEMORRHAGE_CONTRAST)),
        swelling=float(rng.uniform(*SWELLING)) if rng.random() < SWELLING_PROB else 0.0,
    )
    return replace(params, **overrides)


def _cord_geometry(cord: np.ndarray, zooms):
    """Per axial slice: centroid (voxels) and equivalent radius (mm) of the cord."""
    n = cord.shape[2]
    centre = np.full((n, 2), np.nan)
    radius = np.zeros(n)
    for k in range(n):
        if cord[:, :, k].any():
            centre[k] = ndimage.center_of_mass(cord[:, :, k])
            radius[k] = np.sqrt(cord[:, :, k].sum() * zooms[0] * zooms[1] / np.pi)
    return centre, radius


def _taper(distance_mm: np.ndarray, half_length: float) -> np.ndarray:
    """Raised-cosine spindle profile: 1 at the centre, 0 at +-half_length."""
    x = np.clip(np.abs(distance_mm) / max(half_length, 1e-6), 0, 1)
    return 0.5 * (1 + np.cos(np.pi * x))


def _swell(image, cord, centre, zooms, slices, amount):
    """Radial dilation of the image and cord around the cord centroid on ``slices`` (amount per slice)."""
    image, cord = image.copy(), cord.copy()
    ii, jj = np.meshgrid(np.arange(image.shape[0]), np.arange(image.shape[1]), indexing="ij")
    for k, a in zip(slices, amount):
        if a <= 0 or not np.isfinite(centre[k]).all():
            continue
        ci, cj = centre[k]
        r = np.hypot((ii - ci) * zooms[0], (jj - cj) * zooms[1])
        # dilation fading out beyond 3 cord radii keeps the far field in place
        scale = 1 + a * np.exp(-(r / 12.0) ** 2)
        src_i, src_j = ci + (ii - ci) / scale, cj + (jj - cj) / scale
        image[:, :, k] = ndimage.map_coordinates(image[:, :, k], [src_i, src_j], order=1, mode="nearest")
        cord[:, :, k] = ndimage.map_coordinates(cord[:, :, k].astype(np.float32), [src_i, src_j], order=1) >= 0.5
    return image, cord


def simulate_lesion(image: np.ndarray, cord: np.ndarray, zooms, rng_or_seed, params: LesionParams | None = None,
                    centre_slice: int | None = None, **overrides):
    """Return (image with lesion (float32), exact lesion mask (bool), params). Arrays in canonical RAS order
    (axial slices along axis 2); ``zooms`` their voxel sizes in mm."""
    rng = rng_or_seed if isinstance(rng_or_seed, np.random.Generator) else np.random.default_rng(rng_or_seed)
    params = params or sample_params(rng, **overrides)
    image = np.asarray(image, dtype=np.float32)
    cord = np.asarray(cord, bool)
    zooms = tuple(float(z) for z in zooms[:3])
    cord_slices = np.nonzero(cord.any(axis=(0, 1)))[0]
    if len(cord_slices) == 0:
        raise ValueError("cord mask is empty: nowhere to put a lesion")
    if centre_slice is None:   # keep the lesion's centre inside the cord's extent
        margin = min(len(cord_slices) // 4, int(params.length_mm / 4 / zooms[2]))
        centre_slice = int(rng.choice(cord_slices[margin:len(cord_slices) - margin] if margin else cord_slices))
    centre, radius = _cord_geometry(cord, zooms)

    half = params.length_mm / 2
    z_mm = (np.arange(image.shape[2]) - centre_slice) * zooms[2]
    profile = _taper(z_mm, half) * (radius > 0)
    lesion_slices = np.nonzero(profile > 0)[0]

    if params.swelling > 0:
        image, cord = _swell(image, cord, centre, zooms, lesion_slices, params.swelling * profile[lesion_slices])
        centre, radius = _cord_geometry(cord, zooms)

    # hard spindle: inside the tapered ellipse on each slice
    spindle = np.zeros(image.shape, np.float32)
    core = np.zeros(image.shape, np.float32)
    ii, jj = np.meshgrid(np.arange(image.shape[0]), np.arange(image.shape[1]), indexing="ij")
    for k in lesion_slices:
        if not radius[k]:
            continue
        r_lesion = params.width_fraction * radius[k] * np.sqrt(profile[k])
        ci = centre[k, 0] + params.offset_fraction[0] * radius[k] / zooms[0]
        cj = centre[k, 1] + params.offset_fraction[1] * radius[k] / zooms[1]
        d = np.hypot((ii - ci) * zooms[0], (jj - cj) * zooms[1])
        spindle[:, :, k] = d <= r_lesion
        if params.haemorrhage:
            core_profile = _taper(z_mm[k], half * params.haemorrhage_fraction)
            core[:, :, k] = d <= params.haemorrhage_fraction * r_lesion * np.sqrt(core_profile) * 1.2
    sigma = [params.edge_mm / z for z in zooms]
    weight = np.clip(ndimage.gaussian_filter(spindle, sigma), 0, 1) if spindle.any() else spindle
    if weight.max() > 0:
        weight = np.clip(weight / max(weight.max(), 1e-6), 0, 1)    # thin lesions still reach full contrast
    lesion = (weight >= 0.5) & cord

    cord_signal = float(np.median(image[:, :, lesion_slices][cord[:, :, lesion_slices]]))
    target = cord_signal * (1 + params.contrast)
    out = image.copy()
    changed = weight >= UNCHANGED_WEIGHT
    out[changed] = image[changed] * (1 - weight[changed]) + target * weight[changed]
    if params.haemorrhage and core.any():
        core_w = np.clip(ndimage.gaussian_filter(core, [s / 2 for s in sigma]), 0, 1) * (weight >= 0.5)
        dark = cord_signal * (1 - params.haemorrhage_contrast)
        sel = core_w >= UNCHANGED_WEIGHT
        out[sel] = out[sel] * (1 - core_w[sel]) + dark * core_w[sel]
    return out.astype(np.float32), lesion, params


def simulate_lesion_nifti(img: nib.Nifti1Image, cord_img: nib.Nifti1Image, seed, **overrides):
    """NIfTI wrapper: works in closest-canonical order, returns images on the INPUT grid, and a dict of
    the parameters plus the lesion volume (mm^3) for sidecars."""
    ornt = nib.orientations.io_orientation(img.affine)
    back = nib.orientations.ornt_transform(nib.orientations.axcodes2ornt("RAS"), ornt)
    data = nib.orientations.apply_orientation(np.asanyarray(img.dataobj, dtype=np.float32), ornt)
    cord = nib.orientations.apply_orientation(np.asanyarray(cord_img.dataobj) > 0.5, ornt)
    zooms = np.linalg.norm(img.affine[:3, :3], axis=0)[np.argsort(ornt[:, 0])]
    out, lesion, params = simulate_lesion(data, cord, zooms, seed, **overrides)
    out_img = nib.Nifti1Image(nib.orientations.apply_orientation(out, back), img.affine, img.header)
    out_img.set_data_dtype(np.float32)
    lesion_img = nib.Nifti1Image(nib.orientations.apply_orientation(lesion, back).astype(np.uint8), img.affine)
    info = asdict(params) | {"lesion_volume_mm3": float(lesion.sum() * np.prod(zooms)), "seed": seed,
                             "simulated": True}
    return out_img, lesion_img, info
