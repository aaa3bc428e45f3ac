"""Centreline: find the cord centre on every axial slice.

The paper used SCT's OptiC. basicseg's built-in detector needs no external tool: a coarse
cord-localisation U-Net (``models.build_localiser``) segments the cord on full-field axial slices
resampled to 1 mm in-plane; each slice's cord centre is the probability-weighted centroid of its most
confident blob; then a smoothness-constrained path through the slices rejects outliers and fills the
slices where nothing was found. ``--centerline sct`` runs ``sct_get_centerline -method optic`` and
``--centerline DIR`` reads user-supplied centreline masks.
"""
from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
from scipy import ndimage

from basicseg.segment.normalise import normalise
from basicseg.errors import DATA_ERR, NO_INPUT, BasicsegError
from basicseg.segment.load import AxialVolume, load_mask

LOCALISER_MM = 1.0          # in-plane pixel of the localiser's input (mm)
LOCALISER_MULTIPLE = 16     # U-Net with 4 poolings needs sizes divisible by 16
MIN_CONFIDENCE = 0.5        # slice kept when its best blob reaches this probability
MAX_JUMP_MM = 6.0           # a slice centre further than this from the running median is an outlier
SMOOTH_MM = 6.0             # Gaussian smoothing of the path along inferior-superior (sigma, mm)
MEDIAN_WINDOW_MM = 15.0     # window of the running median used to reject outliers
LOCALISER_STEP_MM = 3.0     # the cord bends slowly: localise every ~3 mm, interpolate in between


# --- full-field slices at 1 mm for the localiser -------------------------------------------------------

def localiser_grid(shape, zooms, mm: float = LOCALISER_MM, multiple: int = LOCALISER_MULTIPLE):
    """Voxel coordinates (i, j) of a 1 mm grid covering the slice, padded to a multiple of 16."""
    n = [int(np.ceil(shape[a] * zooms[a] / mm / multiple) * multiple) for a in (0, 1)]
    # centre the padded grid on the slice
    starts = [((shape[a] - 1) * zooms[a] - (n[a] - 1) * mm) / 2.0 / zooms[a] for a in (0, 1)]
    gi = starts[0] + np.arange(n[0]) * mm / zooms[0]
    gj = starts[1] + np.arange(n[1]) * mm / zooms[1]
    return gi, gj


def resample_slices(data: np.ndarray, zooms, mm: float = LOCALISER_MM, order: int = 1):
    """All axial slices resampled to ``mm`` in-plane: returns (n_slices, ni, nj) and the grid."""
    gi, gj = localiser_grid(data.shape, zooms, mm)
    ii, jj = np.meshgrid(gi, gj, indexing="ij")
    out = np.empty((data.shape[2], len(gi), len(gj)), dtype=np.float32)
    for k in range(data.shape[2]):
        out[k] = ndimage.map_coordinates(data[:, :, k], [ii, jj], order=order, mode="constant", cval=0.0)
    return out, (gi, gj)


def localiser_slices(n_slices: int, slice_mm: float, step_mm: float = LOCALISER_STEP_MM) -> np.ndarray:
    """Indices of the slices the localiser looks at (all of them for thick slices; every ~3 mm for 3D)."""
    step = max(1, int(round(step_mm / slice_mm)))
    ks = np.arange(0, n_slices, step)
    return ks if ks[-1] == n_slices - 1 else np.append(ks, n_slices - 1)


def localiser_inputs(volume: AxialVolume) -> tuple[np.ndarray, tuple, np.ndarray]:
    ks = localiser_slices(volume.n_slices, volume.zooms[2])
    slices, grid = resample_slices(volume.data[:, :, ks], volume.zooms)
    return normalise(slices)[..., None], grid, ks


# --- from probability maps to a path --------------------------------------------------------------------

def slice_centres(prob: np.ndarray, grid) -> tuple[np.ndarray, np.ndarray]:
    """Per slice, the probability-weighted centroid (native voxel i, j) of the most confident blob."""
    gi, gj = grid
    centres = np.full((prob.shape[0], 2), np.nan)
    confidence = np.zeros(prob.shape[0])
    for k, p in enumerate(prob):
        labels, n = ndimage.label(p >= MIN_CONFIDENCE)
        if n == 0:
            confidence[k] = float(p.max())
            continue
        # the blob carrying the most probability mass is the cord; others are false alarms
        mass = ndimage.sum(p, labels, index=np.arange(1, n + 1))
        best = int(np.argmax(mass)) + 1
        ci, cj = ndimage.center_of_mass(p * (labels == best))
        centres[k] = np.interp(ci, np.arange(len(gi)), gi), np.interp(cj, np.arange(len(gj)), gj)
        confidence[k] = float(p[labels == best].max())
    return centres, confidence


def smooth_path(centres: np.ndarray, zooms, max_jump_mm: float = MAX_JUMP_MM, smooth_mm: float = SMOOTH_MM,
                median_window_mm: float = MEDIAN_WINDOW_MM) -> np.ndarray:
    """Reject outliers against a running median, fill gaps by interpolation, and smooth along z.

    Input and output are (n_slices, 2) voxel coordinates; NaN rows are slices without a detection.
    Raises when no slice has a detection at all.
    """
    centres = np.array(centres, dtype=np.float64)
    n = len(centres)
    good = np.isfinite(centres).all(axis=1)
    if not good.any():
        raise BasicsegError("no spinal cord found on any slice (centreline detection failed)", DATA_ERR)
    z = np.arange(n)
    half = max(1, int(round(median_window_mm / zooms[2] / 2)))
    mm = np.asarray(zooms[:2])
    for _ in range(2):   # twice: a cluster of outliers can bias the first median
        idx = np.nonzero(good)[0]
        med = np.array([np.median(centres[idx[(idx >= k - half) & (idx <= k + half)]], axis=0)
                        if ((idx >= k - half) & (idx <= k + half)).any() else [np.nan, np.nan] for k in z])
        dist = np.linalg.norm((centres - med) * mm, axis=1)
        good = good & (dist <= max_jump_mm)
        if not good.any():
            good = np.isfinite(centres).all(axis=1)
            break
    idx = np.nonzero(good)[0]
    filled = np.stack([np.interp(z, idx, centres[idx, a]) for a in (0, 1)], axis=1)
    sigma = smooth_mm / zooms[2]
    if n > 1 and sigma > 0.3:
        filled = ndimage.gaussian_filter1d(filled, sigma, axis=0, mode="nearest")
    return filled


def centres_from_mask(mask: np.ndarray) -> np.ndarray:
    """Per-slice centroid of a (cord or centreline) mask in canonical order; NaN where empty."""
    centres = np.full((mask.shape[2], 2), np.nan)
    for k in range(mask.shape[2]):
        if mask[:, :, k].any():
            centres[k] = ndimage.center_of_mass(mask[:, :, k])
    return centres


# --- the three sources of a centreline -----------------------------------------------------------------

def centreline_from_probabilities(prob: np.ndarray, grid, volume: AxialVolume, slices=None):
    """Path through all slices from the localiser's maps on ``slices`` (default: every slice).
    Confidence is NaN on slices the localiser did not look at."""
    slices = np.arange(volume.n_slices) if slices is None else np.asarray(slices)
    found, conf = slice_centres(prob, grid)
    centres = np.full((volume.n_slices, 2), np.nan)
    confidence = np.full(volume.n_slices, np.nan)
    centres[slices], confidence[slices] = found, conf
    return smooth_path(centres, volume.zooms), confidence


def centreline_from_file(path: Path, volume: AxialVolume) -> np.ndarray:
    return smooth_path(centres_from_mask(load_mask(path, volume)), volume.zooms, smooth_mm=0)


def centreline_sct(volume: AxialVolume, contrast: str = "t2") -> np.ndarray:
    """Run SCT's OptiC (``sct_get_centerline -method optic``) and read its centreline mask."""
    exe = shutil.which("sct_get_centerline")
    if exe is None:
        raise BasicsegError("--centerline sct needs the Spinal Cord Toolbox: sct_get_centerline is not on PATH",
                            NO_INPUT)
    with tempfile.TemporaryDirectory(prefix="basicseg-optic-") as tmp:
        out = Path(tmp) / "centerline.nii.gz"
        cmd = [exe, "-i", str(volume.path), "-c", contrast, "-method", "optic", "-o", str(out)]
        result = subprocess.run(cmd, capture_output=True, text=True)
        if result.returncode != 0 or not out.is_file():
            raise BasicsegError(f"{volume.path}: sct_get_centerline failed ({result.returncode}): "
                                f"{result.stderr.strip()[-500:]}", DATA_ERR)
        return centreline_from_file(out, volume)
