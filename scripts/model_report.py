#!/usr/bin/env python3
"""Print the README's model tables (markdown) from the model cards and the cross-validation runs.

    python scripts/model_report.py [RUNS_DIR]      (after scripts/train_models.sh and scripts/cross_validate.sh)
    python scripts/model_report.py --patterns EVAL_PATTERNS_TSV...   (the README's cord and lesion tables)
"""
import json
import sys
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parent.parent
RUNS = Path(sys.argv[1]) if len(sys.argv) > 1 and sys.argv[1] != "--patterns" else REPO / "train_runs"
CONTRASTS = {"T2w": "T2w (1 mm 3D, resliced)", "T2starw": "T2*w (0.5 x 3 mm axial)"}


def shipped() -> None:
    print("| model | architecture | trained on | epochs (best) | training time | selection |")
    print("|---|---|---|---|---|---|")
    for card_path in sorted((REPO / "basicseg" / "networks" / "weights").glob("*.json")):
        c = json.loads(card_path.read_text())
        images = len(c["training_images"])
        print(f"| `{c['name']}` | {c['architecture'].split(' (')[0]} | {images} images, {len(c['training_sites'])} sites"
              f"{' + SIMULATED lesions' if c.get('lesions') else ''} | {c['epochs_run']} ({c['best_epoch']}) | "
              f"{c['training_seconds'] / 60:.0f} min, {c['device']} | {c.get('selection', 'best validation Dice')} |")


def cross_validation() -> None:
    rows = []
    for path in sorted(RUNS.glob("cv-*-eval*/eval_*_images.tsv")):
        t = pd.read_csv(path, sep="\t")
        t["fold"] = path.parent.name.split("-")[1]
        t["model"] = path.parent.name.split("eval-")[-1]          # cord1, cord2, lesion1 ...
        rows.append(t)
    if not rows:
        return
    t = pd.concat(rows)
    cols = ["fold", "model", "site", "image", "suffix", "dice", "hd95_mm", "volume_error"]
    extra = [c for c in ("lesion_f1",) if c in t]
    print("\n| " + " | ".join(cols + extra) + " |\n|" + "---|" * len(cols + extra))
    for _, r in t.iterrows():
        print("| " + " | ".join(f"{r[c]:.3f}" if isinstance(r[c], float) else str(r[c]) for c in cols + extra) + " |")
    print("\nmedian Dice by model and contrast:")
    print(t.groupby(["model", "suffix"])["dice"].agg(["median", "count"]).round(3).to_string())
    lesions = t[t["model"].str.startswith("lesion")]
    if len(lesions):   # one row per SIMULATED lesion; also the median over images of each image's median
        per_image = lesions.groupby(["model", "suffix", "subject"])["dice"].median().groupby(["model", "suffix"])
        print("\nSIMULATED lesions, per-image median Dice then median over images:")
        print(per_image.agg(["median", "count"]).round(3).to_string())
        print("lesion-wise detection (medians over simulated lesions):")
        print(lesions.groupby("model")[["lesion_precision", "lesion_recall", "lesion_f1"]].median().round(3).to_string())


def architectures(fold: str = "A") -> None:
    print(f"\nfold {fold}, best validation Dice (held-out sites, centres from the reference) by training time:")
    for arch in (1, 2, 3):
        state = RUNS / f"cv-{fold}-cord-basicseg{arch}" / "state.json"
        if not state.is_file():
            continue
        s = json.loads(state.read_text())
        h = pd.DataFrame(s["history"])
        h["minutes"] = h["seconds"].cumsum() / 60
        samples = int(h.get("samples", pd.Series(index=h.index, dtype=float)).fillna(25 * 32).sum())  # 25 x 32 before it was logged
        print(f"BASICseg-{arch}: best {s['best_dice']:.3f} at epoch {s['best_epoch']} of {s['epoch']} "
              f"({h['minutes'].iloc[-1]:.1f} min, {samples} training slices)")


def patterns(paths) -> None:
    """The README's cord and SIMULATED-lesion tables from basicseg-eval's eval_patterns.tsv (one per fold):
    the cord of each image as acquired (its lesion-free copy), lesion and normal slices over the lesion cases."""
    from basicseg.training.cases import HEALTHY, MISSED_DICE, summarise

    t = pd.concat([pd.read_csv(p, sep="\t", na_values="n/a") for p in paths], ignore_index=True)
    healthy, lesions = t[t["kind"] == HEALTHY], t[t["kind"] != HEALTHY]
    print("| contrast | held-out images | median Dice | worst image | lesion slices | normal slices |")
    print("|---|---|---|---|---|---|")
    for suffix, name in CONTRASTS.items():
        h, c = healthy[healthy["suffix"] == suffix], lesions[lesions["suffix"] == suffix]
        if len(h):
            print(f"| {name} | {len(h)} | {h['cord_dice'].median():.3f} | {h['cord_dice'].min():.3f} | "
                  f"{c['cord_dice_lesion_slices'].median():.3f} | {c['cord_dice_normal_slices'].median():.3f} |")
    print(f"\n| SIMULATED pattern | lesions | median Dice | median abs volume error | missed (Dice < {MISSED_DICE}) |")
    print("|---|---|---|---|---|")
    for kind, r in summarise(t)["lesions by pattern (SIMULATED)"].iterrows():
        print(f"| {kind} | {r['cases']:.0f} | {r['median_dice']:.3f} | {r['median_abs_volume_error']:.0%} | {r['missed']:.0f} |")
    clean = (healthy["pred_lesion_mm3"] == 0).sum()
    print(f"\nhealthy images without a false lesion: {clean} of {len(healthy)}; cases without any: "
          f"{(t['false_lesion_mm3'] == 0).sum()} of {len(t)}")


if __name__ == "__main__":
    if "--patterns" in sys.argv:
        patterns(sys.argv[sys.argv.index("--patterns") + 1:])
        sys.exit()
    shipped()
    cross_validation()
    architectures()
