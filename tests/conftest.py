import os
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared" / "data" / "spine-public"
DEMO = REPO / "demo" / "ds-demo"


@pytest.fixture(scope="session")
def spine_public() -> Path:
    if not SHARED.is_dir():
        pytest.skip(f"needs the curated public MRI of ../shared/data/spine-public ({SHARED} absent); "
                    "a plain clone has only the demo dataset")
    return SHARED


@pytest.fixture(scope="session")
def demo_dataset() -> Path:
    assert DEMO.is_dir(), f"embedded demo dataset missing: {DEMO}"
    return DEMO


@pytest.fixture(scope="session")
def demo_t2star(demo_dataset):
    """(volume, manual cord mask) of the demo's axial T2*w image (sub-9418), canonical voxel order."""
    from basicseg.segment.load import load_axial, load_mask

    anat = "sub-9418/anat/sub-9418_run-1_T2starw"
    vol = load_axial(demo_dataset / f"{anat}.nii.gz")
    return vol, load_mask(demo_dataset / "derivatives" / "labels" / f"{anat}_seg-manual.nii.gz", vol)
