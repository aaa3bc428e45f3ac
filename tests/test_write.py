"""The writer and the manifest on a real demo image with hand-made masks (no network runs)."""
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from basicseg.segment.load import load_axial
from basicseg.segment.pipeline import Segmentation
from bidsapp import manifest, write
from bidsapp.config import Config
from bidsapp.discovery import discover
from bidsapp.participant import ImageResult

from conftest import DEMO


@dataclass
class FakeModel:
    name: str
    threshold: float = 0.5
    min_volume_mm3: float = 20.0
    extent_threshold: float = 0.5
    min_contrast: float | None = 0.1

    def provenance(self):
        return {"Name": self.name, "SHA256": "0" * 64}


@dataclass
class FakeModels:
    cord: FakeModel
    lesion: FakeModel | None
    localiser: None = None

    def provenance(self):
        return {"cord": self.cord.provenance(), "lesion": self.lesion.provenance()}


@pytest.fixture
def case(tmp_path):
    (job,) = discover(DEMO, None, ["unf01"])
    volume = load_axial(job.path)
    cord = np.zeros(volume.data.shape, bool)
    cord[28:36, 28:36, :] = True
    lesion = np.zeros_like(cord)
    lesion[30:33, 30:33, 6:9] = True
    prob = cord.astype(np.float32)
    seg = Segmentation(volume, np.full((volume.n_slices, 2), 32.0), None, prob, prob, cord, lesion)
    result = ImageResult(seg, {"participant_id": "sub-unf01", "status": "ok"}, pd.DataFrame({"slice": [0]}),
                         pd.DataFrame({"label": [1], "volume_mm3": [9.0]}))
    config = Config(DEMO, tmp_path / "out", "participant")
    want = manifest.Expected("ab" * 32, 123, {"cord": "c" * 64}, {"centerline": "auto"})
    return job, result, FakeModels(FakeModel("cord-x"), FakeModel("lesion-y")), config, want


def outputs(config):
    return sorted(p.name for p in Path(config.output_dir).rglob("*") if p.is_file())


def test_write_image_then_manifest(case):
    job, result, models, config, want = case
    written = write.write_image(job, result, models, config, want, previous=None)
    names = outputs(config)
    assert f"{job.prefix}_desc-basicseg_manifest.json" in names
    assert {p.name for p in written} | {f"{job.prefix}_desc-basicseg_manifest.json"} == set(names)
    record = manifest.read(job, config.output_dir)
    assert manifest.stale_reason(record, want, config.output_dir) is None
    mask = nib.load(job.output(config.output_dir, write.SC_MASK))
    assert np.allclose(mask.affine, job_native_affine(job)) and np.asanyarray(mask.dataobj).sum() > 0
    dseg = np.asanyarray(nib.load(job.output(config.output_dir, write.DSEG)).dataobj)
    assert set(np.unique(dseg)) == {0, 1, 2}


def job_native_affine(job):
    return nib.load(job.path).affine


def test_manifest_names_what_is_stale(case):
    job, result, models, config, want = case
    write.write_image(job, result, models, config, want, previous=None)
    record = manifest.read(job, config.output_dir)
    other = manifest.Expected(want.input_sha256, want.input_size, {"cord": "d" * 64}, want.settings)
    assert manifest.stale_reason(record, other, config.output_dir) == "made with other models"
    moved = manifest.Expected("ef" * 32, want.input_size, want.models, want.settings)
    assert "input image has changed" in manifest.stale_reason(record, moved, config.output_dir)
    job.output(config.output_dir, write.LESIONS).unlink()
    assert "missing" in manifest.stale_reason(record, want, config.output_dir)


def test_rewrite_drops_outputs_the_new_set_lacks(case):
    job, result, models, config, want = case
    config.save_probabilities = True
    write.write_image(job, result, models, config, want, previous=None)
    assert job.output(config.output_dir, write.SC_PROB).is_file()
    previous = manifest.read(job, config.output_dir)
    config.save_probabilities = False
    write.write_image(job, result, models, config, want, previous)
    assert not job.output(config.output_dir, write.SC_PROB).exists()
    assert manifest.stale_reason(manifest.read(job, config.output_dir), want, config.output_dir) is None


def test_failure_removes_stale_outputs_and_records_why(case):
    job, result, models, config, want = case
    write.write_image(job, result, models, config, want, previous=None)
    previous = manifest.read(job, config.output_dir)
    write.write_status(job, config, want, "failed", "sub-unf01: broken", previous)
    assert outputs(config) == sorted([f"{job.prefix}_morphometrics.tsv", f"{job.prefix}_desc-basicseg_manifest.json"])
    row = pd.read_csv(job.output(config.output_dir, write.MORPHOMETRICS), sep="\t").iloc[0]
    assert row["status"] == "failed" and row["error"] == "sub-unf01: broken"
    assert "previous attempt failed" in manifest.stale_reason(manifest.read(job, config.output_dir), want,
                                                              config.output_dir)


def test_dataset_level_files_are_created_once(tmp_path):
    out = tmp_path / "o"
    write.write_dataset_description(out, DEMO)
    (out / "README").write_text("edited by the user")
    write.write_dataset_description(out, DEMO)
    assert (out / "README").read_text() == "edited by the user"
    assert (out / "dseg.tsv").read_text().splitlines()[2] == "1\tspinal cord\tSC"
    assert "*_manifest.json" in (out / ".bidsignore").read_text()
