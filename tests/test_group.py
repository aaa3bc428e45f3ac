"""Group level end to end on a synthetic derivative folder (real NIfTI files, an oblique-free but flipped affine)."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from basicseg import errors as exits
from bidsapp.config import Config
from bidsapp.group.run import run_group
from bidsapp.group.state import EXCLUSION_COLUMNS

SHAPE = (24, 24, 10)
AFFINE = np.array([[-0.5, 0, 0, 6.0], [0, 0.5, 0, -6.0], [0, 0, 3.0, -15.0], [0, 0, 0, 1]])  # x flipped (LPS-like)
SUBJECTS = ["01", "02", "03", "04", "05", "06", "07"]
NO_REFERENCE = "06"      # no manual cord mask
FAILED = "07"            # image failed at the participant level
LESION_SLICES = range(4, 7)
LESION_VOLUMES = {"01": 120.0, "02": 300.0, "03": 40.0, "04": 650.0, "05": 10.0, "06": 220.0}
MOTOR = [("sub-01", "40", "45"), ("sub-02", "31", "n/a"), ("sub-03", "44", "47"), ("sub-04", "12", "20"),
         ("sub-05", "n/a", "50"), ("sub-06", "oops", "30"), ("sub-99", "10", "12")]


def _disc(cx, cy, r):
    i, j = np.mgrid[: SHAPE[0], : SHAPE[1]]
    return (i - cx) ** 2 + (j - cy) ** 2 <= r * r


def _cord(shift=0.0, radius=4.0, drop=()):
    m = np.zeros(SHAPE, bool)
    for k in range(1, SHAPE[2] - 1):          # slices 0 and 9 have no cord
        if k in drop:
            continue
        m[..., k] = _disc(12 + shift, 12 + 0.3 * np.sin(k), radius)
    return m


def _save(path: Path, data):
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(np.asarray(data, np.uint8), AFFINE), str(path))


def build(tmp_path: Path, phenotype=True):
    bids, out, other = tmp_path / "bids", tmp_path / "out", tmp_path / "sct"
    rng = np.random.default_rng(3)
    (bids / "phenotype").mkdir(parents=True)
    (bids / "dataset_description.json").write_text(json.dumps({"Name": "synthetic", "BIDSVersion": "1.9.0"}))
    (bids / "participants.tsv").write_text("participant_id\tage\n" + "".join(
        f"sub-{s}\t{30 + int(s)}\n" for s in SUBJECTS))
    if phenotype:
        (bids / "phenotype" / "motor.tsv").write_text(
            "participant_id\tLEMS_admission\tLEMS_discharge\n" + "".join("\t".join(r) + "\n" for r in MOTOR))
        (bids / "phenotype" / "motor.json").write_text(json.dumps(
            {"LEMS_admission": {"Description": "lower-extremity motor score at admission"}}))
    for s in SUBJECTS:
        sub = f"sub-{s}"
        src = f"{sub}/anat/{sub}_T2w.nii.gz"
        _save(bids / src, rng.integers(0, 200, SHAPE))
        ref = _cord()
        if s != NO_REFERENCE:
            _save(bids / "derivatives/labels" / sub / "anat" / f"{sub}_T2w_seg-manual.nii.gz", ref)
            lesion = np.zeros(SHAPE, bool)
            for k in LESION_SLICES:
                lesion[..., k] = _disc(12, 12, 1.5)
            _save(bids / "derivatives/labels" / sub / "anat" / f"{sub}_T2w_label-lesion_mask.nii.gz", lesion)
        anat = out / sub / "anat"
        anat.mkdir(parents=True)
        if s == FAILED:
            row = {"participant_id": sub, "session_id": "n/a", "source": src, "suffix": "T2w", "status": "failed",
                   "qc_flags": "failed", "error": "localiser found no cord"}
        else:
            a = float(rng.uniform(0.2, 0.9))
            _save(anat / f"{sub}_space-orig_label-SC_mask.nii.gz", _cord(shift=a * 0.7, radius=4.0 - 0.4 * a))
            _save(other / sub / "anat" / f"{sub}_T2w_label-SC_seg.nii.gz",
                  _cord(shift=a * 1.6, radius=3.2, drop=(5,) if s in ("02", "04") else ()))
            row = {"participant_id": sub, "session_id": "n/a", "source": src, "suffix": "T2w", "status": "ok",
                   "error": "n/a", "cord_volume_mm3": 500.0 + int(s), "csa_mean_mm2": 60.0,
                   "lesion_volume_mm3": LESION_VOLUMES[s], "lesion_length_mm": 9.0,
                   "qc_flags": "low_confidence" if s == "03" else ""}
        pd.DataFrame([row]).to_csv(anat / f"{sub}_morphometrics.tsv", sep="\t", index=False, na_rep="n/a")
        pd.DataFrame({"slice": [0, 1], "csa_mm2": [1.0, 2.0]}).to_csv(
            anat / f"{sub}_desc-perslice_morphometrics.tsv", sep="\t", index=False)
        (out / f"{sub}.html").write_text("<html></html>")
    return bids, out, other


@pytest.fixture
def synthetic(tmp_path):
    return build(tmp_path)


def config(bids, out, **kwargs) -> Config:
    return Config(bids_dir=bids, output_dir=out, analysis_level="group", **kwargs)


def test_run_group_end_to_end(synthetic):
    bids, out, other = synthetic
    code = run_group(config(bids, out, compare={"sct": other}))
    assert code == exits.OK
    g = out / "group"
    for name in ("morphometrics.tsv", "joined.tsv", "regressions.tsv", "regressions.json", "dice_per_slice.tsv",
                 "table2.tsv", "table2.json", "exclusions.tsv", "figures/dice_violin.png"):
        assert (g / name).is_file(), name
    morph = pd.read_csv(g / "morphometrics.tsv", sep="\t")
    assert len(morph) == len(SUBJECTS)                       # the per-slice files are not collected
    assert set(morph["status"]) == {"ok", "failed"}

    joined = pd.read_csv(g / "joined.tsv", sep="\t")
    lems = joined.set_index("participant_id")["LEMS_admission"]
    assert np.isnan(lems["sub-06"]) and np.isnan(lems["sub-05"]) and lems["sub-01"] == 40

    reg = pd.read_csv(g / "regressions.tsv", sep="\t")
    adm = reg[reg["outcome"] == "LEMS_admission"].iloc[0]
    assert adm["n"] == 4 and adm["path"] in ("linear", "log", "spearman")
    dis = reg[reg["outcome"] == "LEMS_discharge"].iloc[0]
    assert dis["n"] == 5                                      # sub-02 n/a, sub-07 failed; sub-06 has a score

    dice = pd.read_csv(g / "dice_per_slice.tsv", sep="\t")
    assert set(dice["method"]) == {"basicseg", "sct"}
    assert set(dice["participant_id"]) == {"sub-01", "sub-02", "sub-03", "sub-04", "sub-05"}
    assert set(dice["slice"]) == set(range(1, 9))          # only slices where the reference has cord
    assert set(dice["lesion"]) == {0, 1}
    assert dice.loc[(dice["method"] == "sct") & (dice["slice"] == 5) & (dice["participant_id"] == "sub-02"),
                    "dice"].iloc[0] == 0.0

    t2 = pd.read_csv(g / "table2.tsv", sep="\t")
    assert set(t2["analysis"]) == {"all", "lesion", "normal", "interaction"}
    assert t2["skipped"].isna().all()
    all_ = t2[t2["analysis"] == "all"].set_index("term")
    assert list(all_.index) == ["(Intercept)", "methodsct"]      # basicseg is the reference level
    assert all_.loc["methodsct", "Estimate"] < 0
    inter = t2[t2["analysis"] == "interaction"]
    assert "methodsct:lesion" in set(inter["term"])

    exc = pd.read_csv(g / "exclusions.tsv", sep="\t")
    assert list(exc.columns) == EXCLUSION_COLUMNS
    reasons = " | ".join(exc["reason"])
    assert "no reference cord mask" in reasons
    assert "missing LEMS_admission" in reasons
    failed = exc[exc["participant_id"] == f"sub-{FAILED}"]
    assert list(failed["reason"]) == ["failed at the participant level: localiser found no cord"]   # once
    assert failed["source"].iloc[0] == f"sub-{FAILED}/anat/sub-{FAILED}_T2w.nii.gz"
    html = (out / "group_report.html").read_text()
    for text in ("Table 2", "no reference cord mask", "missing LEMS_admission",
                 "failed at the participant level: localiser found no cord",
                 "sub-99", "non-numeric", "group/figures/dice_violin.png"):
        assert text in html, text
    assert str(out) + "/group" not in html.split("Derivatives:")[1].split("</p>", 1)[1]   # relative links only
    # QC-flagged images first among the subject reports
    assert html.index("href='sub-03.html'") < html.index("href='sub-01.html'")
    assert html.index("href='sub-07.html'") < html.index("href='sub-01.html'")


def test_reference_method_and_single_method(synthetic):
    bids, out, other = synthetic
    assert run_group(config(bids, out, compare={"sct": other}, reference_method="sct")) == exits.OK
    t2 = pd.read_csv(out / "group" / "table2.tsv", sep="\t")
    assert "methodbasicseg" in set(t2["term"])
    assert run_group(config(bids, out)) == exits.OK                   # no --compare: one method, models skipped
    t2 = pd.read_csv(out / "group" / "table2.tsv", sep="\t")
    assert t2["skipped"].str.contains("only one segmentation method").all()


def test_no_phenotype(tmp_path):
    bids, out, other = build(tmp_path, phenotype=False)
    assert run_group(config(bids, out, compare={"sct": other})) == exits.OK
    html = (out / "group_report.html").read_text()
    assert "No phenotype data" in html
    assert (out / "group" / "table2.tsv").is_file()


def test_too_few_points_skipped(synthetic):
    bids, out, other = synthetic
    assert run_group(config(bids, out, participant_label=["01", "sub-02"], compare={"sct": other})) == exits.OK
    reg = pd.read_csv(out / "group" / "regressions.tsv", sep="\t")
    assert (reg["path"] == "skipped").all()
    assert reg["skipped"].str.contains("fewer than 3").all()
    assert "fewer than 3" in (out / "group_report.html").read_text()


def test_exit_codes(synthetic, tmp_path):
    bids, out, other = synthetic
    empty = tmp_path / "empty"
    empty.mkdir()
    assert run_group(config(bids, empty)) == exits.NO_INPUT
    assert run_group(config(bids, out, participant_label=["nobody"])) == exits.NO_MATCH
    # --compare is parsed once, by the command line
    from bidsapp.cli import main
    assert main([str(bids), str(out), "group", "--compare", "no-equals-sign"]) == exits.USAGE


def test_sessions_and_missing_outcome_column(tmp_path):
    bids, out, other = build(tmp_path)
    # move sub-01 into a session, in the inputs, the references and the outputs
    for root in (bids, bids / "derivatives/labels", out, other):
        src = root / "sub-01" / "anat"
        if src.is_dir():
            dst = root / "sub-01" / "ses-1" / "anat"
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(str(src), str(dst))
            for f in dst.iterdir():
                f.rename(dst / f.name.replace("sub-01_", "sub-01_ses-1_"))
    m = out / "sub-01/ses-1/anat/sub-01_ses-1_morphometrics.tsv"
    t = pd.read_csv(m, sep="\t", dtype=str, keep_default_na=False)
    t["session_id"], t["source"] = "ses-1", "sub-01/ses-1/anat/sub-01_ses-1_T2w.nii.gz"
    t.to_csv(m, sep="\t", index=False)
    assert run_group(config(bids, out, outcome=["LEMS_admission"], compare={"sct": other})) == exits.OK
    morph = pd.read_csv(out / "group" / "morphometrics.tsv", sep="\t")
    assert morph.loc[morph["participant_id"] == "sub-01", "entity_ses"].iloc[0] == 1
    dice = pd.read_csv(out / "group" / "dice_per_slice.tsv", sep="\t")
    assert "ses-1" in set(dice["session_id"])
    reg = pd.read_csv(out / "group" / "regressions.tsv", sep="\t")
    assert list(reg["outcome"]) == ["LEMS_admission"]


# --- statistics without R: numbers recorded from R 4.2.2, lme4 1.1.31, lmerTest 3.1.3 (tests/test_stats_r.py
# recomputes them live wherever Rscript exists) -------------------------------------------------------------------

def test_lmm_recorded_lmertest_numbers():
    from test_stats_r import _dice_data

    from basicseg.stats import fit_lmm

    data = _dice_data("unbalanced", 2)
    assert len(data) == 421
    fit = fit_lmm(data, "dice ~ method", "participant").fixed
    recorded = {"(Intercept)": (0.8961079386399, 0.01121402339943, 16.5215738098, 8.04845197702e-23),
                "methoddeepseg": (-0.0283094340591, 0.00589482015452, 404.1998044633, 2.21177091023e-06),
                "methodpropseg": (-0.1218938494179, 0.00661548013871, 407.6516516906, 1.36738321122e-55)}
    for term, (est, se, df, p) in recorded.items():
        row = fit.loc[term]
        assert row["Estimate"] == pytest.approx(est, rel=1e-4)
        assert row["SE"] == pytest.approx(se, rel=1e-4)
        assert row["df"] == pytest.approx(df, rel=1e-2)
        assert row["P"] == pytest.approx(p, abs=1e-3)


def test_spearman_recorded_cor_test_numbers():
    from basicseg.stats import spearman_test

    s = spearman_test([1.2, 3.4, 2.2, 5.0, 4.1, 7.7, 6.0], [10, 12, 9, 15, 11, 20, 18])    # exact, n = 7
    assert s["p"] == pytest.approx(0.00674603174603, abs=1e-9)
    x = [3, 1, 4, 1.5, 5, 9, 2, 6, 5.3, 3.5, 8, 9.7, 11, 0.2, 7.5]
    y = [2, 7, 1, 8, 2.8, 1.8, 2.5, 9, 4.5, 6.2, 0.5, 3.3, 5.1, 7.7, 4.4]
    s = spearman_test(x, y)                                                                 # Edgeworth, n = 15
    assert s["S"] == pytest.approx(750) and s["rho"] == pytest.approx(-0.339285714286)
    assert s["p"] == pytest.approx(0.216039051, abs=1e-6)


def test_cli_group(synthetic, tmp_path):
    from bidsapp.cli import main

    bids, out, other = synthetic
    assert main([str(bids), str(out), "group", "--compare", f"sct={other}", "--outcome", "LEMS_discharge",
                 "--reference-method", "sct", "-q"]) == exits.OK
    reg = pd.read_csv(out / "group" / "regressions.tsv", sep="\t")
    assert list(reg["outcome"]) == ["LEMS_discharge"]
    assert (out / "group_report.html").is_file()
    assert main([str(bids), str(tmp_path / "nothing"), "group", "-q"]) == exits.NO_INPUT
    assert main([str(bids), str(out), "group", "--participant-label", "42", "-q"]) == exits.NO_MATCH


def test_matplotlib_config_dir_when_home_unwritable(monkeypatch, tmp_path):
    from bidsapp.report.html import mpl_config_fallback

    monkeypatch.delenv("MPLCONFIGDIR", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "does-not-exist"))
    mpl_config_fallback(work_dir=tmp_path)
    made = Path(__import__("os").environ["MPLCONFIGDIR"])
    assert made.is_dir() and made.parent == tmp_path          # under the work dir when it is writable
