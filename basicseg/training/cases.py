"""Unseen-site cases: each labelled image lesion-free and with a SIMULATED lesion of every clinical pattern,
segmented through the whole pipeline and scored for the cord, the lesion and the QC summary.

    basicseg-eval BIDS_DIR OUT_DIR --target lesion --lesion-set patterns --lesions-per-image 1

One row per case in ``eval_patterns.tsv``. The patterns are those of :mod:`.patterns` (BASIC grades 1-4:
GM-confined, rim-sparing, whole section with swelling, whole section with a haemorrhagic core; some with
extra foci), drawn from the image's grey matter (:func:`.data.grey_matter`: the manual GM mask of the T2*w
images, else the atlas prior). The reference cord of a lesion case is the simulator's swollen cord with
the lesion inside it: an oedematous section is cord. Every lesion figure built on these is SIMULATED.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
from scipy import ndimage

from basicseg.measure.confidence import confidence_summary, row_columns
from basicseg.measure.scores import dice, relative_volume_error
from basicseg.segment.hyperintensity import hyperintense_lesions, tissue
from basicseg.segment.load import AxialVolume
from basicseg.segment.postprocess import components, cord_mask, lesion_mask
from basicseg.training.data import Example

PATTERN_CASES = (("gm", False), ("rim", False), ("whole", False), ("whole", True))
HEALTHY = "healthy"
MISSED_DICE = 0.5        # a lesion scored under this is more wrong than right: counted as missed
FAILED_CORD_DICE = 0.85         # below it an image's cord is a failure
# the lesion rule's grid, scored on every case so that scripts/tune_lesion.py can choose it leave-site-out
SWEEP_THRESHOLDS = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8)
SWEEP_MIN_VOLUMES_MM3 = (0.0, 10.0, 20.0, 40.0, 80.0)
SWEEP_EXTENT_THRESHOLDS = (0.2, 0.3, 0.4)    # hysteresis outlines below each threshold (and the threshold itself)


@dataclass
class Case:
    name: str
    kind: str                   # "healthy", "gm", "rim", "whole", "whole+haem"
    volume: AxialVolume
    lesion: np.ndarray          # bool, the exact SIMULATED lesion (empty when healthy)
    cord: np.ndarray            # bool, the reference cord (swollen, lesion included)


def kind_name(pattern: str, haemorrhage: bool) -> str:
    return pattern + ("+haem" if haemorrhage else "")


def pattern_cases(example: Example, seeds: int, rng: np.random.Generator) -> list[Case]:
    """The image lesion-free, then ``seeds`` copies per pattern, each with one SIMULATED lesion."""
    from basicseg.training.patterns import simulate_pattern

    vol = example.volume
    out = [Case(f"{example.name}_{HEALTHY}", HEALTHY, vol, np.zeros_like(example.cord), example.cord)]
    for r in range(seeds):
        for pattern, haem in PATTERN_CASES:
            sim = simulate_pattern(vol.data, example.cord, example.gm, vol.zooms, pattern, haem, rng)
            kind = kind_name(pattern, haem)
            out.append(Case(f"{example.name}_{kind}-{r + 1}", kind, replace(vol, data=sim.image),
                            sim.lesion, sim.cord | sim.lesion))
    return out


def _pooled_dice(ref, pred, slices) -> float:
    return dice(ref[:, :, slices], pred[:, :, slices]) if slices.any() else float("nan")


def cord_scores(case: Case, seg, threshold: float) -> dict:
    """Cord Dice over the reference's slices, on the lesion slices and on the others; and on the lesion
    slices without the pipeline's ``cord |= lesion`` (what the cord network alone finds)."""
    labelled = case.cord.any(axis=(0, 1))
    on_lesion = case.lesion.any(axis=(0, 1))
    raw = cord_mask(seg.cord_prob, threshold)
    return {"cord_dice": _pooled_dice(case.cord, seg.cord, labelled),
            "cord_dice_lesion_slices": _pooled_dice(case.cord, seg.cord, on_lesion),
            "cord_dice_normal_slices": _pooled_dice(case.cord, seg.cord, labelled & ~on_lesion),
            "cord_dice_lesion_slices_network_only": _pooled_dice(case.cord, raw, on_lesion)}


def lesion_scores(case: Case, predicted: np.ndarray, zooms) -> dict:
    """Lesion Dice and volume error against the SIMULATED truth, and the volume of predicted components that
    touch no true lesion voxel (false lesions; on a healthy case, everything predicted)."""
    voxel_mm3 = float(np.prod(zooms[:3]))
    labels, sizes = components(predicted)
    hit = np.unique(labels[predicted & case.lesion])
    false = np.setdiff1d(np.arange(1, len(sizes) + 1), hit)
    healthy = not case.lesion.any()
    return {"lesion_dice": float("nan") if healthy else dice(case.lesion, predicted),
            "lesion_volume_error": relative_volume_error(case.lesion, predicted),
            "true_lesion_mm3": float(case.lesion.sum()) * voxel_mm3,
            "pred_lesion_mm3": float(predicted.sum()) * voxel_mm3,
            "false_lesion_mm3": float(sizes[false - 1].sum()) * voxel_mm3 if len(false) else 0.0,
            "false_lesions": int(len(false))}


def score_case(case: Case, example: Example, seg, cord_threshold: float) -> dict:
    """One case's row: identity, cord and lesion scores, and the QC summary the app writes."""
    zooms = case.volume.zooms
    lesion = seg.lesion if seg.lesion is not None else np.zeros_like(seg.cord)
    qc = confidence_summary(seg.cord_prob, seg.cord, seg.lesion_prob, seg.lesion, zooms, case.volume.data,
                            seg.lesion_contrast)
    return ({"image": example.name, "case": case.name, "kind": case.kind, "subject": example.subject,
             "site": example.site, "suffix": example.suffix}
            | cord_scores(case, seg, cord_threshold) | lesion_scores(case, lesion, zooms) | row_columns(qc))


def sweep_case(case: Case, example: Example, seg, cord_threshold: float, min_contrast: float | None) -> list[dict]:
    """The lesion scores of this case under every (threshold, minimum volume, extent threshold) of the grid,
    each kept by touching the cord network's own mask and, as in the pipeline, only where hyperintense by
    ``min_contrast`` (not the cord after the union with a lesion)."""
    if seg.lesion_prob is None:
        return []
    cord = cord_mask(seg.cord_prob, cord_threshold)
    # every rule's mask lies inside the box of the lowest probability swept, the cord and the true lesion:
    # the 105 rules are scored on that box (the same scores, a fraction of a whole 1 mm volume's voxels)
    lowest = min(SWEEP_THRESHOLDS + SWEEP_EXTENT_THRESHOLDS)
    found = ndimage.find_objects(((seg.lesion_prob >= lowest) | cord | case.lesion).astype(np.uint8))
    box = found[0] if found else (slice(None),) * 3
    boxed = replace(case, lesion=case.lesion[box])
    zooms = case.volume.zooms
    normal = tissue(case.volume.data, cord, zooms).cropped(box)     # magnitude() reads the whole cord's margin
    prob, cord = seg.lesion_prob[box], cord[box]
    rows = []
    for t in SWEEP_THRESHOLDS:
        for v in SWEEP_MIN_VOLUMES_MM3:
            for e in [e for e in SWEEP_EXTENT_THRESHOLDS if e < t] + [t]:
                mask, _ = hyperintense_lesions(lesion_mask(prob, cord, zooms, t, v, e), normal, min_contrast)
                rows.append({"case": case.name, "kind": case.kind, "site": example.site, "suffix": example.suffix,
                             "threshold": t, "min_volume_mm3": v, "extent_threshold": e, "min_contrast": min_contrast}
                            | lesion_scores(boxed, mask, zooms))
    return rows


def summarise(table: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """The issue's figures: lesions per pattern, cord per contrast, healthy images per site."""
    lesions = table[table["kind"] != HEALTHY].assign(abs_volume_error=lambda t: t["lesion_volume_error"].abs())
    per_pattern = lesions.assign(missed=lambda t: t["lesion_dice"] < MISSED_DICE).groupby("kind").agg(
        cases=("case", "size"), median_dice=("lesion_dice", "median"),
        median_abs_volume_error=("abs_volume_error", "median"), missed=("missed", "sum"))
    cord = table.groupby("suffix").agg(
        cases=("case", "size"), median_dice=("cord_dice", "median"), worst_dice=("cord_dice", "min"),
        lesion_slices=("cord_dice_lesion_slices", "median"), normal_slices=("cord_dice_normal_slices", "median"),
        lesion_slices_network_only=("cord_dice_lesion_slices_network_only", "median"))
    healthy = table[table["kind"] == HEALTHY].assign(clean=lambda t: t["pred_lesion_mm3"] == 0)
    per_site = healthy.groupby("site").agg(images=("case", "size"), without_false_lesion=("clean", "sum"),
                                           max_false_mm3=("pred_lesion_mm3", "max"))
    return {"lesions by pattern (SIMULATED)": per_pattern, "cord": cord, "healthy images": per_site}
