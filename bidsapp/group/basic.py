"""Group level, BASIC score (experimental: validated on SIMULATED lesions only): the grade against each
motor score -- Spearman's rho with R's ``cor.test`` P value, and a Kruskal-Wallis test across grades
(R's ``kruskal.test``: tie-corrected H on k - 1 df) -- with a box plot; and the tract-wise lesion loads
as predictors of the paper's regression procedure (``stats.regressions``).

Runs only when the participant level graded the images (``--basic-score``: a ``basic_score`` column).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from bidsapp.group.state import ANALYSIS, GroupState
from bidsapp.group.stats import default_outcomes, one_per_participant

BASIC_COLUMN = "basic_score"
STATUS = "experimental: validated on SIMULATED lesions only"
MIN_POINTS = 3
# the loads that SCI motor-outcome studies relate to LEMS: lateral corticospinal tracts over the lesion
TRACT_PREDICTORS = ("tract_lcst_left_volume_mm3", "tract_lcst_right_volume_mm3")
COLUMNS = ["outcome", "n", "grades", "spearman_rho", "spearman_S", "spearman_p", "spearman_p_method",
           "kruskal_H", "kruskal_df", "kruskal_p", "skipped", "status"]


def graded(joined: pd.DataFrame | None) -> bool:
    return joined is not None and BASIC_COLUMN in joined.columns and \
        pd.to_numeric(joined[BASIC_COLUMN], errors="coerce").notna().any()


def tract_predictors(joined: pd.DataFrame) -> list[str]:
    return [c for c in TRACT_PREDICTORS if c in joined.columns]


def kruskal(grades: np.ndarray, y: np.ndarray) -> tuple[float, int, float]:
    """H, df and P as R's kruskal.test (scipy's is the same statistic with the same tie correction)."""
    from scipy import stats as sps

    groups = [y[grades == g] for g in np.unique(grades)]
    if len(groups) < 2:
        return float("nan"), 0, float("nan")
    h, p = sps.kruskal(*groups)
    return float(h), len(groups) - 1, float(p)


def _one(data: pd.DataFrame, outcome: str) -> dict:
    from basicseg.stats import spearman_test

    g = pd.to_numeric(data[BASIC_COLUMN], errors="coerce").to_numpy(float)
    y = pd.to_numeric(data[outcome], errors="coerce").to_numpy(float)
    ok = np.isfinite(g) & np.isfinite(y)
    g, y = g[ok], y[ok]
    row = {"outcome": outcome, "n": int(ok.sum()), "grades": ",".join(str(int(v)) for v in np.unique(g)),
           "status": STATUS, "skipped": ""}
    if row["n"] < MIN_POINTS or len(np.unique(g)) < 2 or len(np.unique(y)) < 2:
        row["skipped"] = f"needs >= {MIN_POINTS} images with at least two grades and two scores (n = {row['n']})"
        return row
    sp = spearman_test(g, y)
    row.update(spearman_rho=sp["rho"], spearman_S=sp["S"], spearman_p=sp["p"], spearman_p_method=sp["p_method"])
    row["kruskal_H"], row["kruskal_df"], row["kruskal_p"] = kruskal(g, y)
    return row


def basic_tests(joined: pd.DataFrame, state: GroupState, outcomes=None) -> pd.DataFrame:
    """One row per motor score: the BASIC grade's rank correlation and the test across grades."""
    outcomes = list(outcomes) if outcomes else default_outcomes(joined)
    if not outcomes:
        state.note(ANALYSIS, "BASIC score: no outcome column (default: columns named LEMS*); not tested")
        return pd.DataFrame(columns=COLUMNS)
    data = one_per_participant(joined, state, "BASIC score")
    rows = [_one(data, o) for o in outcomes]
    for r in rows:
        if r["skipped"]:
            state.note(ANALYSIS, f"BASIC score ~ {r['outcome']}: skipped: {r['skipped']}")
    state.basic_frames = {o: data for o in outcomes}
    return pd.DataFrame(rows).reindex(columns=COLUMNS)


def box_plot(data: pd.DataFrame, outcome: str):
    """LEMS by BASIC grade (0-4), each participant a dot over its grade's box."""
    from matplotlib.figure import Figure

    g = pd.to_numeric(data[BASIC_COLUMN], errors="coerce")
    y = pd.to_numeric(data[outcome], errors="coerce")
    ok = g.notna() & y.notna()
    grades = sorted(int(v) for v in g[ok].unique())
    fig = Figure(figsize=(5, 3.6))
    ax = fig.subplots()
    ax.boxplot([y[ok & (g == k)].to_numpy() for k in grades], positions=grades, widths=0.5)
    ax.scatter(g[ok], y[ok], s=14, alpha=0.8, zorder=3)
    ax.set_xticks(range(5))
    ax.set_xlabel("BASIC grade (experimental)")
    ax.set_ylabel(outcome)
    ax.set_title(f"{outcome} by BASIC grade (SIMULATED-lesion validation only)", fontsize=9)
    return fig
