"""Geometry of an axial stack: the affine's slice frame, and the cord's centreline and angles.

Inputs are masks in the image's closest canonical (RAS+) voxel order (axis 2 = axial slices) with that
image's affine, which may be oblique, anisotropic or sheared.  Shared by :mod:`.morphometrics` and
:mod:`.lesions` so that CSA, lengths and widths all use one centreline.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SMOOTH_MM = 6.0             # sigma of the Gaussian-weighted local linear centreline fit (mm along the stack)
MIN_SMOOTH_SLICES = 1.5     # ... and at least this many slice spacings (thick slices)


# --- geometry ---------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class SliceGeometry:
    """Physical geometry of a (possibly oblique, sheared, anisotropic) stack of axial slices."""
    e0: np.ndarray          # unit vector along voxel axis 0 (left-right)
    e1: np.ndarray          # unit in-plane vector perpendicular to e0 (anterior-posterior)
    normal: np.ndarray      # unit slice normal, oriented so that the slice index increases along it
    dx: float               # |c0|, mm
    dy: float               # |c1|, mm
    dz: float               # slice spacing: c2 . normal, mm
    pixel_area: float       # |c0 x c1|, mm^2
    voxel_volume: float     # |det|, mm^3
    origin: np.ndarray
    columns: np.ndarray     # 3x3 [c0 c1 c2]

    def z_mm(self, k) -> np.ndarray:
        """Position of slice k along the slice normal (mm, scanner frame)."""
        return float(self.origin @ self.normal) + np.asarray(k, float) * self.dz


def slice_geometry(affine: np.ndarray) -> SliceGeometry:
    affine = np.asarray(affine, float)
    cols = affine[:3, :3]
    c0, c1, c2 = cols[:, 0], cols[:, 1], cols[:, 2]
    cross = np.cross(c0, c1)
    pixel_area = float(np.linalg.norm(cross))
    if not pixel_area > 0 or not np.isfinite(pixel_area):
        raise ValueError("degenerate affine: the in-plane columns are parallel or zero")
    normal = cross / pixel_area
    dz = float(c2 @ normal)
    if dz < 0:
        normal, dz = -normal, -dz
    e0 = c0 / np.linalg.norm(c0)
    e1 = np.cross(normal, e0)
    if e1 @ c1 < 0:
        e1 = -e1
    return SliceGeometry(e0=e0, e1=e1, normal=normal, dx=float(np.linalg.norm(c0)), dy=float(np.linalg.norm(c1)),
                         dz=dz, pixel_area=pixel_area, voxel_volume=abs(float(np.linalg.det(cols))),
                         origin=affine[:3, 3].copy(), columns=cols.copy())


# --- centreline and angles ---------------------------------------------------------------------------------------

@dataclass
class Centreline:
    i: np.ndarray           # smoothed cord centre along voxel axis 0, per slice (NaN far from any cord)
    j: np.ndarray           # ... along voxel axis 1
    theta_3d: np.ndarray    # angle between the cord tangent and the slice normal (rad)
    theta_sag: np.ndarray   # the same, projected on the sagittal (A-P, normal) plane


def centreline(cord: np.ndarray, affine: np.ndarray, angle_correction: bool = True) -> Centreline:
    """Smoothed cord centre per slice (voxel coordinates) and the cord's angles to the slice normal."""
    return fit_centreline(np.asarray(cord, bool), slice_geometry(affine), angle_correction)


def fit_centreline(cord: np.ndarray, geom: SliceGeometry, angle_correction: bool = True) -> Centreline:
    ni, nj, nz = cord.shape
    counts = cord.sum(axis=(0, 1)).astype(float)
    ks = np.nonzero(counts)[0]
    theta_3d = np.zeros(nz)
    theta_sag = np.zeros(nz)
    if len(ks) == 0:
        return Centreline(np.full(nz, np.nan), np.full(nz, np.nan), theta_3d, theta_sag)
    ci = (np.arange(ni) @ cord.sum(axis=1))[ks] / counts[ks]
    cj = (np.arange(nj) @ cord.sum(axis=0))[ks] / counts[ks]
    sigma = max(SMOOTH_MM, MIN_SMOOTH_SLICES * geom.dz) / geom.dz      # in slices
    x = (ks[None, :] - np.arange(nz)[:, None]).astype(float)           # (nz, m) slice offsets
    w = np.exp(-0.5 * (x / sigma) ** 2)
    s0, s1, s2 = w.sum(1), (w * x).sum(1), (w * x * x).sum(1)
    det = s0 * s2 - s1 * s1
    ok = s0 > 1e-12
    fits = []
    for c in (ci, cj):
        t0, t1 = w @ c, (w * x) @ c
        with np.errstate(invalid="ignore", divide="ignore"):
            slope = np.where(det > 1e-9 * np.maximum(s0 * s2, 1e-300), (s0 * t1 - s1 * t0) / det, 0.0)
            slope = np.where(ok, slope, 0.0)
            centre = np.where(ok, (t0 - slope * s1) / np.where(ok, s0, 1.0), np.nan)
        fits.append((centre, slope))
    (i_fit, si), (j_fit, sj) = fits
    if angle_correction:
        c0, c1, c2 = geom.columns.T
        tangent = np.outer(si, c0) + np.outer(sj, c1) + c2[None, :]    # mm per slice, one row per slice
        tn = np.abs(tangent @ geom.normal)
        t0 = tangent @ geom.e0
        t1 = tangent @ geom.e1
        theta_3d = np.arctan2(np.hypot(t0, t1), tn)
        theta_sag = np.arctan2(np.abs(t1), tn)
    return Centreline(i_fit, j_fit, theta_3d, theta_sag)
