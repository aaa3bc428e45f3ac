"""Evaluate: run the full participant pipeline on a labelled BIDS dataset and score it.

    basicseg-eval BIDS_DIR OUT_DIR --target cord [--cord-model M] [--sites SITE ...]
    basicseg-eval BIDS_DIR OUT_DIR --target lesion --lesions-per-image 2   # SIMULATED lesions

Writes ``<OUT_DIR>/eval_<target>_images.tsv`` (per image: Dice over the labelled slices, HD95, volume
error, and for lesions lesion-wise precision/recall/F1) and ``eval_<target>_slices.tsv`` (per-slice
Dice), and prints a summary. Lesion scores are on contusion-like lesions inserted by
:mod:`basicseg.simulate` into real images: there are no public contusion labels.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from basicseg.networks.registry import DEFAULT_MODELS
from basicseg.segment.infer import configure_tensorflow
from basicseg.io import write_tsv
from basicseg.segment.load import AxialVolume
from basicseg.measure.scores import dice, dice_per_slice, hausdorff95, lesion_detection, relative_volume_error
from basicseg.segment.pipeline import RECENTRE_PASSES, Models, segment
from basicseg.training.train import load_examples

log = logging.getLogger("basicseg")


def score(name, example, pred, ref, target, zooms) -> tuple[dict, pd.DataFrame]:
    labelled = example.cord.any(axis=(0, 1))            # score over the slices the reference covers
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


def evaluate(args) -> pd.DataFrame:
    configure_tensorflow(args.nprocs)
    examples = load_examples(Path(args.bids_dir), args.suffix, args.subjects)
    if args.sites:
        examples = [e for e in examples if e.site in args.sites]
    if not examples:
        raise SystemExit("no labelled images selected")
    models = Models.load(args.cord_model, args.lesion_model if args.target == "lesion" else None,
                         args.localiser_model)
    rng = np.random.default_rng(args.seed)
    rows, slices = [], []
    for e in examples:
        cases = [(e.name, e.volume, e.cord)]
        if args.target == "lesion":
            from basicseg.training.simulate import simulate_lesion
            cases = []
            for r in range(args.lesions_per_image):
                img, lesion, _ = simulate_lesion(e.volume.data, e.cord, e.volume.zooms, rng)
                vol = AxialVolume(e.volume.path, e.volume.native, img.astype(np.float32), e.volume.affine,
                                  e.volume.ornt)
                cases.append((f"{e.name}_sim-{r + 1}", vol, lesion))
        for name, vol, ref in cases:
            seg = segment(vol, models, "auto", recentre_passes=args.recentre_passes, lesion_mirror=args.mirror)
            pred = seg.cord if args.target == "cord" else seg.lesion
            row, per_slice = score(name, e, pred, ref, args.target, vol.zooms)
            rows.append(row)
            slices.append(per_slice)
            print(f"{name:40s} {e.site[:28]:28s} Dice {row['dice']:.3f}  HD95 {row['hd95_mm']:.2f} mm", flush=True)
    table = pd.DataFrame(rows)
    out = Path(args.out_dir)
    write_tsv(out / f"eval_{args.target}_images.tsv", table)
    write_tsv(out / f"eval_{args.target}_slices.tsv", pd.concat(slices))
    print_summary(table, args.target)
    return table


def print_summary(table: pd.DataFrame, target: str) -> None:
    cols = ["dice", "hd95_mm", "volume_error"] + (["lesion_f1"] if target == "lesion" else [])
    print(f"\n{target} evaluation: {len(table)} image(s)")
    print(table.groupby("suffix")[cols].median().round(3).to_string())
    print("median Dice, all images: %.3f" % table["dice"].median())


def parser():
    p = argparse.ArgumentParser(prog="basicseg-eval", description=__doc__.split("\n\n")[0])
    p.add_argument("bids_dir", type=Path)
    p.add_argument("out_dir", type=Path)
    p.add_argument("--target", choices=("cord", "lesion"), default="cord")
    p.add_argument("--cord-model", default=DEFAULT_MODELS["cord"])
    p.add_argument("--lesion-model", default=DEFAULT_MODELS["lesion"])
    p.add_argument("--localiser-model", default=DEFAULT_MODELS["localiser"])
    p.add_argument("--suffix", nargs="+", default=["T2w", "T2starw"])
    p.add_argument("--subjects", nargs="+")
    p.add_argument("--sites", nargs="+", help="evaluate only these sites (e.g. the held-out ones)")
    p.add_argument("--lesions-per-image", type=int, default=2)
    p.add_argument("--recentre-passes", type=int, default=RECENTRE_PASSES,
                   help="passes that recentre the boxes on the cord found before (0: the localiser's path only)")
    p.add_argument("--mirror", action=argparse.BooleanOptionalAction, default=None,
                   help="average the lesion network over each box and its left-right mirror (default: as its model card says)")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--nprocs", type=int)
    return p


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    if args.subjects:
        args.subjects = {s if s.startswith("sub-") else f"sub-{s}" for s in args.subjects}
    logging.basicConfig(level=logging.WARNING)
    evaluate(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
