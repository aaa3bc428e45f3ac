"""Figures of the subject report: the axial mosaic and the curved sagittal view of one image.

* **axial mosaic**: up to ``MAX_TILES`` cord-centred crops (``FIELD_MM`` wide) of evenly spaced cord
  slices -- half of them, when there is a lesion, from the lesion's slices -- with the cord outlined in
  cyan and the lesion in red, in the radiological convention (patient's right on the left, anterior up);
* **sagittal view along the centreline** (curved: every axial slice is sampled at the centreline's
  left-right position and the anterior-posterior / inferior-superior plane is shown) with the cord and
  lesion outlines and the centreline, next to the cross-sectional area per slice.

matplotlib runs on the Agg canvas without pyplot (no global backend state); the configuration-folder
fallback runs before matplotlib is imported.  Arrays are in closest-canonical RAS voxel order.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

from bidsapp.report.html import mpl_config_fallback, save_png

mpl_config_fallback()     # before the first matplotlib import

import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

from basicseg.measure.morphometrics import csa_per_slice, slice_geometry

if TYPE_CHECKING:
    from bidsapp.report.subject import ImageReport

FIELD_MM = 30.0             # width of each axial tile, centred on the cord
MAX_TILES = 24
TILE_COLUMNS = 6
SAGITTAL_MARGIN_MM = 20.0   # anterior-posterior margin around the centreline in the sagittal view
DPI = 100
CORD_COLOUR = "#00d8ff"
LESION_COLOUR = "#ff2d2d"
CENTRELINE_COLOUR = "#ffd400"


# --- geometry -----------------------------------------------------------------------------------------------------

def centres_of(img: ImageReport) -> np.ndarray:
    """Cord centre (i, j) on every slice: the given centreline, else the cord centroids, interpolated
    across slices without one; the slice centre when nothing is known."""
    shape = img.anat.shape
    nz = shape[2]
    centres = np.full((nz, 2), np.nan)
    if img.centerline is not None and np.shape(img.centerline) == (nz, 2):
        centres = np.asarray(img.centerline, float).copy()
    if not np.isfinite(centres).any() and img.cord is not None and img.cord.any():
        counts = img.cord.sum(axis=(0, 1)).astype(float)
        with np.errstate(invalid="ignore", divide="ignore"):
            centres[:, 0] = (np.arange(shape[0]) @ img.cord.sum(axis=1)) / counts
            centres[:, 1] = (np.arange(shape[1]) @ img.cord.sum(axis=0)) / counts
    for a in (0, 1):
        ok = np.isfinite(centres[:, a])
        centres[:, a] = np.interp(np.arange(nz), np.nonzero(ok)[0], centres[ok, a]) if ok.any() \
            else (shape[a] - 1) / 2.0
    return centres


def _window(values: np.ndarray) -> tuple[float, float]:
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return 0.0, 1.0
    lo, hi = np.percentile(finite, [1.0, 99.5])
    return float(lo), float(hi if hi > lo else lo + 1.0)


def _crop(volume: np.ndarray, k: int, ci: float, cj: float, hi: int, hj: int, fill) -> np.ndarray:
    """(2hi, 2hj) crop of slice k around (ci, cj), padded with ``fill`` outside the image."""
    ii = int(round(ci)) - hi + np.arange(2 * hi)
    jj = int(round(cj)) - hj + np.arange(2 * hj)
    out = np.full((2 * hi, 2 * hj), fill, dtype=np.result_type(volume.dtype, type(fill)))
    vi = (ii >= 0) & (ii < volume.shape[0])
    vj = (jj >= 0) & (jj < volume.shape[1])
    out[np.ix_(vi, vj)] = volume[np.ix_(ii[vi], jj[vj], [k])][..., 0]
    return out


def _radiological(tile: np.ndarray) -> np.ndarray:
    """[i (L->R), j (P->A)] -> rows anterior to posterior, columns patient-right to patient-left."""
    return tile[::-1, ::-1].T


def _evenly(items: list, n: int) -> list:
    if len(items) <= n:
        return list(items)
    return [items[int(round(x))] for x in np.linspace(0, len(items) - 1, n)]


def mosaic_slices(cord: np.ndarray | None, lesion: np.ndarray | None, n_slices: int,
                  max_tiles: int = MAX_TILES) -> list[int]:
    """Evenly spaced cord slices (all slices without cord), half of them from the lesion when there is one."""
    cand = list(np.nonzero(cord.any(axis=(0, 1)))[0]) if cord is not None and cord.any() else list(range(n_slices))
    les = list(np.nonzero(lesion.any(axis=(0, 1)))[0]) if lesion is not None and lesion.any() else []
    chosen = set(_evenly(les, max_tiles // 2)) if len(cand) > max_tiles else set()
    rest = [k for k in cand if k not in chosen]
    chosen |= set(_evenly(rest, max_tiles - len(chosen)))
    return sorted(int(k) for k in chosen)


# --- drawing ------------------------------------------------------------------------------------------------------

def _legend(ax, with_cord: bool, with_lesion: bool, with_centreline: bool = False, **kwargs):
    handles = [Line2D([], [], color=CORD_COLOUR, lw=1.5, label="cord")] if with_cord else []
    if with_lesion:
        handles.append(Line2D([], [], color=LESION_COLOUR, lw=1.5, label="lesion (simulated-lesion model)"))
    if with_centreline:
        handles.append(Line2D([], [], color=CENTRELINE_COLOUR, lw=1.2, ls="--", label="centreline"))
    if not handles:
        return
    ax.legend(handles=handles, fontsize=7, framealpha=0.6, facecolor="black", labelcolor="white",
              edgecolor="none", **kwargs)


def axial_mosaic(img: ImageReport, path: Path, centres: np.ndarray | None = None) -> tuple[int, int]:
    """Write the axial mosaic PNG; returns its (width, height) in pixels."""
    anat = np.asarray(img.anat, dtype=np.float32)
    geom = slice_geometry(img.affine)
    centres = centres_of(img) if centres is None else centres
    slices = mosaic_slices(img.cord, img.lesion, anat.shape[2])
    hi = max(4, int(round(FIELD_MM / 2 / geom.dx)))
    hj = max(4, int(round(FIELD_MM / 2 / geom.dy)))
    th, tw = 2 * hj, 2 * hi                                  # displayed tile: rows = j, columns = i
    ncol = min(TILE_COLUMNS, len(slices))
    nrow = int(math.ceil(len(slices) / ncol))
    H, W = nrow * (th + 1) - 1, ncol * (tw + 1) - 1          # a one-pixel gap keeps outlines apart
    image = np.full((H, W), np.nan, np.float32)
    cord_m = np.zeros((H, W), np.float32)
    les_m = np.zeros((H, W), np.float32)
    origins = []
    for n, k in enumerate(slices):
        r0, c0 = (n // ncol) * (th + 1), (n % ncol) * (tw + 1)
        ci, cj = centres[k]
        image[r0:r0 + th, c0:c0 + tw] = _radiological(_crop(anat, k, ci, cj, hi, hj, np.nan))
        if img.cord is not None:
            cord_m[r0:r0 + th, c0:c0 + tw] = _radiological(_crop(img.cord, k, ci, cj, hi, hj, False))
        if img.lesion is not None:
            les_m[r0:r0 + th, c0:c0 + tw] = _radiological(_crop(img.lesion, k, ci, cj, hi, hj, False))
        origins.append((r0, c0, k))
    vmin, vmax = _window(image)
    aspect = geom.dy / geom.dx
    width_in = 8.0
    height_in = max(1.5, width_in * H * aspect / W)
    fig = Figure(figsize=(width_in, height_in), facecolor="black")
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_facecolor("black")
    ax.imshow(image, cmap="gray", vmin=vmin, vmax=vmax, interpolation="nearest", aspect=aspect)
    if cord_m.any():
        ax.contour(cord_m, levels=[0.5], colors=CORD_COLOUR, linewidths=0.9)
    has_lesion = bool(les_m.any())
    if has_lesion:
        ax.contour(les_m, levels=[0.5], colors=LESION_COLOUR, linewidths=0.9)
    for r0, c0, k in origins:
        ax.text(c0 + 1.5, r0 + 1.5, f"{k}", color="white", fontsize=7, va="top", ha="left")
    ax.text(W - 2, H - 2, "R | L  (radiological)", color="white", fontsize=7, va="bottom", ha="right", alpha=0.8)
    ax.set_xlim(-0.5, W - 0.5)
    ax.set_ylim(H - 0.5, -0.5)
    ax.axis("off")
    _legend(ax, bool(cord_m.any()), has_lesion, loc="lower left")
    save_png(fig, path, dpi=DPI)
    return int(round(width_in * DPI)), int(round(height_in * DPI))


GM_COLOUR = "#3cff6e"
HAEMORRHAGE_COLOUR = "#ff4dff"
EPICENTRE_ZOOM = 4           # the epicentre tile is drawn larger than the mosaic's


def epicentre_view(img: ImageReport, path: Path, centres: np.ndarray | None = None) -> tuple[int, int]:
    """The BASIC epicentre slice with the atlas grey matter mapped onto its cord (experimental)."""
    ep = img.epicentre
    k = int(ep["slice"])
    anat = np.asarray(img.anat, dtype=np.float32)
    geom = slice_geometry(img.affine)
    ci, cj = (centres_of(img) if centres is None else centres)[k]
    hi, hj = max(4, int(round(FIELD_MM / 2 / geom.dx))), max(4, int(round(FIELD_MM / 2 / geom.dy)))
    tile = _radiological(_crop(anat, k, ci, cj, hi, hj, np.nan))
    layers = [(img.cord, CORD_COLOUR), (img.lesion, LESION_COLOUR)]
    layers += [(ep[key][..., None].repeat(anat.shape[2], axis=2), colour)
               for key, colour in (("gm", GM_COLOUR), ("haemorrhage", HAEMORRHAGE_COLOUR)) if ep.get(key) is not None]
    size_in = 3.2
    fig = Figure(figsize=(size_in, size_in), facecolor="black")
    ax = fig.add_axes((0, 0, 1, 1))
    vmin, vmax = _window(tile)
    ax.imshow(tile, cmap="gray", vmin=vmin, vmax=vmax, interpolation="nearest", aspect=geom.dy / geom.dx)
    for mask, colour in layers:
        if mask is not None:
            m = _radiological(_crop(np.asarray(mask, np.float32), k, ci, cj, hi, hj, 0.0))
            if m.any():
                ax.contour(m, levels=[0.5], colors=colour, linewidths=1.0)
    ax.text(1, 1, f"slice {k}: epicentre", color="white", fontsize=7, va="top", ha="left")
    ax.text(1, tile.shape[0] - 2, "cyan cord, red lesion, green atlas GM, magenta haemorrhage", color="white",
            fontsize=5.5, va="bottom", ha="left")
    ax.axis("off")
    save_png(fig, path, dpi=DPI)
    return int(round(size_in * DPI)), int(round(size_in * DPI))


def _sagittal_planes(img: ImageReport, centres: np.ndarray, margin_vox: int) -> dict:
    """The curved plane through the centreline (interpolated in x), with the cord and lesion sampled at the
    nearest x, as displayed: rows superior to inferior, columns anterior to posterior."""
    anat = np.asarray(img.anat, dtype=np.float32)
    ni, nj, nz = anat.shape
    ks = np.arange(nz)
    x = np.clip(centres[:, 0], 0, ni - 1)
    x0 = np.floor(x).astype(int)
    x1 = np.minimum(x0 + 1, ni - 1)
    f = (x - x0)[:, None]
    xr = np.clip(np.round(x).astype(int), 0, ni - 1)
    jlo = max(0, int(np.floor(np.nanmin(centres[:, 1]))) - margin_vox)
    jhi = min(nj, int(np.ceil(np.nanmax(centres[:, 1]))) + margin_vox + 1)

    def view(a):                         # (nz, nj) -> rows superior to inferior, columns anterior to posterior
        return a[::-1, jlo:jhi][:, ::-1]

    def mask(m):
        return view(m[xr, :, ks]).astype(np.float32) if m is not None and m.any() else None

    return {"anat": view((1 - f) * anat[x0, :, ks] + f * anat[x1, :, ks]), "cord": mask(img.cord),
            "lesion": mask(img.lesion),
            # centreline: column of j, row of k in the displayed frame
            "line": ((jhi - 1) - centres[:, 1], (nz - 1) - ks)}


def _csa_profile(px, img: ImageReport, nz: int) -> None:
    """Cross-sectional area (and lesion area) per slice on the sagittal view's vertical axis."""
    if img.cord is not None and img.cord.any():
        table = csa_per_slice(img.cord, img.affine, lesion=img.lesion)
        px.plot(table["csa_mm2"], table["slice"], color="#0077aa", lw=1.2, label="CSA (mm²)")
        if img.lesion is not None and img.lesion.any():
            les_rows = table["lesion_area_mm2"] > 0
            px.barh(table["slice"][les_rows], table["lesion_area_mm2"][les_rows], height=1.0,
                    color=LESION_COLOUR, alpha=0.5, label="lesion area (mm²)")
        px.legend(fontsize=7, loc="upper right")
    else:
        px.text(0.5, 0.5, "no cord found", transform=px.transAxes, ha="center", va="center", fontsize=9)
        px.set_xticks([])
    px.set_ylim(-0.5, nz - 0.5)
    px.yaxis.set_major_locator(MaxNLocator(integer=True))
    px.set_ylabel("axial slice", fontsize=8)
    px.set_xlabel("mm²", fontsize=8)
    px.tick_params(labelsize=7)
    px.grid(alpha=0.3)


def sagittal_view(img: ImageReport, path: Path, centres: np.ndarray | None = None) -> tuple[int, int]:
    """Write the curved sagittal view (and the CSA profile) PNG; returns its (width, height) in pixels."""
    nz = np.shape(img.anat)[2]
    geom = slice_geometry(img.affine)
    centres = centres_of(img) if centres is None else centres
    planes = _sagittal_planes(img, centres, int(round(SAGITTAL_MARGIN_MM / geom.dy)))
    shown = planes["anat"]
    rows, cols = shown.shape
    phys_h, phys_w = rows * geom.dz, cols * geom.dy
    scale = min(6.5 / phys_h, 4.5 / phys_w)                  # inches per mm: fit 6.5 in tall, 4.5 in wide
    scale = max(scale, 3.0 / phys_h)                          # ... but at least 3 in tall
    img_h, img_w = phys_h * scale, min(phys_w * scale, 7.0)
    plot_w, bottom, top, gap = 2.4, 0.45, 0.15, 0.8
    fig_w, fig_h = img_w + gap + plot_w, img_h + bottom + top
    fig = Figure(figsize=(fig_w, fig_h), facecolor="white")
    ax = fig.add_axes((0, bottom / fig_h, img_w / fig_w, img_h / fig_h))
    ax.set_facecolor("black")
    vmin, vmax = _window(shown)
    ax.imshow(shown, cmap="gray", vmin=vmin, vmax=vmax, interpolation="nearest", aspect="auto")
    if planes["cord"] is not None:
        ax.contour(planes["cord"], levels=[0.5], colors=CORD_COLOUR, linewidths=0.8)
    has_lesion = planes["lesion"] is not None and bool(planes["lesion"].any())
    if has_lesion:
        ax.contour(planes["lesion"], levels=[0.5], colors=LESION_COLOUR, linewidths=0.9)
    ax.plot(*planes["line"], ls="--", lw=0.9, color=CENTRELINE_COLOUR)
    ax.set_xlim(-0.5, cols - 0.5)
    ax.set_ylim(rows - 0.5, -0.5)
    ax.axis("off")
    ax.text(1, 1, "A", color="white", fontsize=8, va="top", ha="left")
    ax.text(cols - 2, 1, "P", color="white", fontsize=8, va="top", ha="right")
    _legend(ax, planes["cord"] is not None, has_lesion, with_centreline=True, loc="lower left")
    px = fig.add_axes(((img_w + gap) / fig_w, bottom / fig_h, (plot_w - 0.1) / fig_w, img_h / fig_h))
    _csa_profile(px, img, nz)
    save_png(fig, path, dpi=DPI)
    return int(round(fig_w * DPI)), int(round(fig_h * DPI))
