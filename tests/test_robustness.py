"""Robustness: bad inputs and faults built on the fly from the embedded demo dataset.

Every case asserts the exit code, the one-line message naming the file, that the other images were
processed, that no temporary file or traceback is left, and what a rerun does. The bad inputs share
one participant run (each a subject of its own beside a good one); faults (signals, a full disk,
read-only folders, concurrent runs, stale outputs) get runs of their own.
"""
from __future__ import annotations

import gzip
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from conftest import DEMO

pytestmark = pytest.mark.slow
RUN = [sys.executable, str(Path(__file__).resolve().parents[1] / "run.py")]
GOOD = "unf01"      # the demo's smallest image
BASE = DEMO / "sub-unf01" / "anat" / "sub-unf01_T2w.nii.gz"


# --- helpers ------------------------------------------------------------------------------------------------------

def make_dataset(root: Path, subjects=(GOOD,)) -> Path:
    root.mkdir(parents=True)
    shutil.copy(DEMO / "dataset_description.json", root)
    for s in subjects:
        (root / f"sub-{s}" / "anat").mkdir(parents=True)
        shutil.copy(BASE, root / f"sub-{s}" / "anat" / f"sub-{s}_T2w.nii.gz")
    return root


def image(root: Path, subject: str, name: str | None = None) -> Path:
    folder = root / f"sub-{subject}" / "anat"
    folder.mkdir(parents=True, exist_ok=True)
    return folder / (name or f"sub-{subject}_T2w.nii.gz")


def run(bids: Path, out: Path, *args, timeout=600, **kw):
    cmd = RUN + [str(bids), str(out), *(args or ["participant"])]
    if "--skip-bids-validation" not in args and "group" not in args:
        cmd.append("--skip-bids-validation")
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)


def stray(out: Path) -> list[Path]:
    return [p for p in out.rglob("*") if p.name.startswith(".basicseg-tmp")]


def done(out: Path, subject: str) -> bool:
    anat = out / f"sub-{subject}" / "anat"
    manifests = list(anat.glob("*_manifest.json"))
    return bool(manifests) and json.loads(manifests[0].read_text())["status"] == "ok" and \
        any(anat.glob("*_label-SC_mask.nii.gz"))


def status_row(out: Path, subject: str) -> dict:
    import pandas as pd
    (tsv,) = [p for p in (out / f"sub-{subject}" / "anat").glob("*_morphometrics.tsv") if "_desc-" not in p.name]
    return pd.read_csv(tsv, sep="\t").iloc[0].to_dict()


def resave(src: Path, dst: Path, data=None, affine=None, edit=None) -> Path:
    img = nib.load(str(src))
    new = nib.Nifti1Image(np.asanyarray(img.dataobj) if data is None else data,
                          img.affine if affine is None else affine, img.header.copy())
    if edit:
        edit(new)
    nib.save(new, str(dst))
    return dst


# --- bad inputs: one run, one subject per defect --------------------------------------------------------------------

def _corrupt_gzip(path):
    raw = bytearray(gzip.compress(nib.load(str(BASE)).to_bytes()))
    mid = len(raw) // 2
    raw[mid:mid + 64] = bytes(255 - b for b in raw[mid:mid + 64])
    path.write_bytes(bytes(raw))


def _truncated(path):
    path.write_bytes(BASE.read_bytes()[: BASE.stat().st_size // 2])


def _four_d(path):
    data = np.asanyarray(nib.load(str(BASE)).dataobj)
    resave(BASE, path, data=np.stack([data, data, data], axis=-1))


def _no_orientation(path):
    def edit(img):
        img.set_sform(None, code=0)
        img.set_qform(None, code=0)
    resave(BASE, path, edit=edit)


def _sheared(path):
    img = nib.load(str(BASE))
    affine = img.affine.copy()
    affine[0, 1] += 0.4 * np.linalg.norm(affine[:3, 1])
    resave(BASE, path, affine=affine)


def _annexed(path):
    """What a DataLad dataset holds before `datalad get`: a link into the annex, whose object is absent."""
    os.symlink("../../.git/annex/objects/Qx/8f/MD5E-s1--0.nii.gz/MD5E-s1--0.nii.gz", path)


def _complex(path):
    img = nib.load(str(BASE))
    nib.save(nib.Nifti1Image(np.asanyarray(img.dataobj).astype(np.complex64), img.affine), str(path))


def _all_nan(path):
    img = nib.load(str(BASE))
    nib.save(nib.Nifti1Image(np.full(img.shape, np.nan, np.float32), img.affine), str(path))


BAD_INPUTS = {   # subject -> (how to make it, words the message must hold)
    "gzipcrc": (_corrupt_gzip, "corrupt gzip"),
    "truncated": (_truncated, "corrupt gzip"),
    "empty": (lambda p: p.write_bytes(b""), "shorter than a NIfTI header"),
    "annexed": (_annexed, "datalad get"),
    "complex": (_complex, "complex voxel data"),
    "unlocked": (lambda p: p.write_bytes(b"/annex/objects/MD5E-s123--0f.nii.gz\n"), "git-annex pointer"),
    "allnan": (_all_nan, "every voxel is NaN or Inf"),
    "text": (lambda p: p.write_bytes(gzip.compress(b"not an image\n" * 100)), "cannot read as NIfTI"),
    "shorttext": (lambda p: p.write_bytes(gzip.compress(b"not an image\n")), "13 bytes decompressed, shorter"),
    "fourd": (_four_d, "expected a 3D image"),
    "noorient": (_no_orientation, "orientation is unknown"),
    "sheared": (_sheared, "sheared"),
}


@pytest.fixture(scope="module")
def bad_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad")
    bids = make_dataset(root / "bids")
    for subject, (make, _) in BAD_INPUTS.items():
        make(image(bids, subject))
    # two inputs whose outputs would share names
    shutil.copy(BASE, image(bids, "clash"))
    resave(BASE, image(bids, "clash", "sub-clash_T2starw.nii.gz"))
    # non-finite voxels: processed, counted and flagged
    data = np.asanyarray(nib.load(str(BASE)).dataobj).astype(np.float32)
    data[28:33, 28:33, 7:10] = np.inf
    nib.save(nib.Nifti1Image(data, nib.load(str(BASE)).affine), str(image(bids, "nonfinite")))
    # a thick-slice sagittal image: skipped with its reason
    img = nib.load(str(BASE))
    sag = nib.Nifti1Image(np.asanyarray(img.dataobj)[::4], np.diag([4.0, 1.0, 1.0, 1.0]))
    nib.save(sag, str(image(bids, "sagittal")))
    # millimetres given in metres: honoured, same cord as the original
    def metres(new):
        new.header.set_xyzt_units(xyz="meter")
    affine = img.affine.copy()
    affine[:3, :] /= 1000.0
    resave(BASE, image(bids, "metres"), affine=affine, edit=metres)
    # 2 x 2 x 4 mm voxels (an axial stack, in-plane too coarse): processed, flagged outside the validated sizes
    coarse = img.affine.copy()
    for axis, world in enumerate(nib.orientations.io_orientation(coarse)[:, 0]):
        coarse[:3, axis] *= (4.0 if world == 2 else 2.0) / np.linalg.norm(coarse[:3, axis])
    resave(BASE, image(bids, "coarse"), affine=coarse)
    out = root / "out"
    result = run(bids, out, "participant", "--bids-filter-file", str(_filter(root)))
    return bids, out, result


def _filter(root: Path) -> Path:
    path = root / "filter.json"
    path.write_text(json.dumps({"t2w": {"suffix": ["T2w", "T2starw"]}}))
    return path


@pytest.mark.parametrize("subject", sorted(BAD_INPUTS))
def test_bad_input_fails_alone_with_its_reason(bad_run, subject):
    bids, out, result = bad_run
    assert result.returncode == 1, result.stderr[-2000:]
    words = BAD_INPUTS[subject][1]
    lines = [line for line in result.stderr.splitlines() if f"sub-{subject}_T2w" in line and words in line]
    assert lines, f"no message naming sub-{subject} with {words!r}:\n{result.stderr[-3000:]}"
    assert "Traceback" not in result.stderr and "Warning:" not in result.stderr    # libraries' warnings: log file
    assert done(out, GOOD)
    row = status_row(out, subject)
    assert row["status"] == "failed" and words in row["error"]
    assert not list((out / f"sub-{subject}" / "anat").glob("*_mask.nii.gz"))
    crashes = list((out / "logs").glob(f"crash-*-sub-{subject}.txt"))
    assert crashes and "Traceback" in crashes[0].read_text()
    assert not stray(out)


def test_output_name_clash_refuses_both(bad_run):
    _, out, result = bad_run
    for name in ("sub-clash_T2w.nii.gz", "sub-clash_T2starw.nii.gz"):
        assert any(name in line and "same names" in line for line in result.stderr.splitlines()), result.stderr
    assert not list((out / "sub-clash" / "anat").glob("*_mask.nii.gz"))


def test_nonfinite_voxels_are_counted_and_flagged(bad_run):
    _, out, result = bad_run
    assert "75 NaN/Inf voxel(s)" in result.stderr
    row = status_row(out, "nonfinite")
    assert row["status"] == "ok" and row["nonfinite_voxels"] == 75 and "nonfinite_voxels" in row["qc_flags"]


def test_coarse_voxels_are_processed_and_flagged(bad_run):
    _, out, result = bad_run
    row = status_row(out, "coarse")
    assert row["status"] == "ok" and "outside_validated_resolution" in row["qc_flags"].split(";")
    assert "outside_validated_resolution" not in str(status_row(out, GOOD)["qc_flags"])
    assert any("sub-coarse_T2w" in line and "in-plane voxel 2 mm" in line for line in result.stderr.splitlines())


def test_thick_sagittal_is_skipped_with_a_row(bad_run):
    _, out, result = bad_run
    assert any("sub-sagittal" in line and "sagittal" in line for line in result.stderr.splitlines())
    row = status_row(out, "sagittal")
    assert row["status"] == "skipped" and "sagittal" in row["error"]


def test_units_in_metres_are_honoured(bad_run):
    _, out, _ = bad_run
    original, metres = status_row(out, GOOD), status_row(out, "metres")
    assert metres["status"] == "ok"
    assert metres["cord_volume_mm3"] == pytest.approx(original["cord_volume_mm3"], rel=1e-3)
    mask = nib.load(str(next((out / "sub-metres" / "anat").glob("*_label-SC_mask.nii.gz"))))
    assert mask.header.get_xyzt_units()[0] == "meter"


def test_bad_inputs_rerun_retries_only_the_failed(bad_run):
    bids, out, _ = bad_run
    before = {p: p.stat().st_mtime_ns for p in (out / f"sub-{GOOD}" / "anat").iterdir()}
    result = run(bids, out, "participant", "--bids-filter-file", str(_filter(out.parent)))
    assert result.returncode == 1
    assert "sub-unf01_T2w.nii.gz: done in an earlier run, skipped" in result.stderr
    assert "the previous attempt failed" in result.stderr
    assert before == {p: p.stat().st_mtime_ns for p in (out / f"sub-{GOOD}" / "anat").iterdir()}
    assert not stray(out)


# --- command-line and dataset errors --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def small(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("small") / "bids")


@pytest.mark.parametrize("args, code, words", [
    (["participant", "--nprocs", "0"], 64, "must be at least 1"),
    (["participant", "--nprocs", "two"], 64, "whole number"),
    (["sideways"], 17, "unknown analysis level"),
    (["participant", "--participant-label", "nobody"], 18, "not found"),
])
def test_usage_errors(small, tmp_path, args, code, words):
    result = run(small, tmp_path / "out", *args)
    assert result.returncode == code and words in result.stderr and "Traceback" not in result.stderr


def test_unknown_filter_entity_is_a_usage_error(small, tmp_path):
    f = tmp_path / "f.json"
    f.write_text(json.dumps({"t2w": {"acquistion": "axial"}}))
    result = run(small, tmp_path / "out", "participant", "--bids-filter-file", str(f))
    assert result.returncode == 64
    assert "unknown entity acquistion" in result.stderr and "acquisition" in result.stderr
    assert "Traceback" not in result.stderr


def test_missing_input_and_not_bids(tmp_path):
    assert run(tmp_path / "nothing", tmp_path / "out").returncode == 66
    (tmp_path / "plain").mkdir()
    result = run(tmp_path / "plain", tmp_path / "out")
    assert result.returncode == 16 and "dataset_description.json" in result.stderr


def test_output_cannot_be_created(small, tmp_path):
    (tmp_path / "file").write_text("")
    result = run(small, tmp_path / "file" / "out")
    assert result.returncode == 73 and "cannot write" in result.stderr


def test_output_inside_the_input_is_refused_every_time(tmp_path):
    bids = make_dataset(tmp_path / "bids")
    for _ in range(2):
        result = run(bids, bids / "myout")
        assert result.returncode == 64 and "inside bids_dir" in result.stderr
    assert not (bids / "myout").exists()


def test_output_in_input_derivatives_is_fine(tmp_path):
    bids = make_dataset(tmp_path / "bids")
    out = bids / "derivatives" / "basicseg"
    assert run(bids, out, "participant", "--skip-bids-validation").returncode == 0
    result = subprocess.run(RUN + [str(bids), str(out), "participant"], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]


def _as_nobody() -> list[str]:
    """The prefix that runs a command as uid 65534, or skip when this Python cannot run as that user."""
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root and setpriv to run the app as another uid")
    prefix = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
    probe = subprocess.run(prefix + [sys.executable, "-c", "import bidsapp.cli"], capture_output=True,
                           cwd="/", env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])})
    if probe.returncode:
        pytest.skip("this Python's packages are not readable by uid 65534 (the container test covers a non-root UID)")
    return prefix


def test_unreadable_input_for_the_app_user(tmp_path):
    prefix = _as_nobody()
    bids = make_dataset(tmp_path / "bids")
    os.chmod(bids, 0o700)
    out = tmp_path / "out"
    out.mkdir()
    os.chmod(out, 0o777)
    os.chmod(tmp_path, 0o755)
    result = subprocess.run(prefix + RUN +
                            [str(bids), str(out), "participant", "--skip-bids-validation"],
                            capture_output=True, text=True, timeout=300, env={**os.environ, "HOME": "/nonexistent"})
    assert result.returncode == 66, result.stderr[-2000:]
    assert "cannot be read" in result.stderr and "Traceback" not in result.stderr


# --- stale and mixed outputs ----------------------------------------------------------------------------------------

@pytest.fixture
def processed(tmp_path):
    bids = make_dataset(tmp_path / "bids", subjects=(GOOD, "two"))
    out = tmp_path / "out"
    assert run(bids, out).returncode == 0
    return bids, out


def test_dropped_input_keeps_its_outputs(processed):
    """A DataLad file dropped after it was processed (a link to absent content) keeps its outputs on a rerun for
    other subjects; --overwrite cannot redo it, fails it, and still keeps them."""
    bids, out = processed
    src = image(bids, "two")
    src.unlink()
    _annexed(src)
    outputs = sorted(p for p in (out / "sub-two" / "anat").iterdir())
    before = {p: p.read_bytes() for p in outputs}
    result = run(bids, out)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "datalad get" in result.stderr and "outputs of its earlier run are kept" in result.stderr
    assert {p: p.read_bytes() for p in outputs} == before and done(out, "two")
    result = run(bids, out, "participant", "--overwrite")
    assert result.returncode == 1 and "outputs of its previous run are kept unchanged" in result.stderr
    assert {p: p.read_bytes() for p in outputs} == before and done(out, GOOD)


def test_changed_models_redo_the_image(processed):
    bids, out = processed
    result = run(bids, out, "participant", "--lesion-model", "lesion-basicseg1")
    assert result.returncode == 0 and "made with other models" in result.stderr
    assert json.loads(next((out / f"sub-{GOOD}" / "anat").glob("*_label-lesion_mask.json")).read_text()
                      )["Model"]["Name"] == "lesion-basicseg1"


def test_changed_input_redoes_the_image(processed):
    bids, out = processed
    path = image(bids, "two")
    data = np.asanyarray(nib.load(str(path)).dataobj)
    resave(BASE, path, data=data[:, :, ::-1].copy())
    result = run(bids, out)
    assert result.returncode == 0 and "sub-two_T2w.nii.gz: redone: the input image has changed" in result.stderr
    assert f"sub-{GOOD}_T2w.nii.gz: done in an earlier run" in result.stderr


def test_deleted_or_edited_output_redoes_the_image(processed):
    bids, out = processed
    next((out / f"sub-{GOOD}" / "anat").glob("*_label-lesion_mask.nii.gz")).unlink()
    tsv = next((out / "sub-two" / "anat").glob("*_desc-perslice_morphometrics.tsv"))
    text = tsv.read_text()
    tsv.write_text(text[:-2] + ("0" if text[-2] != "0" else "1") + text[-1])     # same size, other content
    result = run(bids, out)
    assert result.returncode == 0
    assert "is missing or incomplete" in result.stderr and "was changed after it was written" in result.stderr
    assert done(out, GOOD) and done(out, "two")


def test_failed_overwrite_leaves_no_mixed_outputs(processed):
    bids, out = processed
    _corrupt_gzip(image(bids, "two"))
    result = run(bids, out, "participant", "--overwrite")
    assert result.returncode == 1 and "corrupt gzip" in result.stderr
    assert not list((out / "sub-two" / "anat").glob("*_mask.nii.gz"))
    assert status_row(out, "two")["status"] == "failed"
    again = run(bids, out)
    assert again.returncode == 1 and "the previous attempt failed" in again.stderr


def test_missing_manifest_redoes(processed):
    bids, out = processed
    next((out / "sub-two" / "anat").glob("*_manifest.json")).unlink()
    result = run(bids, out)
    assert result.returncode == 0 and "no manifest" in result.stderr and done(out, "two")


def test_leftover_temp_files_of_dead_runs_are_removed(processed):
    bids, out = processed
    dead = out / "sub-two" / "anat" / ".basicseg-tmp-thishost-999999-abcd1234-sub-two_T2w.nii.gz"
    dead = dead.with_name(dead.name.replace("thishost", socket.gethostname().split(".")[0].replace("-", "_")))
    dead.write_bytes(b"partial")
    result = run(bids, out)
    assert result.returncode == 0 and "left by killed runs" in result.stderr
    assert not stray(out)


# --- signals, full disks, read-only folders, concurrency ------------------------------------------------------------

def _start(bids, out, *args):
    cmd = RUN + [str(bids), str(out), "participant", "--skip-bids-validation", *args]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for_first_image(out: Path, proc, timeout=300):
    t0 = time.time()
    while time.time() - t0 < timeout:
        if list(out.glob("sub-*/anat/*_manifest.json")):
            return
        if proc.poll() is not None:
            pytest.fail(f"the run ended before its first image: {proc.stderr.read()[-2000:]}")
        time.sleep(0.05)
    pytest.fail("no image finished in time")


@pytest.mark.parametrize("signum, code, name", [(signal.SIGTERM, 143, "SIGTERM"), (signal.SIGINT, 130, "SIGINT")])
def test_signal_stops_cleanly_and_rerun_completes(tmp_path, signum, code, name):
    bids = make_dataset(tmp_path / "bids", subjects=[f"s{i}" for i in range(5)])
    out = tmp_path / "out"
    proc = _start(bids, out)
    _wait_for_first_image(out, proc)
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == code, err[-2000:]
    assert f"interrupted by {name}" in err and "Traceback" not in err
    assert not stray(out)
    rerun = run(bids, out)
    assert rerun.returncode == 0 and all(done(out, f"s{i}") for i in range(5))


def test_kill_9_then_rerun_completes(tmp_path):
    bids = make_dataset(tmp_path / "bids", subjects=[f"s{i}" for i in range(4)])
    out = tmp_path / "out"
    proc = _start(bids, out)
    _wait_for_first_image(out, proc)
    proc.kill()
    proc.communicate(timeout=60)
    rerun = run(bids, out)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert all(done(out, f"s{i}") for i in range(4)) and not stray(out)


def _mount(*args) -> bool:
    if os.geteuid() != 0 or shutil.which("mount") is None:
        return False
    return subprocess.run(["mount", *args], capture_output=True).returncode == 0


def test_read_only_subject_folder_fails_that_subject_only(tmp_path):
    bids = make_dataset(tmp_path / "bids", subjects=(GOOD, "two"))
    out = tmp_path / "out"
    locked = out / "sub-two" / "anat"
    locked.mkdir(parents=True)
    if not _mount("--bind", str(locked), str(locked)) or not _mount("-o", "remount,bind,ro", str(locked)):
        subprocess.run(["umount", str(locked)], capture_output=True)
        pytest.skip("cannot bind-mount read-only here (needs root and mount rights)")
    try:
        result = run(bids, out)
    finally:
        subprocess.run(["umount", str(locked)], capture_output=True)
    assert result.returncode == 74, result.stderr[-2000:]
    assert any("sub-two_T2w.nii.gz: cannot write its outputs" in line for line in result.stderr.splitlines())
    assert "Traceback" not in result.stderr and done(out, GOOD) and (out / f"sub-{GOOD}.html").is_file()
    assert not stray(out)
    assert run(bids, out).returncode == 0 and done(out, "two")


def test_full_disk_is_an_io_error_and_rerun_repairs(tmp_path):
    bids = make_dataset(tmp_path / "bids", subjects=(GOOD, "two"))
    out = tmp_path / "full"
    out.mkdir()
    if not _mount("-t", "tmpfs", "-o", "size=48k", "tmpfs", str(out)):
        pytest.skip("cannot mount a small tmpfs here (needs root and mount rights)")
    try:
        result = run(bids, out)
        assert result.returncode == 74, result.stderr[-2000:]
        assert "No space left on device" in result.stderr and "Traceback" not in result.stderr
        assert not stray(out)
        subprocess.run(["mount", "-o", "remount,size=64m", str(out)], check=True)
        again = run(bids, out)
        assert again.returncode == 0, again.stderr[-2000:]
        assert done(out, GOOD) and done(out, "two") and (out / "sub-two.html").is_file()
    finally:
        subprocess.run(["umount", str(out)], capture_output=True)


def test_concurrent_runs_into_one_output(tmp_path):
    bids = make_dataset(tmp_path / "bids", subjects=(GOOD, "two", "three"))
    out = tmp_path / "out"
    procs = [_start(bids, out, "--participant-label", s) for s in (GOOD, "two", "three")]
    for proc in procs:
        _, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err[-2000:]
    assert all(done(out, s) for s in (GOOD, "two", "three")) and not stray(out)
    assert json.loads((out / "dataset_description.json").read_text())["DatasetType"] == "derivative"


# --- the group level on what the participant level left ------------------------------------------------------------

def test_group_lists_failed_and_skipped_images_and_survives_a_malformed_table(bad_run):
    import pandas as pd
    bids, out, _ = bad_run
    (bids / "participants.tsv").write_text("participant_id\tage\nsub-unf01\t40\nsub-metres\t41\textra\n"
                                           "sub-nonfinite\t\n")
    result = run(bids, out, "group")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    exclusions = pd.read_csv(out / "group" / "exclusions.tsv", sep="\t")
    reasons = dict(zip(exclusions["participant_id"], exclusions["reason"]))
    assert "sagittal" in reasons["sub-sagittal"] and "corrupt gzip" in reasons["sub-gzipcrc"]
    assert "same names" in reasons["sub-clash"]
    report = (out / "group_report.html").read_text()
    assert "sub-sagittal" in report and "participants.tsv" in report and "line 3" in report
