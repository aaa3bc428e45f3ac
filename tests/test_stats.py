"""Statistics that need no R: the regression procedure's guards and its choice of path."""
import numpy as np

from basicseg.stats import regress


def test_regress_skips_small_data():
    res = regress([1, 2], [3, 4])
    assert res.path == "skipped" and "fewer than 3" in res.skipped
    res = regress([1, np.nan, 3, "n/a"], [3, 4, np.nan, 5])
    assert res.path == "skipped" and res.n == 1
    assert "skipped" in res.summary()
    res = regress([1, 2, 3], [2, 4.5, 5.5])
    assert res.path == "linear" and "n = 3" in res.notes[0]


def test_regress_keeps_a_linear_relation_linear():
    x = np.arange(12, dtype=float)
    res = regress(x, 2.0 * x + 1.0 + np.sin(x) * 0.1)
    assert res.path == "linear" and abs(res.estimate - 2.0) < 0.05 and res.linear_r2 > 0.99
