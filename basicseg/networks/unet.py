"""BASICseg U-Nets (McCoy et al., AJNR 2019) as Keras functional-API builders.

The paper's numbers, kept here as the builders' keyword defaults:

* input: 128 x 128 axial patch (26 mm box around the cord resampled to 0.2 mm), one channel;
* **BASICseg-1**: 4 contracting levels of [3x3 conv+ReLU, 20 % dropout, 3x3 conv+ReLU,
  2x2 max-pool] with 8-16-32-64 features; a bottleneck of two 3x3 convs with 128 features and
  no dropout; 4 expanding levels of [2x2 upsample, concatenate the skip, two 3x3 convs+ReLU]
  with the features halving (64-32-16-8); a 1x1 conv with a sigmoid.
  8 + 2 + 8 + 1 = **19 conv layers**;
* **BASICseg-2**: as 1 with doubled features (16 ... 256) and batch normalisation between every
  3x3 conv and its ReLU (contracting path, bottleneck and expanding path) instead of dropout;
* **BASICseg-3**: as 2 plus a noise-adaptation layer (Sukhbaatar et al. 2014) between the last
  16-channel feature map and the 1x1 sigmoid conv.

Choices the paper leaves open, or where this module deviates:

* **Upsampling** is ``UpSampling2D`` (2x2 nearest neighbour, no weights), not
  ``Conv2DTranspose``: the paper counts 19 conv layers, which only adds up if the upsampling
  itself holds no convolution. The upsampled map keeps its width, so the first conv of an
  expanding level sees ``up + skip`` channels (e.g. 128 + 64 = 192 at the deepest level).
* **Padding / initialisation**: ``'same'`` padding (the output matches the 128 x 128 input)
  and ``he_normal`` kernels, as is usual for ReLU U-Nets; the paper names neither.
* **Bias with batch normalisation**: a conv followed by BatchNormalization has no bias
  (``use_bias=False``); BN's beta already is that offset, so a bias would be a dead parameter.
  BASICseg-2/3 therefore hold one bias per output channel of each 3x3 conv fewer
  (4 x 240 + 2 x 256 = 1,472) than a Keras-default conv-with-bias build; the function is the
  same.
* **Noise-adaptation layer** (:class:`NoiseAdaptation`): the paper says only that each pixel's
  16-vector is multiplied by a learned 16 x 16 "softmax-like" matrix. Here the matrix is
  ``Q = softmax(W, axis=-1)``, so every row is a stochastic transition (Sukhbaatar's noise
  layer), ``W`` is initialised so that Q is near the identity (``diagonal=0.95`` on the
  diagonal) and a pixel's features ``x`` become ``x @ Q``. An optional ``trace_penalty``
  (default 0, the paper reports none) adds ``trace_penalty * trace(Q)`` to the loss, which
  pushes the label noise into Q rather than into the network under it.
* **Noise layer at inference**: removed. In Sukhbaatar et al. the noise layer models how the
  *annotations* are corrupted; it is trained with the network on the noisy labels and dropped
  at test time so that the network under it predicts the clean labels. Train with the layer,
  then call :func:`strip_noise_adaptation` to get the inference model (the layer bypassed, all
  other weights shared). It returns BASICseg-1/2 unchanged, so inference code may call it on
  any architecture.
* **Loss**: the paper's loss is not restated here; training uses :func:`bce_dice_loss`
  (binary cross-entropy + 1 - soft Dice), which converged well in short CPU runs (docs/models.md).

Parameters with the defaults: BASICseg-1 490,993; BASICseg-2 1,966,753 (1,963,809 trainable,
the rest BN moving statistics); BASICseg-3 1,967,009 (+ 16 x 16 noise matrix), 1,966,753 once
stripped for inference.

``build_localiser`` is the BASICseg-1 graph on ``(None, None, 1)`` inputs (any size divisible
by 16), used for coarse cord localisation on full-field 1 mm axial slices.
"""
from __future__ import annotations

import math
from typing import Sequence

import keras
from keras import layers, ops

__all__ = [
    "NoiseAdaptation",
    "build_basicseg1",
    "build_basicseg2",
    "build_basicseg3",
    "build_localiser",
    "build_model",
    "strip_noise_adaptation",
    "dice_coefficient",
    "bce_dice_loss",
    "custom_objects",
]

_KERNEL_INIT = "he_normal"


# --------------------------------------------------------------------------------------------
# Noise-adaptation layer
# --------------------------------------------------------------------------------------------
@keras.saving.register_keras_serializable(package="basicseg")
class NoiseAdaptation(layers.Layer):
    """Per-pixel stochastic channel transition (Sukhbaatar et al. 2014 'noise layer').

    Holds a trainable ``channels x channels`` matrix ``W``; the transition matrix is
    ``Q = softmax(W, axis=-1)`` (each row sums to one) and the output at every pixel is
    ``x @ Q``, i.e. ``y_j = sum_i x_i Q_ij``. Channel mass is preserved: ``sum_j y_j = sum_i x_i``.

    Args:
        channels: number of feature channels (the last axis of the input).
        diagonal: the diagonal of Q at initialisation (off-diagonals share the rest equally),
            in ``[1/channels, 1)``; close to 1 means close to the identity.
        trace_penalty: weight of an optional ``trace(Q)`` regulariser added to the model's
            losses (0 disables it).
    """

    def __init__(self, channels: int = 16, diagonal: float = 0.95, trace_penalty: float = 0.0,
                 **kwargs):
        super().__init__(**kwargs)
        if channels < 2:
            raise ValueError(f"channels must be >= 2, got {channels}")
        if not 1.0 / channels <= diagonal < 1.0:
            raise ValueError(f"diagonal must lie in [1/channels, 1), got {diagonal}")
        self.channels = int(channels)
        self.diagonal = float(diagonal)
        self.trace_penalty = float(trace_penalty)

    def build(self, input_shape):
        if input_shape[-1] != self.channels:
            raise ValueError(
                f"NoiseAdaptation(channels={self.channels}) got {input_shape[-1]} input channels")
        # softmax of (d * I) puts e^d / (e^d + C - 1) on the diagonal: solve for d.
        logit = math.log(self.diagonal * (self.channels - 1) / (1.0 - self.diagonal))
        regularizer = None
        if self.trace_penalty:
            penalty = self.trace_penalty

            def regularizer(w):
                return penalty * ops.trace(ops.softmax(w, axis=-1))

        self.kernel = self.add_weight(
            name="kernel",
            shape=(self.channels, self.channels),
            initializer=keras.initializers.Identity(gain=logit),
            regularizer=regularizer,
            trainable=True,
        )

    def transition_matrix(self):
        """The row-stochastic matrix Q = softmax(W, axis=-1)."""
        return ops.softmax(self.kernel, axis=-1)

    def call(self, inputs):
        q = ops.cast(self.transition_matrix(), inputs.dtype)
        return ops.matmul(inputs, q)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(channels=self.channels, diagonal=self.diagonal,
                      trace_penalty=self.trace_penalty)
        return config


# --------------------------------------------------------------------------------------------
# U-Net blocks
# --------------------------------------------------------------------------------------------
def _conv(x, filters: int, name: str, batch_norm: bool):
    """3x3 conv + ReLU, or 3x3 conv (no bias) -> BatchNormalization -> ReLU."""
    if not batch_norm:
        return layers.Conv2D(filters, 3, padding="same", activation="relu",
                             kernel_initializer=_KERNEL_INIT, name=f"{name}_conv")(x)
    x = layers.Conv2D(filters, 3, padding="same", use_bias=False,
                      kernel_initializer=_KERNEL_INIT, name=f"{name}_conv")(x)
    x = layers.BatchNormalization(name=f"{name}_bn")(x)
    return layers.Activation("relu", name=f"{name}_relu")(x)


def _conv_block(x, filters: int, name: str, batch_norm: bool, dropout: float = 0.0):
    """Two 3x3 convs; dropout (if any) between them, as in BASICseg-1's contracting path."""
    x = _conv(x, filters, f"{name}a", batch_norm)
    if dropout:
        x = layers.Dropout(dropout, name=f"{name}_dropout")(x)
    return _conv(x, filters, f"{name}b", batch_norm)


def _down(x, filters: int, name: str, batch_norm: bool, dropout: float):
    """Contracting level: conv block, then 2x2 max-pool. Returns (pooled, skip)."""
    skip = _conv_block(x, filters, name, batch_norm, dropout)
    return layers.MaxPooling2D(2, name=f"{name}_pool")(skip), skip


def _up(x, skip, filters: int, name: str, batch_norm: bool):
    """Expanding level: 2x2 upsample (no weights), concatenate the skip, conv block."""
    x = layers.UpSampling2D(2, name=f"{name}_up")(x)
    x = layers.Concatenate(name=f"{name}_concat")([x, skip])
    return _conv_block(x, filters, name, batch_norm)


def _unet(input_shape: Sequence[int | None], features: Sequence[int], bottleneck: int, *,
          dropout: float = 0.0, batch_norm: bool = False, noise_adaptation: bool = False,
          name: str = "unet") -> keras.Model:
    """The one U-Net graph behind every BASICseg variant."""
    input_shape = tuple(input_shape)
    features = tuple(int(f) for f in features)
    if len(input_shape) != 3:
        raise ValueError(f"input_shape must be (height, width, channels), got {input_shape}")
    factor = 2 ** len(features)
    for size in input_shape[:2]:
        if size is not None and size % factor:
            raise ValueError(
                f"spatial size {size} is not divisible by {factor} ({len(features)} poolings)")

    inputs = keras.Input(shape=input_shape, name="image")
    x, skips = inputs, []
    for level, filters in enumerate(features, start=1):
        x, skip = _down(x, filters, f"enc{level}", batch_norm, dropout)
        skips.append(skip)
    x = _conv_block(x, bottleneck, "bottleneck", batch_norm)
    for level, filters, skip in reversed(list(zip(range(1, len(features) + 1), features, skips))):
        x = _up(x, skip, filters, f"dec{level}", batch_norm)
    if noise_adaptation:
        x = NoiseAdaptation(channels=features[0], name="noise_adaptation")(x)
    outputs = layers.Conv2D(1, 1, activation="sigmoid", kernel_initializer=_KERNEL_INIT,
                            name="output")(x)
    return keras.Model(inputs, outputs, name=name)


# --------------------------------------------------------------------------------------------
# Public builders
# --------------------------------------------------------------------------------------------
def build_basicseg1(input_shape=(128, 128, 1), features=(8, 16, 32, 64), bottleneck=128,
                    dropout=0.2, name="basicseg1") -> keras.Model:
    """BASICseg-1: conv+ReLU U-Net with 20 % dropout inside each contracting level."""
    return _unet(input_shape, features, bottleneck, dropout=dropout, name=name)


def build_basicseg2(input_shape=(128, 128, 1), features=(16, 32, 64, 128), bottleneck=256,
                    name="basicseg2") -> keras.Model:
    """BASICseg-2: conv -> BatchNormalization -> ReLU everywhere, doubled widths, no dropout."""
    return _unet(input_shape, features, bottleneck, batch_norm=True, name=name)


def build_basicseg3(input_shape=(128, 128, 1), features=(16, 32, 64, 128), bottleneck=256,
                    name="basicseg3") -> keras.Model:
    """BASICseg-3: BASICseg-2 plus a NoiseAdaptation layer before the 1x1 sigmoid conv.

    This is the *training* graph; use :func:`strip_noise_adaptation` for inference.
    """
    return _unet(input_shape, features, bottleneck, batch_norm=True, noise_adaptation=True,
                 name=name)


def build_localiser(features=(8, 16, 32, 64), bottleneck=128, dropout=0.2,
                    name="localiser") -> keras.Model:
    """BASICseg-1 graph, fully convolutional (any height/width divisible by 16)."""
    return _unet((None, None, 1), features, bottleneck, dropout=dropout, name=name)


_BUILDERS = {"1": build_basicseg1, "2": build_basicseg2, "3": build_basicseg3}


def build_model(architecture: int | str, **kw) -> keras.Model:
    """Build BASICseg-``architecture``: 1, 2, 3, or 'basicseg1', 'BASICseg-2', '3', ..."""
    key = str(architecture).strip().lower().replace("-", "").replace("_", "")
    key = key.removeprefix("basicseg")
    if isinstance(architecture, bool) or key not in _BUILDERS:
        raise ValueError(f"unknown BASICseg architecture {architecture!r}; expected 1, 2 or 3")
    return _BUILDERS[key](**kw)


def strip_noise_adaptation(model: keras.Model) -> keras.Model:
    """The inference model: every NoiseAdaptation layer bypassed, all other weights shared.

    Models without such a layer are returned as they are. The returned model shares its
    layers (and so its weights) with ``model``; it is not a copy.
    """
    if not any(isinstance(layer, NoiseAdaptation) for layer in model.layers):
        return model

    def call(layer, *args, **kwargs):
        if isinstance(layer, NoiseAdaptation):
            return args[0]
        return layer(*args, **kwargs)

    return keras.models.clone_model(model, clone_function=lambda layer: layer,
                                    call_function=call)


# --------------------------------------------------------------------------------------------
# Loss and metric
# --------------------------------------------------------------------------------------------
@keras.saving.register_keras_serializable(package="basicseg")
def dice_coefficient(y_true, y_pred, smooth=1.0):
    """Soft Dice over the whole batch: (2 sum(t p) + s) / (sum(t) + sum(p) + s)."""
    y_true = ops.cast(y_true, y_pred.dtype)
    intersection = ops.sum(y_true * y_pred)
    return (2.0 * intersection + smooth) / (ops.sum(y_true) + ops.sum(y_pred) + smooth)


@keras.saving.register_keras_serializable(package="basicseg")
def bce_dice_loss(y_true, y_pred):
    """Mean binary cross-entropy + (1 - soft Dice), both over the whole batch."""
    y_true = ops.cast(y_true, y_pred.dtype)
    bce = ops.mean(keras.losses.binary_crossentropy(y_true, y_pred))
    return bce + 1.0 - dice_coefficient(y_true, y_pred)


def custom_objects() -> dict:
    """Objects to pass to ``keras.models.load_model(..., custom_objects=custom_objects())``."""
    return {
        "NoiseAdaptation": NoiseAdaptation,
        "dice_coefficient": dice_coefficient,
        "bce_dice_loss": bce_dice_loss,
    }
