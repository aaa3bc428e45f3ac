"""Per-lesion morphometrics, as Spinal Cord Toolbox 7.4's ``sct_analyze_lesion`` defines them: one row per lesion.

Masks are in closest-canonical (RAS+) voxel order, axial slices along axis 2, axis 1 posterior -> anterior
(dorsal -> ventral); geometry and angles come from :mod:`.geometry` (``dz`` slice spacing, ``dy = |c1|``,
``theta_3d`` / ``theta_sag`` the cord's angles to the slice normal).  Slice numbers are axial slice indices
in that canonical order; ``midsagittal_plane_x`` is a position along canonical axis 0 (voxels).

Definitions (SCT 7.4, ``spinalcordtoolbox/scripts/sct_analyze_lesion.py``):

* Lesions: 3D components of the lesion mask *as drawn*, 18-connectivity (SCT: ``skimage.measure.label(
  connectivity=2)``), each then restricted to the cord (SCT multiplies the labels by the cord mask before
  every metric, volume included).  A component with no voxel in the cord is not a lesion here (SCT stops
  with an internal error on it); its voxels count in ``lesion_outside_cord_mm3`` at the image level.
* ``volume_mm3``: voxels x voxel volume.  ``length_mm``: sum over the lesion's axial slices of
  ``dz / cos theta_3d``.  ``max_width_mm``: max over slices of the A-P extent (most anterior - most
  posterior voxel + 1) x ``dy`` x ``cos theta_sag``.  ``max_equivalent_diameter_mm``: ``2 sqrt(A / pi)``,
  ``A`` the largest ``area x cos theta_3d``.  ``max_axial_damage_ratio``: max over the lesion's slices of
  lesion area / cord area.
* Midsagittal plane: ONE left-right position ``x`` for all slices and lesions -- the mean cord centre of
  mass along axis 0 over the 5 axial slices around the centre of mass of the largest lesion (by volume).
  It lies between the sagittal voxel planes ``x0 = floor x`` and ``x1 = ceil x``, weights ``1 - f`` and
  ``f = x - x0``; where only one of the two planes holds a value, that value is used.
* ``midsagittal_length_mm``: sum over slices where the interpolated profile ``p`` is non-zero of
  ``mean(p[p > 0]) x dz / cos theta_sag``; ``midsagittal_width_mm``: max of ``sum p x dy x cos theta_sag``.
  Both 0 when the lesion misses the plane (SCT >= 7.3).
* Tissue bridges, on each of the two planes and each axial slice with lesion there: dorsal = first lesion -
  first cord voxel, ventral = last cord - last lesion voxel (at least 0); interpolated, x ``dy`` x
  ``cos theta_sag``; the minimum over slices (Huber et al. 2017); total = min dorsal + min ventral.  A
  lesion on neither plane (off the midline, SCT >= 7.3): total = the cord's smallest interpolated A-P
  diameter (cord voxels on the planes) over the lesion's slices, dorsal = ventral = half of it.

Deliberate difference: SCT's voxel size is the header's column norms, so on a sheared grid its ``pz`` is
``|c2|``, not the slice spacing; we use ``dz`` and ``|det|`` (docs/morphometrics.md).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import ndimage

from .geometry import Centreline, SliceGeometry

NAN = float("nan")
CONN18 = ndimage.generate_binary_structure(3, 2)    # SCT's skimage label(connectivity=2)
PLANE_HALF_WINDOW = 2                               # SCT: 2 slices either side of the largest lesion's centre

COLUMNS = ("label", "volume_mm3", "centre_i", "centre_j", "centre_k", "slice_first", "slice_last",
           "length_mm", "max_width_mm", "max_width_slice", "max_equivalent_diameter_mm",
           "max_equivalent_diameter_slice", "max_axial_damage_ratio", "max_axial_damage_ratio_slice",
           "midsagittal_plane_x", "on_midsagittal_plane", "midsagittal_length_mm", "midsagittal_width_mm",
           "midsagittal_width_slice", "tissue_bridge_dorsal_mm", "tissue_bridge_dorsal_slice",
           "tissue_bridge_ventral_mm", "tissue_bridge_ventral_slice", "tissue_bridges_total_mm")

SLICE_COLUMNS = tuple(c for c in COLUMNS if c.endswith("_slice") or c.startswith("slice_"))

# our column -> SCT 7.4's column in the `measures` table of *_analysis.pkl / .xlsx
SCT_COLUMNS = {
    "volume_mm3": "volume [mm3]", "length_mm": "length [mm]", "max_width_mm": "width [mm]",
    "max_equivalent_diameter_mm": "max_equivalent_diameter [mm]",
    "max_axial_damage_ratio": "max_axial_damage_ratio []",
    "midsagittal_length_mm": "length_interpolated_midsagittal_slice [mm]",
    "midsagittal_width_mm": "width_interpolated_midsagittal_slice [mm]",
    "tissue_bridge_dorsal_mm": "interpolated_dorsal_bridge_width [mm]",
    "tissue_bridge_ventral_mm": "interpolated_ventral_bridge_width [mm]",
    "tissue_bridges_total_mm": "interpolated_total_bridge_width [mm]",
}


# --- lesions and the midsagittal plane -------------------------------------------------------------------------

def label_lesions(lesion: np.ndarray, cord: np.ndarray) -> tuple[np.ndarray, int]:
    """SCT's lesions: components of the drawn mask (18-connectivity), restricted to the cord, renumbered 1..n.

    SCT labels in RPI voxel order (axis 0 right -> left), whatever the input's orientation: labelling our
    RAS+ axis 0 reversed gives SCT's label numbers."""
    raw, n = ndimage.label(lesion[::-1], structure=CONN18)
    raw = raw[::-1]
    inside = np.where(cord, raw, 0)
    kept = np.unique(inside[inside > 0])
    lut = np.zeros(n + 1, np.int32)
    lut[kept] = np.arange(1, len(kept) + 1)
    return lut[inside], len(kept)


@dataclass(frozen=True)
class MidsagittalPlane:
    """A left-right position between two sagittal voxel planes, and SCT's interpolation between them."""
    x: float
    x0: int
    x1: int
    f: float                # weight of plane x1

    @classmethod
    def at(cls, x: float) -> MidsagittalPlane:
        x0 = math.floor(x)
        return cls(x=x, x0=x0, x1=math.ceil(x), f=x - x0)

    def interpolate(self, a, b):
        """``(1 - f) a + f b``; where one of the two is NaN the other is used (SCT 7.4)."""
        a, b = np.asarray(a, float), np.asarray(b, float)
        a, b = np.where(np.isnan(a), b, a), np.where(np.isnan(b), a, b)
        return (1.0 - self.f) * a + self.f * b


def sct_midsagittal_plane(cord: np.ndarray, labels: np.ndarray, n: int) -> MidsagittalPlane | None:
    """SCT's plane: mean cord centre (axis 0) over 5 slices around the largest lesion's centre slice."""
    if n == 0:
        return None
    volumes = np.bincount(labels.ravel(), minlength=n + 1)[1:]
    largest = int(np.argmax(volumes)) + 1               # first of equals, as SCT's pandas idxmax
    k_centre = round(float(np.nonzero(labels == largest)[2].mean()))    # Python round, as SCT
    nz = cord.shape[2]
    ks = [k for k in range(k_centre - PLANE_HALF_WINDOW, k_centre + PLANE_HALF_WINDOW + 1)
          if 0 <= k < nz and cord[:, :, k].any()]       # SCT skips slices without cord
    if not ks:
        return None
    x = float(np.mean([ndimage.center_of_mass(cord[:, :, k])[0] for k in ks]))
    return MidsagittalPlane.at(x)


# --- one lesion --------------------------------------------------------------------------------------------------

def _first_arg(values: np.ndarray, slices: np.ndarray, best) -> tuple[float, float]:
    """(best value, its slice): the first slice reaching it, as SCT's min/max over slices in order."""
    i = int(best(values))
    return float(values[i]), int(slices[i])


def _axial_metrics(comp, cord, geom: SliceGeometry, line: Centreline) -> dict:
    ks = np.nonzero(comp.any(axis=(0, 1)))[0]
    px = comp.sum(axis=(0, 1))[ks]
    on_ap = comp.any(axis=0)                            # (A-P, slice)
    extent = np.array([np.ptp(np.flatnonzero(on_ap[:, k])) + 1 for k in ks])
    width = extent * geom.dy * np.cos(line.theta_sag[ks])
    area = px * geom.pixel_area * np.cos(line.theta_3d[ks])
    ratio = px / cord.sum(axis=(0, 1))[ks]              # the lesion is inside the cord: no zero division
    out = {"volume_mm3": float(px.sum() * geom.voxel_volume),
           "slice_first": int(ks[0]), "slice_last": int(ks[-1]),
           "length_mm": float(np.sum(geom.dz / np.cos(line.theta_3d[ks])))}
    out["max_width_mm"], out["max_width_slice"] = _first_arg(width, ks, np.argmax)
    a, out["max_equivalent_diameter_slice"] = _first_arg(area, ks, np.argmax)
    out["max_equivalent_diameter_mm"] = 2.0 * math.sqrt(a / math.pi)
    out["max_axial_damage_ratio"], out["max_axial_damage_ratio_slice"] = _first_arg(ratio, ks, np.argmax)
    return out


def _midsagittal_metrics(comp, geom: SliceGeometry, line: Centreline, plane: MidsagittalPlane) -> dict:
    profile = plane.interpolate(comp[plane.x0], comp[plane.x1])     # (A-P, slice), soft
    ks = np.nonzero((profile > 0).any(axis=0))[0]
    if len(ks) == 0:                                    # SCT >= 7.3: a lesion off the plane has 0 length and width
        return {"on_midsagittal_plane": False, "midsagittal_length_mm": 0.0, "midsagittal_width_mm": 0.0,
                "midsagittal_width_slice": NAN}
    cos_sag = np.cos(line.theta_sag[ks])
    soft = np.array([profile[:, k][profile[:, k] > 0].mean() for k in ks])
    width = profile[:, ks].sum(axis=0) * geom.dy * cos_sag
    out = {"on_midsagittal_plane": True, "midsagittal_length_mm": float(np.sum(soft * geom.dz / cos_sag))}
    out["midsagittal_width_mm"], out["midsagittal_width_slice"] = _first_arg(width, ks, np.argmax)
    return out


def _plane_bridges(comp, cord, p: int) -> tuple[np.ndarray, np.ndarray]:
    """Dorsal and ventral bridges (voxels) on sagittal plane p, per axial slice; NaN where p has no lesion."""
    nz = comp.shape[2]
    dorsal, ventral = np.full(nz, np.nan), np.full(nz, np.nan)
    for k in np.nonzero(comp[p].any(axis=0))[0]:
        les, cor = np.flatnonzero(comp[p, :, k]), np.flatnonzero(cord[p, :, k])
        dorsal[k] = max(les[0] - cor[0], 0)            # axis 1 runs posterior (dorsal) -> anterior
        ventral[k] = max(cor[-1] - les[-1], 0)
    return dorsal, ventral


def _bridges(comp, cord, geom: SliceGeometry, line: Centreline, plane: MidsagittalPlane) -> dict:
    (d0, v0), (d1, v1) = _plane_bridges(comp, cord, plane.x0), _plane_bridges(comp, cord, plane.x1)
    ks = np.nonzero(~(np.isnan(d0) & np.isnan(d1)))[0]
    if len(ks) == 0:
        return _off_midline_bridges(comp, cord, geom, line, plane)
    scale = geom.dy * np.cos(line.theta_sag[ks])
    out = {}
    for side, a, b in (("dorsal", d0, d1), ("ventral", v0, v1)):
        mm = plane.interpolate(a[ks], b[ks]) * scale
        out[f"tissue_bridge_{side}_mm"], out[f"tissue_bridge_{side}_slice"] = _first_arg(mm, ks, np.argmin)
    out["tissue_bridges_total_mm"] = out["tissue_bridge_dorsal_mm"] + out["tissue_bridge_ventral_mm"]
    return out


def _off_midline_bridges(comp, cord, geom: SliceGeometry, line: Centreline, plane: MidsagittalPlane) -> dict:
    """SCT >= 7.3 for a lesion on neither plane: the cord's smallest A-P diameter on the plane, split in half."""
    ks = np.array([k for k in np.nonzero(comp.any(axis=(0, 1)))[0]
                   if cord[plane.x0, :, k].any() and cord[plane.x1, :, k].any()], int)
    if len(ks) == 0:
        return {k: NAN for k in ("tissue_bridge_dorsal_mm", "tissue_bridge_dorsal_slice", "tissue_bridge_ventral_mm",
                                 "tissue_bridge_ventral_slice", "tissue_bridges_total_mm")}
    counts = plane.interpolate(cord[plane.x0][:, ks].sum(axis=0), cord[plane.x1][:, ks].sum(axis=0))
    diameter, k = _first_arg(counts * geom.dy * np.cos(line.theta_sag[ks]), ks, np.argmin)
    return {"tissue_bridge_dorsal_mm": diameter / 2, "tissue_bridge_dorsal_slice": k,
            "tissue_bridge_ventral_mm": diameter / 2, "tissue_bridge_ventral_slice": k,
            "tissue_bridges_total_mm": diameter}


def _no_plane() -> dict:
    return {"on_midsagittal_plane": False, "midsagittal_length_mm": NAN, "midsagittal_width_mm": NAN,
            "midsagittal_width_slice": NAN, "tissue_bridge_dorsal_mm": NAN, "tissue_bridge_dorsal_slice": NAN,
            "tissue_bridge_ventral_mm": NAN, "tissue_bridge_ventral_slice": NAN, "tissue_bridges_total_mm": NAN}


# --- the table ---------------------------------------------------------------------------------------------------

def empty_lesion_table() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype="Int64" if c == "label" or c in SLICE_COLUMNS else float)
                         for c in COLUMNS})


def lesion_rows(cord, labels, n, geom: SliceGeometry, line: Centreline) -> tuple[pd.DataFrame, MidsagittalPlane | None]:
    """One row per lesion (columns :data:`COLUMNS`) from SCT's labels; also the midsagittal plane used."""
    if n == 0:
        return empty_lesion_table(), None
    plane = sct_midsagittal_plane(cord, labels, n)
    centres = ndimage.center_of_mass(np.ones(labels.shape), labels, np.arange(1, n + 1))
    rows = []
    for label, centre in zip(range(1, n + 1), centres):
        comp = labels == label
        row = {"label": label, "centre_i": centre[0], "centre_j": centre[1], "centre_k": centre[2],
               "midsagittal_plane_x": plane.x if plane else NAN, **_axial_metrics(comp, cord, geom, line)}
        if plane is None:
            row.update(_no_plane())
        else:
            row.update(_midsagittal_metrics(comp, geom, line, plane))
            row.update(_bridges(comp, cord, geom, line, plane))
        rows.append(row)
    table = pd.DataFrame(rows, columns=list(COLUMNS))
    for column in ("label",) + SLICE_COLUMNS:            # integers, n/a where a metric has no slice
        table[column] = table[column].astype("Int64")
    return table, plane
