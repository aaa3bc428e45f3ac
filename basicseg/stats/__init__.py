"""Group statistics, checked against R (lme4, lmerTest, lm, cor.test): mixed models with Satterthwaite
df (``lmm``), the paper's regression procedure (``regression``) and Spearman's test (``spearman``)."""
from .lmm import ContrastResult, LMMResult, fit_lmm
from .regression import RegressionResult, regress
from .spearman import spearman_test

__all__ = ["fit_lmm", "LMMResult", "ContrastResult", "regress", "RegressionResult", "spearman_test"]
