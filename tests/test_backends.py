"""ONNX Runtime vs TensorFlow: the shipped exports are current, agree with the Keras networks, and an ONNX
participant run never imports TensorFlow (issue #22)."""
import json
import os
import shutil
import subprocess
import sys
from functools import lru_cache

import numpy as np
import pytest

from basicseg.networks.registry import WEIGHTS_DIR, sha256
from basicseg.segment.backends import EXPORTS_MANIFEST, ONNX, TENSORFLOW, exports_manifest
from conftest import DEMO, REPO

PROB_ATOL = 1e-4      # ONNX vs TensorFlow probabilities on real boxes
MIN_DICE = 0.999      # ONNX vs TensorFlow final masks, per image
SHIPPED = sorted(p.stem for p in WEIGHTS_DIR.glob("*.keras"))
DEMO_IMAGES = sorted(DEMO.glob("sub-*/anat/*.nii.gz"))
ONE_SUBJECT = "errsm11"


def dice(a: np.ndarray, b: np.ndarray) -> float:
    total = int(a.sum()) + int(b.sum())
    return 1.0 if total == 0 else 2.0 * int((a & b).sum()) / total


# --- the exports -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("stem", SHIPPED)
def test_every_shipped_network_has_a_current_onnx_export(stem):
    """Fails when a .keras changed without `python scripts/export_onnx.py` (or the .onnx was edited)."""
    entry = exports_manifest(WEIGHTS_DIR).get(stem)
    assert entry is not None, f"{stem} is not in {EXPORTS_MANIFEST}: run scripts/export_onnx.py"
    assert entry["keras_sha256"] == sha256(WEIGHTS_DIR / f"{stem}.keras"), \
        f"{stem}.keras changed since its ONNX export: run scripts/export_onnx.py {stem}"
    assert entry["onnx_sha256"] == sha256(WEIGHTS_DIR / entry["onnx"])


def test_onnx_session_threads_follow_nprocs_and_slurm(monkeypatch):
    from basicseg.segment.backends import OnnxRunner

    path = WEIGHTS_DIR / "cord-basicseg1.onnx"
    assert OnnxRunner(path, nprocs=1)._session.get_session_options().intra_op_num_threads == 1
    monkeypatch.setenv("SLURM_CPUS_PER_TASK", "2")
    assert OnnxRunner(path)._session.get_session_options().intra_op_num_threads == 2


def test_a_stale_or_missing_export_runs_with_tensorflow(tmp_path):
    """A .keras whose recorded source checksum differs (or with no export) is never run as the old graph."""
    from basicseg.segment.infer import Model

    for name in ("cord-basicseg1.keras", "cord-basicseg1.json", "cord-basicseg1.onnx"):
        shutil.copy(WEIGHTS_DIR / name, tmp_path / name)
    path = tmp_path / "cord-basicseg1.keras"
    assert Model(path, ONNX).backend == TENSORFLOW                           # no manifest
    entry = dict(exports_manifest(WEIGHTS_DIR)["cord-basicseg1"])
    (tmp_path / EXPORTS_MANIFEST).write_text(json.dumps({"cord-basicseg1": entry}))
    current = Model(path, ONNX)
    assert current.backend == ONNX and current.provenance()["RunFile"] == "cord-basicseg1.onnx"
    (tmp_path / EXPORTS_MANIFEST).write_text(json.dumps({"cord-basicseg1": {**entry, "keras_sha256": "0" * 64}}))
    assert Model(path, ONNX).backend == TENSORFLOW                           # stale
    (tmp_path / EXPORTS_MANIFEST).write_text(json.dumps({"cord-basicseg1": {**entry, "onnx_sha256": "0" * 64}}))
    assert Model(path, ONNX).backend == TENSORFLOW                           # the .onnx edited since


# --- a participant run without TensorFlow ------------------------------------------------------------------------

RUN_AND_LIST_MODULES = """
import json, sys
from bidsapp.cli import main
code = main(sys.argv[1:])
print(json.dumps({"code": code, "modules": sorted(m for m in sys.modules if m.split(".")[0] in
                                                 ("tensorflow", "keras", "onnxruntime"))}))
"""


def one_subject_copy(root, subject=ONE_SUBJECT):
    """The demo with one subject: what one SLURM array task sees."""
    bids = root / "ds"
    bids.mkdir()
    for item in DEMO.iterdir():
        if item.is_file():
            shutil.copy(item, bids / item.name)
    shutil.copytree(DEMO / f"sub-{subject}", bids / f"sub-{subject}")
    return bids


def test_onnx_participant_run_never_imports_tensorflow(tmp_path):
    bids = one_subject_copy(tmp_path)
    out = tmp_path / "out"
    result = subprocess.run(
        [sys.executable, "-c", RUN_AND_LIST_MODULES, str(bids), str(out), "participant", "--backend", "onnx",
         "--skip-bids-validation", "--nprocs", "1", "-w", str(tmp_path / "work")],
        capture_output=True, text=True, cwd=REPO, timeout=300,
        env={**os.environ, "PYTHONPATH": str(REPO)})
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["code"] == 0
    assert report["modules"] and all(m.startswith("onnxruntime") for m in report["modules"]), report["modules"]
    sidecar = json.loads(next(out.glob(f"sub-{ONE_SUBJECT}/anat/*_label-SC_mask.json")).read_text())
    model = sidecar["Model"]
    assert model["Backend"] == "onnx" and model["Runtime"].startswith("onnxruntime ")
    assert model["RunFile"] == f"{model['File'].removesuffix('.keras')}.onnx"
    assert model["RunSHA256"] == sha256(WEIGHTS_DIR / model["RunFile"])


# --- agreement on the demo ----------------------------------------------------------------------------------------

@lru_cache(maxsize=None)
def demo_boxes() -> np.ndarray:
    """The normalised 128 x 128 boxes on every slice of every demo image, where the localiser puts the cord
    (the library's own centreline -> crop -> normalise steps)."""
    from basicseg.segment.crop import crop_slices
    from basicseg.segment.load import load_axial
    from basicseg.segment.normalise import normalise
    from basicseg.segment.pipeline import Models, find_centreline

    localiser = Models.load("cord-basicseg1", None, "localiser", backend=ONNX)
    boxes = []
    for path in DEMO_IMAGES:
        volume = load_axial(path)
        centres, _ = find_centreline(volume, localiser)
        boxes.append(normalise(crop_slices(volume.data, volume.zooms, centres))[..., None])
    return np.concatenate(boxes).astype(np.float32)


def localiser_inputs_of_demo() -> list[np.ndarray]:
    from basicseg.segment.centerline import localiser_inputs
    from basicseg.segment.load import load_axial

    return [localiser_inputs(load_axial(path))[0] for path in DEMO_IMAGES]


@pytest.mark.slow
@pytest.mark.parametrize("stem", SHIPPED)
def test_onnx_probabilities_match_tensorflow_on_demo_boxes(stem):
    from basicseg.segment.infer import Model

    path = WEIGHTS_DIR / f"{stem}.keras"
    onnx, tf = Model(path, ONNX), Model(path, TENSORFLOW)
    assert onnx.backend == ONNX and tf.backend == TENSORFLOW
    inputs = localiser_inputs_of_demo() if stem == "localiser" else [demo_boxes()]
    delta = max(float(np.abs(onnx.predict(x) - tf.predict(x)).max()) for x in inputs)
    print(f"{stem}: max |dp| ONNX vs TensorFlow {delta:.2e} on {sum(len(x) for x in inputs)} slices")
    assert delta <= PROB_ATOL


@pytest.mark.slow
def test_onnx_masks_match_tensorflow_on_every_demo_image():
    from basicseg.networks.registry import DEFAULT_MODELS
    from basicseg.segment.load import load_axial
    from basicseg.segment.pipeline import Models, segment

    names = DEFAULT_MODELS["cord"], DEFAULT_MODELS["lesion"], DEFAULT_MODELS["localiser"]
    onnx, tf = Models.load(*names, backend=ONNX), Models.load(*names, backend=TENSORFLOW)
    worst = {}
    for path in DEMO_IMAGES:
        volume = load_axial(path)
        a, b = segment(volume, onnx), segment(volume, tf)
        worst[path.name] = min(dice(a.cord, b.cord), dice(a.lesion, b.lesion))
    print("min Dice ONNX vs TensorFlow per image:", json.dumps(worst))
    assert min(worst.values()) >= MIN_DICE, worst
