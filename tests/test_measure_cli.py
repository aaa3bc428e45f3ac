"""``basicseg-measure`` in a subprocess: the three tables, and one-line errors with sysexits codes."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from basicseg.measure.lesions import COLUMNS
from basicseg.measure.morphometrics import KEYS, PER_SLICE_COLUMNS

ROOT = Path(__file__).resolve().parents[1]


def run(*args) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.run([sys.executable, "-m", "basicseg.measure.cli", *map(str, args)],
                          capture_output=True, text=True, env=env, timeout=120)


@pytest.fixture(scope="module")
def masks(tmp_path_factory):
    """A cord with two lesions on an oblique, anisotropic grid, and a lesion mask on another grid."""
    d = tmp_path_factory.mktemp("masks")
    affine = np.array([[0.0, 0.6, 0.1, -10], [-0.5, 0.0, 0.0, 12], [0.0, 0.05, 2.0, -30], [0, 0, 0, 1]])
    i, j, k = np.indices((40, 40, 16))
    cord = (i - 19.6) ** 2 + (j - 20.3) ** 2 <= 64
    lesion = (((i - 20) / 3) ** 2 + ((j - 21) / 2.5) ** 2 + ((k - 7) / 2.5) ** 2 <= 1) \
        | ((i - 13) ** 2 + (j - 20) ** 2 <= 2) & (k >= 10) & (k <= 12)
    paths = {}
    for name, data, aff in (("cord", cord, affine), ("lesion", lesion, affine),
                            ("other", lesion, np.diag([0.5, 0.5, 2.0, 1.0]))):
        paths[name] = d / f"{name}.nii.gz"
        nib.save(nib.Nifti1Image(data.astype(np.uint8), aff), paths[name])
    return paths


def test_writes_the_three_tables(masks, tmp_path):
    out = tmp_path / "out"
    done = run(masks["cord"], masks["lesion"], "-o", out, "--prefix", "sub-01_T2w")
    assert done.returncode == 0, done.stderr
    image = pd.read_csv(out / "sub-01_T2w_morphometrics.tsv", sep="\t")
    per_slice = pd.read_csv(out / "sub-01_T2w_desc-perslice_morphometrics.tsv", sep="\t")
    lesions = pd.read_csv(out / "sub-01_T2w_desc-lesions_morphometrics.tsv", sep="\t")
    assert list(image.columns) == ["cord_mask", "lesion_mask", *KEYS, "qc_flags"]
    assert list(per_slice.columns) == list(PER_SLICE_COLUMNS) and len(per_slice) == 16
    assert list(lesions.columns) == list(COLUMNS) and list(lesions["label"]) == [1, 2]
    assert image["lesion_count"].iloc[0] == 2
    assert image["lesion_volume_mm3"].iloc[0] == pytest.approx(lesions["volume_mm3"].sum())


def test_cord_only(masks, tmp_path):
    done = run(masks["cord"], "-o", tmp_path)
    assert done.returncode == 0, done.stderr
    image = pd.read_csv(tmp_path / "cord_morphometrics.tsv", sep="\t")
    assert image["lesion_mask"].isna().all() and image["lesion_volume_mm3"].isna().all()
    assert len(pd.read_csv(tmp_path / "cord_desc-lesions_morphometrics.tsv", sep="\t")) == 0


@pytest.mark.parametrize("case, code", [("grids", 65), ("missing", 66), ("usage", 64), ("not_nifti", 65)])
def test_errors_are_one_line_with_sysexits_code(masks, tmp_path, case, code):
    args = {"grids": (masks["cord"], masks["other"], "-o", tmp_path),
            "missing": (tmp_path / "absent.nii.gz", "-o", tmp_path),
            "usage": (masks["cord"],),
            "not_nifti": (Path(__file__), "-o", tmp_path)}[case]
    done = run(*args)
    assert done.returncode == code, done.stderr
    assert "Traceback" not in done.stderr
    errors = [line for line in done.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1, done.stderr
    if case == "grids":                                  # names both files
        assert str(masks["cord"]) in errors[0] and str(masks["other"]) in errors[0]
