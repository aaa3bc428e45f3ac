#!/usr/bin/env python3
"""Export the shipped Keras networks to ONNX (a build step, never run by the app).

    pip install tf2onnx onnx          # build/dev only: the app needs onnxruntime alone
    python scripts/export_onnx.py [STEM ...] [--check]

Each ``basicseg/networks/weights/<stem>.keras`` is loaded, its BASICseg-3 noise-adaptation layer stripped
(``strip_noise_adaptation``: the inference graph), traced as one tf.function with a free batch size and
converted by tf2onnx to ``<stem>.onnx`` beside it. The export is checked against Keras on random boxes
(max |dp| <= CHECK_ATOL) before ``onnx-exports.json`` records its SHA-256, its source's SHA-256 and the
converter's versions: the app and tests/test_backends.py refuse an export whose .keras changed since.
``--check`` only compares the recorded checksums with the files (exit 1 when an export is stale).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from basicseg.networks.registry import WEIGHTS_DIR, sha256  # noqa: E402
from basicseg.segment.backends import EXPORTS_MANIFEST, INPUT_NAME, exports_manifest  # noqa: E402

OPSET = 17            # onnxruntime >= 1.14 runs it; every op of these U-Nets exists in it
CHECK_ATOL = 1e-5     # export vs Keras on random boxes (the app's agreement test asks 1e-4 on real ones)
CHECK_BOX = 128       # the segmentation networks' input; the localiser takes any multiple of 16
CHECK_BATCH = 4
SEED = 20190701


def stale(stems: list[str]) -> list[str]:
    """Why each recorded export no longer matches its files (empty: all current)."""
    manifest = exports_manifest(WEIGHTS_DIR)
    problems = []
    for stem in stems:
        entry = manifest.get(stem)
        onnx = WEIGHTS_DIR / f"{stem}.onnx"
        if entry is None:
            problems.append(f"{stem}: not exported")
        elif entry["keras_sha256"] != sha256(WEIGHTS_DIR / f"{stem}.keras"):
            problems.append(f"{stem}: {stem}.keras changed since its export")
        elif not onnx.is_file() or entry["onnx_sha256"] != sha256(onnx):
            problems.append(f"{stem}: {onnx.name} missing or changed since its export")
    return problems


def export(stem: str) -> dict:
    """``<stem>.onnx`` from ``<stem>.keras``, checked against Keras; its manifest entry."""
    import keras
    import numpy as np
    import onnx
    import onnxruntime as ort
    import tensorflow as tf
    import tf2onnx

    from basicseg.networks.unet import custom_objects, strip_noise_adaptation

    keras_path, onnx_path = WEIGHTS_DIR / f"{stem}.keras", WEIGHTS_DIR / f"{stem}.onnx"
    model = strip_noise_adaptation(keras.models.load_model(keras_path, custom_objects=custom_objects(),
                                                           compile=False))
    spec = (tf.TensorSpec((None, *model.inputs[0].shape[1:]), tf.float32, name=INPUT_NAME),)
    forward = tf.function(lambda x: model(x, training=False))
    with tempfile.TemporaryDirectory() as tmp:
        written = Path(tmp) / onnx_path.name
        tf2onnx.convert.from_function(forward, input_signature=spec, opset=OPSET, output_path=str(written))
        onnx.checker.check_model(str(written))
        x = np.random.default_rng(SEED).normal(size=(CHECK_BATCH, CHECK_BOX, CHECK_BOX, 1)).astype(np.float32)
        session = ort.InferenceSession(str(written), providers=["CPUExecutionProvider"])
        delta = float(np.abs(session.run(None, {INPUT_NAME: x})[0] - model(x, training=False).numpy()).max())
        if delta > CHECK_ATOL:
            raise SystemExit(f"{stem}: ONNX differs from Keras by {delta:.2e} > {CHECK_ATOL}")
        os.replace(written, onnx_path)
    print(f"{onnx_path.name}: {onnx_path.stat().st_size / 1e6:.1f} MB, max |dp| vs Keras {delta:.1e}")
    return {"onnx": onnx_path.name, "onnx_sha256": sha256(onnx_path), "keras_sha256": sha256(keras_path),
            "opset": OPSET, "max_abs_diff_random": delta,
            "converter": {"tf2onnx": tf2onnx.__version__, "onnx": onnx.__version__,
                          "tensorflow": tf.__version__, "keras": keras.__version__}}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("stems", nargs="*", help="networks to export (default: every shipped .keras)")
    p.add_argument("--check", action="store_true", help="only report stale exports (exit 1 if any)")
    args = p.parse_args(argv)
    stems = args.stems or sorted(path.stem for path in WEIGHTS_DIR.glob("*.keras"))
    if args.check:
        problems = stale(stems)
        print("\n".join(problems) or f"{len(stems)} ONNX export(s) current")
        return 1 if problems else 0
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    manifest = exports_manifest(WEIGHTS_DIR)
    for stem in stems:
        manifest[stem] = export(stem)
    (WEIGHTS_DIR / EXPORTS_MANIFEST).write_text(json.dumps(dict(sorted(manifest.items())), indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
