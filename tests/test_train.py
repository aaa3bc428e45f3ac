"""A short real training run on real images: weights, model card and curves that load back, and resume."""
import json

import numpy as np
import pytest

from basicseg.segment.infer import Model
from basicseg.training.train import LR_FLOOR, decayed_learning_rate, labelled_images, main, subject_sites

pytestmark = pytest.mark.slow


def test_sites_and_labelled_images(spine_public):
    sites = subject_sites(spine_public)
    assert sites["sub-9418"] == "UCL"
    assert sites["sub-errsm11"] == sites["sub-errsm23"]          # one source = one site
    pairs = labelled_images(spine_public)
    assert len(pairs) == 9 and all(ref.name.endswith("_seg-manual.nii.gz") for _, ref in pairs)


@pytest.mark.parametrize("target,arch", [("cord", 1), ("lesion", 3)])
def test_short_training_writes_loadable_model_and_card(tmp_path, spine_public, target, arch):
    out = tmp_path / "run"
    args = [str(spine_public), str(out), "--target", target, "--architecture", str(arch), "--epochs", "1",
            "--steps", "2", "--subjects", "sub-unf01", "sub-9418", "--val-subjects", "sub-9418", "--seed", "3"]
    assert main(args) == 0
    name = f"{target}-basicseg{arch}"
    card = json.loads((out / f"{name}.json").read_text())
    assert card["architecture"] == f"BASICseg-{arch}" and card["epochs_run"] == 1 and card["best_epoch"] == 1
    assert card["validation_sites"] == ["UCL"] and "sub-9418_run-1_T2starw" in "".join(card["validation_dice_per_image"])
    assert card["command"].startswith("basicseg-train") and card["seed"] == 3
    assert (out / f"{name}_curves.tsv").is_file() and (out / f"{name}_curves.png").stat().st_size > 1000
    model = Model(out / f"{name}.keras")
    if target == "lesion":
        assert "SIMULATED" in card["lesions"] and "redrawn every epoch" in card["lesions"]
        assert card["mirror_average"] is True and model.mirror
    prob = model.predict(np.random.default_rng(0).random((2, 128, 128, 1), dtype=np.float32))
    assert prob.shape == (2, 128, 128) and 0 <= prob.min() and prob.max() <= 1
    # resume: a second call continues at epoch 2 from the saved state (lesions are redrawn after every epoch)
    assert main(args[:7] + ["3"] + args[8:] + ["--resume"]) == 0
    history = json.loads((out / "state.json").read_text())["history"]
    assert len(history) == 3
    rates = [h["learning_rate"] for h in history]     # epochs 1, 2, 3 of 3 (the first run planned 1 of 1)
    assert rates[0] == pytest.approx(1e-3, rel=0.05) and rates[1] > rates[2]


def test_learning_rate_decays_to_the_floor():
    rates = [decayed_learning_rate(1e-3, p) for p in np.linspace(0, 1, 11)]
    assert rates[0] == 1e-3 and rates[-1] == pytest.approx(LR_FLOOR * 1e-3)
    assert all(a >= b for a, b in zip(rates, rates[1:]))
    assert decayed_learning_rate(1e-3, 0.5) == pytest.approx(1e-3 * 0.5 ** 0.9)
    assert decayed_learning_rate(1e-3, 1.7) == decayed_learning_rate(1e-3, 1.0)   # past the cap: the floor


def test_final_model_without_held_out_images_is_the_last_epoch(tmp_path, spine_public):
    out = tmp_path / "final"
    args = [str(spine_public), str(out), "--target", "cord", "--architecture", "1", "--epochs", "2",
            "--steps", "1", "--subjects", "sub-unf01", "--seed", "5"]
    assert main(args) == 0
    card = json.loads((out / "cord-basicseg1.json").read_text())
    assert card["selection"] == "last epoch (no held-out images)" and card["best_epoch"] == card["epochs_run"] == 2
    assert card["best_validation_dice"] is None and card["validation_sites"] == []
    assert "polynomial decay" in card["learning_rate_schedule"]


def test_lesion_run_starts_from_the_cord_network_unless_it_saw_a_held_out_image(tmp_path, spine_public):
    import keras
    from basicseg.networks.registry import resolve_model
    from basicseg.networks.unet import custom_objects

    donor = resolve_model("cord-basicseg1")             # the shipped cord network: trained on every site
    out = tmp_path / "lesion"
    base = [str(spine_public), str(out), "--target", "lesion", "--architecture", "1", "--epochs", "0",
            "--subjects", "sub-unf01", "sub-9418", "--init-from", "cord-basicseg1"]
    with pytest.raises(SystemExit, match=r"trained on held-out subject.*sub-9418 \(UCL\)"):
        main(base + ["--val-subjects", "sub-9418"])
    assert main(base) == 0                              # no held-out images: a final run may start from it
    card = json.loads((out / "lesion-basicseg1.json").read_text())
    assert card["initialised_from"]["model"] == "cord-basicseg1" and "UCL" in card["initialised_from"]["training_sites"]
    started = keras.models.load_model(out / "lesion-basicseg1.keras", custom_objects=custom_objects(), compile=False)
    cord = keras.models.load_model(donor, custom_objects=custom_objects(), compile=False)
    assert all(np.array_equal(a, b) for a, b in zip(started.get_weights(), cord.get_weights()))


def test_weight_average_is_the_mean_of_the_batches_and_what_is_saved(tmp_path, spine_public):
    import keras
    from basicseg.networks.unet import custom_objects
    from basicseg.training.train import averaged_weights, weight_average

    # the arithmetic, on a one-weight network: after batches leaving w1 then w2, average = m w1 + (1 - m) w2
    net = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1, use_bias=False)])
    average = weight_average(0.75, tmp_path / "avg.npz")
    average.set_model(net)
    for w in (4.0, 8.0):
        net.set_weights([np.array([[w]], np.float32)])
        average.on_train_batch_end(0)
    with averaged_weights(net, average):
        assert net.get_weights()[0][0, 0] == pytest.approx(0.75 * 4 + 0.25 * 8)
    assert net.get_weights()[0][0, 0] == 8.0              # the raw weights come back for training to go on

    # a real run: the shipped network holds the average, the resumable checkpoint the raw weights
    out = tmp_path / "final"
    args = [str(spine_public), str(out), "--target", "cord", "--architecture", "3", "--epochs", "2",
            "--steps", "2", "--subjects", "sub-unf01", "--seed", "5", "--ema", "0.9"]
    assert main(args) == 0
    card = json.loads((out / "cord-basicseg3.json").read_text())
    assert card["weight_averaging"]["momentum"] == 0.9
    shipped = keras.models.load_model(out / "cord-basicseg3.keras", custom_objects=custom_objects(), compile=False)
    raw = keras.models.load_model(out / "cord-basicseg3.last.keras", custom_objects=custom_objects(), compile=False)
    assert (out / "cord-basicseg3.last-average.keras").is_file()
    kept = list(np.load(out / "weight_average.npz").values())
    assert all(np.array_equal(a, v.numpy()) for a, v in zip(kept, shipped.trainable_variables))
    assert not all(np.array_equal(a.numpy(), b.numpy()) for a, b in zip(shipped.trainable_variables,
                                                                         raw.trainable_variables))
