"""Linear mixed models with one random intercept per group, and Satterthwaite degrees of freedom as
lmerTest computes them (the paper's Table 2).

Linear mixed model (``fit_lmm``)
--------------------------------
``y = X beta + b_group + e`` with one random intercept per group, ``b ~ N(0, tau^2)``,
``e ~ N(0, sigma^2)``.  Written, like lme4, with the relative standard deviation
``theta = tau / sigma``: ``V = sigma^2 (I + theta^2 Z Z')``.  Because ``V`` is block diagonal with
compound-symmetric blocks, every quantity is a sum over groups (``c_g = theta^2 / (1 + n_g theta^2)``,
``V_g^-1 = (I - c_g 11') / sigma^2``, ``log|V_g| = n_g log sigma^2 + log(1 + n_g theta^2)``), so
a fit costs O(n p) per evaluation and needs no sparse algebra.

* Estimation: REML (or ML) profiled over ``sigma`` and minimised over ``theta >= 0`` (a log-spaced grid,
  then bounded Brent to 1e-10); ``beta_hat`` is the GLS estimate at ``theta_hat``.
* Var(beta_hat) = sigma^2 (X' V0^-1 X)^-1, computed from the variance parameters (not taken from an
  external fit), so that its derivative is consistent with the deviance used below.
* Satterthwaite (as lmerTest): variance parameters ``varpar = (theta, sigma)`` — lme4's parametrisation.
  ``A = 2 H^-1`` where ``H`` is the Hessian of the (non-profiled) REML deviance
  ``-2 log L_R(theta, sigma)`` at the optimum (central differences with Richardson extrapolation);
  ``g = d (L Var(beta_hat) L') / d varpar`` (analytic: the derivative of ``(X'V0^-1X)^-1`` in theta is
  closed-form for a random intercept); ``df = 2 (L V L')^2 / (g' A g)``.  Multi-row contrasts get
  lmerTest's F test: the contrast is rotated onto the eigenvectors of ``L V L'``, each row gets its
  own df ``nu_m`` and ``ddf = 2E / (E - q)`` with ``E = sum nu_m / (nu_m - 2)`` (``ddf = 2`` when some
  ``nu_m <= 2``).  The df are invariant to the parametrisation of the variance parameters at the
  optimum; we use (theta, sigma) so that boundary fits (theta = 0) behave as in lmerTest (the
  deviance is even in theta).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import optimize
from scipy import stats as sps

from .tables import format_table as _format_table

__all__ = ["fit_lmm", "LMMResult", "ContrastResult"]


# ----------------------------------------------------------------------------------------------
# Linear mixed model, random intercept
# ----------------------------------------------------------------------------------------------

class _RandomIntercept:
    """Sufficient group-wise algebra of y = X beta + Z b + e with one random intercept per group."""

    def __init__(self, X: np.ndarray, y: np.ndarray, groups: np.ndarray, reml: bool = True):
        self.X, self.y = np.asarray(X, float), np.asarray(y, float)
        codes, self.levels = pd.factorize(pd.Series(groups), sort=True)
        self.codes = np.asarray(codes)
        self.n, self.p = self.X.shape
        self.G = len(self.levels)
        self.ng = np.bincount(self.codes, minlength=self.G).astype(float)
        self.reml = reml
        self.XtX = self.X.T @ self.X
        self.Xty = self.X.T @ self.y
        self.Sx = np.zeros((self.G, self.p))                 # per-group column sums of X
        np.add.at(self.Sx, self.codes, self.X)

    # M(theta) = X' V0^-1 X,  V0 = I + theta^2 Z Z'
    def _c(self, theta):
        t2 = theta * theta
        return t2 / (1.0 + self.ng * t2)

    def M(self, theta):
        c = self._c(theta)
        return self.XtX - (self.Sx * c[:, None]).T @ self.Sx

    def dM(self, theta):
        """d M / d theta."""
        dc = 2.0 * theta / (1.0 + self.ng * theta * theta) ** 2
        return -(self.Sx * dc[:, None]).T @ self.Sx

    def gls(self, theta):
        """beta_hat(theta), Q(theta) = r' V0^-1 r, log|V0|, log|M|, M."""
        c = self._c(theta)
        M = self.M(theta)
        sy = np.bincount(self.codes, weights=self.y, minlength=self.G)
        rhs = self.Xty - self.Sx.T @ (c * sy)
        cho = np.linalg.cholesky(M)
        beta = np.linalg.solve(M, rhs)
        r = self.y - self.X @ beta
        sr = np.bincount(self.codes, weights=r, minlength=self.G)
        Q = float(r @ r - np.sum(c * sr * sr))
        logdetV0 = float(np.sum(np.log1p(self.ng * theta * theta)))
        logdetM = float(2.0 * np.sum(np.log(np.diag(cho))))
        return beta, Q, logdetV0, logdetM, M

    def dof_resid(self):
        return self.n - self.p if self.reml else self.n

    def profiled(self, theta) -> float:
        """-2 log (restricted) likelihood with sigma^2 profiled out."""
        _, Q, ldv, ldm, _ = self.gls(theta)
        m = self.dof_resid()
        s2 = Q / m
        out = m * (1.0 + math.log(2.0 * math.pi * s2)) + ldv
        return out + ldm if self.reml else out

    def deviance(self, theta, sigma) -> float:
        """-2 log (restricted) likelihood at (theta, sigma) — the function lmerTest differentiates."""
        _, Q, ldv, ldm, _ = self.gls(theta)
        m = self.dof_resid()
        out = m * math.log(2.0 * math.pi * sigma * sigma) + ldv + Q / (sigma * sigma)
        return out + ldm if self.reml else out

    def fit(self):
        grid = np.concatenate([[0.0], np.logspace(-4, 3, 57)])
        vals = np.array([self.profiled(t) for t in grid])
        k = int(np.argmin(vals))
        lo, hi = grid[max(k - 1, 0)], grid[min(k + 1, len(grid) - 1)]
        res = optimize.minimize_scalar(self.profiled, bounds=(lo, hi), method="bounded",
                                       options={"xatol": 1e-11, "maxiter": 500})
        theta = float(res.x)
        if self.profiled(0.0) <= res.fun:       # boundary fit (singular)
            theta = 0.0
        converged = bool(res.success) and k < len(grid) - 1
        beta, Q, *_ = self.gls(theta)
        sigma = math.sqrt(Q / self.dof_resid())
        return theta, sigma, beta, converged

    def vcov_beta(self, theta, sigma):
        return sigma * sigma * np.linalg.inv(self.M(theta))

    def dvcov_beta(self, theta, sigma):
        """[d Var(beta)/d theta, d Var(beta)/d sigma]."""
        Minv = np.linalg.inv(self.M(theta))
        d_theta = -sigma * sigma * Minv @ self.dM(theta) @ Minv
        d_sigma = 2.0 * sigma * Minv
        return d_theta, d_sigma

    def hessian(self, theta, sigma):
        """Hessian of deviance(theta, sigma): central differences, Richardson-extrapolated (h, h/2)."""
        x0 = np.array([theta, sigma])
        h0 = np.array([1e-3 * max(abs(theta), 0.1), 1e-3 * abs(sigma)])
        f = lambda v: self.deviance(v[0], v[1])

        def central(h):
            H = np.zeros((2, 2))
            f0 = f(x0)
            for i in range(2):
                e = np.zeros(2); e[i] = h[i]
                H[i, i] = (f(x0 + e) - 2 * f0 + f(x0 - e)) / h[i] ** 2
            e0, e1 = np.array([h[0], 0]), np.array([0, h[1]])
            H[0, 1] = H[1, 0] = (f(x0 + e0 + e1) - f(x0 + e0 - e1) - f(x0 - e0 + e1) + f(x0 - e0 - e1)) / (
                4 * h[0] * h[1])
            return H

        return (4.0 * central(h0 / 2) - central(h0)) / 3.0


@dataclass
class ContrastResult:
    """A Satterthwaite t test (one row of L) or F test (several rows)."""
    L: np.ndarray
    estimate: np.ndarray
    se: np.ndarray | None
    df: float
    statistic: float
    p: float
    test: str                       # "t" or "F"
    ndf: int = 1

    def to_frame(self) -> pd.DataFrame:
        if self.test == "t":
            return pd.DataFrame([{"Estimate": float(self.estimate[0]), "SE": float(self.se[0]), "df": self.df,
                                  "t": self.statistic, "P": self.p}])
        return pd.DataFrame([{"NumDF": self.ndf, "DenDF": self.df, "F": self.statistic, "P": self.p}])

    def summary(self) -> str:
        return _format_table(self.to_frame(), title=f"Contrast ({self.test} test, Satterthwaite df)")


@dataclass
class LMMResult:
    """A fitted random-intercept linear mixed model (lmerTest-like summary)."""
    formula: str
    group: str
    reml: bool
    nobs: int
    ngroups: int
    exog_names: list[str]
    params: np.ndarray
    vcov: np.ndarray
    theta: float
    sigma: float
    deviance: float
    varpar_cov: np.ndarray          # A = 2 H^-1, covariance of (theta, sigma)
    fixed: pd.DataFrame             # Estimate, SE, df, t, P per fixed effect
    converged: bool
    dropped: list[str] = field(default_factory=list)   # rank-deficient columns dropped (as lme4)
    notes: list[str] = field(default_factory=list)
    _model: _RandomIntercept | None = field(default=None, repr=False)

    @property
    def group_var(self) -> float:
        return (self.theta * self.sigma) ** 2

    @property
    def resid_var(self) -> float:
        return self.sigma ** 2

    @property
    def singular(self) -> bool:
        return self.theta < 1e-4

    def _jac(self, L: np.ndarray) -> np.ndarray:
        d_theta, d_sigma = self._model.dvcov_beta(self.theta, self.sigma)
        return np.array([L @ d_theta @ L, L @ d_sigma @ L])

    def _df_row(self, L: np.ndarray) -> float:
        v = float(L @ self.vcov @ L)
        g = self._jac(L)
        denom = float(g @ self.varpar_cov @ g)
        return 2.0 * v * v / denom if denom > 0 else float("inf")

    def contrast(self, L, rhs=0.0) -> ContrastResult:
        """Satterthwaite test of L beta = rhs. ``L``: a vector (t test) or a q x p matrix (F test);
        columns in the order of ``exog_names`` (a dict {name: weight} is accepted for one row)."""
        if isinstance(L, dict):
            L = np.array([float(L.get(n, 0.0)) for n in self.exog_names])
        L = np.atleast_2d(np.asarray(L, float))
        if L.shape[1] != len(self.exog_names):
            raise ValueError(f"L has {L.shape[1]} columns; the model has {len(self.exog_names)} fixed effects")
        est = L @ self.params - rhs
        if L.shape[0] == 1:
            l = L[0]
            se = math.sqrt(float(l @ self.vcov @ l))
            df = self._df_row(l)
            t = float(est[0]) / se
            return ContrastResult(L, est, np.array([se]), df, t, float(2 * sps.t.sf(abs(t), df)), "t")
        VL = L @ self.vcov @ L.T
        d, P = np.linalg.eigh(VL)
        keep = d > max(d.max(), 0) * 1e-10
        d, P = d[keep], P[:, keep]
        q = int(keep.sum())
        PL = P.T @ L
        t2 = (PL @ self.params - P.T @ np.broadcast_to(rhs, (L.shape[0],))) ** 2 / d
        F = float(t2.sum() / q)
        nu = np.array([self._df_row(row) for row in PL])
        if np.any(nu <= 2):
            ddf = 2.0
        else:
            E = float(np.sum(nu / (nu - 2)))
            ddf = 2 * E / (E - q)
        return ContrastResult(L, est, None, ddf, F, float(sps.f.sf(F, q, ddf)), "F", q)

    def to_frame(self) -> pd.DataFrame:
        out = self.fixed.copy()
        out.insert(0, "term", out.index)
        return out.reset_index(drop=True)

    def summary(self) -> str:
        crit = "REML criterion at convergence" if self.reml else "-2 log-likelihood"
        lines = [f"Linear mixed model fit by {'REML' if self.reml else 'maximum likelihood'}; "
                 "t tests use Satterthwaite's method",
                 f"Formula: {self.formula} + (1 | {self.group})",
                 f"{crit}: {self.deviance:.4f}",
                 "",
                 "Random effects:",
                 f"  {'Groups':<12}{'Name':<14}{'Variance':>12}{'Std.Dev.':>12}",
                 f"  {self.group:<12}{'(Intercept)':<14}{self.group_var:>12.6g}{math.sqrt(self.group_var):>12.6g}",
                 f"  {'Residual':<12}{'':<14}{self.resid_var:>12.6g}{self.sigma:>12.6g}",
                 f"Number of obs: {self.nobs}, groups: {self.group}, {self.ngroups}",
                 ""]
        lines.append(_format_table(self.fixed, title="Fixed effects:", index=True))
        for n in self.notes:
            lines.append(f"Note: {n}")
        return "\n".join(lines)

    def __str__(self):
        return self.summary()


def _design(data: pd.DataFrame, formula: str):
    import patsy

    y, X = patsy.dmatrices(formula, data, return_type="dataframe", NA_action="drop")
    return y.iloc[:, 0], X


def _full_rank_columns(X: np.ndarray) -> list[int]:
    keep: list[int] = []
    for j in range(X.shape[1]):
        trial = keep + [j]
        if np.linalg.matrix_rank(X[:, trial]) == len(trial):
            keep.append(j)
    return keep


def _term_name(name: str) -> str:
    """patsy names -> R-like names: ``Intercept`` -> ``(Intercept)``, ``method[T.sct]`` -> ``methodsct``."""
    import re

    if name == "Intercept":
        return "(Intercept)"
    name = re.sub(r"C\((\w+)(?:,[^)]*\))?\)", r"\1", name)     # C(method, Treatment('x')) -> method
    name = re.sub(r"\[T\.([^\]]*)\]", r"\1", name)
    return name


def fit_lmm(data: pd.DataFrame, formula: str, group: str, reml: bool = True,
            r_names: bool = True) -> LMMResult:
    """Fit ``formula + (1 | group)`` by REML (default) or ML; Satterthwaite df for every fixed effect.

    ``formula`` is a patsy formula (``"dice ~ method * lesion"``); the reference level of a factor is its
    first category (make the column a pandas Categorical to choose it) or ``C(method, Treatment("x"))``.
    Rows with a missing response, covariate or group are dropped. With ``r_names`` fixed effects are
    named as R names them (``(Intercept)``, ``methodsct``, ``methodsct:lesionTrue``).
    """
    data = data[data[group].notna()]
    y, X = _design(data, formula)
    groups = data.loc[y.index, group].to_numpy()
    names = list(X.columns)
    keep = _full_rank_columns(X.to_numpy(float))
    dropped = [names[j] for j in range(len(names)) if j not in keep]
    Xk = X.to_numpy(float)[:, keep]
    names = [names[j] for j in keep]
    if len(y) <= Xk.shape[1]:
        raise ValueError(f"{len(y)} observation(s) for {Xk.shape[1]} fixed effect(s)")
    model = _RandomIntercept(Xk, y.to_numpy(float), groups, reml=reml)
    if model.G < 2:
        raise ValueError("a random intercept needs at least 2 groups")
    theta, sigma, beta, converged = model.fit()
    vcov = model.vcov_beta(theta, sigma)
    H = model.hessian(theta, sigma)
    try:
        A = 2.0 * np.linalg.inv(H)
    except np.linalg.LinAlgError:
        A = 2.0 * np.linalg.pinv(H)
    if r_names:
        names = [_term_name(n) for n in names]
        dropped = [_term_name(n) for n in dropped]
    notes = []
    if dropped:
        notes.append(f"fixed-effect model matrix is rank deficient: dropped {', '.join(dropped)}")
    if theta < 1e-4:
        notes.append("boundary (singular) fit: the random-intercept variance is estimated as ~0")
    if not converged:
        notes.append("the variance-parameter optimisation may not have converged")
    res = LMMResult(formula=formula, group=group, reml=reml, nobs=model.n, ngroups=model.G,
                    exog_names=names, params=beta, vcov=vcov, theta=theta, sigma=sigma,
                    deviance=model.deviance(theta, sigma), varpar_cov=A, fixed=pd.DataFrame(),
                    converged=converged, dropped=dropped, notes=notes, _model=model)
    rows = []
    for j in range(len(names)):
        L = np.zeros(len(names)); L[j] = 1.0
        c = res.contrast(L)
        rows.append({"Estimate": float(beta[j]), "SE": float(c.se[0]), "df": c.df, "t": c.statistic, "P": c.p})
    res.fixed = pd.DataFrame(rows, index=pd.Index(names, name="term"))
    return res
