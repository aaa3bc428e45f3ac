"""Statistics of the group level: linear mixed models with Satterthwaite degrees of freedom, and the
paper's regression procedure (OLS, a linearity check, a log transform kept only when R^2 improves,
else Spearman with R's P values).

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

Regression (``regress``)
------------------------
1. OLS ``y ~ x``: n, intercept, slope, SE, t, P (t with n - 2 df), R^2, 95 % CI (as R's ``lm`` and
   ``confint``).
2. Linearity check: add ``x^2`` and test its coefficient (t test, n - 3 df) at ``alpha``
   (needs n >= 4; with n = 3 the check is not possible and the linear fit is kept, with a note).
3. If non-linear: OLS ``y ~ log(x + 1)`` (only if every x > -1); kept when its R^2 is larger.
4. Otherwise Spearman's rho with R's ``cor.test(method = "spearman")`` P value: exact
   (permutation distribution of S = sum d^2) for n <= 9 without ties, the AS 89 Edgeworth series
   for 10 <= n < 1290 without ties, otherwise the t approximation ``rho sqrt((n-2)/(1-rho^2))``
   on n - 2 df — the same branches as R.
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
import pandas as pd
from scipy import optimize
from scipy import stats as sps

__all__ = ["fit_lmm", "LMMResult", "ContrastResult", "regress", "RegressionResult", "spearman_test"]


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


# ----------------------------------------------------------------------------------------------
# Spearman test with R's P values
# ----------------------------------------------------------------------------------------------

@lru_cache(maxsize=16)
def _s_distribution(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact null distribution of S = sum (i - pi(i))^2 over all n! permutations: (values, counts)."""
    ranks = np.arange(1, n + 1)
    perms = np.array(list(itertools.permutations(range(1, n + 1))), dtype=np.int16)
    s = ((perms - ranks) ** 2).sum(axis=1)
    values, counts = np.unique(s, return_counts=True)
    return values, counts


def _p_s_upper_exact(n: int, s: float) -> float:
    """P(S >= s) under H0, by enumeration."""
    values, counts = _s_distribution(n)
    return float(counts[values >= s].sum() / counts.sum())


def _p_s_edgeworth(n: int, s: float, upper: bool) -> float:
    """AS 89 (Best & Roberts 1975): Edgeworth series for P(S >= s) (upper) or P(S < s) (lower)."""
    c = (0.2274, 0.2531, 0.1745, 0.0758, 0.1033, 0.3932, 0.0879, 0.0151, 0.0072, 0.0831, 0.0131, 4.6e-4)
    b = 1.0 / n
    x = (6.0 * (s - 1) * b / (n * n - 1.0) - 1.0) * math.sqrt(n - 1.0)
    x2 = x * x
    inner = c[8] - c[9] * b + x2 * b * (c[10] - c[11] * x2)
    inner = c[6] + c[7] * b - x2 * inner
    inner = -c[3] + b * (c[4] + c[5] * b) - x2 * b * inner
    u = x * b * (c[0] + b * (c[1] + c[2] * b) + x2 * inner)
    corr = u * math.exp(-x2 / 2.0)
    p = (corr + sps.norm.sf(x)) if upper else (-corr + sps.norm.cdf(x))
    return min(max(p, 0.0), 1.0)


def _p_s(n: int, s: float, upper: bool, exact: bool) -> float:
    if not exact or n > 1290:
        den = n * (n * n - 1) / 6.0
        r = 1 - s / den
        t = r / math.sqrt((1 - r * r) / (n - 2)) if abs(r) < 1 else math.copysign(math.inf, r)
        return float(sps.t.cdf(t, n - 2) if upper else sps.t.sf(t, n - 2))
    # R evaluates P(S >= round(q)) for the upper tail and P(S < round(q) + 2) for the lower one
    s = float(round(s)) if upper else float(round(s)) + 2.0
    n3 = n * (n * n - 1) / 3.0
    if s <= 0:
        return 1.0 if upper else 0.0
    if s > n3:
        return 0.0 if upper else 1.0
    if n <= 9:
        pu = _p_s_upper_exact(n, s)
        return pu if upper else 1.0 - pu
    return _p_s_edgeworth(n, s, upper)


def spearman_test(x, y) -> dict:
    """Spearman's rho, S and the two-sided P value exactly as R's ``cor.test(x, y, method="spearman")``."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    n = len(x)
    rx, ry = sps.rankdata(x), sps.rankdata(y)
    ties = len(np.unique(x)) < n or len(np.unique(y)) < n
    rho = float(np.corrcoef(rx, ry)[0, 1])
    S = (n ** 3 - n) * (1 - rho) / 6.0
    exact = (not ties) and n < 1290
    if S > (n ** 3 - n) / 6.0:
        p = _p_s(n, S, upper=True, exact=exact)
    else:
        p = _p_s(n, S, upper=False, exact=exact)
    if exact:
        method = "exact permutation distribution" if n <= 9 else "AS 89 Edgeworth series"
    else:
        method = "t approximation" + (" (ties)" if ties else "")
    return {"rho": rho, "S": S, "p": min(2.0 * p, 1.0), "n": n, "ties": ties, "p_method": method}


# ----------------------------------------------------------------------------------------------
# The paper's regression procedure
# ----------------------------------------------------------------------------------------------

def _ols(x: np.ndarray, y: np.ndarray, extra: np.ndarray | None = None) -> dict:
    cols = [np.ones_like(x), x] + ([extra] if extra is not None else [])
    X = np.column_stack(cols)
    n, p = X.shape
    XtX_inv = np.linalg.inv(X.T @ X)
    beta = XtX_inv @ X.T @ y
    resid = y - X @ beta
    dfr = n - p
    s2 = float(resid @ resid) / dfr if dfr > 0 else float("nan")
    se = np.sqrt(np.diag(XtX_inv) * s2)
    t = beta / se
    pval = 2 * sps.t.sf(np.abs(t), dfr) if dfr > 0 else np.full(p, np.nan)
    tss = float(((y - y.mean()) ** 2).sum())
    r2 = 1 - float(resid @ resid) / tss
    q = sps.t.ppf(0.975, dfr) if dfr > 0 else float("nan")
    return {"beta": beta, "se": se, "t": t, "p": pval, "r2": r2, "df": dfr,
            "ci": np.column_stack([beta - q * se, beta + q * se])}


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


# ----------------------------------------------------------------------------------------------

def _fmt(v) -> str:
    if isinstance(v, (float, np.floating)):
        if not np.isfinite(v):
            return "NA"
        a = abs(v)
        if a != 0 and (a < 1e-3 or a >= 1e5):
            return f"{v:.3e}"
        return f"{v:.4f}"
    return str(v)


def _format_table(frame: pd.DataFrame, title: str | None = None, index: bool = False) -> str:
    cols = list(frame.columns)
    rows = [[_fmt(v) for v in frame[c]] for c in cols]
    idx = [str(i) for i in frame.index] if index else []
    widths = [max(len(c), *(len(r) for r in col)) for c, col in zip(cols, rows)]
    iw = max([len(i) for i in idx] + [0])
    out = [title] if title else []
    out.append(" " * iw + ("  " if index else "") + "  ".join(c.rjust(w) for c, w in zip(cols, widths)))
    for k in range(len(frame)):
        lead = (idx[k].ljust(iw) + "  ") if index else ""
        out.append(lead + "  ".join(col[k].rjust(w) for col, w in zip(rows, widths)))
    return "\n".join(out)
