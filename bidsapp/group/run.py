"""Group level: collect -> join -> regressions -> segmentation comparisons -> report.

Outputs (under ``<output_dir>``)::

    group/morphometrics.tsv          one row per image: every participant's ``*_morphometrics.tsv``
    group/joined.tsv (+ .json)       the same joined with participants.tsv and phenotype/*.tsv
    group/regressions.tsv (+ .json)  each motor score ~ predictor by the paper's procedure
    group/dice_per_slice.tsv         per-slice Dice of every method against the reference cord mask
    group/table2.tsv (+ .json)       mixed models as the paper's Table 2 (Satterthwaite df)
    group/exclusions.tsv             every image/participant left out of an analysis, with the reason
    group/figures/*.png
    group_report.html

See docs/statistics.md for the statistics and their agreement with R (lme4 + lmerTest).
"""
from __future__ import annotations

import html
import json
import logging
import math
import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from basicseg import errors as exits
from basicseg.io import write_json, write_text, write_tsv
from basicseg.references import find_reference, image_stem, split_suffix

log = logging.getLogger("basicseg")

SC_MASK = "space-orig_label-SC_mask.nii.gz"
DEFAULT_PREDICTOR = "lesion_volume_mm3"
OUTCOME_PATTERN = re.compile(r"^LEMS", re.IGNORECASE)
MIN_POINTS = 3
NA = "n/a"


@dataclass
class GroupState:
    """Everything the steps find, for the report."""
    bids_dir: Path
    output_dir: Path
    morph: pd.DataFrame | None = None
    joined: pd.DataFrame | None = None
    phenotype_notes: list[str] = field(default_factory=list)
    descriptions: dict = field(default_factory=dict)
    exclusions: list[dict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    regressions: list = field(default_factory=list)         # RegressionResult
    regression_frames: dict = field(default_factory=dict)   # (outcome, predictor) -> (x, y, participant ids)
    dice: pd.DataFrame | None = None
    methods: list[str] = field(default_factory=list)
    comparison_notes: list[str] = field(default_factory=list)
    table2: pd.DataFrame | None = None
    models: list[dict] = field(default_factory=list)
    figures: dict = field(default_factory=dict)

    def exclude(self, analysis: str, reason: str, participant_id="n/a", session_id="n/a", source="n/a"):
        self.exclusions.append({"analysis": analysis, "participant_id": participant_id, "session_id": session_id,
                                "source": source, "reason": reason})


# ----------------------------------------------------------------------------------------------
# 1. collect
# ----------------------------------------------------------------------------------------------

def _label(p: str) -> str:
    return p if p.startswith("sub-") else f"sub-{p}"


def _entities(source: str) -> dict:
    ents = {}
    for part in image_stem(source).split("_")[:-1]:
        key, sep, value = part.partition("-")
        if sep:
            ents[key] = value
    return ents


def collect(output_dir: Path, participant_labels=None) -> pd.DataFrame:
    """Every ``sub-*/[ses-*/]anat/*_morphometrics.tsv`` (not the ``*_desc-*`` per-slice files), one row per image.

    Raises BasicsegError NO_INPUT when there is none, NO_MATCH when ``participant_labels`` match none."""
    output_dir = Path(output_dir)
    files = sorted(set(output_dir.glob("sub-*/anat/*_morphometrics.tsv"))
                   | set(output_dir.glob("sub-*/ses-*/anat/*_morphometrics.tsv")))
    files = [f for f in files if "_desc-" not in f.name]
    if not files:
        raise exits.BasicsegError(f"{output_dir}: no participant outputs (*_morphometrics.tsv); "
                                  "run the participant level first", exits.NO_INPUT)
    if participant_labels:
        wanted = {_label(p) for p in participant_labels}
        files = [f for f in files if f.relative_to(output_dir).parts[0] in wanted]
        if not files:
            raise exits.BasicsegError(f"participant label(s) {', '.join(sorted(wanted))} match no participant "
                                      f"output in {output_dir}", exits.NO_MATCH)
    rows = []
    for f in files:
        frame = pd.read_csv(f, sep="\t", dtype=str, keep_default_na=False)
        for _, r in frame.iterrows():
            row = dict(r)
            rel = f.relative_to(output_dir)
            row.setdefault("participant_id", rel.parts[0])
            row.setdefault("session_id", rel.parts[1] if rel.parts[1].startswith("ses-") else NA)
            if not row.get("source") or row["source"] == NA:
                prefix = f.name[: -len("_morphometrics.tsv")]
                row["source"] = str(rel.parent / f"{prefix}_{row.get('suffix', 'T2w')}.nii.gz")
            row.setdefault("status", "ok")
            row["morphometrics_file"] = str(rel)
            rows.append(row)
    table = pd.DataFrame(rows)
    for key, value in [("session_id", NA), ("error", NA), ("qc_flags", ""), ("suffix", NA)]:
        if key not in table:
            table[key] = value
    table = table.replace({"": np.nan, NA: np.nan})
    # BIDS entities as columns
    ents = pd.DataFrame([_entities(s) for s in table["source"]], index=table.index)
    for key in ents.columns:
        col = f"entity_{key}"
        table[col] = ents[key]
    # numeric columns back to numbers
    for col in table.columns:
        if col in ("participant_id", "session_id", "source", "suffix", "status", "error", "qc_flags") \
                or col.startswith("entity_"):
            continue
        num = pd.to_numeric(table[col], errors="coerce")
        if num.notna().sum() == table[col].notna().sum():
            table[col] = num
    table["status"] = table["status"].fillna("ok")
    return table.sort_values("source", kind="stable").reset_index(drop=True)


# ----------------------------------------------------------------------------------------------
# 2. join
# ----------------------------------------------------------------------------------------------

def _read_tsv(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)


def _numeric_columns(frame: pd.DataFrame, source: str, notes: list[str], id_cols=("participant_id", "session_id")):
    """Columns with at least one number become numeric; n/a -> NaN; other text in them -> NaN with a warning."""
    for col in frame.columns:
        if col in id_cols:
            continue
        raw = frame[col].astype(str).str.strip()
        missing = raw.isin(["", NA, "NA", "nan", "NaN"])
        num = pd.to_numeric(raw.where(~missing), errors="coerce")
        bad = num.isna() & ~missing
        if num.notna().sum() == 0:
            frame[col] = raw.where(~missing)
            continue
        if bad.any():
            examples = ", ".join(f"{frame.loc[i, 'participant_id']}={raw[i]!r}" for i in raw.index[bad][:5])
            msg = f"{source}: {int(bad.sum())} non-numeric value(s) in {col} treated as missing ({examples})"
            log.warning(msg)
            notes.append(msg)
        frame[col] = num
    return frame


def join(bids_dir: Path, morph: pd.DataFrame, state: GroupState | None = None) -> pd.DataFrame:
    """Join the per-image table with ``participants.tsv`` and ``phenotype/*.tsv`` by participant (and session)."""
    state = state or GroupState(Path(bids_dir), Path("."))
    notes = state.phenotype_notes
    bids_dir = Path(bids_dir)
    joined = morph.copy()
    known_ids: set[str] | None = None
    participants = bids_dir / "participants.tsv"
    if participants.is_file():
        p = _numeric_columns(_read_tsv(participants), "participants.tsv", notes)
        if "participant_id" in p:
            known_ids = set(p["participant_id"])
            state.descriptions.update(_descriptions(bids_dir / "participants.json"))
            joined = joined.merge(p.drop_duplicates("participant_id"), on="participant_id", how="left",
                                  suffixes=("", "_participants"))
        else:
            notes.append("participants.tsv has no participant_id column; not joined")
    else:
        notes.append("no participants.tsv in the BIDS dataset")
    phen_dir = bids_dir / "phenotype"
    tables = sorted(phen_dir.glob("*.tsv")) if phen_dir.is_dir() else []
    if not tables:
        notes.append("No phenotype data (bids_dir/phenotype/*.tsv): motor-score regressions are not possible; "
                     "the segmentation comparisons still run.")
    has_sessions = joined["session_id"].notna().any()
    for path in tables:
        name = f"phenotype/{path.name}"
        t = _read_tsv(path)
        if "participant_id" not in t:
            notes.append(f"{name}: no participant_id column; ignored")
            continue
        t = _numeric_columns(t, name, notes)
        state.descriptions.update(_descriptions(path.with_suffix(".json")))
        if known_ids is not None:
            extra = sorted(set(t["participant_id"]) - known_ids)
            if extra:
                msg = f"{name}: participant(s) not in participants.tsv: {', '.join(extra)}"
                log.warning(msg)
                notes.append(msg)
        no_images = sorted(set(t["participant_id"]) - set(morph["participant_id"]))
        if no_images:
            notes.append(f"{name}: no processed image for {', '.join(no_images)}")
        keys = ["participant_id"]
        if "session_id" in t:
            t["session_id"] = t["session_id"].replace({NA: np.nan, "": np.nan})
            if has_sessions:
                keys.append("session_id")
            else:
                notes.append(f"{name}: has session_id but the images have no sessions; the first row per participant is used")
                t = t.drop(columns="session_id").drop_duplicates("participant_id")
        dup = t.duplicated(keys)
        if dup.any():
            notes.append(f"{name}: duplicated {'/'.join(keys)} rows; the first is used")
            t = t[~dup]
        clash = [c for c in t.columns if c in joined.columns and c not in keys]
        t = t.rename(columns={c: f"{c}_{path.stem}" for c in clash})
        joined = joined.merge(t, on=keys, how="left")
    return joined


def _descriptions(path: Path) -> dict:
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        log.warning("%s: unreadable JSON dictionary (%s)", path, exc)
        return {}
    out = {}
    for key, value in data.items():
        if isinstance(value, dict) and "Description" in value:
            out[key] = str(value["Description"])
    return out


# ----------------------------------------------------------------------------------------------
# 3. regressions
# ----------------------------------------------------------------------------------------------

def default_outcomes(joined: pd.DataFrame) -> list[str]:
    return [c for c in joined.columns if OUTCOME_PATTERN.match(str(c))]


def one_per_participant(joined: pd.DataFrame, state: GroupState, analysis: str) -> pd.DataFrame:
    """Images with status ok, the first by source path per participant (and session when there are sessions)."""
    failed = joined[joined["status"] != "ok"]
    for _, r in failed.iterrows():
        state.exclude(analysis, f"image failed at the participant level: {r.get('error', NA)}",
                      r["participant_id"], r.get("session_id", NA), r["source"])
    ok = joined[joined["status"] == "ok"].sort_values("source", kind="stable")
    dup = ok.duplicated("participant_id", keep="first")
    for _, r in ok[dup].iterrows():
        state.exclude(analysis, "participant has several images; the first by source path is used",
                      r["participant_id"], r.get("session_id", NA), r["source"])
    if dup.any():
        state.notes.append(f"{analysis}: participants with several images use the first image by source path")
    return ok[~dup]


def regressions(joined: pd.DataFrame, state: GroupState, outcomes=None, predictors=None, alpha=0.05) -> pd.DataFrame:
    from basicseg.stats import RegressionResult, regress

    outcomes = list(outcomes) if outcomes else default_outcomes(joined)
    predictors = list(predictors) if predictors else [DEFAULT_PREDICTOR]
    if not outcomes:
        state.notes.append("regressions: no outcome column (default: columns named LEMS*); none fitted")
        return pd.DataFrame()
    data = one_per_participant(joined, state, "regressions")
    for outcome in outcomes:
        for predictor in predictors:
            analysis = f"regression {outcome} ~ {predictor}"
            missing = [c for c in (outcome, predictor) if c not in joined.columns]
            if missing:
                res = RegressionResult(outcome=outcome, predictor=predictor, n=0, path="skipped",
                                       skipped=f"column(s) not found: {', '.join(missing)}")
                state.regressions.append(res)
                continue
            x = pd.to_numeric(data[predictor], errors="coerce")
            y = pd.to_numeric(data[outcome], errors="coerce")
            for idx in data.index:
                why = [f"missing {c}" for c, v in ((outcome, y[idx]), (predictor, x[idx])) if not np.isfinite(v)]
                if why:
                    state.exclude(analysis, "; ".join(why), data.at[idx, "participant_id"],
                                  data.at[idx, "session_id"] if "session_id" in data else NA, data.at[idx, "source"])
            ok = np.isfinite(x) & np.isfinite(y)
            res = regress(x[ok].to_numpy(), y[ok].to_numpy(), alpha=alpha, outcome=outcome, predictor=predictor)
            state.regressions.append(res)
            state.regression_frames[(outcome, predictor)] = (x[ok].to_numpy(), y[ok].to_numpy(),
                                                              data.loc[ok[ok].index, "participant_id"].tolist())
    return pd.concat([r.to_frame() for r in state.regressions], ignore_index=True) if state.regressions \
        else pd.DataFrame()


# ----------------------------------------------------------------------------------------------
# 4. segmentation comparisons
# ----------------------------------------------------------------------------------------------

def _parse_compare(compare) -> dict[str, Path]:
    if not compare:
        return {}
    if isinstance(compare, dict):
        return {str(k): Path(v) for k, v in compare.items()}
    out = {}
    for item in compare:
        if isinstance(item, (tuple, list)):
            name, folder = item
        else:
            name, sep, folder = str(item).partition("=")
            if not sep or not name or not folder:
                raise exits.BasicsegError(f"--compare {item!r}: expected NAME=DIR", exits.USAGE)
        out[name] = Path(folder)
    return out


def _load_mask(path: Path):
    import nibabel as nib

    img = nib.as_closest_canonical(nib.load(str(path)))
    return np.asarray(img.dataobj) > 0.5, img.affine


def method_masks(bids_dir: Path, output_dir: Path, source: str, compare: dict[str, Path]) -> dict[str, Path | None]:
    prefix, _ = split_suffix(image_stem(source))
    own = Path(output_dir) / Path(source).parent / f"{prefix}_{SC_MASK}"
    out = {"basicseg": own if own.is_file() else None}
    for name, folder in compare.items():
        out[name] = find_reference(Path(bids_dir) / source, "cord", derivative_dirs=[folder], bids_root=bids_dir)
    return out


def dice_table(joined: pd.DataFrame, state: GroupState, compare: dict[str, Path]) -> pd.DataFrame:
    from basicseg.measure.scores import dice_per_slice

    analysis = "segmentation comparison"
    rows = []
    ok = joined[joined["status"] == "ok"]
    for _, r in joined[joined["status"] != "ok"].iterrows():
        state.exclude(analysis, f"image failed at the participant level: {r.get('error', NA)}",
                      r["participant_id"], r.get("session_id", NA), r["source"])
    lesion_refs = 0
    for _, r in ok.iterrows():
        ident = (r["participant_id"], r.get("session_id", NA), r["source"])
        image = state.bids_dir / r["source"]
        try:
            ref_path = find_reference(image, "cord", bids_root=state.bids_dir)
        except ValueError as exc:
            state.exclude(analysis, f"cannot look up a reference: {exc}", *ident)
            continue
        if ref_path is None:
            state.exclude(analysis, "no reference cord mask in derivatives/labels", *ident)
            continue
        ref, ref_affine = _load_mask(ref_path)
        if ref.ndim != 3:
            state.exclude(analysis, f"reference mask is not 3D ({ref.shape})", *ident)
            continue
        keep = ref.reshape(-1, ref.shape[2]).any(axis=0)
        les_path = find_reference(image, "lesion", bids_root=state.bids_dir)
        lesion = np.full(ref.shape[2], np.nan)
        if les_path is not None:
            les, _ = _load_mask(les_path)
            if les.shape == ref.shape:
                lesion = les.reshape(-1, les.shape[2]).any(axis=0).astype(float)
                lesion_refs += 1
            else:
                state.exclude("lesion categories", f"lesion reference shape {les.shape} != cord reference {ref.shape}",
                              *ident)
        else:
            state.exclude("lesion categories", "no reference lesion mask: slices have no lesion category", *ident)
        for method, path in method_masks(state.bids_dir, state.output_dir, r["source"], compare).items():
            if path is None:
                state.exclude(analysis, f"no {method} cord mask", *ident)
                continue
            pred, pred_affine = _load_mask(path)
            if pred.shape != ref.shape or not np.allclose(pred_affine, ref_affine, atol=1e-3):
                state.exclude(analysis, f"{method} mask grid {pred.shape} differs from the reference {ref.shape}",
                              *ident)
                continue
            d = dice_per_slice(ref, pred, axis=2)
            for k in np.flatnonzero(keep):
                rows.append({"participant_id": ident[0], "session_id": ident[1], "source": ident[2], "slice": int(k),
                             "method": method, "dice": float(d[k]),
                             "lesion": (NA if np.isnan(lesion[k]) else int(lesion[k]))})
    cols = ["participant_id", "session_id", "source", "slice", "method", "dice", "lesion"]
    table = pd.DataFrame(rows, columns=cols)
    if not lesion_refs and len(table):
        state.comparison_notes.append("no reference lesion mask: lesion / normal-appearing analyses are skipped")
    return table


TABLE2_ANALYSES = [
    ("all", "All slices: dice ~ method + (1 | participant)"),
    ("lesion", "Lesion slices: dice ~ method + (1 | participant)"),
    ("normal", "Normal-appearing slices: dice ~ method + (1 | participant)"),
    ("interaction", "All slices: dice ~ method * lesion + (1 | participant)"),
]


def table2(dice: pd.DataFrame, state: GroupState, reference_method: str = "basicseg") -> pd.DataFrame:
    """The paper's Table 2: mixed models of per-slice Dice with a random intercept per participant."""
    from basicseg.stats import fit_lmm

    rows = []
    methods = sorted(dice["method"].unique()) if len(dice) else []
    ref = reference_method
    if methods and ref not in methods:
        state.comparison_notes.append(f"reference method {ref!r} has no Dice values; using {methods[0]!r}")
        ref = methods[0]
    levels = [ref] + [m for m in methods if m != ref]
    state.methods = levels
    data = dice.copy()
    data["method"] = pd.Categorical(data["method"], categories=levels)
    data["lesion"] = pd.to_numeric(data["lesion"].replace({NA: np.nan}), errors="coerce")
    for key, title in TABLE2_ANALYSES:
        if key == "all":
            sub, formula = data, "dice ~ method"
        elif key == "lesion":
            sub, formula = data[data["lesion"] == 1], "dice ~ method"
        elif key == "normal":
            sub, formula = data[data["lesion"] == 0], "dice ~ method"
        else:
            sub, formula = data[data["lesion"].notna()].copy(), "dice ~ method * lesion"
            sub["lesion"] = sub["lesion"].astype(int)
        base = {"analysis": key, "model": title, "reference_method": ref,
                "n_slices": int(len(sub)), "n_participants": int(sub["participant_id"].nunique())}
        reason = _skip_reason(sub, key, levels)
        if reason:
            rows.append({**base, "term": NA, "skipped": reason})
            state.models.append({**base, "skipped": reason})
            continue
        try:
            fit = fit_lmm(sub, formula, "participant_id")
        except (ValueError, np.linalg.LinAlgError) as exc:
            rows.append({**base, "term": NA, "skipped": f"model could not be fitted: {exc}"})
            state.models.append({**base, "skipped": str(exc)})
            continue
        for term, est in fit.fixed.iterrows():
            rows.append({**base, "term": term, "Estimate": est["Estimate"], "SE": est["SE"], "df": est["df"],
                         "t": est["t"], "P": est["P"], "skipped": NA})
        state.models.append({**base, "formula": f"{formula} + (1 | participant_id)", "skipped": None,
                             "group_variance": fit.group_var, "residual_variance": fit.resid_var,
                             "reml_criterion": fit.deviance, "notes": fit.notes, "summary": fit.summary(),
                             "fixed": fit.to_frame().to_dict(orient="records")})
    cols = ["analysis", "model", "term", "Estimate", "SE", "df", "t", "P", "n_slices", "n_participants",
            "reference_method", "skipped"]
    return pd.DataFrame(rows).reindex(columns=cols)


def _skip_reason(sub: pd.DataFrame, key: str, levels: list[str]) -> str | None:
    present = sub["method"].dropna().unique() if len(sub) else []
    if len(levels) < 2:
        return "only one segmentation method: nothing to compare (add --compare NAME=DIR)"
    if len(present) < 2:
        return f"fewer than 2 methods with {key} slices"
    if key == "interaction" and sub["lesion"].nunique() < 2:
        return "the lesion category has a single level (no lesion reference masks, or no lesion/normal slices)"
    n_part = sub["participant_id"].nunique()
    if n_part < 2:
        return f"fewer than 2 participants ({n_part}) for a random intercept"
    n_fixed = len(present) * (2 if key == "interaction" else 1)
    if len(sub) < n_fixed + 3:
        return f"too few slices ({len(sub)}) for {n_fixed} fixed effects"
    return None


# ----------------------------------------------------------------------------------------------
# 5. report
# ----------------------------------------------------------------------------------------------

def _pyplot(work_dir=None):
    if not os.environ.get("MPLCONFIGDIR"):
        home = Path(os.environ.get("HOME", "/nonexistent"))
        if not (home.is_dir() and os.access(home, os.W_OK)):
            base = Path(work_dir) if work_dir and os.access(work_dir, os.W_OK) else None
            os.environ["MPLCONFIGDIR"] = tempfile.mkdtemp(prefix="basicseg-mpl-", dir=base)
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name)


def _save(fig, path: Path):
    from basicseg.io import atomic_path

    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, bbox_inches="tight", format="png")


def figures(state: GroupState, work_dir=None) -> None:
    plt = _pyplot(work_dir)
    fig_dir = state.output_dir / "group" / "figures"
    for res in state.regressions:
        key = (res.outcome, res.predictor)
        if key not in state.regression_frames or res.n == 0:
            continue
        x, y, ids = state.regression_frames[key]
        fig, ax = plt.subplots(figsize=(5, 4))
        ax.scatter(x, y, color="tab:blue", zorder=3)
        for xi, yi, pid in zip(x, y, ids):
            ax.annotate(pid, (xi, yi), fontsize=7, xytext=(3, 3), textcoords="offset points")
        if res.path in ("linear", "log") and len(x):
            grid = np.linspace(np.min(x), np.max(x), 100)
            gx = np.log1p(grid) if res.path == "log" else grid
            ax.plot(grid, res.intercept + res.estimate * gx, color="tab:red",
                    label=f"{'OLS' if res.path == 'linear' else 'OLS on log(x+1)'}: R²={res.r2:.2f}, P={res.p:.3g}")
            ax.legend(fontsize=8)
        elif res.path == "spearman":
            ax.set_title(f"Spearman rho = {res.rho:.2f}, P = {res.spearman_p:.3g}", fontsize=9)
        elif res.skipped:
            ax.set_title(f"skipped: {res.skipped}", fontsize=8)
        ax.set_xlabel(res.predictor)
        ax.set_ylabel(res.outcome)
        fig.tight_layout()
        path = fig_dir / f"regression_{_safe(res.outcome)}_vs_{_safe(res.predictor)}.png"
        _save(fig, path)
        plt.close(fig)
        state.figures[("regression", key)] = path
    if state.dice is not None and len(state.dice):
        d = state.dice
        cats = [("all slices", d)]
        les = pd.to_numeric(d["lesion"].replace({NA: np.nan}), errors="coerce")
        if les.notna().any():
            cats += [("lesion", d[les == 1]), ("normal-appearing", d[les == 0])]
        methods = state.methods or sorted(d["method"].unique())
        fig, axes = plt.subplots(1, len(cats), figsize=(3.2 * len(cats) + 1, 3.8), sharey=True, squeeze=False)
        for ax, (title, sub) in zip(axes[0], cats):
            vals = [sub.loc[sub["method"] == m, "dice"].dropna().to_numpy() for m in methods]
            pos = [i + 1 for i, v in enumerate(vals) if len(v) > 1]
            if pos:
                ax.violinplot([vals[i - 1] for i in pos], positions=pos, showmedians=True)
            for i, v in enumerate(vals):
                if len(v) == 1:
                    ax.plot([i + 1], v, "o", color="tab:blue")
            ax.set_xticks(range(1, len(methods) + 1))
            ax.set_xticklabels(methods, rotation=30, ha="right")
            ax.set_title(f"{title} (n={len(sub)})", fontsize=9)
            ax.set_ylim(-0.02, 1.02)
        axes[0][0].set_ylabel("per-slice Dice")
        fig.tight_layout()
        path = fig_dir / "dice_violin.png"
        _save(fig, path)
        plt.close(fig)
        state.figures[("dice",)] = path


def _h(x) -> str:
    return html.escape(str(x))


def _num(v, digits=4) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "n/a"
    if isinstance(v, (float, np.floating)):
        if v != 0 and abs(v) < 1e-3:
            return f"{v:.2e}"
        return f"{v:.{digits}f}"
    return _h(v)


def _table_html(frame: pd.DataFrame, cols=None) -> str:
    cols = cols or list(frame.columns)
    head = "".join(f"<th>{_h(c)}</th>" for c in cols)
    body = "".join("<tr>" + "".join(f"<td>{_num(r[c])}</td>" for c in cols) + "</tr>" for _, r in frame.iterrows())
    return f"<table><tr>{head}</tr>{body}</table>"


def _rel(path: Path, root: Path) -> str:
    return Path(os.path.relpath(path, root)).as_posix()


def subject_reports(output_dir: Path, joined: pd.DataFrame | None) -> list[tuple[str, str, str]]:
    """(participant, link, flags) for every sub-*.html at the output root, QC-flagged first."""
    out = []
    for page in sorted(Path(output_dir).glob("sub-*.html")):
        pid = page.stem
        flags = ""
        if joined is not None and "qc_flags" in joined:
            f = joined.loc[joined["participant_id"] == pid, "qc_flags"].dropna().astype(str)
            flags = "; ".join(sorted({x for v in f for x in v.split(";") if x and x != NA}))
        out.append((pid, page.name, flags))
    return sorted(out, key=lambda t: (t[2] == "", t[0]))


def report(state: GroupState) -> Path:
    root = state.output_dir
    parts = ["<!doctype html><html><head><meta charset='utf-8'><title>basicseg group report</title>",
             "<style>body{font-family:sans-serif;max-width:1100px;margin:auto;padding:1em}"
             "table{border-collapse:collapse;margin:0.5em 0}td,th{border:1px solid #bbb;padding:2px 6px;"
             "font-size:0.9em;text-align:right}th{background:#eee}.note{color:#8a4b00}"
             ".skip{color:#888}</style></head><body>",
             "<h1>basicseg group report</h1>",
             f"<p>Derivatives: <code>{_h(root)}</code>; inputs: <code>{_h(state.bids_dir)}</code>. "
             "Statistics and their agreement with R (lme4 + lmerTest): <code>docs/statistics.md</code>. "
             "Lesion models were trained on SIMULATED lesions.</p>"]
    morph = state.morph
    n_img = len(morph) if morph is not None else 0
    n_ok = int((morph["status"] == "ok").sum()) if n_img else 0
    parts.append(f"<h2>Inputs</h2><p>{n_img} image(s) from {morph['participant_id'].nunique() if n_img else 0} "
                 f"participant(s); {n_ok} processed, {n_img - n_ok} failed. Tables: "
                 "<a href='group/morphometrics.tsv'>morphometrics.tsv</a>, "
                 "<a href='group/joined.tsv'>joined.tsv</a>, <a href='group/exclusions.tsv'>exclusions.tsv</a>.</p>")
    if state.phenotype_notes:
        parts.append("<ul>" + "".join(f"<li class='note'>{_h(n)}</li>" for n in state.phenotype_notes) + "</ul>")
    # regressions
    parts.append("<h2>Motor scores against lesion burden</h2>")
    parts.append("<p>The paper's procedure: OLS; linearity checked by a t test of an added quadratic term; if "
                 "non-linear, log(x + 1) kept when R² improves, otherwise Spearman (P as R's cor.test). "
                 "<a href='group/regressions.tsv'>regressions.tsv</a></p>")
    if state.regressions:
        rows = []
        for r in state.regressions:
            rows.append({"outcome": r.outcome, "predictor": r.predictor, "n": r.n, "path": r.path,
                         "estimate": r.estimate, "SE": r.se, "t": r.t, "P": r.p, "R²": r.r2,
                         "95% CI": (f"{r.ci_low:.4g} to {r.ci_high:.4g}" if math.isfinite(r.ci_low) else "n/a"),
                         "linearity P": r.linearity_p, "Spearman rho": r.rho,
                         "skipped / notes": r.skipped or "; ".join(r.notes) or ""})
        parts.append(_table_html(pd.DataFrame(rows)))
        for r in state.regressions:
            key = ("regression", (r.outcome, r.predictor))
            if key in state.figures:
                parts.append(f"<img src='{_rel(state.figures[key], root)}' alt='{_h(r.outcome)} vs "
                             f"{_h(r.predictor)}' style='max-width:48%'>")
    else:
        parts.append("<p class='skip'>No regression: " + _h("; ".join(
            n for n in state.notes if n.startswith("regressions")) or "no phenotype data") + "</p>")
    # comparisons
    parts.append("<h2>Segmentation comparisons (Table 2)</h2>")
    for n in state.comparison_notes:
        parts.append(f"<p class='note'>{_h(n)}</p>")
    if state.dice is not None and len(state.dice):
        counts = state.dice.groupby("method").agg(slices=("dice", "size"), participants=("participant_id", "nunique"),
                                                  mean_dice=("dice", "mean"), median_dice=("dice", "median"))
        counts.insert(0, "method", counts.index)
        parts.append("<p>Per-slice Dice against the reference cord mask, on slices where the reference has cord "
                     "(<a href='group/dice_per_slice.tsv'>dice_per_slice.tsv</a>).</p>")
        parts.append(_table_html(counts.reset_index(drop=True)))
        if ("dice",) in state.figures:
            parts.append(f"<img src='{_rel(state.figures[('dice',)], root)}' alt='Dice violin plots' "
                         "style='max-width:100%'>")
    else:
        parts.append("<p class='skip'>No per-slice Dice (no image with both a reference and a segmentation).</p>")
    if state.table2 is not None and len(state.table2):
        parts.append("<p>Linear mixed models, random intercept per participant, REML; Satterthwaite df "
                     f"(as lmerTest). Reference method: <b>{_h(state.methods[0] if state.methods else '')}</b>. "
                     "<a href='group/table2.tsv'>table2.tsv</a></p>")
        parts.append("<table><tr><th>Model</th><th>Term</th><th>Estimate</th><th>SE</th><th>df</th><th>t</th>"
                     "<th>P</th><th>n slices</th><th>n participants</th></tr>")
        for key, title in TABLE2_ANALYSES:
            sub = state.table2[state.table2["analysis"] == key]
            for i, (_, r) in enumerate(sub.iterrows()):
                lead = f"<td rowspan='{len(sub)}' style='text-align:left'>{_h(title)}</td>" if i == 0 else ""
                if isinstance(r["skipped"], str) and r["skipped"] != NA:
                    parts.append(f"<tr>{lead}<td colspan='6' class='skip' style='text-align:left'>skipped: "
                                 f"{_h(r['skipped'])}</td><td>{r['n_slices']}</td><td>{r['n_participants']}</td></tr>")
                else:
                    parts.append(f"<tr>{lead}<td style='text-align:left'>{_h(r['term'])}</td>"
                                 + "".join(f"<td>{_num(r[c])}</td>" for c in ("Estimate", "SE", "df", "t", "P"))
                                 + f"<td>{r['n_slices']}</td><td>{r['n_participants']}</td></tr>")
        parts.append("</table>")
    # n per analysis and exclusions
    parts.append("<h2>n per analysis and exclusions</h2>")
    nrows = []
    for r in state.regressions:
        nrows.append({"analysis": f"regression {r.outcome} ~ {r.predictor}", "n": f"{r.n} participant(s)",
                      "status": r.skipped and f"skipped: {r.skipped}" or r.path})
    for m in state.models:
        nrows.append({"analysis": f"Table 2: {m['model']}", "n": f"{m['n_slices']} slice(s), "
                      f"{m['n_participants']} participant(s)", "status": m["skipped"] and f"skipped: {m['skipped']}"
                      or "fitted"})
    if nrows:
        parts.append(_table_html(pd.DataFrame(nrows)))
    if state.exclusions:
        parts.append(_table_html(pd.DataFrame(state.exclusions),
                                 ["analysis", "participant_id", "session_id", "source", "reason"]))
    else:
        parts.append("<p>No exclusion.</p>")
    if state.notes:
        parts.append("<ul>" + "".join(f"<li class='note'>{_h(n)}</li>" for n in state.notes) + "</ul>")
    # subject reports
    parts.append("<h2>Subject reports</h2>")
    subs = subject_reports(root, state.morph)
    if subs:
        parts.append("<p>Images flagged for quality control first.</p><ul>")
        for pid, link, flags in subs:
            flag = f" — <b>QC: {_h(flags)}</b>" if flags else ""
            parts.append(f"<li><a href='{_h(link)}'>{_h(pid)}</a>{flag}</li>")
        parts.append("</ul>")
    else:
        parts.append("<p class='skip'>No subject report (sub-*.html) at the output root.</p>")
    parts.append("</body></html>\n")
    return write_text(root / "group_report.html", "\n".join(parts))


# ----------------------------------------------------------------------------------------------

def _clean(obj):
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, (np.bool_,)):
        return bool(obj)
    return obj


def run_group(bids_dir, output_dir, *, participant_labels=None, outcomes=None, predictors=None, compare=None,
              reference_method="basicseg", work_dir=None) -> int:
    """Run the group level; returns an exit code of basicseg.exits (0, NO_INPUT 66, NO_MATCH 18, USAGE 64)."""
    state = GroupState(Path(bids_dir), Path(output_dir))
    try:
        compare = _parse_compare(compare)
        state.morph = collect(state.output_dir, participant_labels)
    except exits.BasicsegError as exc:
        log.error("%s", exc)
        return exc.code
    group_dir = state.output_dir / "group"
    write_tsv(group_dir / "morphometrics.tsv", state.morph)
    log.info("group: %d image(s) collected", len(state.morph))

    state.joined = join(state.bids_dir, state.morph, state)
    write_tsv(group_dir / "joined.tsv", state.joined)
    write_json(group_dir / "joined.json", _clean({c: {"Description": state.descriptions[c]}
                                                  for c in state.joined.columns if c in state.descriptions}))

    reg = regressions(state.joined, state, outcomes, predictors)
    write_tsv(group_dir / "regressions.tsv", reg)
    write_json(group_dir / "regressions.json", _clean({"procedure": (
        "OLS outcome ~ predictor; linearity: t test of an added quadratic term at alpha; if non-linear, "
        "OLS on log(predictor + 1) kept when R^2 improves, else Spearman (P as R cor.test)"),
        "results": [r.to_dict() for r in state.regressions]}))

    state.dice = dice_table(state.joined, state, compare)
    write_tsv(group_dir / "dice_per_slice.tsv", state.dice)
    state.table2 = table2(state.dice, state, reference_method)
    write_tsv(group_dir / "table2.tsv", state.table2)
    write_json(group_dir / "table2.json", _clean({
        "description": "Per-slice Dice compared between methods with linear mixed models (random intercept per "
                       "participant), REML, Satterthwaite degrees of freedom (as R lmerTest)",
        "reference_method": state.methods[0] if state.methods else reference_method,
        "methods": state.methods, "models": state.models}))
    write_tsv(group_dir / "exclusions.tsv",
              pd.DataFrame(state.exclusions, columns=["analysis", "participant_id", "session_id", "source", "reason"]))
    try:
        figures(state, work_dir)
    except Exception as exc:  # figures are a convenience; the tables are written already
        log.warning("group figures failed: %s", exc)
        state.notes.append(f"figures could not be drawn: {exc}")
    path = report(state)
    log.info("group report: %s", path)
    return exits.OK
