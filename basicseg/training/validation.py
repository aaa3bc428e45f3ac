"""Validation: whole held-out images through the network after every epoch, scored per image.

Box models are run on the boxes centred on the reference cord (the localiser is validated on its own
full-field 1 mm slices), so the figure measures the network, not the centreline.
"""
from __future__ import annotations

import numpy as np

from basicseg.measure.scores import dice
from basicseg.segment.backproject import uncrop_slices
from basicseg.segment.centerline import centres_from_mask, resample_slices, smooth_path
from basicseg.segment.crop import crop_slices
from basicseg.segment.infer import predict_batches
from basicseg.segment.normalise import normalise

THRESHOLD = 0.5                 # probability above which a voxel is foreground, as at inference


def traced(keras_model):
    """The model's compiled predict step as a ``forward(x, training=False)``: faster than eager calls."""
    return lambda x, training=False: keras_model.predict_on_batch(x)


def predict_volume(keras_model, data, zooms, centres, slices) -> np.ndarray:
    boxes = normalise(crop_slices(data, zooms, centres, slices))[..., None]
    prob = predict_batches(traced(keras_model), boxes)
    return uncrop_slices(prob, data.shape, zooms, centres, slices)


def localiser_dice(keras_model, example, img, mask) -> float:
    x, _ = resample_slices(img, example.volume.zooms)
    prob = predict_batches(traced(keras_model), normalise(x)[..., None])
    y, _ = resample_slices(mask.astype(np.float32), example.volume.zooms)
    return dice(prob > THRESHOLD, y > THRESHOLD)


def box_dice(keras_model, example, img, mask) -> float:
    cord, zooms = example.cord, example.volume.zooms
    slices = np.nonzero(cord.any(axis=(0, 1)))[0]
    centres = smooth_path(centres_from_mask(cord), zooms, smooth_mm=0)[slices]
    prob = predict_volume(keras_model, img, zooms, centres, slices)
    return dice(prob > THRESHOLD, mask)


def validate(keras_model, val_pairs, target) -> dict[str, float]:
    """Dice of each validation pair ``(name, example, image, mask)``, by name."""
    score = localiser_dice if target == "localiser" else box_dice
    return {name: score(keras_model, e, img, mask) for name, e, img, mask in val_pairs}


def mean_dice(scores: dict[str, float]) -> float:
    return float(np.nanmean(list(scores.values()))) if scores else float("nan")
