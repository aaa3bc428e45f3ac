"""Augment: paired image/mask augmentation for training.

Geometric augmentation is not applied to the crops afterwards: it is a per-slice in-plane matrix
handed to :func:`basicseg.segment.crop.crop_slices`, so the network sees exactly the sampling that inference
uses. Intensity augmentation widens contrast across scanners and sequences (T2w, T2*w), the failure
mode seen across sites (a T2*w whose cord is almost as bright as the CSF).
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage

# geometric ranges
ROTATION_DEG = 20.0         # in-plane rotation, uniform +-
SCALE_RANGE = (0.8, 1.25)   # isotropic scaling of the cord in the box
ANISO_SCALE = 0.1           # extra per-axis scaling +- (affine warp)
OBLIQUE_PROB = 0.5          # share of boxes cut as if the slice were tilted against the cord
OBLIQUE_MAX_DEG = 45.0      # tilt: axial slices of a lordotic neck or a curved 3D volume cross the cord obliquely,
                            # stretching its section by 1 / cos(tilt) along the tilt direction
SHIFT_MM = 2.0              # centre jitter (sd, mm): the centreline is never exact at inference
SHIFT_MAX_MM = 5.0
# intensity ranges
GAMMA_LOG_SD = 0.35
BIAS_AMPLITUDE = 0.25       # smooth multiplicative field, +- fraction
NOISE_SD = (0.0, 0.06)      # Gaussian noise on [0, 1] intensities
REMAP_PROB = 0.3            # random piecewise-linear intensity curve (contrast heterogeneity)
BLUR_PROB = 0.25
BLUR_SD_PX = (0.5, 2.0)     # in-plane blur (box pixels, 0.2 mm) mimicking coarser acquisitions
THICK_SLICES_MM = (2, 7)    # thick axial slices simulated from 1 mm volumes
# domain randomisation: each tissue class of the box gets its own gain, so no one site's contrast between
# cord, grey matter and CSF can be learnt (a T2*w cord almost as bright as its CSF, with visible grey matter)
TISSUE_PROB = 0.7           # share of boxes recoloured
CORD_GAIN = (0.6, 2.2)      # white matter (the cord outside the GM), log-uniform
GM_GAIN = (0.6, 1.8)        # grey matter, relative to the cord's gain: from invisible to T2*w-bright
CSF_GAIN = (0.5, 1.6)       # the ring around the cord
CSF_RING_MM = (1.0, 4.0)    # width of the ring recoloured as CSF
TISSUE_EDGE_PX = 1.5        # soft class edges (box pixels): a hard step would be a new, unrealistic edge
PIXEL_MM = 0.2              # box pixel (basicseg.segment.crop)


def random_transforms(rng: np.random.Generator, n: int) -> np.ndarray:
    """(n, 2, 2) in-plane matrices: rotation x anisotropic scaling x optional left-right flip x obliquity."""
    theta = np.deg2rad(rng.uniform(-ROTATION_DEG, ROTATION_DEG, n))
    scale = rng.uniform(*SCALE_RANGE, n)
    sx = scale * rng.uniform(1 - ANISO_SCALE, 1 + ANISO_SCALE, n)
    sy = scale * rng.uniform(1 - ANISO_SCALE, 1 + ANISO_SCALE, n)
    flip = np.where(rng.random(n) < 0.5, -1.0, 1.0)            # axis 0 is left-right
    c, s = np.cos(theta), np.sin(theta)
    rot = np.stack([np.stack([c, -s], -1), np.stack([s, c], -1)], -2)
    # sampling offsets are divided by the scale: a scale > 1 magnifies the cord
    diag = np.zeros((n, 2, 2))
    diag[:, 0, 0] = flip / sx
    diag[:, 1, 1] = 1.0 / sy
    return rot @ diag @ oblique_stretch(rng, n)


def oblique_stretch(rng: np.random.Generator, n: int) -> np.ndarray:
    """(n, 2, 2): shrink the sampling offsets by cos(tilt) along a random direction u, so the cord's section
    looks 1 / cos(tilt) longer along u, as on a slice tilted by ``tilt`` against the cord axis."""
    tilt = np.where(rng.random(n) < OBLIQUE_PROB, np.deg2rad(rng.uniform(0.0, OBLIQUE_MAX_DEG, n)), 0.0)
    phi = rng.uniform(0.0, np.pi, n)
    u = np.stack([np.cos(phi), np.sin(phi)], -1)
    return np.eye(2) + (np.cos(tilt) - 1.0)[:, None, None] * u[:, :, None] * u[:, None, :]


def random_shifts(rng: np.random.Generator, n: int, zooms) -> np.ndarray:
    """Centre jitter in voxels."""
    mm = np.clip(rng.normal(0, SHIFT_MM, (n, 2)), -SHIFT_MAX_MM, SHIFT_MAX_MM)
    return mm / np.asarray(zooms[:2])


def intensity(rng: np.random.Generator, boxes: np.ndarray) -> np.ndarray:
    """Intensity augmentation of normalised boxes (n, m, m) in [0, 1]."""
    out = boxes.copy()
    n, m, _ = out.shape
    grid = np.linspace(-1, 1, m)
    gx, gy = np.meshgrid(grid, grid, indexing="ij")
    for b in range(n):
        x = out[b]
        if rng.random() < BLUR_PROB:
            x = ndimage.gaussian_filter(x, rng.uniform(*BLUR_SD_PX))
        if rng.random() < REMAP_PROB:
            knots = np.sort(rng.uniform(0, 1, 3))
            x = np.interp(x, np.r_[0, knots, 1], np.r_[0, np.sort(rng.uniform(0, 1, 3)), 1])
        x = np.clip(x, 0, 1) ** np.exp(rng.normal(0, GAMMA_LOG_SD))
        coef = rng.uniform(-BIAS_AMPLITUDE, BIAS_AMPLITUDE, 5)
        x = x * (1 + coef[0] * gx + coef[1] * gy + 0.5 * (coef[2] * gx * gy + coef[3] * gx ** 2 + coef[4] * gy ** 2))
        x = x + rng.normal(0, rng.uniform(*NOISE_SD), x.shape)
        out[b] = np.clip(x, 0, 1)
    return out.astype(np.float32)


def _log_uniform(rng, bounds):
    return float(np.exp(rng.uniform(np.log(bounds[0]), np.log(bounds[1]))))


def tissue_contrast(rng: np.random.Generator, boxes: np.ndarray, cord: np.ndarray, gm: np.ndarray) -> np.ndarray:
    """Domain randomisation of normalised boxes (n, m, m): random gains for white matter, grey matter and the
    CSF ring (``cord``, ``gm``: the boxes' bool masks), soft-edged, then renormalised to [0, 1]. The image's
    own texture, noise and partial volume are kept: only the contrasts between classes change."""
    out = boxes.copy()
    for b in range(len(out)):
        if rng.random() >= TISSUE_PROB or not cord[b].any():
            continue
        ring_px = rng.uniform(*CSF_RING_MM) / PIXEL_MM
        ring = ~cord[b] & (ndimage.distance_transform_edt(~cord[b]) <= ring_px)
        wm, g = _log_uniform(rng, CORD_GAIN), _log_uniform(rng, GM_GAIN)
        gain = 1.0
        for mask, factor in ((cord[b] & ~gm[b], wm), (gm[b] & cord[b], wm * g), (ring, _log_uniform(rng, CSF_GAIN))):
            gain = gain + (factor - 1.0) * ndimage.gaussian_filter(mask.astype(np.float32), TISSUE_EDGE_PX)
        x = out[b] * gain
        out[b] = np.clip(x / max(1.0, float(np.percentile(x, 99.5))), 0, 1)
    return out.astype(np.float32)


def thick_slice_volume(data: np.ndarray, thickness_voxels: int) -> np.ndarray:
    """Average ``thickness_voxels`` neighbouring axial slices (a thick 2D slice from a 1 mm 3D volume)."""
    if thickness_voxels <= 1:
        return data
    return ndimage.uniform_filter1d(data.astype(np.float32), thickness_voxels, axis=2, mode="nearest")
