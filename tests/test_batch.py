"""Batching across images gives what one image at a time gives (the shipped networks, demo images)."""
import numpy as np
import pytest

from basicseg.segment.batch import segment_batch
from basicseg.segment.load import load_axial
from basicseg.segment.pipeline import Models, segment

from conftest import DEMO

IMAGES = ["sub-unf01/anat/sub-unf01_T2w.nii.gz", "sub-9418/anat/sub-9418_run-1_T2starw.nii.gz"]


@pytest.fixture(scope="module")
def models():
    return Models.load("cord-basicseg1", "lesion-basicseg3", "localiser")


def test_batched_equals_one_by_one(models):
    volumes = [load_axial(DEMO / rel) for rel in IMAGES]
    batched = segment_batch(volumes, models)
    for volume, b in zip(volumes, batched):
        one = segment(volume, models)
        assert np.array_equal(one.cord, b.cord) and np.array_equal(one.lesion, b.lesion)
        assert np.abs(one.cord_prob - b.cord_prob).max() < 1e-4
        assert np.allclose(one.centres, b.centres, equal_nan=True)
        assert b.cord.sum() > 100 and set(b.timings) >= {"centreline", "crop", "inference", "postprocess"}


def test_empty_batch(models):
    assert segment_batch([], models) == []
