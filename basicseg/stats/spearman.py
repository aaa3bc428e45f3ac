"""Spearman's rank correlation with the P values of R's ``cor.test(method = "spearman")``: exact
permutation distribution for n <= 9 without ties, the AS 89 Edgeworth series for 10 <= n < 1290,
otherwise the t approximation."""
from __future__ import annotations

import itertools
import math
from functools import lru_cache

import numpy as np
from scipy import stats as sps


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
