"""Metrics: spinal cord and lesion morphometrics in physical units, from the image's own affine.

Inputs are boolean masks in the image's *closest canonical* (RAS+) voxel order -- axis 0 left->right,
axis 1 posterior->anterior, axis 2 inferior->superior, axial slices along axis 2 -- with that canonical
image's affine, which may still be oblique, anisotropic or sheared (geometry and the cord's angles:
:mod:`.geometry`).  One entry point, :func:`measure_masks`, gives the three tables: the image's row, one
row per axial slice, one row per lesion (:mod:`.lesions`, SCT 7.4's ``sct_analyze_lesion``).

The image's row (keys :data:`KEYS`; docs/morphometrics.md has the table with SCT's names):

* ``cord_volume_mm3``: cord voxels x voxel volume.  ``csa_mean_mm2`` / ``csa_min_mm2``: per slice, cord
  pixels x pixel area x cos(theta_3d), mean / minimum over the ``n_cord_slices`` slices with cord
  (SCT ``sct_process_segmentation`` with angle correction).
* The lesion is masked by the cord before every metric (SCT >= 7.1): ``lesion_volume_mm3`` is
  intramedullary; ``lesion_outside_cord_mm3`` (lesion voxels outside the cord) is its own column.
* Totals over lesions, by SCT's aggregation rules (``sct_analyze_lesion``'s summary): ``lesion_count``
  (lesions of :func:`.lesions.label_lesions`), ``lesion_volume_mm3`` = sum of volumes, ``lesion_length_mm``
  = sum of lengths (SCT's composite length), ``lesion_max_width_mm`` = max of widths.
* Over lesions, where SCT reports per lesion only: ``max_equivalent_diameter_mm``,
  ``max_axial_damage_ratio`` and ``midsagittal_lesion_width_mm`` = maximum; ``midsagittal_lesion_length_mm``
  = sum (as length); ``tissue_bridge_dorsal_mm`` / ``_ventral_mm`` / ``tissue_bridges_total_mm`` = minimum
  over lesions of each lesion's value (the narrowest bridge; a lesion off the midline contributes half the
  cord's A-P diameter, SCT >= 7.3); ``midsagittal_plane_x``: SCT's plane (axis-0 voxel position).
* basicseg's variants, each its own column: ``lesion_length_union_mm`` (slices of the union of lesions, not
  counting shared slices twice); ``max_axial_damage_ratio_all_lesions`` (all lesions of a slice together);
  ``*_perslice_plane_*``: midsagittal length, width and bridges of all intramedullary lesion on a plane
  through each slice's own smoothed cord centre (closer to the truth on a laterally tilted cord; NaN when
  the lesion misses that plane).

Missing values: with an all-empty lesion mask (or one entirely outside the cord) volume and count are 0,
the outside volume is what it is, every other lesion metric is NaN; with ``lesion=None`` (no lesion model)
all lesion metrics are NaN.  Without cord, CSA is NaN (``n_cord_slices`` 0, ``cord_volume_mm3`` 0).  Nothing
here raises on empty or inconsistent masks; a shape mismatch between the masks is a ValueError.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import ndimage

from .confidence import CONFIDENCE_FLAGS
from .geometry import (  # noqa: F401 (API)
    MIN_SMOOTH_SLICES,
    SMOOTH_MM,
    Centreline,
    SliceGeometry,
    centreline,
    fit_centreline,
    slice_geometry,
)
from .lesions import empty_lesion_table, label_lesions, lesion_rows

NAN = float("nan")

SCT_KEYS = ("cord_volume_mm3", "csa_mean_mm2", "csa_min_mm2", "n_cord_slices",
            "lesion_volume_mm3", "lesion_count", "lesion_length_mm", "lesion_max_width_mm",
            "max_axial_damage_ratio", "midsagittal_lesion_length_mm", "midsagittal_lesion_width_mm",
            "tissue_bridge_dorsal_mm", "tissue_bridge_ventral_mm", "tissue_bridges_total_mm",
            "lesion_outside_cord_mm3", "max_equivalent_diameter_mm", "midsagittal_plane_x")
VARIANT_KEYS = ("lesion_length_union_mm", "max_axial_damage_ratio_all_lesions",
                "midsagittal_lesion_length_perslice_plane_mm", "midsagittal_lesion_width_perslice_plane_mm",
                "tissue_bridge_dorsal_perslice_plane_mm", "tissue_bridge_ventral_perslice_plane_mm",
                "tissue_bridges_total_perslice_plane_mm")
KEYS = SCT_KEYS + VARIANT_KEYS
_PERSLICE_PLANE = VARIANT_KEYS[2:]

LABELS = {   # key: (label for tables, unit)
    "cord_volume_mm3": ("Cord volume", "mm³"),
    "csa_mean_mm2": ("Cord cross-sectional area, mean", "mm²"),
    "csa_min_mm2": ("Cord cross-sectional area, minimum", "mm²"),
    "n_cord_slices": ("Slices with cord", ""),
    "lesion_volume_mm3": ("Lesion volume (in the cord)", "mm³"),
    "lesion_count": ("Number of lesions", ""),
    "lesion_length_mm": ("Lesion length, sum over lesions (inferior-superior)", "mm"),
    "lesion_max_width_mm": ("Lesion maximal width (anterior-posterior)", "mm"),
    "max_axial_damage_ratio": ("Maximal axial damage ratio", ""),
    "midsagittal_lesion_length_mm": ("Midsagittal lesion length", "mm"),
    "midsagittal_lesion_width_mm": ("Midsagittal lesion width", "mm"),
    "tissue_bridge_dorsal_mm": ("Dorsal tissue bridge", "mm"),
    "tissue_bridge_ventral_mm": ("Ventral tissue bridge", "mm"),
    "tissue_bridges_total_mm": ("Total tissue bridges", "mm"),
    "lesion_outside_cord_mm3": ("Lesion volume outside the cord", "mm³"),
    "max_equivalent_diameter_mm": ("Lesion maximal equivalent diameter", "mm"),
    "midsagittal_plane_x": ("Midsagittal plane (left-right voxel position)", ""),
    "lesion_length_union_mm": ("Lesion length, union of lesions", "mm"),
    "max_axial_damage_ratio_all_lesions": ("Maximal axial damage ratio, all lesions of a slice", ""),
    "midsagittal_lesion_length_perslice_plane_mm": ("Midsagittal lesion length, per-slice plane", "mm"),
    "midsagittal_lesion_width_perslice_plane_mm": ("Midsagittal lesion width, per-slice plane", "mm"),
    "tissue_bridge_dorsal_perslice_plane_mm": ("Dorsal tissue bridge, per-slice plane", "mm"),
    "tissue_bridge_ventral_perslice_plane_mm": ("Ventral tissue bridge, per-slice plane", "mm"),
    "tissue_bridges_total_perslice_plane_mm": ("Total tissue bridges, per-slice plane", "mm"),
}

QC_FLAGS = ("no_cord", "low_confidence", "discontinuous_cord", "lesion_outside_cord", "missing_cord_slices")
# what the input itself warns of (the app adds them): NaN/Inf voxels replaced, voxels outside the validated sizes
INPUT_FLAGS = ("nonfinite_voxels", "outside_validated_resolution")
# every flag an image row may carry: qc_flags' own, the input's, then those of the networks' confidence
ALL_QC_FLAGS = QC_FLAGS + INPUT_FLAGS + CONFIDENCE_FLAGS

_CONN26 = np.ones((3, 3, 3), bool)


def _check(cord, lesion):
    cord = np.asarray(cord).astype(bool, copy=False)
    if cord.ndim != 3:
        raise ValueError(f"cord mask must be 3D, got shape {cord.shape}")
    if lesion is not None:
        lesion = np.asarray(lesion).astype(bool, copy=False)
        if lesion.shape != cord.shape:
            raise ValueError(f"lesion mask shape {lesion.shape} differs from cord mask shape {cord.shape}")
    return cord, lesion


# --- per-slice table ---------------------------------------------------------------------------------------------

PER_SLICE_COLUMNS = ("slice", "z_mm", "cord_area_mm2", "angle_deg", "csa_mm2", "lesion_area_mm2",
                     "lesion_outside_cord_area_mm2", "damage_ratio")


def csa_per_slice(cord: np.ndarray, affine: np.ndarray, lesion: np.ndarray | None = None,
                  angle_correction: bool = True) -> pd.DataFrame:
    """One row per axial slice (every slice of the volume), columns :data:`PER_SLICE_COLUMNS`:

    ``slice``; ``z_mm`` (position along the slice normal); ``cord_area_mm2`` (axial area); ``angle_deg``
    (cord to slice normal; NaN without cord); ``csa_mm2`` (angle-corrected cross-sectional area; NaN
    without cord); ``lesion_area_mm2`` (axial area of the lesion in the cord); ``lesion_outside_cord_area_mm2``;
    ``damage_ratio`` (lesion area / cord area, all lesions of the slice; NaN without cord).  The lesion
    columns are NaN when no lesion mask is given."""
    cord, lesion = _check(cord, lesion)
    geom = slice_geometry(affine)
    return _per_slice(cord, lesion, geom, fit_centreline(cord, geom, angle_correction))


def _per_slice(cord, lesion, geom: SliceGeometry, line: Centreline) -> pd.DataFrame:
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
        for column in PER_SLICE_COLUMNS[5:]:
            table[column] = np.nan
        return table
    inside = (lesion & cord).sum(axis=(0, 1))
    table["lesion_area_mm2"] = inside * geom.pixel_area
    table["lesion_outside_cord_area_mm2"] = (lesion.sum(axis=(0, 1)) - inside) * geom.pixel_area
    table["damage_ratio"] = np.where(has, inside / np.maximum(cord_px, 1), np.nan)
    return table


# --- the image's row ---------------------------------------------------------------------------------------------

def _cord_metrics(cord, geom: SliceGeometry, line: Centreline) -> dict:
    cord_px = cord.sum(axis=(0, 1))
    has = cord_px > 0
    csa = cord_px[has] * geom.pixel_area * np.cos(line.theta_3d[has])
    return {"cord_volume_mm3": float(cord_px.sum() * geom.voxel_volume),
            "csa_mean_mm2": float(csa.mean()) if has.any() else NAN,
            "csa_min_mm2": float(csa.min()) if has.any() else NAN,
            "n_cord_slices": int(has.sum())}


def _lesion_totals(table: pd.DataFrame) -> dict:
    """The image's lesion metrics from the per-lesion table (SCT's aggregation rules: module docstring)."""
    def agg(column, how):
        values = table[column].to_numpy(float)
        values = values[np.isfinite(values)]
        return float(how(values)) if len(values) else NAN
    return {"lesion_count": len(table), "lesion_volume_mm3": agg("volume_mm3", np.sum),
            "lesion_length_mm": agg("length_mm", np.sum), "lesion_max_width_mm": agg("max_width_mm", np.max),
            "max_equivalent_diameter_mm": agg("max_equivalent_diameter_mm", np.max),
            "max_axial_damage_ratio": agg("max_axial_damage_ratio", np.max),
            "midsagittal_lesion_length_mm": agg("midsagittal_length_mm", np.sum),
            "midsagittal_lesion_width_mm": agg("midsagittal_width_mm", np.max),
            "tissue_bridge_dorsal_mm": agg("tissue_bridge_dorsal_mm", np.min),
            "tissue_bridge_ventral_mm": agg("tissue_bridge_ventral_mm", np.min),
            "tissue_bridges_total_mm": agg("tissue_bridges_total_mm", np.min),
            "midsagittal_plane_x": agg("midsagittal_plane_x", np.min)}


def _variants(cord, inside, geom: SliceGeometry, line: Centreline) -> dict:
    """basicseg's variants (module docstring), from all intramedullary lesion voxels together."""
    lesion_px = inside.sum(axis=(0, 1))
    on = lesion_px > 0
    out = {"lesion_length_union_mm": float(np.sum(geom.dz / np.cos(line.theta_3d[on]))),
           "max_axial_damage_ratio_all_lesions": float(np.max(lesion_px[on] / cord.sum(axis=(0, 1))[on]))}
    out.update(zip(_PERSLICE_PLANE, _perslice_plane_midsagittal(cord, inside, geom, line)))
    return out


def measure_masks(cord: np.ndarray, lesion: np.ndarray | None, affine: np.ndarray,
                  angle_correction: bool = True) -> tuple[dict, pd.DataFrame, pd.DataFrame]:
    """The three tables of an image: ``(image_row, per_slice, per_lesion)``.

    ``image_row``: dict with keys :data:`KEYS` (module docstring); ``per_slice``: :func:`csa_per_slice`'s
    table; ``per_lesion``: one row per lesion, columns :data:`.lesions.COLUMNS` (empty without lesion)."""
    cord, lesion = _check(cord, lesion)
    geom = slice_geometry(affine)
    line = fit_centreline(cord, geom, angle_correction)
    row = {k: NAN for k in KEYS} | _cord_metrics(cord, geom, line)
    per_slice = _per_slice(cord, lesion, geom, line)
    if lesion is None:
        return row, per_slice, empty_lesion_table()
    inside = lesion & cord
    labels, n = label_lesions(lesion, cord)
    per_lesion, _ = lesion_rows(cord, labels, n, geom, line)
    row.update(_lesion_totals(per_lesion), lesion_volume_mm3=float(inside.sum() * geom.voxel_volume),
               lesion_outside_cord_mm3=float((lesion & ~cord).sum() * geom.voxel_volume))
    if n:
        row.update(_variants(cord, inside, geom, line))
    return row, per_slice, per_lesion


def compute_morphometrics(cord: np.ndarray, lesion: np.ndarray | None, affine: np.ndarray,
                          angle_correction: bool = True) -> dict[str, float | int]:
    """The image's cord and lesion biomarkers, keys :data:`KEYS` (definitions: module docstring)."""
    return measure_masks(cord, lesion, affine, angle_correction)[0]


# --- the per-slice-plane variant ---------------------------------------------------------------------------------

def _edges(column: np.ndarray):
    """First and last True index of a 1D bool array (None if empty)."""
    idx = np.flatnonzero(column)
    return (int(idx[0]), int(idx[-1])) if len(idx) else None


def _perslice_plane_midsagittal(cord, inside, geom, line):
    """Midsagittal length and width, minimal dorsal and ventral bridges and their sum (mm), on a plane through
    each slice's smoothed cord centre, interpolated between its two voxel planes (basicseg's variant)."""
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
