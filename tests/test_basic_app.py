"""The experimental BASIC score through the app: --basic-score at the participant level, the grade
against the motor scores at the group level (the demo's SIMULATED lesions)."""
import json
import shutil

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from bidsapp.cli import main

from conftest import DEMO

pytestmark = pytest.mark.slow
SUBJECTS = ("errsm11", "errsm21", "test001", "unf01", "9418")
# sub-9418 (healthy cord, grade 0) gets the full lower-extremity motor score: a control, so that the grades
# vary whatever grade the lesion network gives the four SIMULATED lesions
CONTROL = ("sub-9418\tn/a\tn/a", "sub-9418\t50\t50")


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    root = tmp_path_factory.mktemp("basic")
    bids = root / "bids"
    bids.mkdir()
    for name in ("dataset_description.json", "participants.tsv", "participants.json", "phenotype"):
        src = DEMO / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, bids / name)
    for s in SUBJECTS:
        shutil.copytree(DEMO / f"sub-{s}", bids / f"sub-{s}")
    motor = bids / "phenotype" / "motor.tsv"
    assert CONTROL[0] in motor.read_text()
    motor.write_text(motor.read_text().replace(*CONTROL))
    out = root / "out"
    code = main([str(bids), str(out), "participant", "--basic-score", "--skip-bids-validation"])
    t2star = root / "t2star.json"             # the control is a T2*w image: its own participant run
    t2star.write_text(json.dumps({"t2w": {"suffix": "T2starw"}}))
    code |= main([str(bids), str(out), "participant", "--basic-score", "--skip-bids-validation",
                  "--bids-filter-file", str(t2star), "--participant-label", "9418"])
    group = main([str(bids), str(out), "group"])
    return out, code, group


def rows(out):
    return pd.concat([pd.read_csv(t, sep="\t") for t in sorted(out.glob("sub-*/anat/*_morphometrics.tsv"))
                      if "_desc-" not in t.name])


def test_grades_columns_and_haemorrhage_mask(graded):
    out, code, _ = graded
    assert code == 0
    table = rows(out)
    assert set(table["basic_score"]) <= {0, 1, 2, 3, 4}
    assert (table["basic_status"] == "experimental: validated on simulated lesions only").all()
    with_lesion = table[table["lesion_count"] > 0]
    assert (with_lesion["basic_score"] >= 1).all() and (table[table["lesion_count"] == 0]["basic_score"] == 0).all()
    assert {"tract_lcst_left_volume_mm3", "tract_lcst_right_epicentre_pct"} <= set(table.columns)
    for sc in out.glob("sub-*/anat/*_label-SC_mask.nii.gz"):
        haem = sc.parent / sc.name.replace("label-SC", "label-haemorrhage")
        lesion = np.asanyarray(nib.load(sc.parent / sc.name.replace("label-SC", "label-lesion")).dataobj) > 0
        assert not (np.asanyarray(nib.load(haem).dataobj).astype(bool) & ~lesion).any()   # inside the lesion
    page = (out / "sub-errsm21.html").read_text()
    assert "BASIC score (experimental: validated on simulated lesions only)" in page
    assert "alt='BASIC epicentre of sub-errsm21_T2w'" in page
    (png,) = list((out / "sub-errsm21" / "figures").glob("*_desc-epicentre_qc.png"))
    assert png.stat().st_size > 5000


def test_group_tests_the_grade_against_motor_scores(graded):
    out, _, group = graded
    assert group == 0
    basic = pd.read_csv(out / "group" / "basic.tsv", sep="\t")
    assert len(basic) >= 1 and basic["n"].min() >= 3
    tested = basic[basic["skipped"].isna()]
    assert len(tested) and tested["spearman_p"].between(0, 1).all() and tested["kruskal_p"].between(0, 1).all()
    regressions = pd.read_csv(out / "group" / "regressions.tsv", sep="\t")
    assert "tract_lcst_left_volume_mm3" in set(regressions["predictor"])
    report = (out / "group_report.html").read_text()
    assert "BASIC score against motor scores" in report and "SIMULATED" in report
    assert list((out / "group" / "figures").glob("basic_*.png"))
