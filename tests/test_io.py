"""Atomic I/O: files appear whole or not at all, staged files swap together, leftovers are found."""
import json
import os
import socket

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from basicseg import io


def temps(folder):
    return sorted(p.name for p in folder.rglob(".basicseg-tmp*"))


def test_atomic_write_leaves_no_temp_and_keeps_old_file_on_error(tmp_path):
    target = tmp_path / "a" / "x.json"
    io.write_json(target, {"v": 1, "nan": float("nan"), "arr": np.arange(2), "i": np.int64(3)})
    assert json.loads(target.read_text()) == {"v": 1, "nan": None, "arr": [0, 1], "i": 3}
    with pytest.raises(RuntimeError):
        with io.atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed mid-write")
    assert json.loads(target.read_text())["v"] == 1 and temps(tmp_path) == []


def test_transaction_publishes_all_or_nothing(tmp_path):
    old = tmp_path / "m.tsv"
    old.write_text("old\n")
    txn = io.Transaction()
    io.write_tsv(old, pd.DataFrame({"a": [1.0, np.nan]}), txn)
    io.write_text(tmp_path / "n.txt", "new", txn)
    assert old.read_text() == "old\n" and not (tmp_path / "n.txt").exists()   # nothing visible yet
    assert len(temps(tmp_path)) == 2
    txn.commit()
    assert old.read_text() == "a\n1.0\nn/a\n" and (tmp_path / "n.txt").read_text() == "new"
    txn2 = io.Transaction()
    io.write_text(tmp_path / "n.txt", "newer", txn2)
    txn2.abort()
    assert (tmp_path / "n.txt").read_text() == "new" and temps(tmp_path) == []


def test_nifti_keeps_grid_codes_and_units(tmp_path):
    affine = np.diag([0.5, 0.5, 3.0, 1.0])
    affine[:3, 3] = [10, -20, 5]
    like = nib.Nifti1Image(np.zeros((4, 5, 6), np.int16), affine)
    like.header.set_xyzt_units(xyz="micron")
    like.set_qform(affine, code=1)
    path = io.write_nifti(tmp_path / "m.nii.gz", np.ones((4, 5, 6)), like)
    out = nib.load(path)
    assert np.allclose(out.affine, affine) and out.get_data_dtype() == np.uint8
    assert out.header.get_xyzt_units()[0] == "micron" and int(out.header["qform_code"]) == 1


def test_stale_temps_of_dead_processes_only(tmp_path):
    host = socket.gethostname().split(".")[0].replace("-", "_")
    dead = tmp_path / f".basicseg-tmp-{host}-999999-aaaa-x.nii.gz"
    mine = tmp_path / "sub" / f".basicseg-tmp-{host}-{os.getpid()}-bbbb-y.json"
    other_host = tmp_path / ".basicseg-tmp-elsewhere-1-cccc-z.tsv"
    mine.parent.mkdir()
    for p in (dead, mine, other_host):
        p.write_text("")
    assert io.remove_stale_temps(tmp_path) == [dead]
    os.utime(other_host, (0, 0))     # a day-old leftover of another host is no longer in use
    assert io.remove_stale_temps(tmp_path) == [other_host]
    assert mine.exists()


def test_scratch_folder_of_a_dead_run_is_removed_whole(tmp_path):
    host = socket.gethostname().split(".")[0].replace("-", "_")
    dead = tmp_path / f".basicseg-tmp-{host}-999999-scratch"
    (dead / "mpl").mkdir(parents=True)
    (dead / "mpl" / "cache.json").write_text("{}")
    live = tmp_path / io.scratch_name()
    live.mkdir()
    assert io.remove_stale_temps(tmp_path) == [dead]
    assert not dead.exists() and live.exists()
