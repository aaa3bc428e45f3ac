"""basicseg.stats against R: lme4 + lmerTest (Satterthwaite), lm and cor.test(method = "spearman").

One Rscript call fits everything (R startup and package loading dominate); the data sets are written as CSV
in tmp_path and R's results come back as CSV.  Required agreement: estimates and SE within 1e-4 relative,
Satterthwaite df within 1 %, P within 1e-3 (absolute).
"""
from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pandas as pd
import pytest

from basicseg.stats import fit_lmm, regress, spearman_test

pytestmark = [pytest.mark.r,
              pytest.mark.skipif(shutil.which("Rscript") is None, reason="R (Rscript) is not installed")]

RTOL, DF_RTOL, P_ATOL = 1e-4, 0.01, 1e-3

# name -> (formula for R, formula for basicseg, group)
MODELS = {
    "balanced": ("dice ~ method + (1 | participant)", "dice ~ method"),
    "unbalanced": ("dice ~ method + (1 | participant)", "dice ~ method"),
    "interaction": ("dice ~ method * lesion + (1 | participant)", "dice ~ method * lesion"),
    "sleepstudy": ("Reaction ~ Days + (1 | Subject)", "Reaction ~ Days"),
}
GROUP = {"balanced": "participant", "unbalanced": "participant", "interaction": "participant",
         "sleepstudy": "Subject"}


def _dice_data(kind: str, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    methods = ["basicseg", "deepseg", "propseg"]
    effect = {"basicseg": 0.0, "deepseg": -0.03, "propseg": -0.12}
    rows = []
    n_part = 12 if kind == "balanced" else 15
    for p in range(n_part):
        u = rng.normal(0, 0.04)
        n_slices = 10 if kind == "balanced" else int(rng.integers(3, 25))
        lesion_slices = set(rng.choice(n_slices, size=max(1, n_slices // 3), replace=False).tolist())
        for m in methods:
            if kind == "unbalanced" and m == "propseg" and p % 4 == 0:
                continue                                  # some participants lack a method
            for s in range(n_slices):
                if kind == "unbalanced" and rng.random() < 0.15:
                    continue                              # and some slices
                les = int(s in lesion_slices)
                mu = 0.9 + effect[m] + u
                if kind == "interaction":
                    mu += -0.05 * les + (-0.08 if m == "propseg" else -0.02 if m == "deepseg" else 0.0) * les
                rows.append({"participant": f"sub-{p:02d}", "method": m, "lesion": les, "slice": s,
                             "dice": float(np.clip(mu + rng.normal(0, 0.05), 0, 1))})
    return pd.DataFrame(rows)


def _regression_data() -> dict[str, pd.DataFrame]:
    rng = np.random.default_rng(11)
    x = rng.uniform(0, 600, 20)
    linear = pd.DataFrame({"x": x, "y": 45 - 0.05 * x + rng.normal(0, 4, 20)})
    xl = np.exp(rng.uniform(0, 7, 18)) - 1
    logd = pd.DataFrame({"x": xl, "y": 50 - 6 * np.log1p(xl) + rng.normal(0, 1.5, 18)})
    return {"linear": linear, "log": logd}


SPEARMAN = {
    # n <= 9: exact permutation distribution; 10..1289: Edgeworth; ties: t approximation
    "n7": ([1.2, 3.4, 2.2, 5.0, 4.1, 7.7, 6.0], [10, 12, 9, 15, 11, 20, 18]),
    "n9neg": ([1, 2, 3, 4, 5, 6, 7, 8, 9], [9.5, 7, 8, 6.1, 2, 5, 4, 1, 3]),
    "n12": ([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12], [3, 1, 4, 1.5, 5, 9, 2, 6, 5.3, 3.5, 8, 9.7]),
    "n25": (list(np.random.default_rng(5).permutation(25) + 0.5),
            list(np.arange(25) + np.random.default_rng(6).normal(0, 8, 25))),
    "ties": ([1, 2, 2, 3, 4, 5, 5, 6, 7, 8], [2, 1, 3, 3, 6, 5, 8, 7, 9, 9]),
    # convex: the x^2 term is significant, log(x + 1) lowers R^2 -> the Spearman path
    "nonmonotone": ([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10],
                    [4.0, -1.4, 8.7, 4.5, 10.4, 6.2, 23.1, 33.1, 51.6, 96.0, 151.4]),
}

R_SCRIPT = r"""
suppressPackageStartupMessages({library(lme4); library(lmerTest)})
args <- commandArgs(trailingOnly = TRUE); d <- args[1]
out <- list()
fit_one <- function(name, formula, data, reml = TRUE) {
  m <- lmer(as.formula(formula), data = data, REML = reml)
  cf <- summary(m)$coefficients
  vc <- as.data.frame(VarCorr(m))
  data.frame(dataset = name, term = rownames(cf), Estimate = cf[, 1], SE = cf[, 2], df = cf[, 3],
             t = cf[, 4], P = cf[, 5], group_var = vc$vcov[1], resid_var = vc$vcov[2], row.names = NULL)
}
models <- read.csv(file.path(d, "models.csv"), stringsAsFactors = FALSE)
res <- list(); fres <- list()
for (i in seq_len(nrow(models))) {
  nm <- models$name[i]
  if (nm == "sleepstudy") { data(sleepstudy, package = "lme4"); dat <- sleepstudy
    write.csv(sleepstudy, file.path(d, "sleepstudy.csv"), row.names = FALSE)
  } else { dat <- read.csv(file.path(d, paste0(nm, ".csv")), stringsAsFactors = FALSE)
    dat$method <- factor(dat$method, levels = c("basicseg", "deepseg", "propseg")) }
  res[[length(res) + 1]] <- fit_one(nm, models$formula[i], dat, models$reml[i] == 1)
  if (nm != "sleepstudy") {
    a <- anova(lmer(as.formula(models$formula[i]), data = dat, REML = models$reml[i] == 1))
    fres[[length(fres) + 1]] <- data.frame(dataset = nm, term = rownames(a), NumDF = a$NumDF, DenDF = a$DenDF,
                                           F = a$`F value`, P = a$`Pr(>F)`)
  }
}
write.csv(do.call(rbind, res), file.path(d, "r_lmm.csv"), row.names = FALSE)
write.csv(do.call(rbind, fres), file.path(d, "r_anova.csv"), row.names = FALSE)
reg <- list()
for (nm in c("linear", "log")) {
  dat <- read.csv(file.path(d, paste0("reg_", nm, ".csv")))
  m <- if (nm == "log") lm(y ~ log(x + 1), dat) else lm(y ~ x, dat)
  cf <- summary(m)$coefficients; ci <- confint(m)
  q <- summary(lm(y ~ x + I(x^2), dat))$coefficients
  reg[[nm]] <- data.frame(dataset = nm, intercept = cf[1, 1], estimate = cf[2, 1], se = cf[2, 2], t = cf[2, 3],
                          p = cf[2, 4], r2 = summary(m)$r.squared, ci_low = ci[2, 1], ci_high = ci[2, 2],
                          quad_p = q[3, 4], lin_r2 = summary(lm(y ~ x, dat))$r.squared)
}
write.csv(do.call(rbind, reg), file.path(d, "r_lm.csv"), row.names = FALSE)
sp <- read.csv(file.path(d, "spearman.csv"), stringsAsFactors = FALSE)
sres <- list()
for (nm in unique(sp$name)) {
  s <- sp[sp$name == nm, ]
  ct <- suppressWarnings(cor.test(s$x, s$y, method = "spearman"))
  sres[[nm]] <- data.frame(name = nm, rho = unname(ct$estimate), S = unname(ct$statistic), p = ct$p.value)
}
write.csv(do.call(rbind, sres), file.path(d, "r_spearman.csv"), row.names = FALSE)
"""


@pytest.fixture(scope="module")
def r_results(tmp_path_factory):
    d = tmp_path_factory.mktemp("r")
    data = {"balanced": _dice_data("balanced", 1), "unbalanced": _dice_data("unbalanced", 2),
            "interaction": _dice_data("interaction", 3)}
    for name, frame in data.items():
        frame.to_csv(d / f"{name}.csv", index=False)
    models = [{"name": n, "formula": MODELS[n][0], "reml": 1} for n in MODELS]
    models.append({"name": "sleepstudy_ml", "formula": MODELS["sleepstudy"][0], "reml": 0})
    pd.DataFrame(models).to_csv(d / "models.csv", index=False)
    for name, frame in _regression_data().items():
        frame.to_csv(d / f"reg_{name}.csv", index=False)
    pd.DataFrame([{"name": n, "x": a, "y": b} for n, (xs, ys) in SPEARMAN.items() for a, b in zip(xs, ys)]).to_csv(
        d / "spearman.csv", index=False)
    script = d / "fit.R"
    # sleepstudy_ml reads the sleepstudy data set, too
    script.write_text(R_SCRIPT.replace('if (nm == "sleepstudy")', 'if (startsWith(nm, "sleepstudy"))'))
    proc = subprocess.run(["Rscript", str(script), str(d)], capture_output=True, text=True, timeout=120)
    if proc.returncode != 0 and "there is no package called" in proc.stderr:
        pytest.skip("R lacks lme4/lmerTest: " + proc.stderr.strip().splitlines()[-1])
    assert proc.returncode == 0, proc.stderr
    data["sleepstudy"] = pd.read_csv(d / "sleepstudy.csv")
    data["sleepstudy_ml"] = data["sleepstudy"]
    return d, data


def _close(ours, theirs, rtol, what):
    assert abs(ours - theirs) <= rtol * max(abs(theirs), 1e-12), f"{what}: basicseg {ours!r} vs R {theirs!r}"


@pytest.mark.parametrize("name", ["balanced", "unbalanced", "interaction", "sleepstudy", "sleepstudy_ml"])
def test_lmm_matches_lmertest(r_results, name):
    d, data = r_results
    r = pd.read_csv(d / "r_lmm.csv")
    r = r[r["dataset"] == name].set_index("term")
    frame = data[name].copy()
    base = name.replace("_ml", "")
    if "method" in frame:
        frame["method"] = pd.Categorical(frame["method"], categories=["basicseg", "deepseg", "propseg"])
    fit = fit_lmm(frame, MODELS[base][1], GROUP[base], reml=not name.endswith("_ml"))
    ours = fit.fixed
    assert list(ours.index) == list(r.index)
    for term, row in r.iterrows():
        o = ours.loc[term]
        _close(o["Estimate"], row["Estimate"], RTOL, f"{name} {term} estimate")
        _close(o["SE"], row["SE"], RTOL, f"{name} {term} SE")
        _close(o["df"], row["df"], DF_RTOL, f"{name} {term} df")
        _close(o["t"], row["t"], RTOL, f"{name} {term} t")
        assert abs(o["P"] - row["P"]) <= P_ATOL, f"{name} {term} P: {o['P']} vs {row['P']}"
    _close(fit.group_var, r["group_var"].iloc[0], 1e-3, f"{name} group variance")
    _close(fit.resid_var, r["resid_var"].iloc[0], 1e-3, f"{name} residual variance")


@pytest.mark.parametrize("name", ["balanced", "unbalanced", "interaction"])
def test_f_contrast_matches_lmertest_anova(r_results, name):
    """Multi-row contrasts: the Satterthwaite F test of each model term equals lmerTest's anova()."""
    d, data = r_results
    r = pd.read_csv(d / "r_anova.csv")
    r = r[r["dataset"] == name].set_index("term")
    frame = data[name].copy()
    frame["method"] = pd.Categorical(frame["method"], categories=["basicseg", "deepseg", "propseg"])
    fit = fit_lmm(frame, MODELS[name][1], "participant")
    for term, row in r.iterrows():
        if name == "interaction" and term != "method:lesion":
            continue        # type III marginal terms are not single-coefficient contrasts
        cols = [i for i, n in enumerate(fit.exog_names) if _belongs(n, term)]
        L = np.zeros((len(cols), len(fit.exog_names)))
        L[np.arange(len(cols)), cols] = 1
        c = fit.contrast(L)
        assert c.ndf == row["NumDF"]
        _close(c.statistic if c.test == "F" else c.statistic ** 2, row["F"], RTOL, f"{name} {term} F")
        _close(c.df, row["DenDF"], DF_RTOL, f"{name} {term} DenDF")
        assert abs(c.p - row["P"]) <= P_ATOL


def _belongs(col: str, term: str) -> bool:
    parts = col.split(":")
    want = term.split(":")
    return len(parts) == len(want) and all(p.startswith(w) for p, w in zip(parts, want))


@pytest.mark.parametrize("name", ["linear", "log"])
def test_regression_matches_lm(r_results, name):
    d, _ = r_results
    r = pd.read_csv(d / "r_lm.csv").set_index("dataset").loc[name]
    frame = _regression_data()[name]
    res = regress(frame["x"], frame["y"])
    assert res.path == name, res.summary()
    for ours, key in [(res.intercept, "intercept"), (res.estimate, "estimate"), (res.se, "se"), (res.t, "t"),
                      (res.r2, "r2"), (res.ci_low, "ci_low"), (res.ci_high, "ci_high"), (res.linear_r2, "lin_r2")]:
        _close(ours, r[key], RTOL, f"{name} {key}")
    assert abs(res.p - r["p"]) <= P_ATOL
    assert abs(res.linearity_p - r["quad_p"]) <= P_ATOL


@pytest.mark.parametrize("name", list(SPEARMAN))
def test_spearman_matches_cor_test(r_results, name):
    d, _ = r_results
    r = pd.read_csv(d / "r_spearman.csv").set_index("name").loc[name]
    x, y = SPEARMAN[name]
    s = spearman_test(x, y)
    _close(s["rho"], r["rho"], RTOL, f"{name} rho")
    _close(s["S"], r["S"], RTOL, f"{name} S")
    assert abs(s["p"] - r["p"]) <= P_ATOL, f"{name}: basicseg P {s['p']} vs R {r['p']}"


def test_nonmonotone_takes_spearman_path(r_results):
    d, _ = r_results
    r = pd.read_csv(d / "r_spearman.csv").set_index("name").loc["nonmonotone"]
    x, y = SPEARMAN["nonmonotone"]
    res = regress(x, y)
    assert res.nonlinear and res.path == "spearman", res.summary()
    assert res.log_r2 < res.linear_r2
    _close(res.rho, r["rho"], RTOL, "rho")
    assert abs(res.spearman_p - r["p"]) <= P_ATOL


R_TABLE2 = r"""
suppressPackageStartupMessages({library(lme4); library(lmerTest)})
args <- commandArgs(trailingOnly = TRUE)
d <- read.delim(args[1], na.strings = "n/a")
d$method <- factor(d$method, levels = c("basicseg", sort(setdiff(unique(d$method), "basicseg"))))
fits <- list(all = d, lesion = d[!is.na(d$lesion) & d$lesion == 1, ], normal = d[!is.na(d$lesion) & d$lesion == 0, ])
out <- list()
for (nm in names(fits)) {
  cf <- summary(lmer(dice ~ method + (1 | participant_id), data = fits[[nm]]))$coefficients
  out[[nm]] <- data.frame(analysis = nm, term = rownames(cf), cf, row.names = NULL, check.names = FALSE)
}
cf <- summary(lmer(dice ~ method * lesion + (1 | participant_id), data = d[!is.na(d$lesion), ]))$coefficients
out[["interaction"]] <- data.frame(analysis = "interaction", term = rownames(cf), cf, row.names = NULL,
                                   check.names = FALSE)
r <- do.call(rbind, out)
names(r) <- c("analysis", "term", "Estimate", "SE", "df", "t", "P")
write.csv(r, args[2], row.names = FALSE)
"""


def test_group_table2_matches_lmertest(tmp_path):
    """End to end: run_group's table2.tsv equals lmerTest fitted on run_group's own dice_per_slice.tsv."""
    from test_group import build

    from bidsapp.group.run import run_group

    bids, out, other = build(tmp_path)
    from bidsapp.config import Config
    assert run_group(Config(bids_dir=bids, output_dir=out, analysis_level="group", compare={"sct": other})) == 0
    (tmp_path / "t2.R").write_text(R_TABLE2)
    proc = subprocess.run(["Rscript", str(tmp_path / "t2.R"), str(out / "group" / "dice_per_slice.tsv"),
                           str(tmp_path / "r_table2.csv")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    r = pd.read_csv(tmp_path / "r_table2.csv").set_index(["analysis", "term"])
    ours = pd.read_csv(out / "group" / "table2.tsv", sep="\t").set_index(["analysis", "term"])
    assert sorted(ours.index) == sorted(r.index)
    for key, row in r.iterrows():
        o = ours.loc[key]
        for col in ("Estimate", "SE", "t"):
            _close(o[col], row[col], RTOL, f"{key} {col}")
        _close(o["df"], row["df"], DF_RTOL, f"{key} df")
        assert abs(o["P"] - row["P"]) <= P_ATOL, f"{key} P"


def test_kruskal_matches_r_kruskal_test(tmp_path):
    """The group level's BASIC test across grades: H, df and P as R's kruskal.test, ties included."""
    import subprocess
    from bidsapp.group.basic import kruskal

    grades = np.array([0, 0, 1, 1, 1, 2, 2, 3, 3, 3, 4, 4])
    lems = np.array([50, 48, 40, 42, 40, 30, 33, 20, 25, 20, 10, 12], float)
    code = (f"r <- kruskal.test(c({', '.join(map(str, lems))}), factor(c({', '.join(map(str, grades))})));"
            "cat(sprintf('%.15g', c(r$statistic, r$parameter, r$p.value)))")
    out = subprocess.run(["Rscript", "-e", code], capture_output=True, text=True, timeout=120, check=True).stdout
    h_r, df_r, p_r = map(float, out.split())
    h, df, p = kruskal(grades, lems)
    assert h == pytest.approx(h_r, rel=1e-10) and df == df_r and p == pytest.approx(p_r, rel=1e-8)
