"""The group report, ``<output_dir>/group_report.html``: drawn from what the run computed (the state), never
by re-reading the tables it wrote. Links are relative, so the output folder can be moved."""
from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from basicseg.io import write_text
from bidsapp.group.state import ANALYSIS, COMPARISON, INPUTS, NA, OUTPUTS, QC, GroupState
from bidsapp.group.ratings import SEVERITY
from bidsapp.group.stats import TABLE2_ANALYSES
from bidsapp.report.html import escape as _e
from bidsapp.report.html import format_number, relative_link

DIGITS = 4
REPORT_NAME = "group_report.html"
HEAD = ("<!doctype html><html lang='en'><head><meta charset='utf-8'><title>basicseg group report</title>"
        "<style>body{font-family:sans-serif;max-width:1100px;margin:auto;padding:1em}"
        "table{border-collapse:collapse;margin:0.5em 0}td,th{border:1px solid #bbb;padding:2px 6px;"
        "font-size:0.9em;text-align:right}th{background:#eee}.note{color:#8a4b00}.error{color:#b00020}"
        ".skip{color:#888}</style></head><body>")
REGRESSION_TEXT = ("The paper's procedure: OLS; linearity checked by a t test of an added quadratic term; if "
                   "non-linear, log(x + 1) kept when R² improves, otherwise Spearman (P as R's cor.test). "
                   "<a href='group/regressions.tsv'>regressions.tsv</a>")

INTRO = ("<p>Derivatives: <code>{output_dir}</code>; inputs: <code>{bids_dir}</code>. Statistics and their "
         "agreement with R (lme4 + lmerTest): <code>docs/statistics.md</code>. Lesion models were trained on "
         "SIMULATED lesions.</p>")
NO_DICE = "<p class='skip'>No per-slice Dice (no image with both a reference and a segmentation).</p>"
DICE_TEXT = ("<p>Per-slice Dice against the reference cord mask, on slices where the reference has cord "
             "(<a href='group/dice_per_slice.tsv'>dice_per_slice.tsv</a>).</p>")
TABLE2_TEXT = ("<p>Linear mixed models, random intercept per participant, REML; Satterthwaite df (as lmerTest). "
               "Reference method: <b>{reference}</b>. <a href='group/table2.tsv'>table2.tsv</a></p>")
TABLE2_HEAD = ("<table><tr><th>Model</th><th>Term</th><th>Estimate</th><th>SE</th><th>df</th><th>t</th><th>P</th>"
               "<th>n slices</th><th>n participants</th></tr>")


def _cell(value) -> str:
    return _e(format_number(value, digits=DIGITS))


def table_html(frame: pd.DataFrame, cols=None) -> str:
    cols = cols or list(frame.columns)
    head = "".join(f"<th>{_e(c)}</th>" for c in cols)
    body = "".join("<tr>" + "".join(f"<td>{_cell(r[c])}</td>" for c in cols) + "</tr>" for _, r in frame.iterrows())
    return f"<table><tr>{head}</tr>{body}</table>"


def _notes(notes: list[str], css: str = "note") -> str:
    return "<ul>" + "".join(f"<li class='{css}'>{_e(n)}</li>" for n in notes) + "</ul>" if notes else ""


def _figure(state: GroupState, key, alt: str, width: str) -> str:
    path = state.figures.get(key)
    if path is None:
        return ""
    return f"<img src='{_e(relative_link(path, state.output_dir))}' alt='{_e(alt)}' style='max-width:{width}'>"


def inputs_section(state: GroupState) -> list[str]:
    morph = state.morph
    n_img = len(morph) if morph is not None else 0
    n_ok = int((morph["status"] == "ok").sum()) if n_img else 0
    n_part = morph["participant_id"].nunique() if n_img else 0
    summary = (f"<h2>Inputs</h2><p>{n_img} image(s) from {n_part} participant(s); {n_ok} processed, "
               f"{n_img - n_ok} not processed (failed or skipped at the participant level; see the exclusions). "
               "Tables: <a href='group/morphometrics.tsv'>morphometrics.tsv</a>, <a href='group/joined.tsv'>"
               "joined.tsv</a>, <a href='group/exclusions.tsv'>exclusions.tsv</a>.</p>")
    return [summary, _notes(state.notes[INPUTS])]


RATINGS_TEXT = ("<p>{n} image(s) rated in {files}: {counts}. When reviewers disagree the most severe rating is "
                "used (fail &gt; artefact &gt; pass). Images rated <b>fail</b> are excluded from every analysis "
                "(reason <code>rated fail</code> in <a href='group/exclusions.tsv'>exclusions.tsv</a>); images "
                "rated <b>artefact</b> are listed here but <b>not excluded</b>: they stay in the analyses.</p>")
CONSEQUENCE = {"fail": "excluded from every analysis", "artefact": "listed, not excluded (kept in the analyses)"}


def ratings_section(state: GroupState) -> list[str]:
    """The visual QC ratings given with --qc-ratings (nothing without them)."""
    if state.ratings is None:
        return []
    images = list(state.ratings.values())
    counts = ", ".join(f"{sum(i.rating == r for i in images)} {r}" for r in ("fail", "artefact", "pass"))
    files = ", ".join(f"<code>{_e(f)}</code>" for f in state.rating_files)
    parts = ["<h2>Visual QC ratings</h2>", RATINGS_TEXT.format(n=len(images), files=files, counts=counts)]
    rows = [{"source": i.source, "participant_id": i.participant_id, "rating": i.rating,
             "consequence": CONSEQUENCE[i.rating], "note": i.notes or "",
             "reviewers": i.who() + ("; reviewers disagree, the most severe rating is used" if i.disagree else "")}
            for i in sorted(images, key=lambda i: (-SEVERITY[i.rating], i.source)) if i.rating in CONSEQUENCE]
    if rows:
        parts.append(table_html(pd.DataFrame(rows)))
    n_disagree = sum(i.disagree for i in images)
    if n_disagree:
        parts.append(f"<p class='note'>Reviewers disagree on {n_disagree} image(s); the most severe rating is "
                     "used.</p>")
    return parts + [_notes(state.notes[QC])]


def _regression_row(r) -> dict:
    return {"outcome": r.outcome, "predictor": r.predictor, "n": r.n, "path": r.path, "estimate": r.estimate,
            "SE": r.se, "t": r.t, "P": r.p, "R²": r.r2,
            "95% CI": f"{r.ci_low:.4g} to {r.ci_high:.4g}" if math.isfinite(r.ci_low) else NA,
            "linearity P": r.linearity_p, "Spearman rho": r.rho,
            "skipped / notes": r.skipped or "; ".join(r.notes) or ""}


def regression_section(state: GroupState) -> list[str]:
    parts = ["<h2>Motor scores against lesion burden</h2>", f"<p>{REGRESSION_TEXT}</p>"]
    if not state.regressions:
        why = "; ".join(n for n in state.notes[ANALYSIS] if n.startswith("regressions")) or "no phenotype data"
        return parts + [f"<p class='skip'>No regression: {_e(why)}</p>"]
    parts.append(table_html(pd.DataFrame([_regression_row(r) for r in state.regressions])))
    parts += [_figure(state, ("regression", (r.outcome, r.predictor)), f"{r.outcome} vs {r.predictor}", "48%")
              for r in state.regressions]
    return parts


BASIC_TEXT = ("<p class='warn'><b>Experimental: validated on SIMULATED lesions only.</b> The BASIC grade (Talbott et "
              "al. 2015) is assigned at the epicentre from the lesion mask, the AMU7T grey matter mapped onto the "
              "cord and the detected haemorrhage (docs/atlas.md). Spearman's rho with R's cor.test P value; "
              "Kruskal-Wallis across grades (tie-corrected H, k - 1 df, as R's kruskal.test). The tract-wise "
              "loads of the lateral corticospinal tracts enter the regressions above as predictors.</p>")


def basic_section(state: GroupState) -> list[str]:
    if state.basic is None:
        return []
    parts = ["<h2>BASIC score against motor scores</h2>", BASIC_TEXT, table_html(state.basic.drop(columns="status"))]
    parts += [_figure(state, ("basic", o), f"{o} by BASIC grade", "48%") for o in state.basic["outcome"]]
    return parts


def dice_section(state: GroupState) -> list[str]:
    parts = ["<h2>Segmentation comparisons (Table 2)</h2>", _notes(state.notes[COMPARISON])]
    if state.dice is None or not len(state.dice):
        return parts + [NO_DICE]
    counts = state.dice.groupby("method").agg(slices=("dice", "size"), participants=("participant_id", "nunique"),
                                              mean_dice=("dice", "mean"), median_dice=("dice", "median"))
    counts.insert(0, "method", counts.index)
    return parts + [DICE_TEXT,
                    table_html(counts.reset_index(drop=True)),
                    _figure(state, ("dice",), "Dice violin plots", "100%")]


def _table2_rows(sub: pd.DataFrame, title: str) -> list[str]:
    rows = []
    for i, (_, r) in enumerate(sub.iterrows()):
        lead = f"<td rowspan='{len(sub)}' style='text-align:left'>{_e(title)}</td>" if i == 0 else ""
        tail = f"<td>{r['n_slices']}</td><td>{r['n_participants']}</td></tr>"
        if isinstance(r["skipped"], str) and r["skipped"] != NA:
            rows.append(f"<tr>{lead}<td colspan='6' class='skip' style='text-align:left'>skipped: "
                        f"{_e(r['skipped'])}</td>{tail}")
        else:
            rows.append(f"<tr>{lead}<td style='text-align:left'>{_e(r['term'])}</td>"
                        + "".join(f"<td>{_cell(r[c])}</td>" for c in ("Estimate", "SE", "df", "t", "P")) + tail)
    return rows


def table2_section(state: GroupState) -> list[str]:
    if state.table2 is None or not len(state.table2):
        return []
    reference = _e(state.methods[0] if state.methods else "")
    parts = [TABLE2_TEXT.format(reference=reference), TABLE2_HEAD]
    for key, title in TABLE2_ANALYSES:
        parts += _table2_rows(state.table2[state.table2["analysis"] == key], title)
    return parts + ["</table>"]


def _n_rows(state: GroupState) -> list[dict]:
    rows = [{"analysis": f"regression {r.outcome} ~ {r.predictor}", "n": f"{r.n} participant(s)",
             "status": f"skipped: {r.skipped}" if r.skipped else r.path} for r in state.regressions]
    return rows + [{"analysis": f"Table 2: {m['model']}",
                    "n": f"{m['n_slices']} slice(s), {m['n_participants']} participant(s)",
                    "status": f"skipped: {m['skipped']}" if m["skipped"] else "fitted"} for m in state.models]


def exclusions_section(state: GroupState) -> list[str]:
    parts = ["<h2>n per analysis and exclusions</h2>"]
    rows = _n_rows(state)
    if rows:
        parts.append(table_html(pd.DataFrame(rows)))
    if state.exclusions:
        parts.append(table_html(state.exclusion_table()))
    else:
        parts.append("<p>No exclusion.</p>")
    return parts + [_notes(state.notes[ANALYSIS])]


def subject_reports(output_dir: Path, morph: pd.DataFrame | None) -> list[tuple[str, str, str]]:
    """(participant, link, QC flags) for every sub-*.html at the output root, QC-flagged first."""
    out = []
    for page in sorted(Path(output_dir).glob("sub-*.html")):
        flags = ""
        if morph is not None and "qc_flags" in morph:
            values = morph.loc[morph["participant_id"] == page.stem, "qc_flags"].dropna().astype(str)
            flags = "; ".join(sorted({x for v in values for x in v.split(";") if x and x != NA}))
        out.append((page.stem, page.name, flags))
    return sorted(out, key=lambda t: (t[2] == "", t[0]))


def subjects_section(state: GroupState) -> list[str]:
    subs = subject_reports(state.output_dir, state.morph)
    if not subs:
        return ["<h2>Subject reports</h2><p class='skip'>No subject report (sub-*.html) at the output root.</p>"]
    items = [f"<li><a href='{_e(link)}'>{_e(pid)}</a>{f' — <b>QC: {_e(flags)}</b>' if flags else ''}</li>"
             for pid, link, flags in subs]
    return ["<h2>Subject reports</h2><p>Images flagged for quality control first. Each page lets a reviewer "
            "rate its images (pass, fail, artefact) and export the ratings for <code>group --qc-ratings</code>."
            "</p><ul>", *items, "</ul>"]


def render(state: GroupState) -> str:
    errors = state.notes[OUTPUTS]
    parts = [HEAD, "<h1>basicseg group report</h1>",
             INTRO.format(output_dir=_e(state.output_dir), bids_dir=_e(state.bids_dir)),
             ("<h2>Output errors</h2>" + _notes(errors, "error")) if errors else "",
             *inputs_section(state), *ratings_section(state), *regression_section(state),
             *basic_section(state), *dice_section(state), *table2_section(state),
             *exclusions_section(state), *subjects_section(state), "</body></html>\n"]
    return "\n".join(p for p in parts if p)


def write_report(state: GroupState) -> Path:
    """Raises OSError when the page cannot be written."""
    return write_text(state.output_dir / REPORT_NAME, render(state))
