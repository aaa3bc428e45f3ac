"""The per-subject HTML report, built from a real image and opened in headless Chromium.

The image is the embedded demo dataset's sub-errsm11 T2w (demo/ds-demo: real anatomy, 40 axial slices)
with its manual cord mask (derivatives/labels), both in closest-canonical orientation, with a synthetic
ellipsoidal lesion inside the cord.  The report is
moved to another folder before it is opened (relative links only), then Chromium must render it with
every <img> loaded (the report's own inline script sets ``data-images-loaded="n/N"``) and print no
console message at all; a screenshot must show a non-trivial page.  A negative control -- a copy of the
page with a missing image and a throwing script -- proves that the checks can fail.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from basicseg.measure.morphometrics import compute_morphometrics, qc_flags
from bidsapp.report.figures import mosaic_slices
from bidsapp.report.subject import ImageReport, write_subject_report

CHROMIUM = shutil.which("chromium")
SUBJECT = "errsm11"
MODELS = {"cord": {"Name": "basicseg1-cord", "Version": "0.1.0", "SHA256": "ab" * 32, "Threshold": 0.5},
          "lesion": {"Name": "basicseg3-lesion", "Version": "0.1.0", "SHA256": "cd" * 32, "Threshold": 0.5}}


def _centroids(cord: np.ndarray) -> np.ndarray:
    counts = cord.sum(axis=(0, 1)).astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.stack([(np.arange(cord.shape[0]) @ cord.sum(axis=1)) / counts,
                         (np.arange(cord.shape[1]) @ cord.sum(axis=0)) / counts], axis=1)


def _images(dataset: Path) -> list[ImageReport]:
    anat_img = nib.as_closest_canonical(nib.load(dataset / "sub-errsm11/anat/sub-errsm11_T2w.nii.gz"))
    seg_img = nib.as_closest_canonical(nib.load(
        dataset / "derivatives/labels/sub-errsm11/anat/sub-errsm11_T2w_seg-manual.nii.gz"))
    anat = np.asarray(anat_img.dataobj, dtype=np.float32)
    cord = np.asarray(seg_img.dataobj) > 0.5
    affine = anat_img.affine
    # a synthetic lesion: an ellipsoid (2.5 x 2 x 7 voxels of 1 mm) at the cord centre of a middle slice
    slices = np.nonzero(cord.any(axis=(0, 1)))[0]
    kc = int(np.median(slices))
    ii, jj = np.nonzero(cord[:, :, kc])
    I, J, K = np.indices(cord.shape)
    lesion = cord & ((((I - ii.mean()) / 2.5) ** 2 + ((J - jj.mean() - 0.8) / 2.0) ** 2
                      + ((K - kc) / 7.0) ** 2) <= 1)
    assert lesion.sum() > 50
    prob = np.where(cord, 0.9, 0.02).astype(np.float32)
    real = ImageReport(name="sub-errsm11_T2w", source="sub-errsm11/anat/sub-errsm11_T2w.nii.gz", anat=anat,
                       affine=affine, cord=cord, lesion=lesion, cord_prob=prob, centerline=_centroids(cord),
                       morphometrics={**compute_morphometrics(cord, lesion, affine), "qc_cord_mean_prob": 0.9},
                       models=MODELS, warnings=qc_flags(cord, lesion, prob))
    # the same anatomy, 40 slices, where "no cord was found" (exercises the fallbacks)
    sub = slice(max(0, kc - 20), kc + 20)
    empty = np.zeros_like(cord[:, :, sub])
    nocord = ImageReport(name="sub-errsm11_acq-nocord_T2w", source="sub-errsm11/anat/sub-errsm11_acq-nocord_T2w.nii.gz",
                         anat=anat[:, :, sub], affine=affine, cord=empty, lesion=empty, cord_prob=None,
                         centerline=None, morphometrics=compute_morphometrics(empty, empty, affine),
                         models=MODELS, warnings=qc_flags(empty, empty))
    failed = ImageReport(name="sub-errsm11_acq-broken_T2w", source="sub-errsm11/anat/sub-errsm11_acq-broken_T2w.nii.gz",
                         anat=None, affine=None, cord=None, lesion=None, cord_prob=None, centerline=None,
                         morphometrics={}, models={}, warnings=[], status="failed",
                         error="BasicsegError: sub-errsm11_acq-broken_T2w.nii.gz: the affine is singular <&>")
    return [real, nocord, failed]


@pytest.fixture(scope="module")
def report(demo_dataset, tmp_path_factory) -> Path:
    built = tmp_path_factory.mktemp("built")
    path = write_subject_report(built, f"sub-{SUBJECT}", _images(demo_dataset))
    assert path == built / f"sub-{SUBJECT}.html"
    # move the whole output folder: the report must still work (relative links only)
    moved = tmp_path_factory.mktemp("moved") / "derivatives"
    shutil.move(str(built), str(moved))
    return moved / f"sub-{SUBJECT}.html"


def _img_sources(page: str) -> list[str]:
    return re.findall(r"<img[^>]*\ssrc='([^']*)'", page)


def test_report_layout_and_relative_links(report):
    page = report.read_text()
    figures = report.parent / f"sub-{SUBJECT}" / "figures"
    pngs = sorted(figures.glob("*.png"))
    assert len(pngs) == 4                                   # axial + sagittal for the two images with data
    sources = _img_sources(page)
    assert len(sources) == 4
    for src in sources:
        assert not src.startswith(("/", "file:", "http")) and ".." not in src
        assert src.startswith(f"sub-{SUBJECT}/figures/")
        assert (report.parent / src).is_file()
    assert "/tmp" not in page and str(report.parent) not in page
    # atomic writes leave no temporary files behind
    assert not [p for p in report.parent.rglob(".*") if p.is_file()]


def test_report_content(report):
    page = report.read_text()
    assert "<h1>sub-errsm11</h1>" in page
    for text in ("Lesion volume", "Dorsal tissue bridge", "Maximal axial damage ratio", "basicseg1-cord",
                 "basicseg3-lesion", "SIMULATED", "Radiological convention"):
        assert text in page, text
    # QC flags are in a visible box; the failed image shows its error (escaped)
    assert "class='box warn'" in page and "<code>no_cord</code> No spinal cord was found" in page
    assert "Processing failed" in page and "singular &lt;&amp;&gt;" in page
    assert "data-images-loaded" in page                      # the load-marking script is part of the report


def test_subject_label_with_or_without_prefix(tmp_path):
    failed = ImageReport(name="sub-x_T2w", source="sub-x/anat/sub-x_T2w.nii.gz", anat=None, affine=None, cord=None,
                         lesion=None, cord_prob=None, centerline=None, status="failed", error="boom")
    assert write_subject_report(tmp_path, "x", [failed]) == tmp_path / "sub-x.html"
    assert write_subject_report(tmp_path, "sub-y", [failed]) == tmp_path / "sub-y.html"
    assert "boom" in (tmp_path / "sub-y.html").read_text()


def test_mosaic_slices():
    cord = np.zeros((4, 4, 100), bool)
    cord[:, :, 10:90] = True
    lesion = np.zeros_like(cord)
    lesion[:, :, 40:46] = True
    chosen = mosaic_slices(cord, lesion, 100)
    assert len(chosen) == 24 and all(10 <= k < 90 for k in chosen)
    assert set(range(40, 46)) <= set(chosen)                 # every lesion slice (fewer than 12) is shown
    assert mosaic_slices(None, None, 5) == [0, 1, 2, 3, 4]


def test_mplconfigdir_fallback_when_home_is_not_writable(tmp_path):
    code = "import os, bidsapp.report.subject; print(os.environ.get('MPLCONFIGDIR'))"
    env = {k: v for k, v in os.environ.items() if k != "MPLCONFIGDIR"}
    out = subprocess.run([sys.executable, "-c", code], env={**env, "HOME": str(tmp_path / "missing")},
                         capture_output=True, text=True, check=True).stdout.strip()
    assert out != "None" and Path(out).is_dir()
    out = subprocess.run([sys.executable, "-c", code], env={**env, "HOME": str(tmp_path)},
                         capture_output=True, text=True, check=True).stdout.strip()
    assert out == "None"                                     # HOME writable: left alone
    out = subprocess.run([sys.executable, "-c", code],
                         env={**env, "HOME": str(tmp_path / "missing"), "MPLCONFIGDIR": str(tmp_path)},
                         capture_output=True, text=True, check=True).stdout.strip()
    assert out == str(tmp_path)                              # set by the user: left alone


# --- headless Chromium ------------------------------------------------------------------------------------------

def _chromium(page: Path, profile: Path, *mode: str) -> subprocess.CompletedProcess:
    args = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0", "--hide-scrollbars",
            "--virtual-time-budget=10000", *mode, page.resolve().as_uri()]
    return subprocess.run(args, capture_output=True, text=True, timeout=180)


def check_in_browser(page: Path, profile: Path) -> dict:
    """Render ``page``; return the number of images, how many loaded, and the console messages."""
    run = _chromium(page, profile, "--dump-dom")
    assert run.returncode == 0, run.stderr[-2000:]
    dom = run.stdout
    match = re.search(r'<html[^>]*data-images-loaded="(\d+)/(\d+)"', dom)
    console = [line for line in run.stderr.splitlines() if ":CONSOLE" in line]
    return {"dom": dom, "loaded": int(match.group(1)) if match else None,
            "images": int(match.group(2)) if match else None,
            "failed": re.findall(r"<img[^>]*data-loaded=\"0\"[^>]*>", dom), "console": console}


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed")
def test_renders_in_headless_chromium(report, tmp_path):
    result = check_in_browser(report, tmp_path / "profile")
    assert "sub-errsm11" in result["dom"] and "Morphometrics" in result["dom"]
    assert result["images"] == len(_img_sources(report.read_text())) == 4
    assert result["loaded"] == result["images"], result["failed"]
    assert not result["failed"]
    assert result["console"] == [], result["console"]


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed")
def test_screenshot_is_not_trivial(report, tmp_path):
    from matplotlib.image import imread

    shot = tmp_path / "page.png"
    run = _chromium(report, tmp_path / "profile", "--window-size=1200,2400", f"--screenshot={shot}")
    assert run.returncode == 0 and shot.is_file(), run.stderr[-2000:]
    assert shot.stat().st_size > 50_000
    pixels = imread(shot)[..., :3]
    assert pixels.shape[0] >= 2000 and pixels.shape[1] >= 1000
    assert pixels.std() > 0.1                                  # text, tables and dark figures, not a blank page
    dark = (pixels.mean(axis=2) < 0.2).mean()                 # the MR figures are mostly dark
    assert 0.05 < dark < 0.8


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed")
def test_browser_check_catches_broken_pages(report, tmp_path):
    """Negative control: a missing image and a console error must be seen by the same check."""
    page = report.read_text().replace(
        "</body>", "<img src='sub-errsm11/figures/missing.png'><script>throw new Error('broken on purpose')</script></body>")
    broken = report.parent / "broken-control.html"
    broken.write_text(page)
    try:
        result = check_in_browser(broken, tmp_path / "profile")
    finally:
        broken.unlink()
    assert result["images"] == 5 and result["loaded"] == 4 and len(result["failed"]) == 1
    assert any("broken on purpose" in line for line in result["console"])
