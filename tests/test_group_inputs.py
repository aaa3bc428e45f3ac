"""The group level on broken inputs: the defensive TSV reader on real malformed files, exclusions of images
the participant level did not process, usage errors for unknown names, and write failures (exit 74).

Runs on the embedded demo dataset (demo/ds-demo) with participant outputs made from its manual cord
masks, so a plain clone runs it.
"""
from __future__ import annotations

import errno
import logging
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
from bidsapp.group.tsv import read_tsv_defensively

PROCESSED = ["errsm11", "errsm21", "test001", "unf01"]
SKIPPED = ("ms01", "sub-ms01/anat/sub-ms01_acq-axial_T2w.nii.gz", "slices 7.5 mm thick: not segmented")
FAILED = ("9418", "sub-9418/anat/sub-9418_run-1_T2starw.nii.gz", "localiser found no cord")


# --- the defensive reader, on files as users break them ---------------------------------------------------------

def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_extra_field_mid_file(tmp_path):
    path = _write(tmp_path / "participants.tsv", "participant_id\tage\nsub-01\t30\nsub-02\t31\t99\nsub-03\t33\n")
    with pytest.raises(pd.errors.ParserError):                  # what the group level used to do with it
        pd.read_csv(path, sep="\t")
    frame, notes = read_tsv_defensively(path)
    assert list(frame["participant_id"]) == ["sub-01", "sub-03"]
    assert list(frame.index) == [2, 4]                          # the index is the line number
    assert notes == ["participants.tsv line 3: more fields than the header's 2; row ignored"]


def test_ragged_first_row_keeps_the_other_scores(tmp_path):
    path = _write(tmp_path / "motor.tsv", "participant_id\tLEMS\nsub-01\t40\t45\nsub-02\t30\nsub-03\t20\n")
    shifted = pd.read_csv(path, sep="\t")                       # pandas silently moves the ids to the index
    assert "sub-02" not in set(shifted["participant_id"].astype(str))
    frame, notes = read_tsv_defensively(path, label="phenotype/motor.tsv", keys=("participant_id",))
    assert frame.set_index("participant_id")["LEMS"].to_dict() == {"sub-02": "30", "sub-03": "20"}
    assert notes == ["phenotype/motor.tsv line 2: more fields than the header's 2; row ignored"]


def test_short_rows_trailing_tabs_and_missing(tmp_path):
    path = _write(tmp_path / "t.tsv", "participant_id\ta\tb\nsub-01\t1\nsub-02\t2\t3\t\t\nsub-03\tn/a\t\n\n")
    frame, notes = read_tsv_defensively(path)
    assert pd.isna(frame.loc[2, "b"])
    assert frame.loc[3, "b"] == "3" and pd.isna(frame.loc[4, "a"])
    assert "t.tsv line 2: fewer fields than the header's 3; the missing ones read as n/a" in notes
    assert "t.tsv line 3: trailing empty field(s) ignored" in notes


def test_zero_byte_and_unreadable(tmp_path):
    frame, notes = read_tsv_defensively(_write(tmp_path / "empty.tsv", ""), label="phenotype/empty.tsv")
    assert frame.empty and notes == ["phenotype/empty.tsv: empty file (0 bytes, no header); ignored"]
    folder = tmp_path / "folder.tsv"
    folder.mkdir()
    frame, notes = read_tsv_defensively(folder)
    assert frame.empty and len(notes) == 1 and "cannot be read" in notes[0]


def test_duplicated_ids_and_sessions(tmp_path):
    path = _write(tmp_path / "p.tsv", "participant_id\tage\nsub-01\t30\nsub-02\t31\nsub-01\t32\n\t40\n")
    frame, notes = read_tsv_defensively(path, keys=("participant_id", "session_id"))
    assert frame.set_index("participant_id")["age"].to_dict() == {"sub-01": "30", "sub-02": "31"}
    assert "p.tsv line 4: duplicated participant_id sub-01 (first at line 2); the first row is used" in notes
    assert "p.tsv line 5: no participant_id; row ignored" in notes
    # with sessions, the same participant in two sessions is no duplicate
    path = _write(tmp_path / "s.tsv", "participant_id\tsession_id\tx\nsub-01\tses-1\t1\nsub-01\tses-2\t2\n"
                                      "sub-01\tses-2\t3\n")
    frame, notes = read_tsv_defensively(path, keys=("participant_id", "session_id"))
    assert list(frame["x"]) == ["1", "2"] and len(notes) == 1 and "line 4: duplicated" in notes[0]


def test_unknown_and_broken_columns(tmp_path):
    path = _write(tmp_path / "p.tsv", "participant_id\tage\tshoe_size\tage\t\nsub-01\t30\t44\t31\tx\n")
    frame, notes = read_tsv_defensively(path, keys=("participant_id",), described={"age"})
    assert list(frame.columns) == ["participant_id", "age", "shoe_size"] and frame.loc[2, "age"] == "30"
    assert "p.tsv line 1: column 'age' appears twice; the first is used" in notes
    assert "p.tsv line 1: column 5 has no name; ignored" in notes
    assert "p.tsv line 1: unknown column 'shoe_size' (not described in its JSON sidecar); kept" in notes
    no_id, notes = read_tsv_defensively(_write(tmp_path / "q.tsv", "subject\tage\n01\t3\n"), keys=("participant_id",))
    assert no_id.empty and notes == ["q.tsv: no participant_id column; the file is ignored"]


# --- the group level on the demo dataset ------------------------------------------------------------------------

def _mask_like(ref_path: Path, out_path: Path) -> float:
    """A 'basicseg' cord mask one voxel off the manual one, on its grid; returns the lesion volume (mm3)."""
    ref = nib.load(str(ref_path))
    data = np.roll(np.asarray(ref.dataobj) > 0.5, 1, axis=0).astype(np.uint8)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(data, ref.affine, ref.header), str(out_path))
    lesion = nib.load(str(ref_path).replace("_seg-manual", "_label-lesion_mask"))
    return float((np.asarray(lesion.dataobj) > 0.5).sum() * np.prod(lesion.header.get_zooms()[:3]))


def _row(label: str, source: str, status: str, error: str = "n/a", **metrics) -> pd.DataFrame:
    return pd.DataFrame([{"participant_id": f"sub-{label}", "session_id": "n/a", "source": source, "suffix":
                          source.rsplit("_", 1)[1].split(".")[0], "status": status, **metrics, "qc_flags": "",
                          "error": error}])


@pytest.fixture
def demo(tmp_path, demo_dataset):
    return make_demo(tmp_path, demo_dataset)


def make_demo(tmp_path: Path, demo_dataset: Path) -> tuple[Path, Path]:
    """(bids, out): a copy of demo/ds-demo and participant outputs: 4 processed, 1 skipped, 1 failed."""
    bids, out = tmp_path / "bids", tmp_path / "out"
    shutil.copytree(demo_dataset, bids)
    for s in PROCESSED:
        anat = out / f"sub-{s}" / "anat"
        volume = _mask_like(bids / f"derivatives/labels/sub-{s}/anat/sub-{s}_T2w_seg-manual.nii.gz",
                            anat / f"sub-{s}_space-orig_label-SC_mask.nii.gz")
        _row(s, f"sub-{s}/anat/sub-{s}_T2w.nii.gz", "ok", lesion_volume_mm3=volume, cord_volume_mm3=900.0).to_csv(
            anat / f"sub-{s}_morphometrics.tsv", sep="\t", index=False)
    for (s, source, why), status in ((SKIPPED, "skipped"), (FAILED, "failed")):
        anat = out / Path(source).parent
        anat.mkdir(parents=True)
        _row(s, source, status, why).to_csv(anat / f"{Path(source).name.rsplit('_', 1)[0]}_morphometrics.tsv",
                                            sep="\t", index=False)
    return bids, out


def _config(bids, out, **kwargs) -> Config:
    return Config(bids_dir=bids, output_dir=out, analysis_level="group", **kwargs)


def _line(path: Path, startswith: str) -> int:
    return next(n for n, line in enumerate(path.read_text().splitlines(), start=1) if line.startswith(startswith))


def _break_tables(bids: Path) -> dict[str, str]:
    """Break the demo's tables the usual ways; returns the note (file and line) each must give."""
    p, m = bids / "participants.tsv", bids / "phenotype" / "motor.tsv"
    p.write_text(p.read_text().replace("sub-errsm21\tn/a\tT2w", "sub-errsm21\tn/a\tT2w\textra", 1)
                 + "sub-test001\tn/a\tT2w\tduplicate\tMIT\n")
    lines = m.read_text().splitlines()
    lines = [lines[0] + "\tgrip"] + [f"{line}\t{'7' if 'unf01' not in line else '7' + chr(9) + '99'}"
                                     for line in lines[1:]]
    m.write_text("\n".join(lines) + "\n")
    (bids / "phenotype" / "empty.tsv").write_bytes(b"")
    return {"extra field": f"participants.tsv line {_line(p, 'sub-errsm21')}: more fields than the header's 5",
            "duplicate": f"participants.tsv line {len(p.read_text().splitlines())}: duplicated participant_id "
                         f"sub-test001 (first at line {_line(p, 'sub-test001')})",
            "ragged": f"phenotype/motor.tsv line {_line(m, 'sub-unf01')}: more fields than the header's 4",
            "zero-byte": "phenotype/empty.tsv: empty file (0 bytes, no header)",
            "unknown column": "phenotype/motor.tsv line 1: unknown column 'grip'"}


def test_demo_broken_tables_give_notes_and_the_analysis_goes_on(demo, caplog):
    bids, out = demo
    expected = _break_tables(bids)
    with pytest.raises(pd.errors.ParserError):
        pd.read_csv(bids / "participants.tsv", sep="\t")
    with caplog.at_level(logging.WARNING, logger="basicseg"):
        assert run_group(_config(bids, out, outcome=["LEMS_admission"])) == exits.OK
    page = (out / "group_report.html").read_text()
    for what, note in expected.items():
        assert note in caplog.text, what
        assert note.replace("'", "&#x27;") in page, what
    reg = pd.read_csv(out / "group" / "regressions.tsv", sep="\t").iloc[0]
    assert reg["n"] == 3                          # errsm11, errsm21, test001; unf01's ragged row is dropped
    joined = pd.read_csv(out / "group" / "joined.tsv", sep="\t").set_index("participant_id")
    assert joined.loc["sub-errsm21", "LEMS_admission"] == 27.6 and pd.isna(joined.loc["sub-errsm21", "license"])
    assert joined.loc["sub-test001", "lesion"] == "SIMULATED contusion-like"       # the first row is used


def test_demo_exclusions_of_skipped_and_failed_images(demo):
    bids, out = demo
    assert run_group(_config(bids, out)) == exits.OK
    exc = pd.read_csv(out / "group" / "exclusions.tsv", sep="\t", keep_default_na=False)
    assert list(exc.columns) == EXCLUSION_COLUMNS
    by_source = exc.set_index("source")
    assert by_source.loc[SKIPPED[1], "reason"] == f"skipped at the participant level: {SKIPPED[2]}"
    assert by_source.loc[FAILED[1], "reason"] == f"failed at the participant level: {FAILED[2]}"
    assert by_source.loc[FAILED[1], "participant_id"] == "sub-9418" and by_source.loc[FAILED[1], "session_id"] == "n/a"
    page = (out / "group_report.html").read_text()
    assert f"skipped at the participant level: {SKIPPED[2]}" in page and FAILED[2] in page
    assert "4 processed, 2 not processed" in page
    dice = pd.read_csv(out / "group" / "dice_per_slice.tsv", sep="\t")
    assert set(dice["participant_id"]) == {f"sub-{s}" for s in PROCESSED}        # excluded images are not used
    assert 0.3 < dice["dice"].mean() < 1.0                                        # one voxel off the reference


def test_demo_zero_byte_morphometrics_is_an_exclusion(demo):
    bids, out = demo
    broken = out / "sub-unf01/anat/sub-unf01_morphometrics.tsv"
    broken.write_bytes(b"")
    assert run_group(_config(bids, out)) == exits.OK
    exc = pd.read_csv(out / "group" / "exclusions.tsv", sep="\t")
    row = exc[exc["participant_id"] == "sub-unf01"].iloc[0]
    assert row["reason"] == "morphometrics file sub-unf01/anat/sub-unf01_morphometrics.tsv has no usable row"
    assert "sub-unf01/anat/sub-unf01_morphometrics.tsv: empty file" in (out / "group_report.html").read_text()


@pytest.mark.parametrize("kwargs, words", [
    ({"outcome": ["LEMS_admision"]}, ["--outcome LEMS_admision", "LEMS_admission", "LEMS_discharge"]),
    ({"predictor": ["lesion_volume"]}, ["--predictor lesion_volume", "lesion_volume_mm3"]),
    ({"reference_method": "sc"}, ["--reference-method 'sc'", "basicseg, sct"]),
    ({"compare": {"sct": "/no/such/folder"}}, ["--compare sct=/no/such/folder", "no such folder"]),
    ({"compare": {"basicseg": "/tmp"}}, ["--compare basicseg=/tmp", "choose another name"]),
])
def test_demo_unknown_names_are_usage_errors(demo, tmp_path, caplog, kwargs, words):
    bids, out = demo
    kwargs = {"compare": {"sct": tmp_path}, **kwargs}
    with caplog.at_level(logging.ERROR, logger="basicseg"):
        assert run_group(_config(bids, out, **kwargs)) == exits.USAGE
    for word in words:
        assert word in caplog.text
    assert not (out / "group").exists()                          # nothing is written on a usage error


def test_cli_usage_error_lists_choices_without_traceback(demo, capsys):
    from bidsapp.cli import main

    bids, out = demo
    assert main([str(bids), str(out), "group", "--outcome", "LEMS_admision"]) == exits.USAGE
    err = capsys.readouterr().err
    assert "valid:" in err and "LEMS_admission" in err and "Traceback" not in err


# --- write failures ---------------------------------------------------------------------------------------------

def test_demo_figure_write_failure_exits_74(demo, caplog):
    bids, out = demo
    (out / "group").mkdir()
    (out / "group" / "figures").write_text("a file where the figure folder goes")
    with caplog.at_level(logging.ERROR, logger="basicseg"):
        assert run_group(_config(bids, out)) == exits.IO_ERR
    assert "group figure group/figures/dice_violin.png could not be written" in caplog.text
    assert all(r.exc_info is None for r in caplog.records if r.levelno >= logging.INFO)   # no console traceback
    page = (out / "group_report.html").read_text()            # the report is still written, and says so
    assert "Output errors" in page and "dice_violin.png could not be written" in page
    assert (out / "group" / "table2.tsv").is_file()


def test_demo_disk_full_while_drawing_exits_74(demo, monkeypatch, capsys):
    from matplotlib.figure import Figure

    from bidsapp.cli import main

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Figure, "savefig", full)
    bids, out = demo
    assert main([str(bids), str(out), "group"]) == exits.IO_ERR
    err = capsys.readouterr().err
    assert "No space left on device" in err and "Traceback" not in err
    log_file = next((out / "logs").glob("*.log")).read_text()
    assert "Traceback" in log_file                             # the details are in the log file


def test_demo_report_write_failure_exits_74_and_report_uses_computed_results(demo, caplog):
    bids, out = demo
    (out / "group_report.html").mkdir()                       # the report cannot replace a folder
    assert run_group(_config(bids, out)) == exits.IO_ERR
    assert "the group report could not be written" in caplog.text
    shutil.rmtree(out / "group_report.html")
    shutil.rmtree(out / "group")
    (out / "group").mkdir()
    (out / "group" / "regressions.tsv").mkdir()               # a table fails; the report still has its numbers
    assert run_group(_config(bids, out)) == exits.IO_ERR
    page = (out / "group_report.html").read_text()
    assert "group/regressions.tsv could not be written" in page
    assert "<td>LEMS_admission</td><td>lesion_volume_mm3</td><td>4</td>" in page      # n = 4, from memory


def test_demo_text_column_as_outcome_is_fitted_on_no_points(demo):
    bids, out = demo
    assert run_group(_config(bids, out, outcome=["lesion"])) == exits.OK      # participants.tsv: text only
    reg = pd.read_csv(out / "group" / "regressions.tsv", sep="\t").iloc[0]
    assert reg["n"] == 0 and reg["path"] == "skipped"


def test_demo_corrupt_mask_is_an_exclusion(demo):
    bids, out = demo
    (out / "sub-unf01/anat/sub-unf01_space-orig_label-SC_mask.nii.gz").write_bytes(b"not a NIfTI file")
    assert run_group(_config(bids, out)) == exits.OK
    exc = pd.read_csv(out / "group" / "exclusions.tsv", sep="\t")
    reasons = list(exc.loc[exc["participant_id"] == "sub-unf01", "reason"])
    assert reasons == ["segmentation comparison: no readable basicseg cord mask"]
    dice = pd.read_csv(out / "group" / "dice_per_slice.tsv", sep="\t")
    assert "sub-unf01" not in set(dice["participant_id"]) and len(set(dice["participant_id"])) == 3


def test_unexpected_error_is_one_line_exit_1(demo, monkeypatch, caplog):
    from bidsapp.group import stats

    def broken(*args, **kwargs):
        raise RuntimeError("a bug")

    monkeypatch.setattr(stats, "table2", broken)
    bids, out = demo
    with caplog.at_level(logging.DEBUG, logger="basicseg"):
        assert run_group(_config(bids, out)) == exits.FAILURE
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert [r.getMessage() for r in errors] == ["group level failed: RuntimeError: a bug (traceback in the log file)"]
    assert errors[0].exc_info is None                                   # the console handler prints no traceback
    assert any(r.exc_info for r in caplog.records if r.levelno == logging.DEBUG)   # the log file (DEBUG) has it
