"""Command line: BIDS App conventions and the exit codes of the BIDS App execution spec (no models needed)."""
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from basicseg import __version__
from bidsapp.cli import main, parse_config
from bidsapp.discovery import discover, read_filter_file
from basicseg.errors import BasicsegError

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def tiny_bids(tmp_path, demo_dataset):
    """A real BIDS layout: two subjects (one with a session), real NIfTI images."""
    root = tmp_path / "bids"
    src = demo_dataset / "sub-unf01/anat/sub-unf01_T2w.nii.gz"
    for rel in ("sub-01/anat/sub-01_T2w.nii.gz", "sub-02/ses-1/anat/sub-02_ses-1_acq-axial_T2w.nii.gz",
                "sub-02/ses-1/anat/sub-02_ses-1_T2starw.nii.gz"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, root / rel)
    (root / "dataset_description.json").write_text(json.dumps({"Name": "t", "BIDSVersion": "1.9.0"}))
    (root / "participants.tsv").write_text("participant_id\nsub-01\nsub-02\n")
    return root


def run_cli(*args):
    return subprocess.run([sys.executable, str(REPO / "run.py"), *map(str, args)], capture_output=True, text=True)


def test_version():
    result = run_cli("--version")
    assert result.returncode == 0 and __version__ in result.stdout


def test_usage_error_is_64():
    assert run_cli().returncode == 64
    assert run_cli("a", "b", "participant", "--no-such-flag").returncode == 64


def test_unknown_level_is_17(tiny_bids, tmp_path):
    assert main([str(tiny_bids), str(tmp_path / "out"), "subject"]) == 17


def test_missing_input_is_66(tmp_path):
    assert main([str(tmp_path / "nope"), str(tmp_path / "out"), "participant"]) == 66


def test_not_bids_is_16(tmp_path):
    (tmp_path / "in").mkdir()
    assert main([str(tmp_path / "in"), str(tmp_path / "out"), "participant"]) == 16


def test_validator_errors_are_16_and_named(tiny_bids, tmp_path, capsys):
    shutil.copyfile(tiny_bids / "sub-01/anat/sub-01_T2w.nii.gz", tiny_bids / "sub-01/anat/sub-01_bogus.nii.gz")
    assert main([str(tiny_bids), str(tmp_path / "out"), "participant"]) == 16
    assert "sub-01_bogus.nii.gz" in capsys.readouterr().err


def test_unwritable_output_is_73(tiny_bids, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert main([str(tiny_bids), str(blocker / "out"), "participant", "--skip-bids-validation"]) == 73


def test_unknown_participant_is_18(tiny_bids, tmp_path, capsys):
    code = main([str(tiny_bids), str(tmp_path / "out"), "participant", "--participant-label", "99",
                 "--skip-bids-validation"])
    assert code == 18 and "sub-99" in capsys.readouterr().err


def test_filter_matching_nothing_is_18(tiny_bids, tmp_path):
    f = tmp_path / "filter.json"
    f.write_text(json.dumps({"t2w": {"acquisition": "sagittal"}}))
    assert main([str(tiny_bids), str(tmp_path / "out"), "participant", "--bids-filter-file", str(f),
                 "--skip_bids_validator"]) == 18


def test_bad_filter_file_is_64(tiny_bids, tmp_path):
    f = tmp_path / "filter.json"
    f.write_text("{not json")
    assert main([str(tiny_bids), str(tmp_path / "out"), "participant", "--bids-filter-file", str(f)]) == 64


def test_labels_with_or_without_prefix_and_both_spellings(tiny_bids, tmp_path):
    for flag in ("--participant-label", "--participant_label"):
        config, _ = parse_config([str(tiny_bids), str(tmp_path), "participant", flag, "sub-02", "01"])
        jobs = discover(tiny_bids, tmp_path / "w", config.participant_label)
        assert sorted(j.subject for j in jobs) == ["01", "02"]


def test_sessions_and_filters(tiny_bids, tmp_path):
    jobs = discover(tiny_bids, tmp_path / "w", session_labels=["ses-1"])
    assert [j.prefix for j in jobs] == ["sub-02_ses-1_acq-axial"]
    assert jobs[0].out_dir(Path("/o")) == Path("/o/sub-02/ses-1/anat")
    f = tmp_path / "f.json"
    f.write_text(json.dumps({"t2w": {"suffix": "T2starw"}}))
    jobs = discover(tiny_bids, tmp_path / "w", filter_file=f)
    assert [j.relpath for j in jobs] == ["sub-02/ses-1/anat/sub-02_ses-1_T2starw.nii.gz"]


def test_pybids_index_leaves_nothing_on_disk(tiny_bids, tmp_path, monkeypatch):
    """Each run indexes in memory: concurrent SLURM tasks share no SQLite file, and no bids_db-*
    folder is left in the work dir or the system temp folder."""
    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    import tempfile
    monkeypatch.setattr(tempfile, "tempdir", None)
    discover(tiny_bids, tmp_path / "w")
    discover(tiny_bids, None)
    assert not list(tmp_path.rglob("bids_db-*"))


def test_filter_file_unknown_key(tmp_path):
    f = tmp_path / "f.json"
    f.write_text(json.dumps({"bold": {}}))
    with pytest.raises(BasicsegError) as err:
        read_filter_file(f)
    assert err.value.code == 64


def test_library_warnings_go_to_the_log_file_not_the_console(tmp_path):
    """A library's warning (nibabel casting, numpy on an empty slice) is kept in the run's log file; the console
    says only what basicseg says."""
    code = ("import sys, warnings; from pathlib import Path; from bidsapp.cli import setup_logging; "
            "log = setup_logging(Path(sys.argv[1]), 0, False); "
            "warnings.warn('probe-warning-321', RuntimeWarning); print(log)")
    result = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "probe-warning-321" not in result.stderr
    assert "probe-warning-321" in Path(result.stdout.strip()).read_text()
