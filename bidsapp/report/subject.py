"""Report: one visual quality-control page per subject, ``<out>/sub-<label>.html`` (as fMRIPrep does).

For each image of the subject the page shows

* an **axial mosaic**: up to ``MAX_TILES`` cord-centred crops (``FIELD_MM`` wide) of evenly spaced cord
  slices -- half of them, when there is a lesion, from the lesion's slices -- with the cord outlined in
  cyan and the lesion in red, in the radiological convention (patient's right on the left, anterior up);
* a **sagittal view along the centreline** (curved: every axial slice is sampled at the centreline's
  left-right position and the anterior-posterior / inferior-superior plane is shown) with the cord and
  lesion outlines and the centreline, next to the cross-sectional area per slice;
* the **morphometrics** table (definitions: :mod:`basicseg.morphometrics`, docs/morphometrics.md), the
  **models** with their versions, checksums and thresholds, and the **QC flags** in a visible box;
* a failed image shows its error instead.

Figures are PNG files under ``<out>/sub-<label>/figures/`` and are linked relatively, so the output
folder can be moved or zipped.  Every file is written to a temporary name and renamed.  The page carries
a five-line inline script that marks, once the page has loaded, whether every image loaded
(``data-images-loaded="n/N"`` on ``<html>``, ``data-loaded`` on each ``<img>``): harmless for readers,
and what the headless-browser test reads.

matplotlib runs on the Agg canvas without pyplot (no global backend state).  When ``MPLCONFIGDIR`` is
unset and ``HOME`` is not writable (a read-only container running as a random UID), it is pointed at a
fresh temporary directory before matplotlib is imported.
"""
from __future__ import annotations

import datetime as _dt
import html
import math
import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote


def _mpl_config_fallback() -> None:
    if os.environ.get("MPLCONFIGDIR"):
        return
    home = os.environ.get("HOME") or os.path.expanduser("~")
    if home and os.path.isdir(home) and os.access(home, os.W_OK):
        return
    try:
        os.environ["MPLCONFIGDIR"] = tempfile.mkdtemp(prefix="basicseg-mpl-")
    except OSError:
        pass        # no writable temp dir either: matplotlib copes (and warns)


_mpl_config_fallback()

import numpy as np                                          # noqa: E402
from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: E402
from matplotlib.figure import Figure                         # noqa: E402
from matplotlib.lines import Line2D                          # noqa: E402
from matplotlib.ticker import MaxNLocator                    # noqa: E402

from basicseg import __version__                                   # noqa: E402
from basicseg.io import atomic_path, write_text                     # noqa: E402
from basicseg.measure.morphometrics import LABELS, csa_per_slice, slice_geometry  # noqa: E402

FIELD_MM = 30.0             # width of each axial tile, centred on the cord
MAX_TILES = 24
TILE_COLUMNS = 6
SAGITTAL_MARGIN_MM = 20.0   # anterior-posterior margin around the centreline in the sagittal view
DPI = 100
CORD_COLOUR = "#00d8ff"
LESION_COLOUR = "#ff2d2d"
CENTRELINE_COLOUR = "#ffd400"

FLAG_TEXT = {
    "no_cord": "No spinal cord was found in this image.",
    "low_confidence": "The network's mean cord probability inside the mask is low: check the cord outline.",
    "discontinuous_cord": "The cord mask is interrupted (a slice without cord between cord slices, or "
                          "several pieces).",
    "lesion_outside_cord": "Part of the lesion mask lies outside the cord mask (its volume is in the table).",
    "missing_cord_slices": "No cord was found on these axial slices",
    "failed": "Processing of this image failed.",
}

LESION_NOTE = ("Lesion masks come from a model trained on SIMULATED contusion-like lesions (no public "
               "contusion labels exist); they are not validated on real contusions.")


@dataclass
class ImageReport:
    """What the report shows for one image (arrays in closest-canonical RAS voxel order)."""
    name: str                           # e.g. 'sub-01_ses-1_T2w'
    source: str                         # path relative to bids_dir
    anat: np.ndarray | None             # float image
    affine: np.ndarray | None           # canonical affine
    cord: np.ndarray | None             # bool
    lesion: np.ndarray | None           # bool
    cord_prob: np.ndarray | None
    centerline: np.ndarray | None       # (n_slices, 2): voxel (i, j) of the cord centre per slice, NaN where none
    morphometrics: dict = field(default_factory=dict)
    models: dict = field(default_factory=dict)     # role -> {Name, Version, SHA256, Threshold, ...}
    warnings: list = field(default_factory=list)
    status: str = "ok"
    error: str | None = None


# --- geometry helpers ---------------------------------------------------------------------------------------------

def _subject_label(subject: str) -> str:
    return subject[4:] if subject.startswith("sub-") else subject


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name) or "image"


def _centres(img: ImageReport) -> np.ndarray:
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


# --- figures ------------------------------------------------------------------------------------------------------

def _save(fig: Figure, path: Path) -> None:
    FigureCanvasAgg(fig)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=DPI, facecolor=fig.get_facecolor())


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
    centres = _centres(img) if centres is None else centres
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
    _save(fig, path)
    return int(round(width_in * DPI)), int(round(height_in * DPI))


def sagittal_view(img: ImageReport, path: Path, centres: np.ndarray | None = None) -> tuple[int, int]:
    """Write the curved sagittal view (and the CSA profile) PNG; returns its (width, height) in pixels."""
    anat = np.asarray(img.anat, dtype=np.float32)
    ni, nj, nz = anat.shape
    geom = slice_geometry(img.affine)
    centres = _centres(img) if centres is None else centres
    ks = np.arange(nz)
    x = np.clip(centres[:, 0], 0, ni - 1)
    x0 = np.floor(x).astype(int)
    x1 = np.minimum(x0 + 1, ni - 1)
    f = (x - x0)[:, None]
    plane = (1 - f) * anat[x0, :, ks] + f * anat[x1, :, ks]           # (nz, nj)
    xr = np.clip(np.round(x).astype(int), 0, ni - 1)
    margin = int(round(SAGITTAL_MARGIN_MM / geom.dy))
    jlo = max(0, int(np.floor(np.nanmin(centres[:, 1]))) - margin)
    jhi = min(nj, int(np.ceil(np.nanmax(centres[:, 1]))) + margin + 1)

    def view(a):                         # (nz, nj) -> rows superior to inferior, columns anterior to posterior
        return a[::-1, jlo:jhi][:, ::-1]

    shown = view(plane)
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
    has_lesion = False
    has_cord = img.cord is not None and bool(img.cord.any())
    if has_cord:
        ax.contour(view(img.cord[xr, :, ks]).astype(np.float32), levels=[0.5], colors=CORD_COLOUR, linewidths=0.8)
    if img.lesion is not None and img.lesion.any():
        les = view(img.lesion[xr, :, ks]).astype(np.float32)
        if les.any():
            has_lesion = True
            ax.contour(les, levels=[0.5], colors=LESION_COLOUR, linewidths=0.9)
    # centreline: column of j, row of k in the displayed frame
    ax.plot((jhi - 1) - centres[:, 1], (nz - 1) - ks, ls="--", lw=0.9, color=CENTRELINE_COLOUR)
    ax.set_xlim(-0.5, cols - 0.5)
    ax.set_ylim(rows - 0.5, -0.5)
    ax.axis("off")
    ax.text(1, 1, "A", color="white", fontsize=8, va="top", ha="left")
    ax.text(cols - 2, 1, "P", color="white", fontsize=8, va="top", ha="right")
    _legend(ax, has_cord, has_lesion, with_centreline=True, loc="lower left")
    # CSA profile, same vertical axis (slice index, superior up)
    px = fig.add_axes(((img_w + gap) / fig_w, bottom / fig_h, (plot_w - 0.1) / fig_w, img_h / fig_h))
    if has_cord:
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
    _save(fig, path)
    return int(round(fig_w * DPI)), int(round(fig_h * DPI))


# --- HTML ---------------------------------------------------------------------------------------------------------

CSS = """
body{font-family:-apple-system,'Segoe UI',Helvetica,Arial,sans-serif;margin:0 auto;max-width:1150px;padding:1em 1.5em;
color:#222;line-height:1.4}
h1{margin-bottom:.2em}h2{border-bottom:2px solid #ddd;padding-bottom:.2em;margin-top:2em}
.meta{color:#666;font-size:.9em}
table{border-collapse:collapse;margin:.6em 0;font-size:.92em}
td,th{border:1px solid #ddd;padding:.25em .6em;text-align:left;vertical-align:top}
th{background:#f4f4f4}td.num{text-align:right;font-variant-numeric:tabular-nums}
.box{border-radius:6px;padding:.6em 1em;margin:.8em 0}
.warn{background:#fff4d6;border:2px solid #e0a800}.error{background:#fde2e1;border:2px solid #c62828}
.ok{background:#e6f4ea;border:1px solid #2e7d32}.note{background:#eef3fb;border:1px solid #4a73b5;font-size:.9em}
figure{margin:1em 0}figure img{max-width:100%;height:auto;border:1px solid #ccc}
figcaption{font-size:.88em;color:#444;margin-top:.3em}
code{background:#f4f4f4;padding:0 .2em}
.status-ok{color:#2e7d32;font-weight:bold}.status-failed{color:#c62828;font-weight:bold}
"""

LOAD_SCRIPT = """<script>
window.addEventListener('load', function () {
  var im = document.images, ok = 0;
  for (var i = 0; i < im.length; i++) { var g = im[i].complete && im[i].naturalWidth > 0; im[i].setAttribute('data-loaded', g ? '1' : '0'); if (g) ok++; }
  document.documentElement.setAttribute('data-images-loaded', ok + '/' + im.length);
});
</script>"""


def _e(value) -> str:
    return html.escape(str(value), quote=True)


def _format(value, integer: bool = False) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        v = float(value)
        if not math.isfinite(v):
            return "n/a"
        if integer and v == int(v):
            return str(int(v))
        return f"{v:.3f}" if abs(v) < 10 else f"{v:.2f}" if abs(v) < 1000 else f"{v:.1f}"
    text = str(value)
    return "n/a" if text in ("nan", "None", "") else text


def _morphometrics_table(metrics: dict) -> str:
    if not metrics:
        return "<p>No morphometrics.</p>"
    rows = []
    for key in LABELS:
        if key in metrics:
            label, unit = LABELS[key]
            value = _format(metrics[key], integer=key in ("n_cord_slices", "lesion_count"))
            rows.append(f"<tr><td>{_e(label)}</td><td class=num>{_e(value)}</td>"
                        f"<td>{_e(unit)}</td><td><code>{_e(key)}</code></td></tr>")
    for key, value in metrics.items():
        if key not in LABELS:
            rows.append(f"<tr><td>{_e(key.replace('_', ' '))}</td><td class=num>{_e(_format(value))}</td><td></td>"
                        f"<td><code>{_e(key)}</code></td></tr>")
    return ("<table class=metrics><tr><th>Measure</th><th>Value</th><th>Unit</th><th>Column</th></tr>"
            + "".join(rows) + "</table>")


def _models_table(models: dict) -> str:
    if not models:
        return "<p>No model information.</p>"
    rows = []
    for role, info in models.items():
        if not isinstance(info, dict):
            info = {"Name": info}
        cells = []
        for key, value in info.items():
            text = _format(value)
            if str(key).lower() in ("sha256", "checksum") and len(text) > 16:
                cells.append(f"<b>{_e(key)}</b>: <code title='{_e(text)}'>{_e(text[:12])}…</code>")
            else:
                cells.append(f"<b>{_e(key)}</b>: {_e(text)}")
        rows.append(f"<tr><td>{_e(role)}</td><td>{'<br>'.join(cells)}</td></tr>")
    return "<table class=models><tr><th>Role</th><th>Model</th></tr>" + "".join(rows) + "</table>"


def _flags_box(img: ImageReport) -> str:
    flags = [str(f) for f in img.warnings if str(f) and str(f) != "nan"]
    if not flags:
        return "<div class='box ok'>No quality-control flags.</div>"
    items = []
    for flag in flags:
        name, _, detail = flag.partition(":")
        text = FLAG_TEXT.get(name, "")
        if detail:
            text = f"{text}: {detail}" if text else detail
        items.append(f"<li><code>{_e(name)}</code> {_e(text)}</li>")
    return ("<div class='box warn'><strong>Quality-control flags — please review this image</strong><ul>"
            + "".join(items) + "</ul></div>")


def _image_section(img: ImageReport, anchor: str, figures: dict) -> str:
    parts = [f"<section id='{_e(anchor)}'><h2>{_e(img.name)}</h2>",
             f"<p class=meta>Source: <code>{_e(img.source)}</code> · status: "
             f"<span class='status-{_e(img.status)}'>{_e(img.status)}</span></p>"]
    if img.status != "ok" or img.error:
        parts.append(f"<div class='box error'><strong>Processing failed</strong><pre>{_e(img.error or 'unknown error')}"
                     f"</pre></div>")
    if img.status == "ok" or img.warnings:
        parts.append(_flags_box(img))
    if "figure_error" in figures:
        parts.append(f"<div class='box error'>The figures could not be drawn: {_e(figures['figure_error'])}</div>")
    if "axial" in figures:
        src, (w, h) = figures["axial"]
        parts.append(f"<figure><img src='{_e(src)}' width={w} height={h} alt='Axial mosaic of {_e(img.name)}'>"
                     "<figcaption>Axial slices (slice number in each tile), each a "
                     f"{FIELD_MM:.0f} mm field centred on the cord; cord outline in cyan, lesion outline in red. "
                     "Radiological convention: the patient's right is on the left, anterior is up.</figcaption></figure>")
    if "sagittal" in figures:
        src, (w, h) = figures["sagittal"]
        parts.append(f"<figure><img src='{_e(src)}' width={w} height={h} alt='Sagittal view of {_e(img.name)}'>"
                     "<figcaption>Sagittal view along the centreline (each axial slice sampled at the cord "
                     "centre's left-right position; anterior on the left, superior up) with the centreline "
                     "(dashed yellow), and the cord cross-sectional area per slice (angle-corrected) with the "
                     "lesion area.</figcaption></figure>")
    has_lesion = img.lesion is not None and bool(np.any(img.lesion))
    if has_lesion or "lesion" in img.models:
        parts.append(f"<div class='box note'>{_e(LESION_NOTE)}</div>")
    parts.append("<h3>Morphometrics</h3>" + _morphometrics_table(img.morphometrics))
    parts.append("<p class=meta>Definitions follow SCT's <code>sct_analyze_lesion</code> (see "
                 "docs/morphometrics.md); tissue bridges and midsagittal measures are on the midsagittal "
                 "plane through the cord centre; NaN (n/a) where undefined.</p>")
    parts.append("<h3>Models</h3>" + _models_table(img.models))
    parts.append("</section>")
    return "\n".join(parts)


def write_subject_report(out_root: Path, subject: str, images: list[ImageReport]) -> Path:
    """Write ``<out_root>/sub-<label>.html`` and its figures under ``<out_root>/sub-<label>/figures/``."""
    out_root = Path(out_root)
    label = _subject_label(subject)
    fig_rel = f"sub-{label}/figures"
    fig_dir = out_root / fig_rel
    sections, summary = [], []
    used: set[str] = set()
    for img in images:
        stem = _safe(img.name)
        while stem in used:
            stem += "_"
        used.add(stem)
        anchor = f"img-{stem}"
        figures: dict = {}
        if img.anat is not None and img.affine is not None and np.ndim(img.anat) == 3:
            try:
                centres = _centres(img)
                for kind, draw in (("axial", axial_mosaic), ("sagittal", sagittal_view)):
                    name = f"{stem}_desc-{kind}_qc.png"
                    size = draw(img, fig_dir / name, centres)
                    figures[kind] = (f"{quote(fig_rel)}/{quote(name)}", size)
            except Exception as exc:    # a figure must never cost the report
                figures["figure_error"] = f"{type(exc).__name__}: {exc}"
        sections.append(_image_section(img, anchor, figures))
        flags = ", ".join(str(f).split(":")[0] for f in img.warnings if str(f) and str(f) != "nan")
        flags = flags or ("see the error" if img.status != "ok" else "—")
        summary.append(f"<tr><td><a href='#{_e(anchor)}'>{_e(img.name)}</a></td>"
                       f"<td class='status-{_e(img.status)}'>{_e(img.status)}</td><td>{_e(flags)}</td></tr>")
    now = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    page = f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>basicseg: sub-{_e(label)}</title>
<style>{CSS}</style>
{LOAD_SCRIPT}
</head>
<body>
<h1>sub-{_e(label)}</h1>
<p class=meta>Visual quality control by basicseg {_e(__version__)} (BASICseg U-Nets, McCoy et al., AJNR 2019),
written {now}. {len(images)} image(s).</p>
<table class=summary><tr><th>Image</th><th>Status</th><th>QC flags</th></tr>
{''.join(summary)}
</table>
{''.join(sections)}
</body>
</html>
"""
    return write_text(out_root / f"sub-{label}.html", page)
