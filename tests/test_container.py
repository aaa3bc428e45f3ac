"""Build the container image with podman and run the BIDS App in it, the way users run it.

``pytest -m container`` (run by .ci/run).  Needs root and apt-get: it runs
../shared/tools/container-setup.sh (podman, runc and an offline stand-in for python:3.11-slim),
builds the CPU image (no TensorFlow: the shipped ONNX networks on ONNX Runtime), then on the embedded
demo dataset:

* ``--version`` (against the ``version`` file and ``/version``);
* participant level with ``--read-only --network none``, a random non-root UID/GID that the image
  has never heard of (so HOME is not its own), the input bind-mounted read-only and the output
  bind-mounted; podman's default read-only mode gives a tmpfs on /tmp (as Singularity does);
* group level the same way but with ``--read-only-tmpfs=false``: /tmp is read-only too, which is
  what ``docker run --read-only`` (CircleCI, bids-apps) gives.

The build time and the image size are printed (and written to $BASICSEG_METRICS or
/tmp/basicseg-container-metrics.json).
"""
from __future__ import annotations

import json
import os
import random
import subprocess
import time
from pathlib import Path

import pytest
from infra import DEMO, REPO, say, setup_script

pytestmark = pytest.mark.container

VERSION = (REPO / "version").read_text().strip()
BASE = os.environ.get("BASICSEG_BASE_IMAGE", "localhost/python:3.11-slim-local")
# The CPU image: no TensorFlow, ONNX Runtime as the backend. BASICSEG_TF_PACKAGE=tensorflow-cpu==2.21.0 tests
# the image with both backends.
TF_PACKAGE = os.environ.get("BASICSEG_TF_PACKAGE", "")
BACKEND = "onnx" if not TF_PACKAGE else "tensorflow"
MAX_CPU_IMAGE_BYTES = 1_000_000_000     # the TensorFlow-free CPU image's budget on python:3.11-slim ...
SLIM_BASE_BYTES = 130_000_000           # ... whose size (uncompressed) stands for the base here: the offline
                                        # stand-in base of ../shared/tools is larger (Debian's python3 + apt lists)
IMAGE = "localhost/basicseg:test"
METRICS = Path(os.environ.get("BASICSEG_METRICS", "/tmp/basicseg-container-metrics.json"))
PODMAN_RUN = ["podman", "--runtime", "runc", "run", "--rm", "--network", "none", "--read-only"]


def _metric(**values) -> None:
    data = json.loads(METRICS.read_text()) if METRICS.is_file() else {}
    data.update(values)
    METRICS.write_text(json.dumps(data, indent=2) + "\n")


def _run(cmd, timeout, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)


@pytest.fixture(scope="module")
def image(request):
    setup = setup_script("container-setup.sh", "podman", "container")
    METRICS.unlink(missing_ok=True)

    t0 = time.monotonic()
    proc = _run(["bash", str(setup)], timeout=900)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    setup_s = time.monotonic() - t0

    created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    t0 = time.monotonic()
    # --label as well as the build arg: buildah 1.28 reuses a cached LABEL step even when the
    # build arg in it changed (docker does not), which would leave a stale creation date
    proc = _run(["podman", "build", "--isolation", "chroot",
                 "--build-arg", f"BASE_IMAGE={BASE}", "--build-arg", f"TF_PACKAGE={TF_PACKAGE}",
                 "--build-arg", f"BACKEND={BACKEND}",
                 "--build-arg", f"VERSION={VERSION}", "--build-arg", f"BUILD_DATE={created}",
                 "--label", f"org.opencontainers.image.created={created}",
                 "-t", IMAGE, str(REPO)], timeout=3600)
    build_s = time.monotonic() - t0
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-8000:]
    size = int(_run(["podman", "image", "inspect", "--format", "{{.Size}}", IMAGE], 60).stdout)
    cached = proc.stdout.count("Using cache")
    say(request, f"\n[container] setup {setup_s:.0f} s, build {build_s:.0f} s "
                  f"({cached} cached steps), image {size / 1e9:.2f} GB ({TF_PACKAGE or 'no TensorFlow'})")
    _metric(setup_s=round(setup_s, 1), build_s=round(build_s, 1), cached_steps=cached,
            image_bytes=size, tf_package=TF_PACKAGE)
    return IMAGE


@pytest.fixture(scope="module")
def ids():
    """A UID/GID unknown to the image (no passwd entry, no home)."""
    rng = random.Random()
    return rng.randint(20000, 60000), rng.randint(20000, 60000)


@pytest.fixture(scope="module")
def out_dir(tmp_path_factory, ids):
    root = tmp_path_factory.mktemp("container")
    out = root / "out"
    out.mkdir()
    os.chown(out, *ids)           # the user's own output folder, as on a real host
    return out


def _podman(image, ids, args, *, out_dir=None, extra=(), timeout=1800):
    cmd = [*PODMAN_RUN, "--user", f"{ids[0]}:{ids[1]}", *extra,
           "-v", f"{DEMO}:/data:ro"]
    if out_dir is not None:
        cmd += ["-v", f"{out_dir}:/out"]
    return _run([*cmd, image, *args], timeout=timeout)


def test_image_metadata(image):
    fmt = "{{json .Config.Labels}}"
    labels = json.loads(_run(["podman", "image", "inspect", "--format", fmt, image], 60).stdout)
    assert labels["org.opencontainers.image.version"] == VERSION
    assert labels["org.opencontainers.image.created"] not in ("", "unknown")
    for key in ("title", "description", "source", "licenses", "created"):
        assert labels.get(f"org.opencontainers.image.{key}"), key
    user = _run(["podman", "image", "inspect", "--format", "{{.Config.User}}", image], 60).stdout.strip()
    assert user and user not in ("root", "0"), "the image must not default to root"


def test_cpu_image_is_small_and_free_of_tensorflow(image, ids):
    if TF_PACKAGE:
        pytest.skip(f"built with {TF_PACKAGE}")
    size = int(_run(["podman", "image", "inspect", "--format", "{{.Size}}", image], 60).stdout)
    base = int(_run(["podman", "image", "inspect", "--format", "{{.Size}}", BASE], 60).stdout)
    ours = size - base
    assert ours + SLIM_BASE_BYTES <= MAX_CPU_IMAGE_BYTES, \
        f"CPU image {size / 1e9:.2f} GB, of which {ours / 1e9:.2f} GB above the base image"
    probe = _podman(image, ids, ["-c", "import importlib.util as u; print(u.find_spec('tensorflow') is None, "
                                       "u.find_spec('onnxruntime') is not None)"],
                    extra=["--entrypoint", "/opt/venv/bin/python3"], timeout=120)
    assert probe.stdout.split() == ["True", "True"], probe.stdout + probe.stderr


def test_version(image, ids, request):
    t0 = time.monotonic()
    proc = _podman(image, ids, ["--version"], timeout=300)
    say(request, f"[container] --version {time.monotonic() - t0:.1f} s")
    assert proc.returncode == 0, proc.stderr
    assert VERSION in proc.stdout + proc.stderr
    cat = _run([*PODMAN_RUN, "--entrypoint", "cat", image, "/version"], 60)
    assert cat.stdout.strip() == VERSION


def test_no_build_tools_and_no_pip_cache(image):
    proc = _run([*PODMAN_RUN, "--entrypoint", "sh", image, "-c",
                 "command -v gcc cc g++ make; ls /root/.cache /tmp/src 2>/dev/null; true"], 60)
    assert proc.stdout.strip() == "", f"left in the image: {proc.stdout}"


def _t2w_inputs():
    import nibabel as nib  # noqa: F401  (fail early and clearly if the test env lacks it)
    return sorted(p for p in DEMO.glob("sub-*/**/anat/*_T2w.nii*"))


def test_participant_read_only_foreign_uid(image, ids, out_dir, request):
    t0 = time.monotonic()
    proc = _podman(image, ids, ["/data", "/out", "participant", "--nprocs", "2"], out_dir=out_dir)
    elapsed = time.monotonic() - t0
    say(request, f"[container] participant level (all demo participants) {elapsed:.0f} s")
    _metric(participant_s=round(elapsed, 1))
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-8000:]

    import nibabel as nib
    desc = json.loads((out_dir / "dataset_description.json").read_text())
    assert desc["DatasetType"] == "derivative"
    generated = desc["GeneratedBy"][0]
    assert generated["Name"] == "basicseg" and generated["Version"] == VERSION
    assert generated.get("Container", {}).get("Tag") == f"bids/basicseg:{VERSION}"

    inputs = _t2w_inputs()
    assert inputs, "the demo dataset has no T2w image"
    for src in inputs:
        rel = src.relative_to(DEMO)
        stem = src.name.split(".nii")[0].removesuffix("_T2w")
        mask = out_dir / rel.parent / f"{stem}_space-orig_label-SC_mask.nii.gz"
        assert mask.is_file(), f"no cord mask for {rel}"
        assert mask.with_name(mask.name.replace(".nii.gz", ".json")).is_file()
        ref, seg = nib.load(src), nib.load(mask)
        assert seg.shape == ref.shape[:3], rel
        assert abs(seg.affine - ref.affine).max() < 1e-4, rel
        assert seg.get_fdata().any(), f"empty cord mask for {rel}"
    subjects = sorted({src.relative_to(DEMO).parts[0] for src in inputs})
    for sub in subjects:
        assert (out_dir / f"{sub}.html").is_file(), f"no report for {sub}"
        assert list((out_dir / sub / "figures").glob("*.png")), f"no QC figures for {sub}"
    _check_ownership_and_modes(out_dir, ids)


def _check_ownership_and_modes(out_dir: Path, ids) -> None:
    # everything was written by the foreign UID: the container ran as that user
    owners = {p.stat().st_uid for p in out_dir.rglob("*")}
    assert owners == {ids[0]}, owners
    # and is readable by the group and others (umask 022 in the container), as any file a
    # colleague or the BIDS validator run by another account must read
    private = [str(p.relative_to(out_dir)) for p in out_dir.rglob("*")
               if p.is_file() and (p.stat().st_mode & 0o044) != 0o044]
    assert not private, f"files not readable by group/others: {private}"


def test_participant_docker_read_only_with_work_dir(image, ids, tmp_path_factory, request):
    """The CircleCI run: `docker run --read-only` (no tmpfs anywhere), a bind-mounted work dir."""
    root = tmp_path_factory.mktemp("docker-like")
    out, work = root / "out", root / "work"
    for folder in (out, work):
        folder.mkdir()
        os.chown(folder, *ids)
    src = _t2w_inputs()[0]
    sub = src.relative_to(DEMO).parts[0]
    t0 = time.monotonic()
    proc = _podman(image, ids, ["/data", "/out", "participant", "--participant-label", sub,
                                "--work-dir", "/work", "--nprocs", "2"], out_dir=out,
                   extra=["--read-only-tmpfs=false", "-v", f"{work}:/work"])
    say(request, f"[container] participant {sub}, docker-style read-only {time.monotonic() - t0:.0f} s")
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-8000:]
    rel = src.relative_to(DEMO)
    stem = src.name.split(".nii")[0].removesuffix("_T2w")
    assert (out / rel.parent / f"{stem}_space-orig_label-SC_mask.nii.gz").is_file()
    assert (out / f"{sub}.html").is_file()
    assert list((out / sub / "figures").glob("*.png")), "QC figures need a writable matplotlib cache"
    _check_ownership_and_modes(out, ids)


def test_group_read_only_without_tmpfs(image, ids, out_dir, request):
    """docker run --read-only semantics: no writable /tmp, /var/tmp or HOME anywhere."""
    if not (out_dir / "dataset_description.json").is_file():
        pytest.skip("participant level did not run")
    assert not (out_dir / "group").exists()
    t0 = time.monotonic()
    proc = _podman(image, ids, ["/data", "/out", "group", "--nprocs", "2"], out_dir=out_dir,
                   extra=["--read-only-tmpfs=false"])
    elapsed = time.monotonic() - t0
    say(request, f"[container] group level {elapsed:.0f} s")
    _metric(group_s=round(elapsed, 1))
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-8000:]
    group = out_dir / "group"
    assert group.is_dir(), sorted(p.name for p in out_dir.iterdir())
    reports = list(out_dir.glob("group*.html")) + list(group.glob("*.html"))
    assert reports, f"no group report in {sorted(p.name for p in out_dir.iterdir())}"
    assert reports[0].stat().st_size > 1000
    assert list(group.glob("*.tsv")), "no group table"
    assert list((group / "figures").glob("*.png")), "group figures need a writable matplotlib cache"
    leftovers = [p.name for p in out_dir.iterdir() if p.name.startswith(".basicseg-tmp")]
    assert not leftovers, f"temporary folders left in the output: {leftovers}"
    _check_ownership_and_modes(out_dir, ids)
