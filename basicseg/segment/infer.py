"""Infer: load the shipped (or user-given) networks once per process and run them on batches of slices."""
from __future__ import annotations

import copy
import logging
import os
from functools import lru_cache
from pathlib import Path

import numpy as np

from ..networks.registry import TTA_MODES, model_card, resolve_model, sha256
from .backends import DEFAULT_BACKEND, open_runner
from .hyperintensity import LESION_CONTRAST_MIN
from .postprocess import LESION_MIN_VOLUME_MM3

log = logging.getLogger("basicseg")

BATCH_SIZE = 64


def card_settings(card: dict, tta: str = "full") -> dict:
    """How a model card says its network is run (the settings of :class:`Model`), under ``tta``
    (:data:`TTA_MODES`: "mirror" drops the card's shifts, "none" its mirror too)."""
    if tta not in TTA_MODES:
        raise ValueError(f"test-time augmentation {tta!r}: expected one of {', '.join(TTA_MODES)}")
    threshold = float(card.get("threshold", 0.5))
    shifts = (card.get("shift_average_px") or ()) if tta == "full" else ()
    return {"threshold": threshold,
            # lesion networks: the smallest component reported, chosen with the threshold (scripts/tune_lesion.py)
            "min_volume_mm3": float(card.get("min_lesion_volume_mm3") or LESION_MIN_VOLUME_MM3),
            # and the outline of each lesion found (postprocess.lesion_mask's hysteresis; none: the threshold)
            "extent_threshold": float(card.get("extent_threshold") or threshold),
            # and kept when hyperintense: ln brighter than the matched normal cord (hyperintensity; null: all kept)
            "min_contrast": _optional_float(card.get("min_lesion_contrast", LESION_CONTRAST_MIN)),
            # the mean over the box and its left-right mirror; then over the box shifted by each offset (i, j),
            # in box pixels, each prediction shifted back
            "mirror": bool(card.get("mirror_average", False)) and tta != "none",
            "shifts": tuple(tuple(int(v) for v in s) for s in shifts)}


def _optional_float(value) -> float | None:
    return None if value is None else float(value)


def predict_batches(forward, x: np.ndarray, batch_size: int = BATCH_SIZE) -> np.ndarray:
    """Probabilities (n, h, w) from a network ``forward`` on (n, h, w, 1), in fixed-size chunks."""
    if len(x) == 0:
        return np.zeros(x.shape[:3], np.float32)
    out = [np.asarray(forward(x[i:i + batch_size], training=False))[..., 0] for i in range(0, len(x), batch_size)]
    return np.concatenate(out).astype(np.float32)


def configure_tensorflow(nprocs: int | None = None) -> str:
    """Bound TensorFlow's threads by --nprocs (or SLURM_CPUS_PER_TASK) and report the device."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    nprocs = nprocs or int(os.environ.get("SLURM_CPUS_PER_TASK", 0)) or None
    if nprocs:
        try:
            tf.config.threading.set_intra_op_parallelism_threads(nprocs)
            tf.config.threading.set_inter_op_parallelism_threads(min(2, nprocs))
        except RuntimeError:   # already initialised in this process: keep its settings
            pass
    gpus = tf.config.list_physical_devices("GPU")
    for gpu in gpus:
        try:
            tf.config.experimental.set_memory_growth(gpu, True)
        except RuntimeError:
            pass
    device = f"GPU ({', '.join(g.name for g in gpus)})" if gpus else "CPU"
    log.info("TensorFlow %s on %s, %s threads", tf.__version__, device, nprocs or "default")
    return device


class Model:
    """A loaded network with its provenance (for sidecars and reports).

    ``path`` is the network's ``.keras`` file (its identity: model card, SHA256); ``backend`` says what runs
    it (basicseg.segment.backends), and the provenance names the file that backend actually runs."""

    def __init__(self, path: Path, backend: str = DEFAULT_BACKEND, nprocs: int | None = None):
        self.path = Path(path)
        self.sha256 = sha256(self.path)
        self.card = model_card(self.path)
        self.runner = open_runner(self.path, self.sha256, backend, nprocs)
        self.backend = self.runner.backend
        settings = card_settings(self.card)
        self.threshold: float = settings["threshold"]
        self.min_volume_mm3: float = settings["min_volume_mm3"]
        self.extent_threshold: float = settings["extent_threshold"]
        self.min_contrast: float | None = settings["min_contrast"]
        self.mirror: bool = settings["mirror"]
        self.shifts: tuple = settings["shifts"]
        self.name = self.card.get("name", self.path.stem)

    @property
    def keras(self):
        """The Keras inference model (TensorFlow backend only)."""
        return self.runner.keras

    def predict(self, x: np.ndarray, mirror: bool | None = None) -> np.ndarray:
        """Probabilities for a batch (n, h, w, 1) -> (n, h, w). With ``mirror`` (default: the model card's
        ``mirror_average``) the mean of the box's and its left-right mirror's predictions: the networks are
        trained with random left-right flips, and a spurious blob seen in one view only drops below threshold.
        With ``shifts`` (the card's ``shift_average_px``) each view is also predicted on the box shifted by
        each offset and shifted back: the networks are trained on boxes whose centre is jittered."""
        flips = (False, True) if (self.mirror if mirror is None else mirror) else (False,)
        views = [self._view(x, shift, flip) for shift in ((0, 0), *self.shifts) for flip in flips]
        return views[0] if len(views) == 1 else np.mean(views, axis=0)

    def _view(self, x: np.ndarray, shift: tuple[int, int], flip: bool) -> np.ndarray:
        """The prediction on ``x`` shifted by ``shift`` pixels (then left-right mirrored, axis 1, with
        ``flip``), mapped back onto ``x``. The box's edges wrap round: background, 12 mm from the centre."""
        moved = np.roll(x, shift, axis=(1, 2)) if any(shift) else x
        prob = predict_batches(self.runner, moved[:, ::-1] if flip else moved)
        prob = prob[:, ::-1] if flip else prob
        return np.roll(prob, (-shift[0], -shift[1]), axis=(1, 2)) if any(shift) else prob

    def with_settings(self, **settings) -> "Model":
        """This model with the settings that are not None (e.g. ``mirror``, ``shifts``, ``threshold``), as a
        copy: the cached model keeps its card's."""
        settings = {k: v for k, v in settings.items() if v is not None}
        if not settings:
            return self
        unknown = set(settings) - set(vars(self))
        if unknown:
            raise AttributeError(f"not a model setting: {', '.join(sorted(unknown))}")
        model = copy.copy(self)
        vars(model).update(settings)
        return model

    def with_tta(self, mode: str) -> "Model":
        """This model under one of :data:`TTA_MODES` (its card's views, fewer of them)."""
        if mode == "full":
            return self
        views = card_settings(self.card, mode)
        return self.with_settings(mirror=views["mirror"], shifts=views["shifts"])

    def provenance(self) -> dict:
        return {"Name": self.name, "File": self.path.name, "SHA256": self.sha256,
                "Architecture": self.card.get("architecture"), "Target": self.card.get("target"),
                "Version": self.card.get("basicseg_version"), "Threshold": self.threshold,
                "ExtentThreshold": self.extent_threshold, "MirrorAverage": self.mirror,
                "ShiftAveragePixels": [list(s) for s in self.shifts],
                # what computed the probabilities: an ONNX export of File, or File itself
                "Backend": self.backend, "Runtime": self.runner.runtime,
                "RunFile": self.runner.file.name, "RunSHA256": self.runner.sha256}


@lru_cache(maxsize=None)
def load_model(name_or_path: str, backend: str = DEFAULT_BACKEND, nprocs: int | None = None) -> Model:
    """Load once per process (all images of a run share the model)."""
    path = resolve_model(name_or_path)
    log.info("loading model %s (%s backend)", path.name, backend)
    return Model(path, backend, nprocs)
