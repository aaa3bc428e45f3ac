"""The paper's regression procedure: OLS, a linearity check, a log transform kept only when R^2
improves, else Spearman with R's P values.

Regression (``regress``)
------------------------
1. OLS ``y ~ x`` (statsmodels ``OLS``): n, intercept, slope, SE, t, P (t with n - 2 df), R^2, 95 % CI
   (as R's ``lm`` and ``confint``).
2. Linearity check: add ``x^2`` and test its coefficient (t test, n - 3 df) at ``alpha``
   (needs n >= 4; with n = 3 the check is not possible and the linear fit is kept, with a note).
3. If non-linear: OLS ``y ~ log(x + 1)`` (only if every x > -1); kept when its R^2 is larger.
4. Otherwise Spearman's rho with R's ``cor.test(method = "spearman")`` P value: exact
   (permutation distribution of S = sum d^2) for n <= 9 without ties, the AS 89 Edgeworth series
   for 10 <= n < 1290 without ties, otherwise the t approximation ``rho sqrt((n-2)/(1-rho^2))``
   on n - 2 df — the same branches as R.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from statsmodels.regression.linear_model import OLS   # not statsmodels.api: it imports every model family

from .spearman import spearman_test
from .tables import format_table as _format_table

__all__ = ["regress", "RegressionResult"]


# ----------------------------------------------------------------------------------------------
# The paper's regression procedure
# ----------------------------------------------------------------------------------------------

def _ols(x: np.ndarray, y: np.ndarray, extra: np.ndarray | None = None) -> dict:
    """OLS of ``y`` on an intercept, ``x`` (and ``extra``) with statsmodels: R's ``lm`` and ``confint``
    (t tests on the residual df, 95 % intervals)."""
    cols = [np.ones_like(x), x] + ([extra] if extra is not None else [])
    fit = OLS(y, np.column_stack(cols)).fit()
    dfr = int(fit.df_resid)
    if dfr <= 0:                    # statsmodels would divide by zero; R's lm reports NaN inference
        nan = np.full(len(cols), np.nan)
        return {"beta": fit.params, "se": nan, "t": nan, "p": nan, "r2": float(fit.rsquared), "df": dfr,
                "ci": np.column_stack([nan, nan])}
    return {"beta": fit.params, "se": fit.bse, "t": fit.tvalues, "p": fit.pvalues, "r2": float(fit.rsquared),
            "df": dfr, "ci": fit.conf_int(alpha=0.05)}


@dataclass
class RegressionResult:
    outcome: str
    predictor: str
    n: int
    path: str                       # linear | log | spearman | skipped
    skipped: str | None = None
    # the fit of the path taken (linear or log: OLS on the transformed predictor)
    transform: str = "none"         # none | log(x + 1)
    intercept: float = float("nan")
    estimate: float = float("nan")
    se: float = float("nan")
    t: float = float("nan")
    df: float = float("nan")
    p: float = float("nan")
    r2: float = float("nan")
    ci_low: float = float("nan")
    ci_high: float = float("nan")
    # the steps
    linear_r2: float = float("nan")
    linear_estimate: float = float("nan")
    linear_p: float = float("nan")
    linearity_test: str = "t test of an added quadratic term (x^2)"
    linearity_p: float = float("nan")
    nonlinear: bool | None = None
    log_r2: float = float("nan")
    rho: float = float("nan")
    spearman_S: float = float("nan")
    spearman_p: float = float("nan")
    spearman_p_method: str = ""
    alpha: float = 0.05
    notes: list[str] = field(default_factory=list)

    def to_frame(self) -> pd.DataFrame:
        row = {k: v for k, v in self.__dict__.items() if k != "notes"}
        row["notes"] = "; ".join(self.notes)
        return pd.DataFrame([row])

    def to_dict(self) -> dict:
        d = dict(self.__dict__)
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in d.items()}

    def summary(self) -> str:
        head = f"{self.outcome} ~ {self.predictor}: n = {self.n}, path = {self.path}"
        if self.skipped:
            return f"{head}\n  skipped: {self.skipped}"
        lines = [head,
                 f"  linear OLS: R^2 = {self.linear_r2:.4f}, slope = {self.linear_estimate:.6g} (P = {self.linear_p:.4g})",
                 f"  linearity check ({self.linearity_test}): P = {self.linearity_p:.4g}"
                 + ("" if self.nonlinear is None else (" -> non-linear" if self.nonlinear else " -> linear"))]
        if math.isfinite(self.log_r2):
            lines.append(f"  log(x + 1) OLS: R^2 = {self.log_r2:.4f}")
        if self.path in ("linear", "log"):
            frame = pd.DataFrame([{"Estimate": self.estimate, "SE": self.se, "t": self.t, "df": self.df,
                                   "P": self.p, "CI 2.5%": self.ci_low, "CI 97.5%": self.ci_high}],
                                 index=[self.predictor if self.transform == "none" else f"log({self.predictor} + 1)"])
            lines.append(_format_table(frame, index=True))
            lines.append(f"  R^2 = {self.r2:.4f}")
        else:
            lines.append(f"  Spearman rho = {self.rho:.4f}, S = {self.spearman_S:.6g}, P = {self.spearman_p:.4g} "
                         f"({self.spearman_p_method})")
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)

    def __str__(self):
        return self.summary()


def regress(x, y, alpha: float = 0.05, outcome: str = "y", predictor: str = "x") -> RegressionResult:
    """The paper's procedure for ``y ~ x`` (see the module docstring). Never raises on small data:
    fewer than 3 complete points (or a constant x or y) give a result with ``skipped`` set."""
    x = pd.to_numeric(pd.Series(np.asarray(x, dtype=object)), errors="coerce").to_numpy(float)
    y = pd.to_numeric(pd.Series(np.asarray(y, dtype=object)), errors="coerce").to_numpy(float)
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    n = int(len(x))
    res = RegressionResult(outcome=outcome, predictor=predictor, n=n, path="skipped", alpha=alpha)
    if n < 3:
        res.skipped = f"fewer than 3 complete points (n = {n})"
        return res
    if np.ptp(x) == 0:
        res.skipped = f"the predictor is constant (all {x[0]:g})"
        return res
    if np.ptp(y) == 0:
        res.skipped = f"the outcome is constant (all {y[0]:g})"
        return res
    lin = _ols(x, y)
    res.linear_r2, res.linear_estimate, res.linear_p = lin["r2"], float(lin["beta"][1]), float(lin["p"][1])

    def take(fit, transform):
        res.transform = transform
        res.intercept, res.estimate, res.se = float(fit["beta"][0]), float(fit["beta"][1]), float(fit["se"][1])
        res.t, res.df, res.p, res.r2 = float(fit["t"][1]), float(fit["df"]), float(fit["p"][1]), fit["r2"]
        res.ci_low, res.ci_high = float(fit["ci"][1, 0]), float(fit["ci"][1, 1])

    if n < 4:
        res.notes.append("n = 3: too few points to test linearity; the linear fit is kept")
        res.path = "linear"
        take(lin, "none")
        return res
    xc = x - x.mean()                      # centring does not change the x^2 test; it helps conditioning
    quad = _ols(xc, y, xc ** 2)
    res.linearity_p = float(quad["p"][2])
    res.nonlinear = bool(res.linearity_p < alpha)
    if not res.nonlinear:
        res.path = "linear"
        take(lin, "none")
        return res
    if np.all(x > -1):
        lx = np.log1p(x)
        if np.ptp(lx) > 0:
            logfit = _ols(lx, y)
            res.log_r2 = logfit["r2"]
            if logfit["r2"] > lin["r2"]:
                res.path = "log"
                take(logfit, "log(x + 1)")
                return res
            res.notes.append("log(x + 1) did not improve R^2")
    else:
        res.notes.append("log(x + 1) not possible (x <= -1)")
    sp = spearman_test(x, y)
    res.path = "spearman"
    res.rho, res.spearman_S, res.spearman_p, res.spearman_p_method = sp["rho"], sp["S"], sp["p"], sp["p_method"]
    res.estimate, res.p = sp["rho"], sp["p"]
    return res
