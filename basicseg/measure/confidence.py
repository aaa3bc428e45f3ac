"""Confidence QC: summaries of the networks' probability maps and of the cord's shape, and the flags they raise.

The old ``low_confidence`` flag (:func:`.morphometrics.qc_flags`, mean cord probability < 0.7) missed the
failures it was meant for: on an unseen site where the cord network failed (cord Dice 0.66) the mean was
still 0.81, and false lesions on healthy cords raised nothing.  :func:`confidence_summary` measures more
of what a failing network leaves behind -- a wide band of uncertain voxels around the cord, a cord whose
area jumps from slice to slice, a lesion the network itself does not believe -- and
:func:`confidence_flags` turns it into flags.

Arrays are in the image's closest canonical (RAS+) voxel order, axial slices along axis 2, ``zooms`` the
voxel size (mm) along those axes.

The thresholds are placeholders until tuned: ``scripts/tune_qc.py`` chooses them leave-site-out on
evaluation tables (the share of failures flagged at <= 10 % of good cases flagged on the training sites),
writes them to ``qc_thresholds.json`` beside this module, and the README / docs/qc.md report the held-out
figure.  :data:`QC_THRESHOLDS` is what the app uses: that file when it is there, else :class:`Thresholds`'
defaults.
"""
from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage

from basicseg.segment.hyperintensity import REFERENCE_GAP_MM, cord_interior, lesion_contrasts, magnitude, tissue

log = logging.getLogger("basicseg")

NAN = float("nan")
THRESHOLDS_FILE = Path(__file__).with_name("qc_thresholds.json")

# a voxel with UNCERTAIN_LOW < p < UNCERTAIN_HIGH is one the network could not decide; a sharp network has
# these only on a one-voxel rim around the cord
UNCERTAIN_LOW = 0.2
UNCERTAIN_HIGH = 0.8
EDGE = ndimage.generate_binary_structure(2, 1)[:, :, None]    # in-plane 4-neighbours: the cord's edge per slice

# the cord's contrast against the CSF around it: its interior (more than CORD_INTERIOR_MM in from its edge)
# against a ring CSF_RING_MM outside it
CORD_INTERIOR_MM = 0.5
CSF_RING_MM = (0.5, 2.5)
# the cord's contrast is read on its slices away from any lesion when they cover at least this much of it (a 10 mm
# segment: two 5 mm T2*w slices, ten 1 mm ones), else on all its slices
NORMAL_CORD_MM = 10.0
CSA_TREND_MM = 30.0          # the running median the axial area's scatter is measured about (csa_cv)
# a lesion component's core: its voxels at or above this probability. The lesion mask is outlined at the card's
# extent threshold (0.2), so a small lesion is mostly fringe and its mean probability measures its size (GM-confined
# lesions found with Dice 0.62-0.95 read 0.50-0.75, docs/qc.md); the probability over its core reads how sure the
# network is of what it found, at any size
LESION_CORE_PROB = 0.5

SUMMARY_KEYS = ("cord_mean_prob", "cord_uncertain_band", "cord_csf_contrast", "csa_median_mm2", "csa_cv",
                "csa_max_jump",
                "lesion_volume_mm3", "lesion_mean_prob", "lesion_core_prob", "lesion_max_prob", "lesion_components",
                "lesion_min_contrast")

# flag, summary key, threshold, direction: the flag is raised when the key is below ("min") or above ("max")
# the threshold; a NaN key or a None threshold never raises it (e.g. no lesion -> no uncertain_lesion)
RULES = (("low_cord_confidence", "cord_mean_prob", "cord_mean_prob_min", "min"),
         ("uncertain_cord_boundary", "cord_uncertain_band", "cord_uncertain_band_max", "max"),
         ("low_cord_contrast", "cord_csf_contrast", "cord_csf_contrast_min", "min"),
         ("implausible_cord_shape", "csa_cv", "csa_cv_max", "max"),
         ("implausible_cord_shape", "csa_max_jump", "csa_max_jump_max", "max"),
         ("uncertain_lesion", "lesion_core_prob", "lesion_core_prob_min", "min"),
         ("lesion_not_hyperintense", "lesion_min_contrast", "lesion_contrast_min", "min"))
CONFIDENCE_FLAGS = tuple(dict.fromkeys(rule[0] for rule in RULES))

# the summary's columns in the image row are prefixed: lesion_volume_mm3 is already a (cord-masked) metric there
COLUMN_PREFIX = "qc_"


@dataclass(frozen=True)
class Thresholds:
    """Defaults are untuned placeholders (module docstring); None switches a test off."""
    cord_mean_prob_min: float | None = 0.90          # confident cords scored 0.93-0.96, the failed site 0.81
    cord_uncertain_band_max: float | None = 2.5      # voxels of doubt per edge voxel: a sharp rim is ~1
    # ln(CSF / cord) below 0.3: the CSF less than ~35 % brighter than the cord, or darker (inverted contrast).
    # The nine T2w / T2*w images here read 0.53-1.28; the unseen site whose cord was nearly as bright as its
    # CSF broke the cord network
    cord_csf_contrast_min: float | None = 0.3
    # the area's scatter about its 30 mm running median: manual masks 0.01-0.07, the shipped networks' cords on
    # the unlabelled spine-public images 0.015-0.11; 2-voxel leaks or misses on 10 % of a 1 mm cord's slices
    # 0.21-0.29 (docs/models.md). The raw CV it replaced read 0.34 on a healthy manual C1-T4 cord
    csa_cv_max: float | None = 0.2
    csa_max_jump_max: float | None = 0.6             # manual cords change <= 12 % of the median between slices
    # the least sure component's core: SIMULATED GM-confined lesions found on held-out sites read 0.73-0.77, a false
    # lesion on a held-out healthy cord 0.69 (fold B; docs/qc.md)
    lesion_core_prob_min: float | None = 0.7
    # oedema is hyperintense on T2 and T2*: a lesion less than ~10 % brighter (ln 1.1) than the normal cord at
    # its levels is not one the image shows. On cords recoloured as bright as their CSF the lesion network's
    # false lesions read ln -0.55 to 0.16; the SIMULATED lesions of the held-out folds 0.23-0.95 (docs/qc.md)
    lesion_contrast_min: float | None = 0.1


# --- the summary ---------------------------------------------------------------------------------------------

def _cord_confidence(cord_prob: np.ndarray, cord: np.ndarray) -> dict:
    n = int(cord.sum())
    if n == 0:
        return {"cord_mean_prob": NAN, "cord_uncertain_band": NAN}
    # the whole of the cord's slices, not just the mask: a failed network's doubt spreads beyond its mask
    on = cord.any(axis=(0, 1))
    slab = cord_prob[:, :, on]
    uncertain = int(np.count_nonzero((slab > UNCERTAIN_LOW) & (slab < UNCERTAIN_HIGH)))
    # per edge voxel, not per cord voxel: the partial-volume rim is one voxel wide at any resolution, while
    # its share of the cord's voxels doubles from a 0.5 mm to a 1 mm grid (which flagged every 1 mm site)
    edge = int(np.count_nonzero(cord[:, :, on] & ~ndimage.binary_erosion(cord[:, :, on], EDGE)))
    return {"cord_mean_prob": float(cord_prob[cord].mean()), "cord_uncertain_band": uncertain / edge}


def ring_around(cord: np.ndarray, zooms, near_mm: float, far_mm: float) -> np.ndarray:
    """The voxels near_mm < d <= far_mm outside the cord, in-plane, on the cord's slices (the CSF around it)."""
    ring = np.zeros_like(cord, dtype=bool)
    for k in np.flatnonzero(cord.any(axis=(0, 1))):
        out = ndimage.distance_transform_edt(~cord[:, :, k], sampling=zooms[:2])
        ring[:, :, k] = (out > near_mm) & (out <= far_mm)
    return ring


def _cord_contrast(image: np.ndarray | None, cord: np.ndarray, zooms, lesion: np.ndarray | None = None) -> dict:
    """ln(median CSF ring / median cord interior) over the cord's normal slices: how much brighter the CSF around
    the cord is than the cord. On T2 and T2* it is (0.53-1.28 on the nine labelled images here); near 0 the image
    barely tells them apart, below 0 the contrast is inverted (a T1-weighted or negated image)."""
    if image is None or not cord.any():
        return {"cord_csf_contrast": NAN}
    image = magnitude(image, cord, zooms)
    cord = _normal_slices(cord, zooms, lesion)
    inner = cord_interior(cord, zooms, CORD_INTERIOR_MM)
    ring = ring_around(cord, zooms, *CSF_RING_MM)
    if not inner.any():
        inner = cord
    cord_level, csf_level = np.nanmedian(image[inner]), np.nanmedian(image[ring])
    if not (cord_level > 0 and csf_level > 0):
        return {"cord_csf_contrast": NAN}
    return {"cord_csf_contrast": float(np.log(csf_level / cord_level))}


def _normal_slices(cord: np.ndarray, zooms, lesion: np.ndarray | None) -> np.ndarray:
    """The cord on its slices more than :data:`REFERENCE_GAP_MM` from any lesion, when they cover at least
    :data:`NORMAL_CORD_MM` of it; else all of it.

    The contrast asks whether this image tells normal cord from CSF. Oedema is nearly as bright as CSF, and a
    swollen cord narrows the CSF around it: on the lesion's slices a whole-section lesion read as low a contrast
    as a cord recoloured as bright as its CSF (-0.33 on the T2*w demo's, 0.39 on its normal slices;
    tests/test_confidence.py). Whole slices are left out, not only the lesion's voxels: a false lesion on bright
    grey matter would otherwise leave the darker white matter as the cord's level. The gap is the lesion rule's
    (:mod:`..segment.hyperintensity`): the network outlines a lesion's fringe short."""
    if lesion is None or not lesion.any():
        return cord
    dz = float(zooms[2])
    on = np.flatnonzero(lesion.any(axis=(0, 1)))
    k = np.arange(cord.shape[2])
    away_mm = np.abs(k[:, None] - on[None, :]).min(axis=1) * dz
    tolerance = 1e-3 * dz           # the float32 voxel sizes of NIfTI headers
    normal = cord & (away_mm > REFERENCE_GAP_MM + tolerance)
    extent_mm = np.count_nonzero(normal.any(axis=(0, 1))) * dz
    return normal if extent_mm >= NORMAL_CORD_MM - tolerance else cord


def _cord_shape(cord: np.ndarray, zooms) -> dict:
    # axial area, not angle-corrected: the tilt changes slowly and would only add noise to the jumps
    area = cord.sum(axis=(0, 1))[cord.any(axis=(0, 1))] * float(zooms[0]) * float(zooms[1])
    if len(area) == 0:
        return {"csa_median_mm2": NAN, "csa_cv": NAN, "csa_max_jump": NAN}
    median = float(np.median(area))
    jump = float(np.abs(np.diff(area)).max() / median) if len(area) > 1 else NAN
    # about the area's running median, not its mean: the cord's own rostro-caudal change (thin thoracic cord,
    # cervical enlargement, medulla) is not a failure, and over a long field of view it alone is a CV of 0.3
    window = max(3, int(round(CSA_TREND_MM / float(zooms[2]))) | 1)
    trend = ndimage.median_filter(area, size=window, mode="nearest")
    return {"csa_median_mm2": median, "csa_cv": float(np.std(area / trend)), "csa_max_jump": jump}


def _lesion_confidence(lesion_prob: np.ndarray | None, lesion: np.ndarray | None, cord: np.ndarray,
                       zooms, image: np.ndarray | None, judged: float | None) -> dict:
    if lesion_prob is None or lesion is None:
        return {key: NAN for key in SUMMARY_KEYS if key.startswith("lesion_")}
    # one voxel of in-plane margin: the network's lesion may sit on the cord's edge
    near = ndimage.binary_dilation(cord, structure=EDGE)
    labels, n = ndimage.label(lesion, structure=np.ones((3, 3, 3), bool))
    return {"lesion_volume_mm3": int(lesion.sum()) * float(np.prod(zooms)),
            "lesion_mean_prob": float(lesion_prob[lesion].mean()) if n else NAN,
            "lesion_core_prob": _least_sure_core(lesion_prob, labels, n),
            "lesion_max_prob": float(lesion_prob[near].max()) if near.any() else 0.0,
            "lesion_components": int(n),
            "lesion_min_contrast": _lesion_contrast(image, labels, n, cord, zooms) if judged is None or image is None
            else judged}


def _least_sure_core(prob: np.ndarray, labels: np.ndarray, n: int) -> float:
    """The least sure component's mean probability over its core (p >= :data:`LESION_CORE_PROB`; 0 for a component
    with no such voxel, which only a card detecting below it can keep). The least sure, not the mean of all: one
    false component beside a true lesion is the error to catch."""
    if n == 0:
        return NAN
    core = labels * (prob >= LESION_CORE_PROB)
    index = np.arange(1, n + 1)
    counts = ndimage.sum_labels(np.ones_like(prob), core, index)
    sums = ndimage.sum_labels(prob, core, index)
    means = np.divide(sums, counts, out=np.zeros(n), where=counts > 0)
    return float(means.min())


def _lesion_contrast(image: np.ndarray | None, labels: np.ndarray, n: int, cord: np.ndarray, zooms) -> float:
    """The least hyperintense component's contrast (:func:`..segment.hyperintensity.lesion_contrasts`); NaN
    without ``image`` or where no component has enough normal cord near it."""
    if image is None or n == 0:
        return NAN
    contrasts = lesion_contrasts(labels, tissue(image, cord, zooms))
    return float(np.nanmin(contrasts)) if np.isfinite(contrasts).any() else NAN


def confidence_summary(cord_prob: np.ndarray, cord: np.ndarray, lesion_prob: np.ndarray | None,
                       lesion: np.ndarray | None, zooms, image: np.ndarray | None = None,
                       lesion_contrast: float | None = None) -> dict:
    """Keys :data:`SUMMARY_KEYS` (floats; lesion keys NaN without a lesion map).

    ``cord_mean_prob``: mean cord probability in the cord mask; ``cord_uncertain_band``: voxels with
    :data:`UNCERTAIN_LOW` < p < :data:`UNCERTAIN_HIGH` on the cord's slices / the cord mask's edge voxels
    (in-plane 4-connected), the width in voxels of the band of doubt; ``cord_csf_contrast``: ln(median
    ``image`` in a 0.5-2.5 mm ring outside the cord / in the cord's interior) on the slices more than 3 mm from
    ``lesion`` (all the cord's slices when those cover under :data:`NORMAL_CORD_MM`), CSF brighter than cord > 0 (NaN
    without ``image``); the contrasts read ``image`` as a magnitude (:func:`..segment.hyperintensity.magnitude`);
    ``csa_median_mm2``, ``csa_cv`` (std of the area / its :data:`CSA_TREND_MM` running median) and
    ``csa_max_jump`` (max |a_k - a_k-1| / median between consecutive cord slices) of the axial cord area;
    ``lesion_volume_mm3``; ``lesion_mean_prob`` (in the lesion mask, NaN when it is empty); ``lesion_core_prob``
    (the least sure component's mean probability over its voxels >= :data:`LESION_CORE_PROB`, NaN without one);
    ``lesion_max_prob`` (in the cord dilated by one voxel in-plane, 0 without cord);
    ``lesion_components`` (26-connected); ``lesion_min_contrast``: the least hyperintense component's
    ln(median ``image`` in it / the matched normal cord near it) (:mod:`..segment.hyperintensity`), NaN without
    ``image`` or such cord. ``lesion_contrast``, when given, is that figure as the pipeline's lesion rule judged it
    (``Segmentation.lesion_contrast``: on the cord network's own mask, before the lesion was added to it)."""
    cord = np.asarray(cord).astype(bool, copy=False)
    cord_prob = np.asarray(cord_prob, float)
    if cord_prob.shape != cord.shape:
        raise ValueError(f"cord probability shape {cord_prob.shape} differs from cord mask shape {cord.shape}")
    if lesion is not None:
        lesion = np.asarray(lesion).astype(bool, copy=False)
    if lesion_prob is not None:
        lesion_prob = np.asarray(lesion_prob, float)
    out = {**_cord_confidence(cord_prob, cord), **_cord_contrast(image, cord, zooms, lesion),
           **_cord_shape(cord, zooms), **_lesion_confidence(lesion_prob, lesion, cord, zooms, image, lesion_contrast)}
    return {key: float(out[key]) for key in SUMMARY_KEYS}


def row_columns(summary: dict) -> dict:
    """The summary as image-row columns: ``qc_cord_mean_prob``, ... (:data:`COLUMN_PREFIX`)."""
    return {f"{COLUMN_PREFIX}{key}": summary[key] for key in SUMMARY_KEYS}


# --- the flags -----------------------------------------------------------------------------------------------

def rule_fires(values, threshold: float | None, direction: str) -> np.ndarray:
    """Whether each value raises its rule (vectorised: the tuning script calls it on whole columns)."""
    values = np.asarray(values, float)
    if threshold is None:
        return np.zeros(values.shape, bool)
    with np.errstate(invalid="ignore"):
        return values < threshold if direction == "min" else values > threshold


def confidence_flags(summary: dict, thresholds: Thresholds | None = None) -> list[str]:
    """Flags of :data:`CONFIDENCE_FLAGS` that ``summary`` raises, in that order, each once."""
    thresholds = QC_THRESHOLDS if thresholds is None else thresholds
    flags: list[str] = []
    for flag, key, name, direction in RULES:
        if flag not in flags and bool(rule_fires(summary.get(key, NAN), getattr(thresholds, name), direction)):
            flags.append(flag)
    return flags


def load_thresholds(path: Path | str = THRESHOLDS_FILE) -> Thresholds:
    """The thresholds of a JSON written by ``scripts/tune_qc.py`` (``{"thresholds": {name: value}}``); names it
    lacks keep their defaults, and a missing or unreadable file gives the defaults."""
    names = {f.name for f in dataclasses.fields(Thresholds)}
    try:
        data = json.loads(Path(path).read_text())
        values = data.get("thresholds", {}) if isinstance(data, dict) else {}
        return Thresholds(**{k: (None if v is None else float(v)) for k, v in values.items() if k in names})
    except FileNotFoundError:
        return Thresholds()
    except (OSError, ValueError, TypeError, AttributeError) as exc:   # a bad file must not stop the app
        log.warning("%s: QC thresholds not read (%s); using the defaults", path, exc)
        return Thresholds()


QC_THRESHOLDS = load_thresholds()
