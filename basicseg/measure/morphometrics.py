"""Metrics: spinal cord and lesion morphometrics in physical units, from the image's own affine.

Inputs are boolean masks in the image's *closest canonical* (RAS+) voxel order -- axis 0 left->right,
axis 1 posterior->anterior, axis 2 inferior->superior, axial slices along axis 2 -- with that canonical
image's affine, which may still be oblique and anisotropic.  Geometry comes from the affine's columns
``c0, c1, c2``:

* pixel area of an axial slice: ``|c0 x c1|`` (mm^2); voxel volume: ``|det [c0 c1 c2]|`` (mm^3);
* slice spacing: the component of ``c2`` along the slice normal ``n = c0 x c1 / |c0 x c1|`` (a
  sheared stack -- ``c2`` not perpendicular to the slices -- is handled);
* in-plane step lengths ``|c0|`` (left-right) and ``|c1|`` (anterior-posterior, "A-P").

Cord angle.  As SCT does, areas, lengths and widths are corrected for the angle between the cord and
the slice normal.  The centreline is each slice's cord centroid, smoothed by a Gaussian-weighted local
linear fit along the slices (sigma ``SMOOTH_MM``; a straight cord, even on a sheared grid, is fitted
exactly); its tangent in physical space gives, per slice, ``theta_3d`` (angle to the slice normal) and
``theta_sag`` (the same, projected on the sagittal plane spanned by the A-P axis and the normal).

Definitions (after SCT ``sct_analyze_lesion`` v6/v7 and ``sct_process_segmentation``; see
docs/morphometrics.md for references and the few deliberate differences):

* ``cord_volume_mm3``: cord voxels x voxel volume.
* ``csa_mean_mm2`` / ``csa_min_mm2``: cross-sectional area per slice = cord pixels x pixel area x
  cos(theta_3d); mean / minimum over the ``n_cord_slices`` slices that contain cord.
* ``lesion_volume_mm3``: all lesion voxels x voxel volume (inside the cord or not; SCT "volume").
* ``lesion_count``: 3D connected components of the lesion mask, 26-connectivity (SCT labels with
  18-connectivity; the two differ only for components that touch at a corner).
* The other lesion metrics use the *intramedullary* lesion, lesion AND cord:
* ``lesion_length_mm``: sum over the axial slices that contain lesion of slice spacing / cos(theta_3d)
  (SCT "length"; with several lesions, the slices of their union: SCT's composite length when the
  lesions share no slice).
* ``lesion_max_width_mm``: SCT "width": for each lesion (3D component) and axial slice, the A-P extent
  (most anterior - most posterior lesion voxel + 1) x |c1| x cos(theta_sag); the maximum.  SCT's
  width is anterior-posterior, not left-right.
* ``max_axial_damage_ratio``: per axial slice, intramedullary lesion area / cord area; the maximum over
  the slices with lesion (Smith et al. 2021; the angle factor cancels).
* Midsagittal plane: on each slice, the left-right position ``x`` of the (smoothed) cord centre, between
  the voxel planes ``x0 = floor(x)`` and ``x0 + 1`` with weight ``f = x - x0``.  SCT interpolates between
  the same two planes but takes one ``x`` for all slices (the mean cord centre of mass over 5 slices
  around the largest lesion); the two agree for a straight cord, and following the cord is robust to a
  laterally tilted one.  The interpolated lesion profile is ``(1 - f) L[x0] + f L[x0 + 1]``.
* ``midsagittal_lesion_length_mm``: sum over slices where the interpolated profile is non-zero of
  (mean of its non-zero values) x slice spacing / cos(theta_sag) (SCT's soft length).
* ``midsagittal_lesion_width_mm``: maximum over slices of (sum of the interpolated profile) x |c1| x
  cos(theta_sag).
* ``tissue_bridge_dorsal_mm`` / ``tissue_bridge_ventral_mm``: on each of the two planes and each slice
  where the lesion is present, the number of cord voxels between the cord's dorsal (posterior) edge and
  the lesion's dorsal edge (``first lesion - first cord``, at least 0), likewise ventrally (``last cord
  - last lesion``); interpolated between the planes with ``f``, x |c1| x cos(theta_sag); the minimum over
  the lesion's inferior-superior extent (Huber et al. 2017).  Where only one of the two planes holds
  lesion on a slice its value is used (SCT substitutes 0 for the other plane, which can make a lesion
  tip the minimum).  NaN when the lesion does not reach the midsagittal plane (as in SCT).
* ``tissue_bridges_total_mm``: minimum dorsal + minimum ventral bridge (SCT's total).
* ``lesion_outside_cord_mm3``: lesion voxels outside the cord x voxel volume.

With an all-empty lesion mask, volume, count and outside volume are 0 and every other lesion metric is
NaN; with ``lesion=None`` (no lesion model) all lesion metrics are NaN.  Without cord, CSA is NaN
(``n_cord_slices`` 0, ``cord_volume_mm3`` 0).  Nothing here raises on empty or inconsistent masks; a
shape mismatch between the masks is a ValueError.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import ndimage

SMOOTH_MM = 6.0             # sigma of the Gaussian-weighted local linear centreline fit (mm along the stack)
MIN_SMOOTH_SLICES = 1.5     # ... and at least this many slice spacings (thick slices)

NAN = float("nan")

KEYS = ("cord_volume_mm3", "csa_mean_mm2", "csa_min_mm2", "n_cord_slices",
        "lesion_volume_mm3", "lesion_count", "lesion_length_mm", "lesion_max_width_mm",
        "max_axial_damage_ratio", "midsagittal_lesion_length_mm", "midsagittal_lesion_width_mm",
        "tissue_bridge_dorsal_mm", "tissue_bridge_ventral_mm", "tissue_bridges_total_mm",
        "lesion_outside_cord_mm3")

LABELS = {   # key: (label for tables, unit)
    "cord_volume_mm3": ("Cord volume", "mm³"),
    "csa_mean_mm2": ("Cord cross-sectional area, mean", "mm²"),
    "csa_min_mm2": ("Cord cross-sectional area, minimum", "mm²"),
    "n_cord_slices": ("Slices with cord", ""),
    "lesion_volume_mm3": ("Lesion volume", "mm³"),
    "lesion_count": ("Number of lesions", ""),
    "lesion_length_mm": ("Lesion length (inferior-superior)", "mm"),
    "lesion_max_width_mm": ("Lesion maximal width (anterior-posterior)", "mm"),
    "max_axial_damage_ratio": ("Maximal axial damage ratio", ""),
    "midsagittal_lesion_length_mm": ("Midsagittal lesion length", "mm"),
    "midsagittal_lesion_width_mm": ("Midsagittal lesion width", "mm"),
    "tissue_bridge_dorsal_mm": ("Dorsal tissue bridge", "mm"),
    "tissue_bridge_ventral_mm": ("Ventral tissue bridge", "mm"),
    "tissue_bridges_total_mm": ("Total tissue bridges", "mm"),
    "lesion_outside_cord_mm3": ("Lesion volume outside the cord", "mm³"),
}

QC_FLAGS = ("no_cord", "low_confidence", "discontinuous_cord", "lesion_outside_cord", "missing_cord_slices")

_CONN26 = np.ones((3, 3, 3), bool)


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
    return _centreline(np.asarray(cord, bool), slice_geometry(affine), angle_correction)


def _centreline(cord: np.ndarray, geom: SliceGeometry, angle_correction: bool = True) -> Centreline:
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


# --- per-slice table ---------------------------------------------------------------------------------------------

def _check(cord, lesion):
    cord = np.asarray(cord).astype(bool, copy=False)
    if cord.ndim != 3:
        raise ValueError(f"cord mask must be 3D, got shape {cord.shape}")
    if lesion is not None:
        lesion = np.asarray(lesion).astype(bool, copy=False)
        if lesion.shape != cord.shape:
            raise ValueError(f"lesion mask shape {lesion.shape} differs from cord mask shape {cord.shape}")
    return cord, lesion


def csa_per_slice(cord: np.ndarray, affine: np.ndarray, lesion: np.ndarray | None = None,
                  angle_correction: bool = True) -> pd.DataFrame:
    """One row per axial slice (every slice of the volume):

    ``slice``; ``z_mm`` (position along the slice normal); ``cord_area_mm2`` (axial area);
    ``angle_deg`` (cord to slice normal; NaN without cord); ``csa_mm2`` (angle-corrected cross-sectional
    area; NaN without cord); ``lesion_area_mm2`` (axial area of all lesion voxels); ``damage_ratio``
    (intramedullary lesion area / cord area; NaN without cord).  The lesion columns are NaN when no
    lesion mask is given."""
    cord, lesion = _check(cord, lesion)
    geom = slice_geometry(affine)
    line = _centreline(cord, geom, angle_correction)
    nz = cord.shape[2]
    cord_px = cord.sum(axis=(0, 1))
    has = cord_px > 0
    area = cord_px * geom.pixel_area
    table = pd.DataFrame({
        "slice": np.arange(nz),
        "z_mm": np.round(geom.z_mm(np.arange(nz)), 3),
        "cord_area_mm2": area,
        "angle_deg": np.where(has, np.degrees(line.theta_3d), np.nan),
        "csa_mm2": np.where(has, area * np.cos(line.theta_3d), np.nan),
    })
    if lesion is None:
        table["lesion_area_mm2"] = np.nan
        table["damage_ratio"] = np.nan
    else:
        inside = (lesion & cord).sum(axis=(0, 1))
        table["lesion_area_mm2"] = lesion.sum(axis=(0, 1)) * geom.pixel_area
        table["damage_ratio"] = np.where(has, inside / np.maximum(cord_px, 1), np.nan)
    return table


# --- the image's metrics -----------------------------------------------------------------------------------------

def _no_lesion_metrics(volume: float, count) -> dict:
    """Lesion metrics of an empty lesion mask (volume 0, count 0) or of no lesion mask at all (NaN)."""
    out = {k: NAN for k in KEYS if k.startswith(("lesion_", "max_axial", "midsagittal", "tissue_"))}
    out.update(lesion_volume_mm3=volume, lesion_count=count, lesion_outside_cord_mm3=volume)
    return out


def _max_ap_width(lesion: np.ndarray, geom: SliceGeometry, theta_sag: np.ndarray) -> float:
    """SCT 'width': per 3D component and axial slice, A-P extent x |c1| x cos(theta_sag); the maximum."""
    labels, n = ndimage.label(lesion, structure=_CONN26)
    if n == 0:
        return NAN
    nz = lesion.shape[2]
    _, jj, kk = np.nonzero(labels)
    key = labels[labels > 0].astype(np.int64) * nz + kk     # np.nonzero and boolean indexing share C order
    order = np.argsort(key, kind="stable")
    key, jj = key[order], jj[order]
    uniq, start = np.unique(key, return_index=True)
    extent = np.maximum.reduceat(jj, start) - np.minimum.reduceat(jj, start) + 1
    return float(np.max(extent * geom.dy * np.cos(theta_sag[uniq % nz])))


def _edges(column: np.ndarray):
    """First and last True index of a 1D bool array (None if empty)."""
    idx = np.flatnonzero(column)
    return (int(idx[0]), int(idx[-1])) if len(idx) else None


def _midsagittal(cord, inside, geom, line):
    """Midsagittal length and width, minimal dorsal and ventral tissue bridges and their sum (mm)."""
    ni = cord.shape[0]
    lengths, widths, dorsal, ventral = [], [], [], []
    for k in np.nonzero(inside.any(axis=(0, 1)))[0]:
        x = line.i[k]
        if not np.isfinite(x):
            continue
        x = min(max(float(x), 0.0), ni - 1.0)
        x0 = int(math.floor(x))
        f = x - x0
        planes = ((x0, 1.0 - f), (x0 + 1, f)) if f > 0 and x0 + 1 < ni else ((x0, 1.0),)
        profile = sum(wt * inside[p, :, k].astype(float) for p, wt in planes)
        cos_sag = math.cos(line.theta_sag[k])
        if np.any(profile > 0):
            lengths.append(float(profile[profile > 0].mean()) * geom.dz / cos_sag)
            widths.append(float(profile.sum()) * geom.dy * cos_sag)
        bridges = []
        for p, wt in planes:
            les, cor = _edges(inside[p, :, k]), _edges(cord[p, :, k])
            if les is not None and cor is not None:
                bridges.append((wt, max(les[0] - cor[0], 0), max(cor[1] - les[1], 0)))
        total = sum(b[0] for b in bridges)
        if total > 0:
            dorsal.append(sum(b[0] * b[1] for b in bridges) / total * geom.dy * cos_sag)
            ventral.append(sum(b[0] * b[2] for b in bridges) / total * geom.dy * cos_sag)
    length = float(np.sum(lengths)) if lengths else NAN
    width = float(np.max(widths)) if widths else NAN
    if not dorsal:
        return length, width, NAN, NAN, NAN
    d, v = float(np.min(dorsal)), float(np.min(ventral))
    return length, width, d, v, d + v


def compute_morphometrics(cord: np.ndarray, lesion: np.ndarray | None, affine: np.ndarray,
                          angle_correction: bool = True) -> dict[str, float | int]:
    """The image's cord and lesion biomarkers, keys :data:`KEYS` (definitions: module docstring)."""
    cord, lesion = _check(cord, lesion)
    geom = slice_geometry(affine)
    line = _centreline(cord, geom, angle_correction)
    out: dict = {}

    cord_px = cord.sum(axis=(0, 1))
    has = cord_px > 0
    out["cord_volume_mm3"] = float(cord_px.sum() * geom.voxel_volume)
    csa = cord_px[has] * geom.pixel_area * np.cos(line.theta_3d[has])
    out["csa_mean_mm2"] = float(csa.mean()) if has.any() else NAN
    out["csa_min_mm2"] = float(csa.min()) if has.any() else NAN
    out["n_cord_slices"] = int(has.sum())

    if lesion is None:
        out.update(_no_lesion_metrics(NAN, NAN))
        return {k: out[k] for k in KEYS}
    n_lesion = int(lesion.sum())
    if n_lesion == 0:
        out.update(_no_lesion_metrics(0.0, 0))
        return {k: out[k] for k in KEYS}

    inside = lesion & cord
    out["lesion_volume_mm3"] = float(n_lesion * geom.voxel_volume)
    out["lesion_count"] = int(ndimage.label(lesion, structure=_CONN26)[1])
    out["lesion_outside_cord_mm3"] = float((n_lesion - int(inside.sum())) * geom.voxel_volume)
    if not inside.any():        # nothing intramedullary: the cord is undamaged where it was found
        out.update({k: NAN for k in ("lesion_length_mm", "lesion_max_width_mm", "midsagittal_lesion_length_mm",
                                     "midsagittal_lesion_width_mm", "tissue_bridge_dorsal_mm",
                                     "tissue_bridge_ventral_mm", "tissue_bridges_total_mm")})
        out["max_axial_damage_ratio"] = 0.0 if has.any() else NAN
        return {k: out[k] for k in KEYS}

    lesion_px = inside.sum(axis=(0, 1))
    on = lesion_px > 0
    out["lesion_length_mm"] = float(np.sum(geom.dz / np.cos(line.theta_3d[on])))
    out["lesion_max_width_mm"] = _max_ap_width(inside, geom, line.theta_sag)
    out["max_axial_damage_ratio"] = float(np.max(lesion_px[on] / cord_px[on]))
    (out["midsagittal_lesion_length_mm"], out["midsagittal_lesion_width_mm"], out["tissue_bridge_dorsal_mm"],
     out["tissue_bridge_ventral_mm"], out["tissue_bridges_total_mm"]) = _midsagittal(cord, inside, geom, line)
    return {k: out[k] for k in KEYS}


# --- quality-control flags ---------------------------------------------------------------------------------------

def _ranges(indices) -> str:
    """[0, 1, 2, 5, 7, 8] -> '0-2,5,7-8'."""
    parts, start = [], None
    indices = [int(i) for i in indices]
    for a, b in zip(indices, indices[1:] + [None]):
        start = a if start is None else start
        if b != a + 1:
            parts.append(f"{start}" if start == a else f"{start}-{a}")
            start = None
    return ",".join(parts)


def qc_flags(cord: np.ndarray, lesion: np.ndarray | None, cord_prob: np.ndarray | None = None,
             min_mean_prob: float = 0.7) -> list[str]:
    """Reasons to look at an image, in this order (names in :data:`QC_FLAGS`):

    * ``no_cord``: the cord mask is empty (then only ``lesion_outside_cord`` may follow);
    * ``low_confidence``: mean cord probability inside the cord mask below ``min_mean_prob``;
    * ``discontinuous_cord``: a gap of >= 1 slice without cord between cord slices, or more than one 3D
      component (26-connectivity);
    * ``lesion_outside_cord``: any lesion voxel outside the cord mask;
    * ``missing_cord_slices:<ranges>``: the axial slices of the volume without cord, e.g.
      ``missing_cord_slices:0-3,40`` (an axial acquisition of the cord has cord on every slice).
    """
    cord, lesion = _check(cord, lesion)
    outside = lesion is not None and bool((lesion & ~cord).any())
    if not cord.any():
        return ["no_cord"] + (["lesion_outside_cord"] if outside else [])
    flags: list[str] = []
    if cord_prob is not None:
        prob = np.asarray(cord_prob, float)
        if prob.shape == cord.shape and float(prob[cord].mean()) < min_mean_prob:
            flags.append("low_confidence")
    slices = np.nonzero(cord.any(axis=(0, 1)))[0]
    if slices[-1] - slices[0] + 1 > len(slices) or ndimage.label(cord, structure=_CONN26)[1] > 1:
        flags.append("discontinuous_cord")
    if outside:
        flags.append("lesion_outside_cord")
    missing = np.setdiff1d(np.arange(cord.shape[2]), slices)
    if len(missing):
        flags.append(f"missing_cord_slices:{_ranges(missing)}")
    return flags
