"""hpc/: the SLURM job array and the group job, submitted to a real (local, single-node) cluster.

``pytest -m slurm`` (run by .ci/run).  Needs root and apt-get: it starts the cluster with
../shared/tools/slurm-setup.sh (munge, slurmctld, slurmd from Debian's packages) and stops it
again if it started it.  The jobs use the plain install (the ``basicseg`` of this Python
environment), one participant per array task, and the group level after them
(--dependency=afterok).
"""
from __future__ import annotations

import csv
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from infra import DEMO, REPO, say, setup_script

pytestmark = pytest.mark.slurm

SUBMIT = REPO / "hpc" / "submit.sh"


@pytest.fixture(scope="module")
def cluster():
    setup = setup_script("slurm-setup.sh", "sinfo", "SLURM")
    was_running = shutil.which("sinfo") is not None and subprocess.run(
        ["timeout", "5", "sinfo"], capture_output=True).returncode == 0
    proc = subprocess.run(["bash", str(setup)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    yield
    if not was_running:
        subprocess.run(["bash", str(setup), "stop"], capture_output=True, timeout=60)


def _basicseg_cmd() -> str:
    exe = Path(sys.executable).parent / "basicseg"
    if exe.is_file():
        return str(exe)
    found = shutil.which("basicseg")
    if found is None:
        pytest.fail("basicseg is not installed in this environment (pip install .)")
    return found


def _submit(*args) -> dict[str, str]:
    proc = subprocess.run(["bash", str(SUBMIT), *map(str, args)], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    ids = dict(re.findall(r"^(array_job_id|group_job_id)=(\S+)$", proc.stdout, re.M))
    assert ids.get("array_job_id", "").isdigit(), proc.stdout
    return ids


def _job_states(job_ids) -> dict[str, str]:
    """JobId -> JobState for every job (or array task) that slurmctld still knows of."""
    states = {}
    for job in job_ids:
        proc = subprocess.run(["scontrol", "-o", "show", "job", str(job)], capture_output=True,
                              text=True)
        for line in proc.stdout.splitlines():
            fields = dict(re.findall(r"(\w+)=(\S+)", line))
            key = fields.get("JobId", "?")
            if fields.get("ArrayTaskId"):
                key = f"{fields.get('ArrayJobId')}_{fields['ArrayTaskId']}"
            states[key] = f"{fields.get('JobState')}/{fields.get('Reason')}/{fields.get('ExitCode')}"
    return states


def _wait(job_ids, timeout: float) -> dict[str, str]:
    """Wait until none of the jobs is pending or running; return their last states."""
    deadline = time.monotonic() + timeout
    last = {}
    while time.monotonic() < deadline:
        states = _job_states(job_ids)
        last.update(states)
        if states and not any(s.split("/")[0] in ("PENDING", "RUNNING", "CONFIGURING", "COMPLETING")
                              for s in states.values()):
            return states
        time.sleep(3)
    subprocess.run(["scancel", *map(str, job_ids)])
    pytest.fail(f"jobs still queued or running after {timeout:.0f} s: {last}")


def _table(path: Path) -> list[dict]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh, delimiter="\t"))


def _participants(bids: Path) -> list[str]:
    rows = _table(bids / "participants.tsv")
    return [r["participant_id"].removeprefix("sub-") for r in rows]


def test_array_then_group_on_the_demo(cluster, tmp_path, request):
    out, logs = tmp_path / "out", tmp_path / "slurm"
    t0 = time.monotonic()
    ids = _submit("--cmd", _basicseg_cmd(), "--cpus", 1, "--mem", "3G", "--time", "00:30:00",
                  "--log-dir", logs, DEMO, out)
    states = _wait([ids["array_job_id"], ids["group_job_id"]], timeout=2400)
    elapsed = time.monotonic() - t0
    say(request, f"\n[slurm] array + group on demo/ds-demo: {elapsed:.0f} s; {states}")
    logs_text = "\n".join(f"== {p.name}\n{p.read_text()[-3000:]}" for p in sorted((logs / "logs").glob("*.out")))

    participants = _participants(DEMO)
    rows = _table(logs / "exit_codes.tsv")
    part_rows = {r["participant_id"]: r for r in rows if r["level"] == "participant"}
    assert sorted(part_rows) == sorted(participants), logs_text
    assert [int(r["task_id"]) for r in rows if r["level"] == "participant"] == \
        sorted(int(r["task_id"]) for r in rows if r["level"] == "participant"), "rows sorted by task"
    assert len({r["job_id"] for r in part_rows.values()}) == 1

    import nibabel as nib
    for label in participants:
        row = part_rows[label]
        images = sorted((DEMO / f"sub-{label}").glob("**/anat/*_T2w.nii*"))
        if not images:  # e.g. a participant with only T2*w: nothing to do under the default query
            assert (row["exit_code"], row["status"]) == ("18", "skipped"), (label, row)
            continue
        assert (row["exit_code"], row["status"]) == ("0", "ok"), (label, row, logs_text)
        for src in images:
            rel = src.relative_to(DEMO)
            stem = src.name.split(".nii")[0].removesuffix("_T2w")
            mask = out / rel.parent / f"{stem}_space-orig_label-SC_mask.nii.gz"
            assert mask.is_file(), f"no cord mask for {rel}"
            assert nib.load(mask).shape == nib.load(src).shape[:3]
        assert (out / f"sub-{label}.html").is_file(), f"no report for sub-{label}"

    (group_row,) = [r for r in rows if r["level"] == "group"]
    assert (group_row["exit_code"], group_row["status"]) == ("0", "ok"), logs_text
    assert list(out.glob("group*.html")) + list((out / "group").glob("*.html")), "no group report"
    assert list((out / "group").glob("*.tsv")), "no group table"
    assert (out / "dataset_description.json").is_file()
    private = [str(p.relative_to(out)) for p in out.rglob("*")
               if p.is_file() and (p.stat().st_mode & 0o044) != 0o044]
    assert not private, f"outputs not readable by group/others: {private}"
    # the per-task work dirs on scratch are gone
    job = ids["array_job_id"]
    assert not list(Path(os.environ.get("TMPDIR", "/tmp")).glob(f"basicseg_{job}_*"))


@pytest.fixture()
def toy(tmp_path):
    """Three participants and a stand-in for basicseg: 02 fails, 03 has nothing to process."""
    bids = tmp_path / "bids"
    for sub in ("01", "02", "03"):
        (bids / f"sub-{sub}").mkdir(parents=True)
    (bids / "participants.tsv").write_text("participant_id\tage\nsub-01\t30\nsub-02\t40\nsub-03\t50\n")
    fake = tmp_path / "fake_basicseg"
    fake.write_text("""#!/bin/bash
out=$2 level=$3
if [[ $level == participant ]]; then
  label=$5 work=$7 nprocs=$9
  mkdir -p "$out/sub-$label"
  echo "$nprocs $work" > "$out/sub-$label/args"
  [[ $label == 02 ]] && exit 1
  [[ $label == 03 ]] && exit 18
  exit 0
fi
echo group > "$out/group_done"
""")
    fake.chmod(0o755)
    return bids, fake


@pytest.mark.parametrize("dependency", ["afterok", "afterany"])
def test_failures_are_recorded_and_gate_the_group(cluster, toy, tmp_path, dependency):
    bids, fake = toy
    out, logs = tmp_path / f"out-{dependency}", tmp_path / f"slurm-{dependency}"
    ids = _submit("--cmd", fake, "--cpus", 1, "--mem", "200M", "--log-dir", logs,
                  "--group-dependency", dependency, bids, out)
    states = _wait([ids["array_job_id"], ids["group_job_id"]], timeout=300)
    rows = {r["participant_id"]: r for r in _table(logs / "exit_codes.tsv")}
    assert {k: (v["exit_code"], v["status"]) for k, v in rows.items() if k != "n/a"} == {
        "01": ("0", "ok"), "02": ("1", "failed"), "03": ("18", "skipped")}
    array = ids["array_job_id"]
    assert states[f"{array}_2"].startswith("FAILED"), states
    assert states[f"{array}_3"].startswith("COMPLETED"), states   # skipped is not a failure
    nprocs, work = (out / "sub-01" / "args").read_text().split()
    assert nprocs == "1" and not Path(work).exists(), "per-task scratch work dir, removed at the end"
    group_state = states[ids["group_job_id"]]
    if dependency == "afterok":    # a failed participant keeps the group level from running
        assert group_state.startswith("CANCELLED") and "DependencyNeverSatisfied" in group_state
        assert not (out / "group_done").exists()
    else:
        assert group_state.startswith("COMPLETED"), group_state
        assert (out / "group_done").exists()
        assert rows["n/a"]["level"] == "group" and rows["n/a"]["exit_code"] == "0"


def test_participant_label_subset_and_dry_run(toy, tmp_path):
    bids, fake = toy
    proc = subprocess.run(["bash", str(SUBMIT), "--dry-run", "--cmd", str(fake), "--max-parallel", "4",
                           "--participant-label", "sub-03", "01", "--log-dir", str(tmp_path / "l"),
                           str(bids), str(tmp_path / "o")], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "l" / "participants.txt").read_text().split() == ["03", "01"]
    assert "--array=1-2%4" in proc.stdout
    assert "--dependency=afterok:DRYRUN" in proc.stdout
