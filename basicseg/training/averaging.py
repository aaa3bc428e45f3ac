"""Weight averaging: an exponential moving average of the trainable weights (``--ema``).

The average is what is validated after each epoch, selected and shipped; training goes on from the raw
weights. It is written here because the optimizers' own ``use_ema`` did not average under ``fit`` with the
TensorFlow backend (Keras 3.15: the average stayed equal to the weights).
"""
from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

import numpy as np


def weight_average(momentum: float, path: Path):
    """A callback keeping an exponential moving average of the trainable weights, updated after every batch
    (``--ema``; 0.99 spans about the last 100 batches) and kept in ``path`` for ``--resume``. Batch-norm
    statistics are not averaged: they are moving averages over a window of the same length already."""
    import keras

    class WeightAverage(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.average = list(np.load(path).values()) if path.is_file() else None

        def on_train_batch_end(self, batch, logs=None):
            weights = [v.numpy() for v in self.model.trainable_variables]
            if self.average is None:
                self.average = weights
                return
            for average, w in zip(self.average, weights):
                average *= momentum
                average += (1.0 - momentum) * w

        def save(self):
            from basicseg.io import atomic_path
            with atomic_path(path) as tmp:
                np.savez(tmp, *self.average)

    return WeightAverage()


@contextmanager
def averaged_weights(model, average=None):
    """Inside the block the network holds the moving average of its weights, which is what is validated,
    selected and saved as the model; the raw weights, which training continues from, come back after it.
    A no-op without an average (no ``--ema``)."""
    if average is None or average.average is None:
        yield model
        return
    raw = [v.numpy() for v in model.trainable_variables]
    for variable, value in zip(model.trainable_variables, average.average):
        variable.assign(value)
    try:
        yield model
    finally:
        for variable, value in zip(model.trainable_variables, raw):
            variable.assign(value)
