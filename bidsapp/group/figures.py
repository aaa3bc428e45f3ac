"""Figures of the group report: one scatter plot per regression and the per-slice Dice violins.

Drawn on matplotlib's Agg canvas without pyplot. A figure that cannot be drawn or written (a full disk)
is an error with a one-line message in ``state.write_errors`` (the run then exits IO_ERR, 74); the
other figures and the report are still attempted.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from bidsapp.group.state import NA, OUTPUTS, GroupState
from bidsapp.group import basic
from bidsapp.report.html import mpl_config_fallback, safe_name, save_png

log = logging.getLogger("basicseg")

DPI = 110
FIGURE_DIR = Path("group") / "figures"


def _regression_figure(res, x, y, ids):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5, 4))
    ax = fig.add_subplot()
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
    return fig


def _dice_categories(dice: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    cats = [("all slices", dice)]
    les = pd.to_numeric(dice["lesion"].replace({NA: np.nan}), errors="coerce")
    if les.notna().any():
        cats += [("lesion", dice[les == 1]), ("normal-appearing", dice[les == 0])]
    return cats


def _dice_figure(dice: pd.DataFrame, methods: list[str]):
    from matplotlib.figure import Figure

    cats = _dice_categories(dice)
    fig = Figure(figsize=(3.2 * len(cats) + 1, 3.8))
    axes = fig.subplots(1, len(cats), sharey=True, squeeze=False)[0]
    for ax, (title, sub) in zip(axes, cats):
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
    axes[0].set_ylabel("per-slice Dice")
    fig.tight_layout()
    return fig


def _planned(state: GroupState) -> list[tuple[tuple, str, object]]:
    """(key, file name, draw()) of every figure the results call for."""
    plans = []
    for res in state.regressions:
        key = (res.outcome, res.predictor)
        if key in state.regression_frames and res.n:
            name = f"regression_{safe_name(res.outcome)}_vs_{safe_name(res.predictor)}.png"
            plans.append((("regression", key), name,
                          lambda res=res, key=key: _regression_figure(res, *state.regression_frames[key])))
    for outcome, data in (state.basic_frames or {}).items():
        plans.append((("basic", outcome), f"basic_{safe_name(outcome)}.png",
                      lambda data=data, outcome=outcome: basic.box_plot(data, outcome)))
    if state.dice is not None and len(state.dice):
        methods = state.methods or sorted(state.dice["method"].unique())
        plans.append((("dice",), "dice_violin.png", lambda: _dice_figure(state.dice, methods)))
    return plans


def draw_figures(state: GroupState, work_dir=None) -> dict:
    """Write every figure; key -> PNG path of those written. Failures go to ``state.write_errors``."""
    mpl_config_fallback(work_dir)
    fig_dir = state.output_dir / FIGURE_DIR
    written = {}
    for key, name, draw in _planned(state):
        try:
            written[key] = save_png(draw(), fig_dir / name, dpi=DPI, tight=True)
        except Exception as exc:   # any failure: one figure must not cost the others or the report
            message = f"group figure {FIGURE_DIR / name} could not be written: {type(exc).__name__}: {exc}"
            log.error("%s", message)
            log.debug("figure failure", exc_info=True)       # the traceback goes to the log file only
            state.write_errors.append(message)
            state.note(OUTPUTS, message, level=None)
    return written
