"""Short real training runs on the demo's labelled images: weights, model card, curves and settings.json
that load back, resume, --init-from and the moving average of the weights; the options; the schedule."""
import json
from pathlib import Path

import numpy as np
import pytest

from basicseg.io import sha256_file
from basicseg.segment.infer import Model
from basicseg.training.config import TrainConfig
from basicseg.training.train import (LR_FLOOR, decayed_learning_rate, labelled_images, main, resolve_config,
                                     subject_sites)

SPINE_PUBLIC = Path(__file__).resolve().parents[2] / "shared" / "data" / "spine-public"
DEMO_LABELLED = ["sub-errsm11", "sub-errsm21", "sub-test001", "sub-unf01", "sub-9418"]   # sub-ms01 has no labels


def test_sites_and_labelled_images_of_the_demo(demo_dataset):
    sites = subject_sites(demo_dataset)
    assert sites["sub-9418"] == "UCL" and sites["sub-unf01"] == "unf (spine-generic; IUGM)"
    assert sites["sub-errsm11"] == "sub-errsm11"            # no site and no source: the subject is its own site
    pairs = labelled_images(demo_dataset)
    assert sorted(image.name.split("_")[0] for image, _ in pairs) == sorted(DEMO_LABELLED)
    assert all(ref.name.endswith("_seg-manual.nii.gz") for _, ref in pairs)
    assert [image.name for image, _ in labelled_images(demo_dataset, ("T2starw",))] == ["sub-9418_run-1_T2starw.nii.gz"]


def test_sites_of_spine_public_group_the_errsm_volumes():
    if not SPINE_PUBLIC.is_dir():
        pytest.skip("needs ../shared/data/spine-public: the errsm volumes of one source and all 9 labelled images")
    sites = subject_sites(SPINE_PUBLIC)
    assert sites["sub-9418"] == "UCL"
    assert sites["sub-errsm11"] == sites["sub-errsm23"]          # one source = one site
    pairs = labelled_images(SPINE_PUBLIC)
    assert len(pairs) == 9 and all(ref.name.endswith("_seg-manual.nii.gz") for _, ref in pairs)


def test_config_resolves_the_command_line_once():
    argv = ["in", "out", "--subjects", "unf01", "sub-9418", "--val-subjects", "9418", "--val-sites", "UCL"]
    config = resolve_config(argv)
    assert config.subjects == {"sub-unf01", "sub-9418"} and config.val_subjects == ("sub-9418",)
    assert config.val_sites == ("UCL",) and config.argv == tuple(argv) and config.model_name == "cord-basicseg1"
    defaults = resolve_config(["in", "out"])
    assert defaults == TrainConfig(defaults.bids_dir, defaults.out_dir, argv=("in", "out"))
    assert defaults.subjects is None and defaults.epochs == 40 and defaults.learning_rate == 1e-3
    assert resolve_config(["in", "out", "--target", "localiser"]).model_name == "localiser"
    with pytest.raises(SystemExit) as usage:
        resolve_config(["in", "out", "--architecture", "4"])
    assert usage.value.code == 2
    with pytest.raises(Exception):
        defaults.epochs = 1                                   # frozen: no step patches the options


def test_learning_rate_decays_to_the_floor():
    rates = [decayed_learning_rate(1e-3, p) for p in np.linspace(0, 1, 11)]
    assert rates[0] == 1e-3 and rates[-1] == pytest.approx(LR_FLOOR * 1e-3)
    assert all(a >= b for a, b in zip(rates, rates[1:]))
    assert decayed_learning_rate(1e-3, 0.5) == pytest.approx(1e-3 * 0.5 ** 0.9)
    assert decayed_learning_rate(1e-3, 1.7) == decayed_learning_rate(1e-3, 1.0)   # past the cap: the floor


@pytest.mark.slow
@pytest.mark.parametrize("target,arch", [("cord", 1), ("lesion", 3)])
def test_short_training_writes_loadable_model_card_and_settings(tmp_path, demo_dataset, target, arch):
    out = tmp_path / "run"
    args = [str(demo_dataset), str(out), "--target", target, "--architecture", str(arch), "--epochs", "1",
            "--steps", "2", "--subjects", "sub-unf01", "sub-9418", "--val-subjects", "sub-9418", "--seed", "3"]
    assert main(args) == 0
    name = f"{target}-basicseg{arch}"
    card = json.loads((out / f"{name}.json").read_text())
    assert card["architecture"] == f"BASICseg-{arch}" and card["epochs_run"] == 1 and card["best_epoch"] == 1
    assert card["validation_sites"] == ["UCL"] and "sub-9418_run-1_T2starw" in "".join(card["validation_dice_per_image"])
    assert card["command"].startswith("basicseg-train") and card["seed"] == 3
    assert card["training_images"] == [{"image": "sub-unf01/anat/sub-unf01_T2w.nii.gz", "subject": "sub-unf01",
                                        "site": "unf (spine-generic; IUGM)", "suffix": "T2w"}]
    assert (out / f"{name}_curves.tsv").is_file() and (out / f"{name}_curves.png").stat().st_size > 1000
    model = Model(out / f"{name}.keras")
    if target == "lesion":
        assert "SIMULATED" in card["lesions"] and "redrawn every epoch" in card["lesions"]
        assert card["mirror_average"] is True and model.mirror
    prob = model.predict(np.random.default_rng(0).random((2, 128, 128, 1), dtype=np.float32))
    assert prob.shape == (2, 128, 128) and 0 <= prob.min() and prob.max() <= 1

    settings = json.loads((out / "settings.json").read_text())
    assert settings["program"] == "basicseg-train" and settings["command"] == card["command"]
    assert settings["options"]["target"] == target and settings["options"]["val_subjects"] == ["sub-9418"]
    assert settings["inputs"]["validation_images"] == ["sub-9418/anat/sub-9418_run-1_T2starw.nii.gz"]
    assert settings["models"] == {"name": name, "init_from": None, "resumed_from": None}
    assert set(settings["versions"]) == {"basicseg", "python", "numpy", "tensorflow", "keras"}
    assert {"nprocs", "intra_op", "inter_op", "cpu_count"} <= set(settings["threads"])

    # resume: a second call continues at epoch 2 from the saved state (lesions are redrawn after every epoch)
    assert main(args[:7] + ["3"] + args[8:] + ["--resume"]) == 0
    history = json.loads((out / "state.json").read_text())["history"]
    assert len(history) == 3
    rates = [h["learning_rate"] for h in history]     # epochs 1, 2, 3 of 3 (the first run planned 1 of 1)
    assert rates[0] == pytest.approx(1e-3, rel=0.05) and rates[1] > rates[2]
    resumed = json.loads((out / "settings.json").read_text())
    assert resumed["models"]["resumed_from"]["epoch"] == 1 and resumed["options"]["epochs"] == 3


def test_final_model_without_held_out_images_is_the_last_epoch(tmp_path, demo_dataset):
    out = tmp_path / "final"
    args = [str(demo_dataset), str(out), "--target", "cord", "--architecture", "1", "--epochs", "2",
            "--steps", "1", "--subjects", "sub-unf01", "--seed", "5"]
    assert main(args) == 0
    card = json.loads((out / "cord-basicseg1.json").read_text())
    assert card["selection"] == "last epoch (no held-out images)" and card["best_epoch"] == card["epochs_run"] == 2
    assert card["best_validation_dice"] is None and card["validation_sites"] == []
    assert "polynomial decay" in card["learning_rate_schedule"]


def test_lesion_run_starts_from_the_cord_network_unless_it_saw_a_held_out_image(tmp_path, demo_dataset):
    import keras
    from basicseg.networks.registry import resolve_model
    from basicseg.networks.unet import custom_objects

    donor = resolve_model("cord-basicseg1")             # the shipped cord network: trained on every site
    out = tmp_path / "lesion"
    base = [str(demo_dataset), str(out), "--target", "lesion", "--architecture", "1", "--epochs", "0",
            "--subjects", "sub-unf01", "sub-9418", "--init-from", "cord-basicseg1"]
    with pytest.raises(SystemExit, match=r"trained on held-out subject.*sub-9418 \(UCL\)"):
        main(base + ["--val-subjects", "sub-9418"])
    assert main(base) == 0                              # no held-out images: a final run may start from it
    card = json.loads((out / "lesion-basicseg1.json").read_text())
    assert card["initialised_from"]["model"] == "cord-basicseg1" and "UCL" in card["initialised_from"]["training_sites"]
    assert card["initialised_from"]["sha256"] == sha256_file(donor)
    started = keras.models.load_model(out / "lesion-basicseg1.keras", custom_objects=custom_objects(), compile=False)
    cord = keras.models.load_model(donor, custom_objects=custom_objects(), compile=False)
    assert all(np.array_equal(a, b) for a, b in zip(started.get_weights(), cord.get_weights()))
    settings = json.loads((out / "settings.json").read_text())
    assert settings["models"]["init_from"] == {"name": "cord-basicseg1", "file": str(donor),
                                               "sha256": sha256_file(donor)}
    assert settings["inputs"]["training_images"] == ["sub-unf01/anat/sub-unf01_T2w.nii.gz",
                                                     "sub-9418/anat/sub-9418_run-1_T2starw.nii.gz"]


def test_a_last_epoch_checkpoint_is_checked_against_its_runs_card(tmp_path, demo_dataset):
    import shutil

    from basicseg.networks.registry import resolve_model

    # a fold's lesion network starts from its cord network's last epoch (NAME.last-average.keras), which has no
    # card of its own: the run's NAME.json lists the images it was trained on
    donor = resolve_model("cord-basicseg1")
    run = tmp_path / "cv-cord"
    run.mkdir()
    checkpoint = run / "cord-basicseg1.last-average.keras"
    shutil.copy(donor, checkpoint)
    base = [str(demo_dataset), str(tmp_path / "lesion"), "--target", "lesion", "--architecture", "1", "--epochs", "0",
            "--subjects", "sub-unf01", "sub-9418", "--val-subjects", "sub-9418", "--init-from", str(checkpoint)]
    with pytest.raises(SystemExit, match="no model card beside it"):
        main(base)
    shutil.copy(donor.with_suffix(".json"), run / "cord-basicseg1.json")
    with pytest.raises(SystemExit, match=r"trained on held-out subject.*sub-9418 \(UCL\)"):
        main(base)


def test_weight_average_is_the_mean_of_the_batches(tmp_path):
    import keras
    from basicseg.training.train import averaged_weights, weight_average

    # on a one-weight network: after batches leaving w1 then w2, average = m w1 + (1 - m) w2
    net = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1, use_bias=False)])
    average = weight_average(0.75, tmp_path / "avg.npz")
    average.set_model(net)
    for w in (4.0, 8.0):
        net.set_weights([np.array([[w]], np.float32)])
        average.on_train_batch_end(0)
    with averaged_weights(net, average):
        assert net.get_weights()[0][0, 0] == pytest.approx(0.75 * 4 + 0.25 * 8)
    assert net.get_weights()[0][0, 0] == 8.0              # the raw weights come back for training to go on
    average.save()
    assert weight_average(0.75, tmp_path / "avg.npz").average[0][0, 0] == pytest.approx(5.0)   # --resume reads it


@pytest.mark.slow
def test_weight_average_is_what_is_shipped(tmp_path, demo_dataset):
    import keras
    from basicseg.networks.unet import custom_objects

    # a real run: the shipped network holds the average, the resumable checkpoint the raw weights
    out = tmp_path / "final"
    args = [str(demo_dataset), str(out), "--target", "cord", "--architecture", "3", "--epochs", "2",
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


def test_the_card_says_where_a_resumed_run_restarted_its_decay():
    from basicseg.training.card import restarts

    decay = [{"epoch": e, "learning_rate": 1e-3 * (1 - e / 9)} for e in range(1, 9)]
    resumed = decay + [{"epoch": 9, "learning_rate": 6e-4}, {"epoch": 10, "learning_rate": 5e-4}]
    assert restarts(decay) == ""
    assert restarts(resumed) == "; restarted at epoch 9 (resumed with more --epochs)"
    assert restarts([{"epoch": 1, "learning_rate": None}, {"epoch": 2, "learning_rate": 1e-3}]) == ""
