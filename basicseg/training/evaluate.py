"""Evaluate: run the full participant pipeline on a labelled BIDS dataset and score it.

    basicseg-eval BIDS_DIR OUT_DIR --target cord [--cord-model M] [--sites SITE ...]
    basicseg-eval BIDS_DIR OUT_DIR --target lesion --lesions-per-image 2   # SIMULATED lesions
    basicseg-eval BIDS_DIR OUT_DIR --target lesion --lesion-set patterns   # clinical patterns + healthy copies
    basicseg-eval BIDS_DIR OUT_DIR --target cord --contrast bright-cord    # a contrast no training site has

Writes ``<OUT_DIR>/eval_<target>_images.tsv`` (per image: Dice over the labelled slices, HD95, volume
error, and for lesions lesion-wise precision/recall/F1), ``eval_<target>_slices.tsv`` (per-slice
Dice) and ``settings.json`` (the resolved options, the networks' SHA-256, versions and threads), and
prints a summary. With ``--lesion-set patterns``: ``eval_patterns.tsv`` (one row per case, scored by
:mod:`basicseg.training.cases`) and ``eval_patterns_sweep.tsv`` (every case under every lesion threshold
and minimum volume, for ``scripts/tune_lesion.py``). Lesion scores are on SIMULATED lesions inserted into
real images: there are no public contusion labels. ``--contrast bright-cord`` recolours every image first
(:mod:`basicseg.training.contrast`); each row says its ``contrast``, and carries the app's QC summary.
"""
from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from basicseg.io import write_tsv
from basicseg.measure.confidence import COLUMN_PREFIX, SUMMARY_KEYS, confidence_summary, row_columns
from basicseg.measure.scores import dice, dice_per_slice, hausdorff95, lesion_detection, relative_volume_error
from basicseg.segment.crop import PIXEL_MM
from basicseg.segment.infer import configure_tensorflow
from basicseg.segment.load import AxialVolume
from basicseg.segment.pipeline import Models, segment
from basicseg.training import settings as run_settings
from basicseg.training import cases as unseen
from basicseg.training.config import EVAL_TARGETS, LESION_SETS, EvalConfig
from basicseg.training.contrast import CONTRASTS, with_contrast
from basicseg.training.data import Example, load_examples

log = logging.getLogger("basicseg")

IMAGE_COLUMNS = ("image", "subject", "site", "suffix", "dice", "hd95_mm", "volume_error", "ref_voxels", "pred_voxels")
SLICE_COLUMNS = ("image", "subject", "slice", "dice")
QC_COLUMNS = ("contrast",) + tuple(COLUMN_PREFIX + k for k in SUMMARY_KEYS)    # after the scores, every row
SUMMARY_COLUMNS = ("dice", "hd95_mm", "volume_error")


def score(name, example, pred, ref, target, zooms) -> tuple[dict, pd.DataFrame]:
    """One image's row (over the slices the reference cord covers) and its per-slice Dice."""
    labelled = example.cord.any(axis=(0, 1))
    p, r = pred & labelled[None, None, :], ref & labelled[None, None, :]
    row = {"image": name, "subject": example.subject, "site": example.site, "suffix": example.suffix,
           "dice": dice(r, p), "hd95_mm": hausdorff95(r, p, zooms),
           "volume_error": relative_volume_error(r, p), "ref_voxels": int(r.sum()), "pred_voxels": int(p.sum())}
    if target == "lesion":
        row.update({f"lesion_{k}": v for k, v in lesion_detection(r, p, spacing=zooms).items()})
    per_slice = dice_per_slice(r, p, axis=2)
    slices = pd.DataFrame({"image": name, "subject": example.subject, "slice": np.arange(len(per_slice)),
                           "dice": per_slice})
    return row, slices[labelled]


def select_examples(config: EvalConfig) -> list[Example]:
    examples = load_examples(config.bids_dir, config.suffix, config.subjects,
                             with_gm=config.lesion_set == "patterns" or config.contrast != "native")
    if config.sites:
        examples = [e for e in examples if e.site in config.sites]
    if not examples:
        raise SystemExit("no labelled images selected")
    return [with_contrast(e, config.contrast) for e in examples]


def load_models(config: EvalConfig) -> Models:
    models = Models.load(config.cord_model, config.lesion_model if config.target == "lesion" else None,
                         config.localiser_model)
    rule = dict(zip(("threshold", "min_volume_mm3", "extent_threshold"), config.lesion_rule or ()))
    if rule and "extent_threshold" not in rule:
        rule["extent_threshold"] = rule["threshold"]     # no hysteresis
    # a fold network scored under the rule shipped with the final one: the cases (and their QC summary) are then
    # what the app would report; test-time augmentation is measured before it is shipped
    lesion = models.lesion and models.lesion.with_settings(
        **rule, mirror=config.mirror, shifts=shift_offsets(config.lesion_shift_mm) if config.lesion_shift_mm else None,
        min_contrast=_min_contrast(config.lesion_min_contrast))
    cord = models.cord.with_settings(mirror=config.cord_mirror,
                                     shifts=shift_offsets(config.cord_shift_mm) if config.cord_shift_mm else None)
    return dataclasses.replace(models, lesion=lesion, cord=cord)


def _min_contrast(value: str | None) -> float | None:
    """--lesion-min-contrast as a Model setting: None keeps the card's, "none" keeps every lesion (-inf)."""
    if value is None:
        return None
    return float("-inf") if value.lower() == "none" else float(value)


def _min_contrast_arg(value: str) -> str:
    """argparse's check of --lesion-min-contrast: a number or "none" (the value itself is kept as given)."""
    try:
        _min_contrast(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a log-ratio (e.g. 0.1) or none, got {value!r}") from None
    return value


def shift_offsets(mm: float) -> tuple[tuple[int, int], ...]:
    """The four box shifts of +-``mm`` along each in-plane axis, in box pixels."""
    px = int(round(mm / PIXEL_MM))
    return ((px, 0), (-px, 0), (0, px), (0, -px))


def cases(example: Example, config: EvalConfig, rng: np.random.Generator) -> list[tuple[str, AxialVolume, np.ndarray]]:
    """(name, volume, reference) to segment: the image and its cord, or ``--lesions-per-image`` copies of
    it, each with one SIMULATED lesion as the reference."""
    if config.target != "lesion":
        return [(example.name, example.volume, example.cord)]
    from basicseg.training.simulate import simulate_lesion

    vol, out = example.volume, []
    for r in range(config.lesions_per_image):
        img, lesion, _ = simulate_lesion(vol.data, example.cord, vol.zooms, rng)
        with_lesion = AxialVolume(vol.path, vol.native, img.astype(np.float32), vol.affine, vol.ornt)
        out.append((f"{example.name}_sim-{r + 1}", with_lesion, lesion))
    return out


def evaluate_case(name, example, volume, ref, models: Models, config: EvalConfig) -> tuple[dict, pd.DataFrame]:
    seg = segment(volume, models, "auto", recentre_passes=config.recentre_passes)
    pred = seg.cord if config.target == "cord" else seg.lesion
    row, per_slice = score(name, example, pred, ref, config.target, volume.zooms)
    row |= {"contrast": config.contrast} | row_columns(
        confidence_summary(seg.cord_prob, seg.cord, seg.lesion_prob, seg.lesion, volume.zooms, volume.data,
                           seg.lesion_contrast))
    print(f"{name:40s} {example.site[:28]:28s} Dice {row['dice']:.3f}  HD95 {row['hd95_mm']:.2f} mm", flush=True)
    return row, per_slice


def eval_settings(config: EvalConfig, examples: list[Example], models: Models, device: str) -> dict:
    inputs = {"images": [run_settings.relative_image(e.path, config.bids_dir) for e in examples]}
    loaded = {"cord": models.cord, "lesion": models.lesion, "localiser": models.localiser}
    files = {role: {"name": name, "file": str(loaded[role].path), "sha256": loaded[role].sha256,
                    "card_name": loaded[role].name} for role, name in config.models.items()}
    return run_settings.resolved_settings("basicseg-eval", config, inputs, files, device)


def evaluate(config: EvalConfig) -> pd.DataFrame:
    """Segment every selected labelled image, score it, and write the tables and settings.json."""
    device = configure_tensorflow(config.nprocs)
    examples = select_examples(config)
    models = load_models(config)
    run_settings.write_settings(config.out_dir, eval_settings(config, examples, models, device))
    if config.lesion_set == "patterns":
        return evaluate_patterns(config, examples, models)
    rng = np.random.default_rng(config.seed)
    rows, slices = [], []
    for e in examples:
        for name, volume, ref in cases(e, config, rng):
            row, per_slice = evaluate_case(name, e, volume, ref, models, config)
            rows.append(row)
            slices.append(per_slice)
    table = pd.DataFrame(rows)
    write_tsv(config.out_dir / f"eval_{config.target}_images.tsv", table)
    write_tsv(config.out_dir / f"eval_{config.target}_slices.tsv", pd.concat(slices))
    print_summary(table, config.target)
    return table


def evaluate_patterns(config: EvalConfig, examples, models: Models) -> pd.DataFrame:
    """Every image lesion-free and with each clinical pattern, scored by :func:`basicseg.training.cases.score_case`."""
    rng = np.random.default_rng(config.seed)
    rows, sweep = [], []
    for e in examples:
        for case in unseen.pattern_cases(e, config.lesions_per_image, rng):
            seg = segment(case.volume, models, "auto", recentre_passes=config.recentre_passes)
            rows.append(unseen.score_case(case, e, seg, models.cord.threshold) | {"contrast": config.contrast})
            sweep += unseen.sweep_case(case, e, seg, models.cord.threshold, models.lesion.min_contrast)
            r = rows[-1]
            print(f"{case.name:44s} {e.site[:24]:24s} cord {r['cord_dice']:.3f} lesion {r['lesion_dice']:.3f} "
                  f"false {r['false_lesion_mm3']:.0f} mm3", flush=True)
    table = pd.DataFrame(rows)
    write_tsv(config.out_dir / "eval_patterns.tsv", table)
    write_tsv(config.out_dir / "eval_patterns_sweep.tsv", pd.DataFrame(sweep))
    for title, part in unseen.summarise(table).items():
        print(f"\n{title}\n{part.round(3).to_string()}")
    return table


def print_summary(table: pd.DataFrame, target: str) -> None:
    cols = list(SUMMARY_COLUMNS) + (["lesion_f1"] if target == "lesion" else [])
    print(f"\n{target} evaluation: {len(table)} image(s)")
    print(table.groupby("suffix")[cols].median().round(3).to_string())
    print("median Dice, all images: %.3f" % table["dice"].median())


def parser() -> argparse.ArgumentParser:
    d = EvalConfig          # the defaults live on the config
    p = argparse.ArgumentParser(prog="basicseg-eval", description=__doc__.split("\n\n")[0])
    p.add_argument("bids_dir", type=Path)
    p.add_argument("out_dir", type=Path)
    p.add_argument("--target", choices=EVAL_TARGETS, default=d.target)
    p.add_argument("--cord-model", default=d.cord_model)
    p.add_argument("--lesion-model", default=d.lesion_model)
    p.add_argument("--localiser-model", default=d.localiser_model)
    p.add_argument("--suffix", nargs="+", default=list(d.suffix))
    p.add_argument("--subjects", nargs="+")
    p.add_argument("--sites", nargs="+", help="evaluate only these sites (e.g. the held-out ones)")
    p.add_argument("--lesions-per-image", type=int, default=d.lesions_per_image,
                   help="SIMULATED lesions per image (with --lesion-set patterns: per pattern)")
    p.add_argument("--lesion-set", choices=LESION_SETS, default=d.lesion_set,
                   help="spindle: the simulator's lesions; patterns: the clinical patterns and a lesion-free copy of each image")
    p.add_argument("--recentre-passes", type=int, default=d.recentre_passes,
                   help="passes that recentre the boxes on the cord found before (0: the localiser's path only)")
    p.add_argument("--mirror", action=argparse.BooleanOptionalAction, default=None,
                   help="average the lesion network over each box and its left-right mirror (default: as its model card says)")
    p.add_argument("--cord-mirror", action=argparse.BooleanOptionalAction, default=None,
                   help="average the cord network over each box and its left-right mirror (default: as its model card says)")
    p.add_argument("--cord-shift", dest="cord_shift_mm", type=float, default=d.cord_shift_mm, metavar="MM",
                   help="also average the cord network over each box shifted by +-MM along each in-plane axis")
    p.add_argument("--lesion-shift", dest="lesion_shift_mm", type=float, default=d.lesion_shift_mm, metavar="MM",
                   help="the same for the lesion network")
    p.add_argument("--contrast", choices=CONTRASTS, default=d.contrast,
                   help="bright-cord: every image recoloured, its cord nearly as bright as its CSF, its grey matter "
                        "visible (basicseg.training.contrast)")
    p.add_argument("--lesion-rule", nargs="+", type=float, metavar="T",
                   help="THRESHOLD MIN_MM3 [EXTENT_THRESHOLD]: the lesion rule instead of the lesion card's "
                        "(e.g. a fold network under the final network's rule)")
    p.add_argument("--lesion-min-contrast", metavar="LN", type=_min_contrast_arg,
                   help="keep only lesions at least LN (ln) brighter than the matched normal cord near them, instead "
                        "of the lesion card's rule (basicseg.segment.hyperintensity); none keeps every lesion")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--nprocs", type=int)
    return p


def resolve_config(argv) -> EvalConfig:
    """The command line as an :class:`EvalConfig` (argparse's usage errors exit 2 as before)."""
    p = parser()
    args = p.parse_args(argv)
    if args.lesion_rule is not None and len(args.lesion_rule) not in (2, 3):
        p.error("--lesion-rule takes THRESHOLD MIN_MM3 [EXTENT_THRESHOLD]")
    return EvalConfig.from_namespace(args, argv)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    config = resolve_config(argv)
    logging.basicConfig(level=logging.WARNING)
    evaluate(config)
    return 0


if __name__ == "__main__":
    sys.exit(main())
