"""basicseg-eval: its scoring on masks with known answers, and whole evaluations of the demo's labelled
images with the shipped networks (real numbers, the output tables' columns, settings.json)."""
import json

import numpy as np
import pandas as pd
import pytest

from basicseg.networks.registry import DEFAULT_MODELS, resolve_model, sha256
from basicseg.segment.hyperintensity import LESION_CONTRAST_MIN
from basicseg.training.config import EvalConfig
from basicseg.training.data import Example
from basicseg.training.evaluate import (IMAGE_COLUMNS, QC_COLUMNS, SLICE_COLUMNS, load_models, main, resolve_config,
                                        score)

# Floors under the shipped networks' scores on the demo (cord: 0.96 and 0.97 when written; lesion: 0.69
# and 0.85), low enough for another CPU's rounding, high enough to catch a broken pipeline.
CORD_DICE_FLOOR = 0.90
CORD_HD95_CEILING_MM = 2.0
LESION_DICE_FLOOR = 0.5
LESION_COLUMNS = ("lesion_n_ref", "lesion_n_pred", "lesion_tp", "lesion_tp_pred", "lesion_fp", "lesion_fn",
                  "lesion_precision", "lesion_recall", "lesion_f1")


def toy_example(cord: np.ndarray) -> Example:
    return Example("sub-toy", "site-A", "T2w", None, None, cord)


def test_score_counts_the_labelled_slices_only():
    cord = np.zeros((8, 8, 6), bool)
    cord[2:5, 2:5, 1:4] = True                      # 9 voxels on each of slices 1, 2, 3
    pred = cord.copy()
    pred[:, :, 3] = False                           # slice 3 missed
    pred[2:5, 2:5, 5] = True                        # a slice the reference does not cover: not scored
    row, slices = score("toy", toy_example(cord), pred, cord, "cord", (1.0, 1.0, 1.0))
    assert tuple(row) == IMAGE_COLUMNS
    assert row["dice"] == pytest.approx(2 * 18 / (27 + 18))
    assert row["volume_error"] == pytest.approx((18 - 27) / 27)
    assert (row["ref_voxels"], row["pred_voxels"]) == (27, 18)
    assert tuple(slices.columns) == SLICE_COLUMNS
    assert slices["slice"].tolist() == [1, 2, 3] and slices["dice"].tolist() == [1.0, 1.0, 0.0]


def test_score_of_a_lesion_adds_lesion_wise_detection():
    cord = np.zeros((12, 12, 4), bool)
    cord[1:11, 1:11, :] = True
    ref = np.zeros_like(cord)
    ref[2:4, 2:4, 1:3] = True                       # two lesions, one of them found
    ref[7:9, 7:9, 1:3] = True
    row, _ = score("toy_sim-1", toy_example(cord), ref & (np.arange(12) < 5)[:, None, None], ref, "lesion",
                   (1.0, 1.0, 1.0))
    assert row["lesion_n_ref"] == 2 and row["lesion_tp"] == 1 and row["lesion_fp"] == 0
    assert row["lesion_recall"] == pytest.approx(0.5) and row["lesion_precision"] == pytest.approx(1.0)
    assert row["dice"] == pytest.approx(2 * 8 / (16 + 8))


def test_config_resolves_the_command_line_once():
    config = resolve_config(["in", "out", "--subjects", "unf01", "sub-9418", "--sites", "UCL", "--no-mirror"])
    assert config.subjects == {"sub-unf01", "sub-9418"} and config.sites == ("UCL",) and config.mirror is False
    assert config.models == {"cord": DEFAULT_MODELS["cord"], "localiser": DEFAULT_MODELS["localiser"]}
    defaults = resolve_config(["in", "out"])
    assert defaults == EvalConfig(defaults.bids_dir, defaults.out_dir, argv=("in", "out"))
    assert "lesion" in resolve_config(["in", "out", "--target", "lesion"]).models
    with pytest.raises(SystemExit) as usage:
        resolve_config(["in", "out", "--target", "localiser"])
    assert usage.value.code == 2


def test_a_lesion_rule_overrides_the_card_of_the_evaluated_network_only():
    """--lesion-rule scores a fold network under the final network's rule; the cached network keeps its card's."""
    config = resolve_config(["in", "out", "--target", "lesion", "--lesion-rule", "0.7", "150"])
    assert config.lesion_rule == (0.7, 150.0)
    models = load_models(config)
    assert (models.lesion.threshold, models.lesion.min_volume_mm3) == (0.7, 150.0)
    assert load_models(resolve_config(["in", "out", "--target", "lesion", "--lesion-rule", "0.7", "150", "0.3"])
                       ).lesion.extent_threshold == 0.3
    with pytest.raises(SystemExit):
        resolve_config(["in", "out", "--lesion-rule", "0.7"])
    cached = load_models(resolve_config(["in", "out", "--target", "lesion"])).lesion
    assert cached is not models.lesion and cached.threshold == float(cached.card["threshold"])
    # --lesion-min-contrast: a value, or none (every lesion kept), instead of the card's hyperintensity rule
    for value, want in (("0.2", 0.2), ("none", float("-inf"))):
        config = resolve_config(["in", "out", "--target", "lesion", "--lesion-min-contrast", value])
        assert load_models(config).lesion.min_contrast == want
    assert cached.min_contrast == LESION_CONTRAST_MIN
    assert cached.min_volume_mm3 == float(cached.card["min_lesion_volume_mm3"])
    mirrored = load_models(resolve_config(["in", "out", "--cord-mirror"]))
    assert mirrored.cord.mirror is True and load_models(resolve_config(["in", "out"])).cord.mirror is False
    shifted = load_models(resolve_config(["in", "out", "--cord-shift", "1"])).cord
    assert shifted.shifts == ((5, 0), (-5, 0), (0, 5), (0, -5))       # 1 mm in 0.2 mm box pixels
    assert load_models(resolve_config(["in", "out"])).cord.shifts == ()
    lesion = load_models(resolve_config(["in", "out", "--target", "lesion", "--lesion-shift", "0.4"])).lesion
    assert lesion.shifts == ((2, 0), (-2, 0), (0, 2), (0, -2)) and lesion.threshold == float(lesion.card["threshold"])


def test_no_selected_image_is_an_error(tmp_path, demo_dataset):
    with pytest.raises(SystemExit, match="no labelled images selected"):
        main([str(demo_dataset), str(tmp_path / "eval"), "--sites", "nowhere", "--nprocs", "1"])


def test_cord_evaluation_of_the_demo_with_the_shipped_networks(tmp_path, demo_dataset):
    out = tmp_path / "eval"
    assert main([str(demo_dataset), str(out), "--subjects", "unf01", "9418", "--nprocs", "2"]) == 0
    table = pd.read_csv(out / "eval_cord_images.tsv", sep="\t")
    assert tuple(table.columns) == IMAGE_COLUMNS + QC_COLUMNS
    assert sorted(table["image"]) == ["sub-9418_run-1_T2starw", "sub-unf01_T2w"]
    assert (table["dice"] > CORD_DICE_FLOOR).all() and (table["hd95_mm"] < CORD_HD95_CEILING_MM).all()
    assert set(table["site"]) == {"UCL", "unf (spine-generic; IUGM)"}
    slices = pd.read_csv(out / "eval_cord_slices.tsv", sep="\t")
    assert tuple(slices.columns) == SLICE_COLUMNS and slices["dice"].median() > CORD_DICE_FLOOR

    settings = json.loads((out / "settings.json").read_text())
    assert settings["program"] == "basicseg-eval" and settings["options"]["subjects"] == ["sub-9418", "sub-unf01"]
    assert set(settings["models"]) == {"cord", "localiser"}
    for role, model in settings["models"].items():
        assert model["sha256"] == sha256(resolve_model(DEFAULT_MODELS[role]))
    assert set(settings["versions"]) == {"basicseg", "python", "numpy", "tensorflow", "keras"}
    assert settings["threads"]["nprocs"] == 2 and settings["inputs"]["images"] == [
        "sub-unf01/anat/sub-unf01_T2w.nii.gz", "sub-9418/anat/sub-9418_run-1_T2starw.nii.gz"]


def test_a_bright_cord_contrast_is_scored_with_its_qc_summary(tmp_path, demo_dataset):
    """--contrast bright-cord: the image recoloured (cord nearly as bright as its CSF), the same reference cord,
    the QC summary of the app in the row."""
    out = tmp_path / "eval"
    assert main([str(demo_dataset), str(out), "--subjects", "9418", "--contrast", "bright-cord", "--nprocs", "2"]) == 0
    table = pd.read_csv(out / "eval_cord_images.tsv", sep="\t")
    assert list(table["contrast"]) == ["bright-cord"] and table["qc_cord_mean_prob"].between(0, 1).all()
    assert table.loc[0, "ref_voxels"] > 0 and 0 <= table.loc[0, "dice"] <= 1


def test_lesion_evaluation_finds_the_simulated_lesions(tmp_path, demo_dataset):
    out = tmp_path / "eval"
    args = [str(demo_dataset), str(out), "--target", "lesion", "--lesions-per-image", "1",
            "--subjects", "errsm11", "unf01", "--nprocs", "2"]
    assert main(args) == 0
    table = pd.read_csv(out / "eval_lesion_images.tsv", sep="\t")
    assert tuple(table.columns) == IMAGE_COLUMNS + LESION_COLUMNS + QC_COLUMNS
    assert sorted(table["image"]) == ["sub-errsm11_T2w_sim-1", "sub-unf01_T2w_sim-1"]
    assert (table["lesion_tp"] == 1).all() and (table["dice"] > LESION_DICE_FLOOR).all()
    settings = json.loads((out / "settings.json").read_text())
    assert settings["models"]["lesion"]["name"] == DEFAULT_MODELS["lesion"]
    assert settings["options"]["lesions_per_image"] == 1 and settings["options"]["seed"] == 7


def test_lesion_scores_count_false_lesions_apart_from_the_true_one():
    from basicseg.training.cases import Case, lesion_scores
    truth = np.zeros((10, 10, 5), bool)
    truth[2:5, 2:5, 1:3] = True                       # 18 voxels
    pred = truth.copy()
    pred[2:5, 2:5, 2] = False                         # half found
    pred[8, 8, 0:2] = True                            # a 2-voxel false lesion elsewhere
    case = Case("toy", "gm", None, truth, truth)
    row = lesion_scores(case, pred, (1.0, 1.0, 2.0))
    assert row["lesion_dice"] == pytest.approx(2 * 9 / (18 + 11))
    assert row["false_lesions"] == 1 and row["false_lesion_mm3"] == pytest.approx(4.0)
    assert row["true_lesion_mm3"] == pytest.approx(36.0) and row["pred_lesion_mm3"] == pytest.approx(22.0)
    healthy = lesion_scores(Case("toy", "healthy", None, np.zeros_like(truth), truth), pred, (1.0, 1.0, 2.0))
    assert np.isnan(healthy["lesion_dice"]) and healthy["false_lesion_mm3"] == healthy["pred_lesion_mm3"] == 22.0


def test_pattern_evaluation_scores_every_pattern_and_a_healthy_copy(tmp_path, demo_dataset):
    """The unseen-site harness on one real demo image: a lesion-free case and one SIMULATED lesion per pattern,
    the cord scored on lesion and normal slices, the QC summary of the app in every row."""
    out = tmp_path / "eval"
    assert main([str(demo_dataset), str(out), "--target", "lesion", "--lesion-set", "patterns",
                 "--lesions-per-image", "1", "--subjects", "unf01", "--nprocs", "2"]) == 0
    table = pd.read_csv(out / "eval_patterns.tsv", sep="\t")
    assert list(table["kind"]) == ["healthy", "gm", "rim", "whole", "whole+haem"]
    lesions = table[table["kind"] != "healthy"]
    assert (lesions["true_lesion_mm3"] > 0).all() and lesions["lesion_dice"].notna().all()
    assert table.loc[0, "pred_lesion_mm3"] == table.loc[0, "false_lesion_mm3"]
    assert table.loc[0, "cord_dice"] > CORD_DICE_FLOOR and (lesions["cord_dice"] > 0.85).all()
    assert lesions["cord_dice_lesion_slices"].notna().all() and table["qc_cord_mean_prob"].between(0, 1).all()


def test_the_sweep_scores_each_rule_as_the_whole_volume_would():
    """sweep_case scores its rules inside the box that holds every mask they can make: each row equals
    lesion_mask, the hyperintensity rule and lesion_scores on the whole volume, false lesions in and outside the
    cord included (one of those in the cord as bright as the lesion, one no brighter than the cord)."""
    from types import SimpleNamespace
    from scipy import ndimage
    from basicseg.segment.hyperintensity import LESION_CONTRAST_MIN, hyperintense_lesions, tissue
    from basicseg.segment.postprocess import cord_mask, lesion_mask
    from basicseg.training.cases import Case, lesion_scores, sweep_case

    shape, zooms = (48, 48, 30), (0.5, 0.5, 2.0)
    I, J, K = np.indices(shape)
    cord = ((I - 24) ** 2 + (J - 22) ** 2 <= 36) & (K >= 3) & (K < 27)
    truth = cord & ((I - 24) ** 2 + (J - 22) ** 2 + ((K - 12) * 3) ** 2 <= 20)
    rng = np.random.default_rng(1)
    blobs = np.zeros(shape)
    blobs[24, 22, 18] = blobs[24, 25, 24] = blobs[10, 40, 15] = 1.0   # two false lesions in the cord, one outside
    lesion_prob = np.clip(ndimage.gaussian_filter(truth.astype(float), 1.0) * 1.6
                          + ndimage.gaussian_filter(blobs, 1.2) * 40 + 0.05 * rng.random(shape), 0, 1)
    image = (100 + 3 * rng.standard_normal(shape)) * (1 + 0.8 * ndimage.gaussian_filter(truth.astype(float), 0.5))
    image[22:27, 20:25, 17:20] *= 1.8          # the false lesion at (24, 22, 18) is hyperintense
    seg = SimpleNamespace(cord_prob=np.where(cord, 0.95, 0.02), lesion_prob=lesion_prob)
    case = Case("toy_gm-1", "gm", SimpleNamespace(zooms=zooms, data=image.astype(np.float32)), truth, cord)
    rows = sweep_case(case, toy_example(cord), seg, 0.5, LESION_CONTRAST_MIN)
    assert len(rows) == 105 and len({r["false_lesions"] for r in rows}) > 1
    unruled = sweep_case(case, toy_example(cord), seg, 0.5, None)     # the rule drops the faint false lesion
    plain = [(a, b) for a, b in zip(rows, unruled) if (a["threshold"], a["min_volume_mm3"], a["extent_threshold"])
             == (0.5, 0.0, 0.5)]
    assert [b["false_lesions"] - a["false_lesions"] for a, b in plain] == [1]
    cord_found = cord_mask(seg.cord_prob, 0.5)
    normal = tissue(case.volume.data, cord_found, zooms)
    for r in rows:
        mask, _ = hyperintense_lesions(lesion_mask(lesion_prob, cord_found, zooms, r["threshold"], r["min_volume_mm3"],
                                                   r["extent_threshold"]), normal, LESION_CONTRAST_MIN)
        for key, value in lesion_scores(case, mask, zooms).items():
            assert r[key] == pytest.approx(value, nan_ok=True), (r, key)


def test_model_report_prints_the_readme_tables_from_pattern_tables(tmp_path):
    """scripts/model_report.py --patterns: the README's cord table (each image's lesion-free copy) and lesion
    table (per pattern, the missed ones counted) from basicseg-eval's eval_patterns.tsv."""
    import subprocess
    import sys
    from pathlib import Path
    rows = [{"kind": "healthy", "suffix": "T2w", "cord_dice": d, "cord_dice_lesion_slices": np.nan,
             "cord_dice_normal_slices": d, "lesion_dice": np.nan, "lesion_volume_error": np.nan,
             "pred_lesion_mm3": p, "false_lesion_mm3": p} for d, p in ((0.90, 0.0), (0.94, 12.0))]
    rows += [{"kind": "gm", "suffix": "T2w", "cord_dice": 0.9, "cord_dice_lesion_slices": 0.88,
              "cord_dice_normal_slices": 0.91, "lesion_dice": d, "lesion_volume_error": e,
              "pred_lesion_mm3": 100.0, "false_lesion_mm3": 0.0} for d, e in ((0.8, -0.1), (0.3, -0.6), (0.7, 0.3))]
    # the other columns of basicseg-eval's table that the summary reads
    rows = [r | {"case": f"case-{i}", "site": "A", "cord_dice_lesion_slices_network_only": r["cord_dice_lesion_slices"]}
            for i, r in enumerate(rows)]
    pd.DataFrame(rows).to_csv(tmp_path / "eval_patterns.tsv", sep="\t", index=False, na_rep="n/a")
    repo = Path(__file__).resolve().parent.parent
    done = subprocess.run([sys.executable, str(repo / "scripts" / "model_report.py"), "--patterns",
                           str(tmp_path / "eval_patterns.tsv")], capture_output=True, text=True, check=True)
    assert "| T2w (1 mm 3D, resliced) | 2 | 0.920 | 0.900 | 0.880 | 0.910 |" in done.stdout
    assert "| gm | 3 | 0.700 | 30% | 1 |" in done.stdout
    assert "healthy images without a false lesion: 1 of 2; cases without any: 4 of 5" in done.stdout
