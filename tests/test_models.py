"""Tests for basicseg.networks.unet: the BASICseg U-Net graphs, the noise layer, loss and metric."""
import numpy as np
import pytest

keras = pytest.importorskip("keras")

from basicseg.networks import unet as models  # noqa: E402
from basicseg.networks.unet import NoiseAdaptation  # noqa: E402

# Keras 3.15's own Variable -> numpy conversion warns under numpy 2; not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

# The paper's numbers (McCoy et al. 2019), restated here so the tests check the code
# against the paper rather than against itself.
PAPER = {
    1: dict(features=(8, 16, 32, 64), bottleneck=128, batch_norm=False, noise=False),
    2: dict(features=(16, 32, 64, 128), bottleneck=256, batch_norm=True, noise=False),
    3: dict(features=(16, 32, 64, 128), bottleneck=256, batch_norm=True, noise=True),
}


@pytest.fixture(scope="module")
def built():
    return {arch: models.build_model(arch) for arch in (1, 2, 3)}


def small(arch, seed=0, **kw):
    keras.utils.set_random_seed(seed)
    return models.build_model(arch, input_shape=(32, 32, 1), **kw)


def infer(model, x):
    """Eager inference (no tf.function tracing, which costs seconds per model on a CPU)."""
    return keras.ops.convert_to_numpy(model(x, training=False))


def of_type(model, cls):
    return [layer for layer in model.layers if isinstance(layer, cls)]


def conv_widths(features, bottleneck):
    """Conv filters in graph order: contracting, bottleneck, expanding, final 1x1."""
    down = [f for f in features for _ in range(2)]
    return down + [bottleneck] * 2 + down[::-1] + [1]


def expected_params(features, bottleneck, batch_norm, noise, in_channels=1):
    """(total, trainable) parameters computed from the architecture numbers."""
    total = trainable = 0

    def conv3(cin, cout):
        nonlocal total, trainable
        weights = 9 * cin * cout + (0 if batch_norm else cout)  # no bias before BN
        bn = 4 * cout if batch_norm else 0  # gamma, beta (trainable), mean, variance
        total += weights + bn
        trainable += weights + bn // 2

    c = in_channels
    for f in features:
        conv3(c, f), conv3(f, f)
        c = f
    conv3(c, bottleneck), conv3(bottleneck, bottleneck)
    c = bottleneck
    for f in reversed(features):
        conv3(c + f, f), conv3(f, f)  # upsampled map keeps its width, then concat the skip
        c = f
    if noise:
        total += c * c
        trainable += c * c
    total += c + 1  # final 1x1 conv with bias
    trainable += c + 1
    return total, trainable


# ---------------------------------------------------------------------------------- graph
@pytest.mark.parametrize("arch", [1, 2, 3])
def test_nineteen_conv_layers_with_paper_widths(built, arch):
    model, spec = built[arch], PAPER[arch]
    convs = of_type(model, keras.layers.Conv2D)
    assert len(convs) == 19
    assert [c.filters for c in convs] == conv_widths(spec["features"], spec["bottleneck"])
    assert all(c.kernel_size == (3, 3) and c.padding == "same" for c in convs[:-1])
    assert convs[-1].kernel_size == (1, 1) and convs[-1].name == "output"
    for level, width in enumerate(spec["features"], start=1):
        for side in ("enc", "dec"):
            for ab in "ab":
                assert model.get_layer(f"{side}{level}{ab}_conv").filters == width
    assert len(of_type(model, keras.layers.MaxPooling2D)) == 4
    assert len(of_type(model, keras.layers.UpSampling2D)) == 4
    assert len(of_type(model, NoiseAdaptation)) == (1 if spec["noise"] else 0)


@pytest.mark.parametrize("arch", [1, 2, 3])
def test_parameter_count_matches_architecture(built, arch):
    spec = PAPER[arch]
    total, trainable = expected_params(spec["features"], spec["bottleneck"],
                                       spec["batch_norm"], spec["noise"])
    model = built[arch]
    assert model.count_params() == total
    assert sum(int(np.prod(w.shape)) for w in model.trainable_weights) == trainable


@pytest.mark.parametrize("arch", [1, 2, 3])
def test_shapes_and_sigmoid_range(built, arch):
    model = built[arch]
    assert model.input_shape == (None, 128, 128, 1)
    assert model.output_shape == (None, 128, 128, 1)
    assert model.get_layer("output").activation is keras.activations.sigmoid
    x = np.random.default_rng(arch).normal(size=(2, 128, 128, 1)).astype("float32")
    y = infer(model, x)
    assert y.shape == (2, 128, 128, 1)
    assert np.all((y >= 0) & (y <= 1)) and np.isfinite(y).all()


def test_basicseg1_dropout_no_batchnorm(built):
    model = built[1]
    assert not of_type(model, keras.layers.BatchNormalization)
    drops = of_type(model, keras.layers.Dropout)
    assert [d.name for d in drops] == [f"enc{i}_dropout" for i in range(1, 5)]
    assert all(d.rate == 0.2 for d in drops)
    convs = of_type(model, keras.layers.Conv2D)
    assert all(c.use_bias and c.activation is keras.activations.relu for c in convs[:-1])


@pytest.mark.parametrize("arch", [2, 3])
def test_basicseg2_3_batchnorm_between_conv_and_relu(built, arch):
    model = built[arch]
    assert not of_type(model, keras.layers.Dropout)
    convs = of_type(model, keras.layers.Conv2D)[:-1]
    assert len(of_type(model, keras.layers.BatchNormalization)) == len(convs) == 18
    for conv in convs:
        assert not conv.use_bias and conv.activation is keras.activations.linear
        stem = conv.name.removesuffix("_conv")
        bn, relu = model.get_layer(f"{stem}_bn"), model.get_layer(f"{stem}_relu")
        assert bn.input is conv.output and relu.input is bn.output


def test_noise_layer_sits_before_output(built):
    model = built[3]
    noise = model.get_layer("noise_adaptation")
    assert noise.channels == 16
    assert noise.input is model.get_layer("dec1b_relu").output
    assert model.get_layer("output").input is noise.output


def test_input_size_must_be_divisible_by_16():
    with pytest.raises(ValueError, match="divisible"):
        models.build_basicseg1(input_shape=(100, 128, 1))


def test_build_model_dispatch():
    for arch, name in [(1, "basicseg1"), ("2", "basicseg2"), ("basicseg3", "basicseg3"),
                       ("BASICseg-1", "basicseg1"), ("basicseg_2", "basicseg2")]:
        assert models.build_model(arch, input_shape=(16, 16, 1),
                                  features=(2, 2, 2, 2), bottleneck=2).name == name
    for bad in (0, 4, "basicseg4", "unet", True):
        with pytest.raises(ValueError):
            models.build_model(bad)


def test_localiser_is_fully_convolutional():
    model = models.build_localiser()
    assert model.input_shape == (None, None, None, 1)
    assert len(of_type(model, keras.layers.Conv2D)) == 19
    assert model.count_params() == expected_params((8, 16, 32, 64), 128, False, False)[0]
    y = infer(model, np.zeros((1, 96, 160, 1), "float32"))
    assert y.shape == (1, 96, 160, 1)


# ---------------------------------------------------------------------------- noise layer
def test_noise_adaptation_is_row_stochastic_transition():
    layer = NoiseAdaptation(channels=4, diagonal=0.7)
    x = np.random.default_rng(0).uniform(size=(2, 3, 5, 4)).astype("float32")
    y = keras.ops.convert_to_numpy(layer(x))
    q = keras.ops.convert_to_numpy(layer.transition_matrix())
    np.testing.assert_allclose(q.sum(axis=1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(np.diag(q), 0.7, rtol=1e-5)
    np.testing.assert_allclose(q[~np.eye(4, dtype=bool)], 0.1, rtol=1e-5)
    np.testing.assert_allclose(y, x @ q, rtol=1e-5)
    np.testing.assert_allclose(y.sum(-1), x.sum(-1), rtol=1e-5)  # channel mass preserved
    with pytest.raises(ValueError):
        NoiseAdaptation(channels=5)(x)


def test_noise_adaptation_trace_penalty():
    layer = NoiseAdaptation(channels=4, diagonal=0.7, trace_penalty=0.5)
    layer(np.zeros((1, 2, 2, 4), "float32"))
    assert len(layer.losses) == 1
    np.testing.assert_allclose(float(layer.losses[0]), 0.5 * 4 * 0.7, rtol=1e-5)
    assert not NoiseAdaptation(channels=4).losses


def test_noise_layer_trains():
    import tensorflow as tf

    model = small(3)
    noise = model.get_layer("noise_adaptation")
    before = noise.kernel.numpy().copy()
    rng = np.random.default_rng(1)
    x = rng.normal(size=(4, 32, 32, 1)).astype("float32")
    y = (rng.uniform(size=(4, 32, 32, 1)) > 0.7).astype("float32")
    with tf.GradientTape() as tape:  # one eager step: no tracing, so the test stays fast
        loss = models.bce_dice_loss(y, model(x, training=True))
    grads = tape.gradient(loss, model.trainable_variables)
    keras.optimizers.Adam(1e-3).apply(grads, model.trainable_variables)
    after = noise.kernel.numpy()
    assert noise.trainable and any(v is noise.kernel for v in model.trainable_variables)
    assert np.abs(after - before).max() > 1e-5
    q = keras.ops.convert_to_numpy(noise.transition_matrix())
    np.testing.assert_allclose(q.sum(axis=1), 1.0, rtol=1e-6)  # still a stochastic matrix


def test_strip_noise_adaptation_for_inference():
    model = small(3)
    stripped = models.strip_noise_adaptation(model)
    assert not of_type(stripped, NoiseAdaptation)
    assert len(of_type(stripped, keras.layers.Conv2D)) == 19
    assert stripped.count_params() == model.count_params() - 16 * 16
    assert stripped.get_layer("output") is model.get_layer("output")  # weights shared

    x = np.random.default_rng(2).normal(size=(2, 32, 32, 1)).astype("float32")
    # The stripped model feeds the last 16-channel map straight into the 1x1 sigmoid conv.
    features = keras.Model(model.input, model.get_layer("noise_adaptation").input)
    manual = model.get_layer("output")(infer(features, x))
    clean = infer(stripped, x)
    np.testing.assert_allclose(clean, keras.ops.convert_to_numpy(manual), atol=1e-6)
    assert not np.allclose(clean, infer(model, x), atol=1e-7)  # Q != I

    # With Q exactly the identity, the trained graph and the inference graph agree.
    model.get_layer("noise_adaptation").kernel.assign(1e4 * np.eye(16, dtype="float32"))
    np.testing.assert_allclose(infer(model, x), infer(stripped, x), atol=1e-6)

    v1 = small(1)
    assert models.strip_noise_adaptation(v1) is v1


# ------------------------------------------------------------------------------- save/load
def test_save_load_round_trip(tmp_path):
    model = small(3)
    model.compile(optimizer="adam", loss=models.bce_dice_loss,
                  metrics=[models.dice_coefficient])
    model.optimizer.build(model.trainable_variables)
    rng = np.random.default_rng(3)
    # Move the noise matrix and the BN statistics off their initial values, so that a
    # loader that re-initialised them instead of restoring them would be caught.
    for w in model.non_trainable_weights + [model.get_layer("noise_adaptation").kernel]:
        w.assign(np.abs(rng.normal(1.0, 0.3, size=w.shape)).astype("float32"))
    x = rng.normal(size=(2, 32, 32, 1)).astype("float32")
    path = tmp_path / "basicseg3.keras"
    model.save(path)

    expected = infer(model, x)
    loaded = keras.models.load_model(path)  # registered objects: no custom_objects needed
    np.testing.assert_array_equal(infer(loaded, x), expected)
    assert isinstance(loaded.get_layer("noise_adaptation"), NoiseAdaptation)
    assert loaded.loss is models.bce_dice_loss

    again = keras.models.load_model(path, custom_objects=models.custom_objects(), compile=False)
    np.testing.assert_array_equal(infer(again, x), expected)
    np.testing.assert_array_equal(
        infer(models.strip_noise_adaptation(again), x),
        infer(models.strip_noise_adaptation(model), x))


def test_mirror_average_follows_the_model_card(tmp_path):
    """infer.Model averages a box and its left-right mirror when the card says so (the lesion models)."""
    import json
    from basicseg.segment.infer import Model

    path = tmp_path / "lesion-basicseg1.keras"
    small(1, seed=4).save(path)
    rng = np.random.default_rng(5)
    x = rng.normal(size=(3, 32, 32, 1)).astype("float32")
    plain = Model(path)
    raw = plain.predict(x)
    assert not plain.mirror and plain.provenance()["MirrorAverage"] is False
    mirrored = np.asarray(plain.predict(x[:, ::-1].copy()))[:, ::-1]
    assert not np.allclose(raw, mirrored, atol=1e-3)      # the network is not symmetric by itself

    path.with_suffix(".json").write_text(json.dumps({"mirror_average": True}))
    model = Model(path)
    assert model.mirror and model.provenance()["MirrorAverage"] is True
    np.testing.assert_allclose(model.predict(x), 0.5 * (raw + mirrored), atol=1e-6)
    np.testing.assert_allclose(model.predict(x, mirror=False), raw, atol=1e-6)
    symmetric = model.predict(x + x[:, ::-1])              # a mirror-symmetric input gives a symmetric output
    np.testing.assert_allclose(symmetric, symmetric[:, ::-1], atol=1e-6)


def test_shift_average_follows_the_model_card(tmp_path):
    """With the card's ``shift_average_px`` each box is also predicted shifted and shifted back: the views
    line up, so the average of a network that commutes with shifts is its plain prediction."""
    import json
    from basicseg.segment.infer import Model

    path = tmp_path / "cord-basicseg1.keras"
    small(1, seed=4).save(path)
    x = np.zeros((2, 32, 32, 1), "float32")
    x[:, 12:20, 10:22] = 1.0                                # a bright blob well inside the box
    raw = Model(path).predict(x)
    path.with_suffix(".json").write_text(json.dumps({"shift_average_px": [[4, 0], [0, -4]]}))
    model = Model(path)
    assert model.shifts == ((4, 0), (0, -4)) and model.provenance()["ShiftAveragePixels"] == [[4, 0], [0, -4]]
    views = [raw] + [np.roll(Model(path).runner(np.roll(x, s, axis=(1, 2)))[..., 0], (-s[0], -s[1]), axis=(1, 2))
                     for s in model.shifts]
    np.testing.assert_allclose(model.predict(x), np.mean(views, axis=0), atol=1e-6)
    # away from the box edges (zero padding) the views agree closely: shifting back maps them onto x
    inner = (slice(None), slice(8, 24), slice(8, 24))
    assert np.abs(model.predict(x)[inner] - raw[inner]).max() < np.abs(np.roll(raw, 4, axis=1) - raw)[inner].max()


def test_tta_modes_reduce_the_cards_views(tmp_path):
    """--tta: "full" is the card's setting, "mirror" drops the shifts, "none" is the plain prediction; each on a
    copy, so that the cached model keeps its card's views, and the copy's provenance says what ran."""
    import json
    from basicseg.segment.infer import Model

    path = tmp_path / "lesion-basicseg1.keras"
    small(1, seed=4).save(path)
    rng = np.random.default_rng(6)
    x = rng.normal(size=(2, 32, 32, 1)).astype("float32")
    raw = Model(path).predict(x)
    path.with_suffix(".json").write_text(json.dumps({"mirror_average": True, "shift_average_px": [[4, 0]]}))
    card = Model(path)
    assert card.with_tta("full") is card
    mirror, none = card.with_tta("mirror"), card.with_tta("none")
    assert card.shifts == ((4, 0),) and card.mirror                     # the original is untouched
    assert mirror.shifts == () and mirror.mirror and not none.mirror and none.shifts == ()
    assert none.provenance()["MirrorAverage"] is False and mirror.provenance()["ShiftAveragePixels"] == []
    np.testing.assert_allclose(none.predict(x), raw, atol=1e-6)
    flipped = none.predict(x[:, ::-1].copy())[:, ::-1]
    np.testing.assert_allclose(mirror.predict(x), 0.5 * (raw + flipped), atol=1e-6)
    assert not np.allclose(card.predict(x), mirror.predict(x), atol=1e-4)  # the shift view counted
    with pytest.raises(ValueError, match="expected one of"):
        card.with_tta("light")
    with pytest.raises(AttributeError, match="not a model setting"):
        card.with_settings(mirrror=True)


def test_shipped_weights_have_cards_and_the_defaults_load():
    """Every shipped network has a model card saying how it was made; the defaults load for inference, and
    the shipped BASICseg-3 lesion network loads with its noise layer bypassed."""
    import json
    from basicseg.networks.registry import DEFAULT_MODELS, WEIGHTS_DIR
    from basicseg.segment.infer import load_model

    shipped = sorted(WEIGHTS_DIR.glob("*.keras"))
    assert {p.stem for p in shipped} >= set(DEFAULT_MODELS.values())
    for path in shipped:
        card = json.loads(path.with_suffix(".json").read_text())
        assert card["name"] == path.stem and card["command"].startswith("basicseg-train ")
        assert card["training_images"] and card["epochs_run"] >= 1
        assert (WEIGHTS_DIR / f"{path.stem}_curves.tsv").is_file()

    assert "SIMULATED" in load_model(DEFAULT_MODELS["lesion"]).card["lesions"]
    lesion = load_model("lesion-basicseg3", "tensorflow")     # .keras: the Keras graph itself
    assert lesion.card["architecture"] == "BASICseg-3" and "SIMULATED" in lesion.card["lesions"]
    assert lesion.mirror and not of_type(lesion.keras, NoiseAdaptation)
    assert tuple(lesion.keras.input_shape) == (None, 128, 128, 1)
    assert tuple(lesion.keras.output_shape) == (None, 128, 128, 1)
    cord = load_model(DEFAULT_MODELS["cord"])
    assert cord.card["target"] == "cord" and not cord.mirror


# ---------------------------------------------------------------------------- loss, metric
def test_dice_coefficient_values():
    t = np.zeros((2, 4, 4, 1), "float32")
    t[0, :2] = 1  # 8 foreground pixels
    assert float(models.dice_coefficient(t, t)) == pytest.approx(1.0)
    assert float(models.dice_coefficient(t, 1 - t)) == pytest.approx(1 / (8 + 24 + 1))
    p = np.random.default_rng(4).uniform(size=t.shape).astype("float32")
    want = (2 * (t * p).sum() + 1) / (t.sum() + p.sum() + 1)  # pooled over the batch
    assert float(models.dice_coefficient(t, p)) == pytest.approx(want, rel=1e-5)
    assert float(models.dice_coefficient(t, p, smooth=0.0)) == pytest.approx(
        2 * (t * p).sum() / (t.sum() + p.sum()), rel=1e-5)


def test_bce_dice_loss_values():
    t = np.zeros((2, 4, 4, 1), "float32")
    t[1, 1:3, 1:3] = 1
    assert float(models.bce_dice_loss(t, t)) == pytest.approx(0.0, abs=1e-5)
    p = np.random.default_rng(5).uniform(0.05, 0.95, size=t.shape).astype("float32")
    bce = -np.mean(t * np.log(p) + (1 - t) * np.log(1 - p))
    dice = (2 * (t * p).sum() + 1) / (t.sum() + p.sum() + 1)
    assert float(models.bce_dice_loss(t, p)) == pytest.approx(bce + 1 - dice, rel=1e-4)


def test_custom_objects():
    objs = models.custom_objects()
    assert objs["NoiseAdaptation"] is NoiseAdaptation
    assert objs["dice_coefficient"] is models.dice_coefficient
    assert objs["bce_dice_loss"] is models.bce_dice_loss
    for obj in objs.values():
        assert keras.saving.get_registered_name(obj).startswith("basicseg>")
