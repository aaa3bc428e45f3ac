"""Report: one visual quality-control page per subject, ``<out>/sub-<label>.html`` (as fMRIPrep does).

For each image of the subject the page shows the axial mosaic and the sagittal view along the
centreline (drawn by :mod:`bidsapp.report.figures`), the **morphometrics** table (definitions:
:mod:`basicseg.measure.morphometrics`, docs/morphometrics.md), the **models** with their versions,
checksums and thresholds, and the **QC flags** in a visible box; a failed image shows its error instead.

Figures are PNG files under ``<out>/sub-<label>/figures/`` and are linked relatively, so the output
folder can be moved or zipped.  Every file is written to a temporary name and renamed.  The page carries
a five-line inline script that marks, once the page has loaded, whether every image loaded
(``data-images-loaded="n/N"`` on ``<html>``, ``data-loaded`` on each ``<img>``): harmless for readers,
and what the headless-browser test reads.  A second inline script (:mod:`bidsapp.report.rating`) lets a
reviewer rate each image pass / fail / artefact and export the ratings as a TSV for ``group --qc-ratings``.
"""
from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import numpy as np

from basicseg import __version__
from basicseg.io import write_text
from basicseg.measure.morphometrics import LABELS
from basicseg.segment.load import VALIDATED_IN_PLANE_MM, VALIDATED_SLICE_MM
from bidsapp.discovery import strip_prefix
from bidsapp.report import rating
from bidsapp.report.figures import FIELD_MM, axial_mosaic, centres_of, epicentre_view, sagittal_view
from bidsapp.report.html import escape as _e
from bidsapp.report.html import format_number, safe_name

FLAG_TEXT = {
    "no_cord": "No spinal cord was found in this image.",
    "low_confidence": "The network's mean cord probability inside the mask is low: check the cord outline.",
    "discontinuous_cord": "The cord mask is interrupted (a slice without cord between cord slices, or "
                          "several pieces).",
    "lesion_outside_cord": "Part of the lesion mask lies outside the cord mask (its volume is in the table).",
    "missing_cord_slices": "No cord was found on these axial slices",
    "low_cord_confidence": "The cord network was unsure of this cord (mean probability below the tuned "
                           "threshold): check the cord outline on every slice.",
    "uncertain_cord_boundary": "Many voxels on the cord's slices have an undecided cord probability: the "
                               "outline may be wrong.",
    "low_cord_contrast": "Away from any lesion, the cord is nearly as bright as the CSF around it, or brighter "
                         "(an inverted contrast: is this a T2-weighted image?), a contrast the networks were "
                         "not validated on: the outline may leak into the CSF or miss cord, and lesions may be "
                         "false.",
    "nonfinite_voxels": "Some voxels of the input were NaN or Inf; they were replaced by their slice's median.",
    "outside_validated_resolution": "The voxels are coarser than those the networks were validated on (in-plane "
                                    f"over {VALIDATED_IN_PLANE_MM:g} mm or slices over {VALIDATED_SLICE_MM:g} mm "
                                    "thick): the outputs are not validated.",
    "implausible_cord_shape": "The cord's area varies or jumps between slices more than a real cord's does: "
                              "look for slices where the mask leaks or misses cord.",
    "uncertain_lesion": "The lesion network was unsure of a lesion it found (low probability over the "
                        "lesion's core, not its outline): it may be a false lesion.",
    "lesion_not_hyperintense": "A lesion is hardly brighter than the same tissue of the normal cord above and "
                               "below it: oedema is hyperintense on T2, so it may be a false lesion (e.g. grey "
                               "matter bright along the whole cord).",
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
    epicentre: dict | None = None       # --basic-score: {"slice", "gm" (2D), "haemorrhage" (2D or None)}
    status: str = "ok"
    error: str | None = None


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


def _morphometrics_table(metrics: dict) -> str:
    if not metrics:
        return "<p>No morphometrics.</p>"
    rows = []
    for key in LABELS:
        if key in metrics:
            label, unit = LABELS[key]
            value = format_number(metrics[key], integer=key in ("n_cord_slices", "lesion_count"))
            rows.append(f"<tr><td>{_e(label)}</td><td class=num>{_e(value)}</td>"
                        f"<td>{_e(unit)}</td><td><code>{_e(key)}</code></td></tr>")
    for key, value in metrics.items():
        if key not in LABELS:
            rows.append(f"<tr><td>{_e(key.replace('_', ' '))}</td><td class=num>{_e(format_number(value))}</td><td></td>"
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
            text = format_number(value)
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
    parts = [f"<section id='{_e(anchor)}' {rating.section_attributes(img.name, img.source)}>"
             f"<h2>{_e(img.name)}{rating.badge()}</h2>",
             f"<p class=meta>Source: <code>{_e(img.source)}</code> · status: "
             f"<span class='status-{_e(img.status)}'>{_e(img.status)}</span></p>",
             rating.widget(img.name, anchor)]
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
    basic = basic_reasoning(img.morphometrics)
    if basic:
        parts.append(f"<div class='box note'><strong>BASIC score (experimental: validated on simulated lesions "
                     f"only)</strong>: {_e(basic)}</div>")
        if "epicentre" in figures:
            src, (w, h) = figures["epicentre"]
            parts.append(f"<figure><img src='{_e(src)}' width={w} height={h} alt='BASIC epicentre of {_e(img.name)}'>"
                         "<figcaption>The epicentre slice with the AMU7T grey matter mapped onto the cord (green), "
                         "the lesion (red) and detected haemorrhage (magenta); radiological convention."
                         "</figcaption></figure>")
    parts.append("<h3>Morphometrics</h3>" + _morphometrics_table(img.morphometrics))
    parts.append("<p class=meta>Definitions follow SCT's <code>sct_analyze_lesion</code> (see "
                 "docs/morphometrics.md); tissue bridges and midsagittal measures are on the midsagittal "
                 "plane through the cord centre; NaN (n/a) where undefined.</p>")
    parts.append("<h3>Models</h3>" + _models_table(img.models))
    parts.append("</section>")
    return "\n".join(parts)




def basic_reasoning(row: dict) -> str | None:
    """The grade and why, in one line (None when the image was not graded)."""
    grade = row.get("basic_score")
    try:
        grade = int(float(grade))
    except (TypeError, ValueError):
        return None
    if grade == 0:
        return "grade 0: no intramedullary lesion in the cord"
    def pct(key):
        value = row.get(key)
        return f"{100 * float(value):.0f} %" if value is not None and np.isfinite(float(value)) else "n/a"
    rim = "white-matter rim spared" if row.get("basic_wm_rim_spared") in (1, 1.0, True) else "rim not spared"
    haem = "haemorrhage at the epicentre" if row.get("basic_haemorrhage_at_epicentre") in (1, 1.0, True) \
        else "no haemorrhage at the epicentre"
    return (f"grade {grade} at slice {int(float(row.get('basic_epicentre_slice')))}: "
            f"{pct('basic_section_involved_share')} of the cross-section involved, "
            f"{pct('basic_lesion_in_gm_share')} of the lesion in the atlas grey matter, {rim}, {haem}")


def _draw_figures(img: ImageReport, stem: str, fig_dir: Path, fig_rel: str) -> dict:
    """kind -> (relative link, (width, height)); ``figure_error`` when drawing failed: a figure must never
    cost the page (the participant level reports the image's own status)."""
    figures: dict = {}
    if img.anat is None or img.affine is None or np.ndim(img.anat) != 3:
        return figures
    try:
        centres = centres_of(img)
        drawings = [("axial", axial_mosaic), ("sagittal", sagittal_view)]
        if img.epicentre is not None:
            drawings.append(("epicentre", epicentre_view))
        for kind, draw in drawings:
            name = f"{stem}_desc-{kind}_qc.png"
            size = draw(img, fig_dir / name, centres)
            figures[kind] = (f"{quote(fig_rel)}/{quote(name)}", size)
    except Exception as exc:    # noqa: BLE001 -- any failure is shown on the page instead of the figure
        figures["figure_error"] = f"{type(exc).__name__}: {exc}"
    return figures


def _summary_row(img: ImageReport, anchor: str) -> str:
    flags = ", ".join(str(f).split(":")[0] for f in img.warnings if str(f) and str(f) != "nan")
    flags = flags or ("see the error" if img.status != "ok" else "—")
    return (f"<tr><td><a href='#{_e(anchor)}'>{_e(img.name)}</a></td>"
            f"<td class='status-{_e(img.status)}'>{_e(img.status)}</td><td>{_e(flags)}</td>"
            f"{rating.summary_cells(anchor)}</tr>")


def _page(label: str, n_images: int, summary: list[str], sections: list[str]) -> str:
    now = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>basicseg: sub-{_e(label)}</title>
<style>{CSS}{rating.CSS}</style>
{LOAD_SCRIPT}
</head>
<body>
<h1>sub-{_e(label)}</h1>
<p class=meta>Visual quality control by basicseg {_e(__version__)} (BASICseg U-Nets, McCoy et al., AJNR 2019),
written {now}. {n_images} image(s).</p>
<table class=summary><tr><th>Image</th><th>Status</th><th>QC flags</th>{rating.SUMMARY_HEADER}</tr>
{''.join(summary)}
</table>
{rating.panel(f"sub-{label}")}
{''.join(sections)}
{rating.SCRIPT}
</body>
</html>
"""


def write_subject_report(out_root: Path, subject: str, images: list[ImageReport]) -> Path:
    """Write ``<out_root>/sub-<label>.html`` and its figures under ``<out_root>/sub-<label>/figures/``."""
    out_root = Path(out_root)
    label = strip_prefix(subject, "sub-")
    fig_rel = f"sub-{label}/figures"
    sections, summary = [], []
    used: set[str] = set()
    for img in images:
        stem = safe_name(img.name)
        while stem in used:
            stem += "_"
        used.add(stem)
        anchor = f"img-{stem}"
        sections.append(_image_section(img, anchor, _draw_figures(img, stem, out_root / fig_rel, fig_rel)))
        summary.append(_summary_row(img, anchor))
    return write_text(out_root / f"sub-{label}.html", _page(label, len(images), summary, sections))
