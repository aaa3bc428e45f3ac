"""The shipped 2D AMU7T atlas and its mapping onto axial slices (basicseg.atlas)."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from basicseg.atlas import TRACT_GROUPS, load_atlas, map_atlas
from basicseg.atlas import register
from basicseg.atlas.template import DATA, NO_LABEL
from basicseg.segment.load import load_axial, load_mask

REPO = Path(__file__).resolve().parent.parent
DEMO = REPO / "demo" / "ds-demo"
DEMO_IMAGE = DEMO / "sub-9418" / "anat" / "sub-9418_run-1_T2starw.nii.gz"
DEMO_CORD = DEMO / "derivatives" / "labels" / "sub-9418" / "anat" / "sub-9418_run-1_T2starw_seg-manual.nii.gz"
SHARED_CANDIDATES = [Path(os.environ.get("BASICSEG_SHARED", REPO.parent / "shared")) / "data" / "spine-public",
                     Path("/work/shared/data/spine-public")]


def shared_root() -> Path:
    for p in SHARED_CANDIDATES:
        if (p / "derivatives" / "labels" / "sub-9584").is_dir():
            return p
    pytest.skip(f"manual grey-matter masks need ../shared/data/spine-public (not in {SHARED_CANDIDATES[0]}); "
                "the demo has the cord mask of sub-9418 but no GM mask")


@pytest.fixture(scope="module")
def demo_map():
    vol = load_axial(DEMO_IMAGE)
    cord = load_mask(DEMO_CORD, vol)
    return vol, cord, map_atlas(cord, vol.zooms)


def test_shipped_atlas_is_small_and_licensed():
    atlas = load_atlas()
    assert DATA.stat().st_size < 2_000_000
    assert (DATA.parent / "LICENSE.AMU7T").read_text().startswith("MIT License")
    assert "c9f69954f4bf00f481ced5ef5e37ad55b41c73ec" in (DATA.parent / "_provenance.tsv").read_text()
    assert atlas.level_names == ("C1", "C2", "C3", "C4", "C5", "C6", "C7", "mean")
    assert atlas.cord.shape == atlas.gm.shape == atlas.labels.shape == (8, 96, 96)
    assert atlas.pixel_mm == pytest.approx(0.176, abs=1e-3)
    area = (atlas.cord >= 0.5).sum(axis=(1, 2)) * atlas.pixel_mm ** 2
    assert np.all((area > 50) & (area < 95))            # cervical cord CSA in mm^2
    gm_share = (atlas.gm >= 0.5).sum(axis=(1, 2)) / (atlas.cord >= 0.5).sum(axis=(1, 2))
    assert np.all((gm_share > 0.08) & (gm_share < 0.25))
    assert atlas.label_names[4] == "WM_Left_lateral-corticospinal"


def test_atlas_laterality_is_ras():
    """Left-sided tracts lie at lower axis-0 index (RAS: index increases toward the right), dorsal
    columns posterior (low axis-1 index) to the ventral funiculi."""
    atlas = load_atlas()
    lab = atlas.labels[atlas.level_index("mean")]
    centre = lambda ids: np.argwhere(np.isin(lab, ids)).mean(axis=0)
    assert centre(TRACT_GROUPS["lcst_left"])[0] < 48 - 10 < 48 + 10 < centre(TRACT_GROUPS["lcst_right"])[0]
    assert centre(TRACT_GROUPS["dorsal_columns"])[1] < centre(TRACT_GROUPS["ventral_funiculi"])[1] - 15


def test_registration_recovers_a_known_affine():
    """The mean template's cord and GM resampled through a known affine onto a 0.5 mm grid: the fit
    maps the GM back with Dice >= 0.85 against the truth (the coarse grid limits it)."""
    atlas = load_atlas()
    m = atlas.level_index("mean")
    theta, scale = np.deg2rad(12), np.array([[1.15, 0.0], [0.0, 0.9]])
    A = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]]) @ scale
    truth = register.SliceTransform(A, np.array([16.0, 15.0]), np.array([8.5, 8.2]))
    cord = register.warp_to_image(atlas.cord[m], atlas.pixel_mm, truth, (64, 60), (0.5, 0.5)) >= 0.5
    gm_true = register.warp_to_image(atlas.gm[m], atlas.pixel_mm, truth, (64, 60), (0.5, 0.5)) >= 0.5
    fitted = map_atlas(cord[:, :, None], (0.5, 0.5, 3.0), level="mean")
    gm = fitted.gm[:, :, 0]
    assert fitted.fit_dice[0] > 0.90      # soft Dice: the template cord is a probability, not binary
    assert 2 * (gm & gm_true).sum() / (gm.sum() + gm_true.sum()) >= 0.85


def test_demo_atlas_on_every_slice(demo_map):
    vol, cord, mapped = demo_map
    assert mapped.gm_prob.shape == cord.shape == vol.data.shape
    assert not (mapped.gm & ~cord).any() and not ((mapped.labels != NO_LABEL) & ~cord).any()
    for k in range(cord.shape[2]):
        share = mapped.gm[:, :, k].sum() / cord[:, :, k].sum()
        assert 0.08 < share < 0.30, (k, share)
        assert mapped.fit_dice[k] > 0.85
        assert mapped.levels[k] in load_atlas().level_names
        labelled = (mapped.labels[:, :, k] != NO_LABEL).sum() / cord[:, :, k].sum()
        assert labelled > 0.9
    # laterality survives the warp into the image grid (canonical RAS: right = higher axis-0 index)
    left = np.argwhere(np.isin(mapped.labels, TRACT_GROUPS["lcst_left"]))[:, 0].mean()
    right = np.argwhere(np.isin(mapped.labels, TRACT_GROUPS["lcst_right"]))[:, 0].mean()
    assert right - left > 6 / vol.zooms[0]         # the two LCSTs lie > 6 mm apart


def test_gm_dice_against_manual_masks():
    """Median per-slice GM Dice >= 0.70 on the manual GM masks (the issue's target); the full table of
    the three images is docs/atlas.md (scripts/validate_atlas.py)."""
    import importlib.util
    root = shared_root()
    spec = importlib.util.spec_from_file_location("validate_atlas", REPO / "scripts" / "validate_atlas.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    scores, _ = mod.per_slice_dice(root, "sub-9604")
    d = np.array(list(scores.values()))
    assert len(d) == 14
    assert np.median(d) >= 0.70
    assert d.min() > 0.5
