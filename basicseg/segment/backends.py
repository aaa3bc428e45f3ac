"""Backends: what runs a network's forward pass at inference (ONNX Runtime or TensorFlow).

A backend opens the network stored as ``<stem>.keras`` and returns a *runner*: a callable on float32
batches (n, h, w, 1) -> (n, h, w, 1) that also names the file it actually runs and that file's SHA-256
(for the sidecars). Only the backend that is used gets imported: an ONNX Runtime run never imports
TensorFlow or Keras, which is most of a one-image job's start-up (issue #22).

The ``.onnx`` files are exported at build time from the ``.keras`` files by ``scripts/export_onnx.py``;
``EXPORTS_MANIFEST`` beside them records each export's SHA-256 and its source's, so a ``.keras`` that
changed after its export is never run as the old ONNX graph (it falls back to TensorFlow, with a warning).
"""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Callable

import numpy as np

from ..errors import USAGE, BasicsegError
from ..networks.registry import sha256

log = logging.getLogger("basicseg")

ONNX, TENSORFLOW = "onnx", "tensorflow"
BACKENDS = (ONNX, TENSORFLOW)
# ONNX Runtime: the same masks as TensorFlow (tests/test_backends.py); a one-image job in 0.4-0.55x the wall time.
# An image may choose another default (the CUDA image: tensorflow, which uses the GPU); --backend overrides it.
BACKEND_ENV = "BASICSEG_BACKEND"
DEFAULT_BACKEND = os.environ.get(BACKEND_ENV) or ONNX
EXPORTS_MANIFEST = "onnx-exports.json"   # beside the weights: {stem: {onnx, onnx_sha256, keras_sha256, ...}}
INPUT_NAME = "image"                      # the exported graphs' input (the Keras models' input layer name)
# idle ONNX Runtime threads sleep instead of spinning: the job's cores are shared (numpy between the network
# calls, other tasks on a node); spinning was ~10 % slower per network call on the 2 shared cores
ONNX_SPIN = "0"
# no pre-planned memory pattern per input shape: ~150 MiB less peak RSS (BASICseg-3, 40 boxes), same speed
ONNX_MEM_PATTERN = False


def cpu_threads(nprocs: int | None = None) -> int | None:
    """--nprocs, else SLURM_CPUS_PER_TASK, else None (the runtime's own default: all cores)."""
    return nprocs or int(os.environ.get("SLURM_CPUS_PER_TASK", 0)) or None


def exports_manifest(weights_dir: Path) -> dict:
    path = Path(weights_dir) / EXPORTS_MANIFEST
    return json.loads(path.read_text()) if path.is_file() else {}


def onnx_export(keras_path: Path, keras_sha256: str) -> tuple[Path | None, str]:
    """The up-to-date ONNX export of ``keras_path`` and its SHA-256, or (None, why not)."""
    keras_path = Path(keras_path)
    entry = exports_manifest(keras_path.parent).get(keras_path.stem)
    if entry is None:
        return None, f"no ONNX export of {keras_path.name} in {EXPORTS_MANIFEST}"
    if entry["keras_sha256"] != keras_sha256:
        return None, f"{entry['onnx']} was exported from another {keras_path.name} (re-run scripts/export_onnx.py)"
    path = keras_path.parent / entry["onnx"]
    if not path.is_file():
        return None, f"{path.name} is missing"
    digest = sha256(path)
    if digest != entry["onnx_sha256"]:
        return None, f"{path.name} changed since its export (re-run scripts/export_onnx.py)"
    return path, digest


class OnnxRunner:
    """An ONNX Runtime session on the CPU, its threads bounded by --nprocs / SLURM_CPUS_PER_TASK."""
    backend = ONNX

    def __init__(self, path: Path, nprocs: int | None = None, file_sha256: str | None = None):
        import onnxruntime as ort

        self.file = Path(path)
        self.sha256 = file_sha256 or sha256(self.file)
        self.runtime = f"onnxruntime {ort.__version__}"
        options = ort.SessionOptions()
        threads = cpu_threads(nprocs)
        if threads:
            options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1        # one chain of convolutions: nothing to run side by side
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.add_session_config_entry("session.intra_op.allow_spinning", ONNX_SPIN)
        options.enable_mem_pattern = ONNX_MEM_PATTERN
        self._session = ort.InferenceSession(str(self.file), options, providers=["CPUExecutionProvider"])
        self._output = self._session.get_outputs()[0].name
        log.debug("%s: %s, %s threads", self.file.name, self.runtime, threads or "default")

    def __call__(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        # ``training`` only mirrors a Keras model's call, so that predict_batches serves both
        batch = np.ascontiguousarray(x, dtype=np.float32)
        return self._session.run([self._output], {INPUT_NAME: batch})[0]


class TensorflowRunner:
    """The Keras model (noise-adaptation layer stripped) as one traced tf.function."""
    backend = TENSORFLOW

    def __init__(self, path: Path, file_sha256: str | None = None):
        # threads are process-wide in TensorFlow: configure_tensorflow(nprocs) sets them
        require_tensorflow(path)
        from ..networks.unet import custom_objects, strip_noise_adaptation
        import keras
        import tensorflow as tf

        self.file = Path(path)
        self.sha256 = file_sha256 or sha256(self.file)
        self.runtime = f"tensorflow {tf.__version__}"
        trained = keras.models.load_model(self.file, custom_objects=custom_objects(), compile=False)
        # BASICseg-3's noise-adaptation layer models label noise during training only (Sukhbaatar 2014)
        self.keras = strip_noise_adaptation(trained)
        # one traced graph for every batch size: ~25 % faster than eager calls on CPU
        self._forward = tf.function(self.keras, reduce_retracing=True)

    def __call__(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        return np.asarray(self._forward(x, training=False))


def open_runner(keras_path: Path, keras_sha256: str, backend: str = DEFAULT_BACKEND,
                nprocs: int | None = None) -> Callable:
    """The runner of ``backend`` for the network ``keras_path``; TensorFlow where it has no current ONNX export."""
    if backend not in BACKENDS:
        raise BasicsegError(f"unknown backend {backend!r} (--backend or {BACKEND_ENV}); expected one of "
                            f"{', '.join(BACKENDS)}", USAGE)
    if backend == ONNX:
        path, digest_or_why = onnx_export(keras_path, keras_sha256)
        if path is not None:
            return OnnxRunner(path, nprocs, digest_or_why)
        log.warning("%s: %s; running it with TensorFlow", keras_path.name, digest_or_why)
        require_tensorflow(keras_path)
        from .infer import configure_tensorflow
        configure_tensorflow(nprocs)     # the CLI sets TensorFlow up for --backend tensorflow only
    return TensorflowRunner(keras_path, keras_sha256)


def require_tensorflow(keras_path: Path) -> None:
    """A clear error where TensorFlow is not installed (the TF-free CPU image)."""
    import importlib.util

    if importlib.util.find_spec("tensorflow") is None:
        raise BasicsegError(f"{Path(keras_path).name} needs TensorFlow, which is not installed here: use "
                            f"--backend {ONNX} with a network that has an ONNX export", USAGE)
