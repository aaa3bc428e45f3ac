"""Statistics: the paper's regressions of motor scores, the per-slice Dice table and Table 2's mixed models.

The statistics themselves live in :mod:`basicseg.stats` (checked against R: docs/statistics.md); this
module chooses the rows, records every exclusion with its reason and never raises on small data.
"""
from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np
import pandas as pd

from basicseg.references import find_reference, image_stem, split_suffix
from bidsapp.group.collect import OK
from bidsapp.group.state import ANALYSIS, COMPARISON, NA, GroupState
from bidsapp.naming import SC_MASK

log = logging.getLogger("basicseg")

DEFAULT_PREDICTOR = "lesion_volume_mm3"
OUTCOME_PATTERN = re.compile(r"^LEMS", re.IGNORECASE)
OWN_METHOD = "basicseg"
DICE_COLUMNS = ["participant_id", "session_id", "source", "slice", "method", "dice", "lesion"]
TABLE2_COLUMNS = ["analysis", "model", "term", "Estimate", "SE", "df", "t", "P", "n_slices", "n_participants",
                  "reference_method", "skipped"]
TABLE2_ANALYSES = [
    ("all", "All slices: dice ~ method + (1 | participant)"),
    ("lesion", "Lesion slices: dice ~ method + (1 | participant)"),
    ("normal", "Normal-appearing slices: dice ~ method + (1 | participant)"),
    ("interaction", "All slices: dice ~ method * lesion + (1 | participant)"),
]


def _ident(row) -> tuple:
    return row["participant_id"], row.get("session_id", NA), row["source"]


# --- regressions ----------------------------------------------------------------------------------------------

def default_outcomes(joined: pd.DataFrame) -> list[str]:
    return [c for c in joined.columns if OUTCOME_PATTERN.match(str(c))]


def one_per_participant(joined: pd.DataFrame, state: GroupState, analysis: str) -> pd.DataFrame:
    """Images with status ok, the first by source path per participant (failed images are excluded at collect)."""
    ok = joined[joined["status"] == OK].sort_values("source", kind="stable")
    dup = ok.duplicated("participant_id", keep="first")
    for _, r in ok[dup].iterrows():
        state.exclude(f"{analysis}: participant has several images; the first by source path is used", *_ident(r))
    if dup.any():
        state.note(ANALYSIS, f"{analysis}: participants with several images use the first image by source path",
                   level=logging.INFO)
    return ok[~dup]


def _regress_one(data: pd.DataFrame, outcome: str, predictor: str, alpha: float, state: GroupState):
    from basicseg.stats import regress

    analysis = f"regression {outcome} ~ {predictor}"
    x = pd.to_numeric(data[predictor], errors="coerce")
    y = pd.to_numeric(data[outcome], errors="coerce")
    for idx in data.index:
        why = [f"missing {c}" for c, v in ((outcome, y[idx]), (predictor, x[idx])) if not np.isfinite(v)]
        if why:
            state.exclude(f"{analysis}: {'; '.join(why)}", *_ident(data.loc[idx]))
    ok = np.isfinite(x) & np.isfinite(y)
    result = regress(x[ok].to_numpy(), y[ok].to_numpy(), alpha=alpha, outcome=outcome, predictor=predictor)
    state.regression_frames[(outcome, predictor)] = (x[ok].to_numpy(), y[ok].to_numpy(),
                                                      data.loc[ok[ok].index, "participant_id"].tolist())
    return result


def regressions(joined: pd.DataFrame, state: GroupState, outcomes=None, predictors=None, alpha=0.05) -> pd.DataFrame:
    """Each outcome ~ each predictor by the paper's procedure; names were checked by the caller."""
    outcomes = list(outcomes) if outcomes else default_outcomes(joined)
    predictors = list(predictors) if predictors else [DEFAULT_PREDICTOR]
    if not outcomes:
        state.note(ANALYSIS, "regressions: no outcome column (default: columns named LEMS*); none fitted")
        return pd.DataFrame()
    missing = [p for p in predictors if p not in joined.columns]
    if missing:
        state.note(ANALYSIS, f"regressions: predictor column(s) {', '.join(missing)} not in the table "
                             "(no lesion model at the participant level?); not fitted")
        predictors = [p for p in predictors if p not in missing]
    data = one_per_participant(joined, state, "regressions")
    state.regressions = [_regress_one(data, o, p, alpha, state) for o in outcomes for p in predictors]
    return pd.concat([r.to_frame() for r in state.regressions], ignore_index=True) if state.regressions \
        else pd.DataFrame()


# --- per-slice Dice -------------------------------------------------------------------------------------------

def _load_mask(path: Path):
    """(bool array, affine) in closest-canonical order; None when the file cannot be read."""
    import nibabel as nib

    try:
        img = nib.as_closest_canonical(nib.load(str(path)))
        return np.asarray(img.dataobj) > 0.5, img.affine
    except Exception as exc:   # noqa: BLE001 -- nibabel raises many types on a broken file
        log.warning("%s: unreadable mask (%s)", path, exc)
        return None


def method_masks(bids_dir: Path, output_dir: Path, source: str, compare: dict) -> dict[str, Path | None]:
    prefix, _ = split_suffix(image_stem(source))
    own = Path(output_dir) / Path(source).parent / f"{prefix}_{SC_MASK}"
    out = {OWN_METHOD: own if own.is_file() else None}
    for name, folder in compare.items():
        out[name] = find_reference(Path(bids_dir) / source, "cord", derivative_dirs=[folder], bids_root=bids_dir)
    return out


def _cord_reference(image: Path, bids_dir: Path):
    """(reference cord mask, its affine), or the reason there is none."""
    try:
        path = find_reference(image, "cord", bids_root=bids_dir)
    except ValueError as exc:
        return f"cannot look up a reference: {exc}"
    if path is None:
        return "no reference cord mask in derivatives/labels"
    loaded = _load_mask(path)
    if loaded is None:
        return f"reference cord mask {path.name} is unreadable"
    if loaded[0].ndim != 3:
        return f"reference cord mask {path.name} is not 3D ({loaded[0].shape})"
    return loaded


def _references(row, state: GroupState):
    """(cord reference, its affine, lesion category per slice: 1, 0 or NaN), or None when the image is excluded."""
    ident, image = _ident(row), state.bids_dir / row["source"]
    cord = _cord_reference(image, state.bids_dir)
    if isinstance(cord, str):
        state.exclude(f"segmentation comparison: {cord}", *ident)
        return None
    ref, affine = cord
    return ref, affine, _lesion_categories(image, ref.shape, ident, state)


def _lesion_categories(image: Path, shape: tuple, ident: tuple, state: GroupState) -> np.ndarray:
    """1 (lesion) or 0 (normal-appearing) per axial slice from the reference lesion mask; NaN without one."""
    les_path = find_reference(image, "lesion", bids_root=state.bids_dir)
    les = _load_mask(les_path) if les_path is not None else None
    if les is None:
        state.exclude("lesion categories: no readable reference lesion mask; slices have no lesion category", *ident)
    elif les[0].shape != shape:
        state.exclude(f"lesion categories: lesion reference shape {les[0].shape} != cord reference {shape}", *ident)
    else:
        return les[0].reshape(-1, shape[2]).any(axis=0).astype(float)
    return np.full(shape[2], np.nan)


def _dice_rows(row, ref, affine, lesion, masks: dict, state: GroupState) -> list[dict]:
    from basicseg.measure.scores import dice_per_slice

    ident, rows = _ident(row), []
    keep = np.flatnonzero(ref.reshape(-1, ref.shape[2]).any(axis=0))      # slices where the reference has cord
    for method, path in masks.items():
        loaded = _load_mask(path) if path is not None else None
        if loaded is None:
            state.exclude(f"segmentation comparison: no readable {method} cord mask", *ident)
            continue
        pred, pred_affine = loaded
        if pred.shape != ref.shape or not np.allclose(pred_affine, affine, atol=1e-3):
            state.exclude(f"segmentation comparison: {method} mask grid {pred.shape} differs from the reference "
                          f"{ref.shape}", *ident)
            continue
        d = dice_per_slice(ref, pred, axis=2)
        rows += [{"participant_id": ident[0], "session_id": ident[1], "source": ident[2], "slice": int(k),
                  "method": method, "dice": float(d[k]), "lesion": NA if np.isnan(lesion[k]) else int(lesion[k])}
                 for k in keep]
    return rows


def dice_table(joined: pd.DataFrame, state: GroupState, compare: dict) -> pd.DataFrame:
    """Per-slice Dice of every method against the reference cord mask, one row per (image, slice, method)."""
    rows, lesion_refs = [], 0
    for _, r in joined[joined["status"] == OK].iterrows():
        refs = _references(r, state)
        if refs is None:
            continue
        lesion_refs += int(np.isfinite(refs[2]).any())
        masks = method_masks(state.bids_dir, state.output_dir, r["source"], compare)
        rows += _dice_rows(r, *refs, masks, state)
    table = pd.DataFrame(rows, columns=DICE_COLUMNS)
    if not lesion_refs and len(table):
        state.note(COMPARISON, "no reference lesion mask: lesion / normal-appearing analyses are skipped")
    return table


# --- Table 2 --------------------------------------------------------------------------------------------------

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


def _subset(data: pd.DataFrame, key: str) -> tuple[pd.DataFrame, str]:
    if key == "all":
        return data, "dice ~ method"
    if key in ("lesion", "normal"):
        return data[data["lesion"] == (1 if key == "lesion" else 0)], "dice ~ method"
    sub = data[data["lesion"].notna()].copy()
    sub["lesion"] = sub["lesion"].astype(int)
    return sub, "dice ~ method * lesion"


def _fit_one(sub: pd.DataFrame, formula: str, base: dict, levels: list[str], state: GroupState) -> list[dict]:
    from basicseg.stats import fit_lmm

    reason = _skip_reason(sub, base["analysis"], levels)
    if reason is None:
        try:
            fit = fit_lmm(sub, formula, "participant_id")
        except (ValueError, np.linalg.LinAlgError) as exc:
            reason = f"model could not be fitted: {exc}"
    if reason is not None:
        state.models.append({**base, "skipped": reason})
        return [{**base, "term": NA, "skipped": reason}]
    state.models.append({**base, "formula": f"{formula} + (1 | participant_id)", "skipped": None,
                         "group_variance": fit.group_var, "residual_variance": fit.resid_var,
                         "reml_criterion": fit.deviance, "notes": fit.notes, "summary": fit.summary(),
                         "fixed": fit.to_frame().to_dict(orient="records")})
    return [{**base, "term": term, "Estimate": est["Estimate"], "SE": est["SE"], "df": est["df"], "t": est["t"],
             "P": est["P"], "skipped": NA} for term, est in fit.fixed.iterrows()]


def table2(dice: pd.DataFrame, state: GroupState, reference_method: str = OWN_METHOD) -> pd.DataFrame:
    """The paper's Table 2: mixed models of per-slice Dice with a random intercept per participant."""
    methods = sorted(dice["method"].unique()) if len(dice) else []
    ref = reference_method
    if methods and ref not in methods:
        state.note(COMPARISON, f"reference method {ref!r} has no Dice values; using {methods[0]!r}")
        ref = methods[0]
    levels = [ref] + [m for m in methods if m != ref]
    state.methods = levels
    data = dice.copy()
    data["method"] = pd.Categorical(data["method"], categories=levels)
    data["lesion"] = pd.to_numeric(data["lesion"].replace({NA: np.nan}), errors="coerce")
    rows = []
    for key, title in TABLE2_ANALYSES:
        sub, formula = _subset(data, key)
        base = {"analysis": key, "model": title, "reference_method": ref,
                "n_slices": int(len(sub)), "n_participants": int(sub["participant_id"].nunique())}
        rows += _fit_one(sub, formula, base, levels, state)
    return pd.DataFrame(rows).reindex(columns=TABLE2_COLUMNS)
