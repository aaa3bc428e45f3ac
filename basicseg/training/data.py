"""Training data: labelled images, their sites, the train/validation split and the pairs sampled from them.

Reference masks are read from ``BIDS_DIR/derivatives/labels`` in every naming convention of
:mod:`basicseg.references`. No public contusion labels exist: SIMULATED lesions are inserted into the real
images, a mix of the spindles of :mod:`.simulate` and the clinical patterns of :mod:`.patterns` (GM-confined,
rim-sparing, whole section with swelling, haemorrhagic core, multiple foci), drawn from each image's grey
matter. Lesion networks learn them beside lesion-free copies (negatives); cord networks learn them as cord.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from basicseg.references import find_reference
from basicseg.segment.load import AxialVolume, load_axial, load_mask
from basicseg.training import augment

LESIONS_PER_IMAGE = 6           # simulated lesion variants per training image (lesion networks), redrawn every epoch
CORD_LESION_VARIANTS = 3        # cord networks: copies with a SIMULATED lesion inside the cord label, besides the original
HEALTHY_VARIANTS = 1            # lesion-free copies beside them: whole volumes of negatives for lesion networks
LESION_KINDS = ("spindle", "gm", "rim", "whole")   # the simulator's spindle and the clinical patterns (patterns.py)
HAEMORRHAGE_SHARE = 0.4         # clinical patterns drawn with a hypointense haemorrhagic core
TRAINING_FIELD_MM = 32.0        # training volumes are cut to the cord's in-plane extent +- this (a box reaches ~23 mm
                                # from its centre at the largest scale and shift): lesions simulate 4x faster
GM_PRIOR_STEP_MM = 3.0          # atlas GM prior: mapped every 3 mm along the cord, carried to the slices between
VALIDATION_LESIONS = 2          # simulated lesions per validation image (fixed seed: the same every epoch)
VALIDATION_SEED_OFFSET = 1000   # validation lesions are drawn apart from the training ones
ISOTROPIC_RATIO = 1.5           # largest / smallest voxel size of a volume taken as isotropic
THIN_SLICE_MM = 1.5             # volumes with slices this thin also train as simulated thick slices
MASK_LEVEL = 0.5                # a resampled or averaged mask voxel is in when over half covered
MISSING = ("", "n/a")          # participants.tsv cells that hold no value


@dataclass
class Example:
    """One labelled image, in canonical order, with the slices that can be sampled."""
    subject: str
    site: str
    suffix: str
    path: Path
    volume: AxialVolume
    cord: np.ndarray
    gm: np.ndarray | None = None                   # grey matter: manual mask or atlas prior (box networks)
    gm_source: str = "none"
    variants: list = field(default_factory=list)   # Variant: original, thick slices, SIMULATED lesions

    @property
    def name(self) -> str:
        return self.path.name.split(".")[0]


# --- discovery ------------------------------------------------------------------------------------------

def subject_sites(bids_dir: Path) -> dict[str, str]:
    """Site of each subject from participants.tsv: ``site`` when given, else the ``source`` dataset
    (one origin = one site), else the subject itself."""
    table = Path(bids_dir) / "participants.tsv"
    if not table.is_file():
        return {}
    df = pd.read_csv(table, sep="\t", dtype=str, keep_default_na=False)
    sites = {}
    for _, row in df.iterrows():
        site = row.get("site", "n/a")
        if site in MISSING:
            site = row.get("source", "n/a").split(":")[0]
        sites[row["participant_id"]] = site if site not in MISSING else row["participant_id"]
    return sites


def labelled_images(bids_dir: Path, suffixes=("T2w", "T2starw")) -> list[tuple[Path, Path]]:
    """(image, cord reference) pairs for every image with a cord reference mask."""
    pairs = []
    for suffix in suffixes:
        for image in sorted(Path(bids_dir).glob(f"sub-*/**/anat/*_{suffix}.nii*")):
            ref = find_reference(image, "cord", bids_root=bids_dir)
            if ref is not None:
                pairs.append((image, ref))
    return pairs


def load_examples(bids_dir: Path, suffixes, subjects=None, with_gm: bool = False) -> list[Example]:
    """Every labelled image of ``suffixes`` (of ``subjects`` only, when given), loaded in canonical order,
    with its grey matter when ``with_gm`` (the clinical lesion patterns are drawn from it)."""
    sites = subject_sites(bids_dir)
    examples = []
    for image, ref in labelled_images(bids_dir, suffixes):
        subject = image.name.split("_")[0]
        if subjects is not None and subject not in subjects:
            continue
        volume = load_axial(image)
        cord = load_mask(ref, volume)
        suffix = image.name.split(".")[0].rsplit("_", 1)[1]
        example = Example(subject, sites.get(subject, subject), suffix, image, volume, cord)
        if with_gm:
            example.gm, example.gm_source = grey_matter(image, bids_dir, volume, cord)
        examples.append(example)
    return examples


def split_examples(examples, val_sites=(), val_subjects=()):
    """(training, validation) examples: whole sites or subjects are held out, never single images."""
    held_out = [e.site in val_sites or e.subject in val_subjects for e in examples]
    train = [e for e, held in zip(examples, held_out) if not held]
    val = [e for e, held in zip(examples, held_out) if held]
    return train, val


def crop_to_cord(example: Example, margin_mm: float = TRAINING_FIELD_MM) -> Example:
    """The example cut in-plane to its cord +- ``margin_mm`` (the canonical affine follows the cut)."""
    if not example.cord.any():
        return example
    ii, jj = np.nonzero(example.cord.any(axis=2))
    zooms = example.volume.zooms
    lo = [max(0, int(a.min() - margin_mm / z)) for a, z in ((ii, zooms[0]), (jj, zooms[1]))]
    hi = [int(a.max() + margin_mm / z) + 1 for a, z in ((ii, zooms[0]), (jj, zooms[1]))]
    return _cut(example, (slice(lo[0], hi[0]), slice(lo[1], hi[1]), slice(None)))


def cut_to_labelled_slices(example: Example) -> Example:
    """The example cut to the axial slices its cord mask covers (the canonical affine follows the cut)."""
    on = np.flatnonzero(example.cord.any(axis=(0, 1)))
    if len(on) == 0 or (on[0] == 0 and on[-1] == example.cord.shape[2] - 1):
        return example
    return _cut(example, (slice(None), slice(None), slice(int(on[0]), int(on[-1]) + 1)))


def _cut(example: Example, box: tuple) -> Example:
    """The example on ``box`` (three slices of its canonical grid), the affine's origin moved to the box's corner;
    its variants are dropped (they were made on the whole grid)."""
    from dataclasses import replace

    affine = example.volume.affine.copy()
    affine[:3, 3] = affine[:3, :3] @ np.array([s.start or 0 for s in box]) + affine[:3, 3]
    volume = replace(example.volume, data=example.volume.data[box], affine=affine)
    gm = None if example.gm is None else example.gm[box]
    return replace(example, volume=volume, cord=example.cord[box], gm=gm, variants=[])


# --- grey matter -------------------------------------------------------------------------------------------

def grey_matter(image: Path, bids_dir: Path, volume: AxialVolume, cord: np.ndarray) -> tuple[np.ndarray, str]:
    """(GM mask, its source): the manual GM mask where there is one, else the AMU7T atlas's mean cross-section
    registered onto the cord every ``GM_PRIOR_STEP_MM`` and carried to the slices between (the GM's shape
    changes over centimetres; mapping every 1 mm slice of a 3D volume would cost half a minute per image)."""
    ref = find_reference(image, "gm", bids_root=bids_dir)
    if ref is not None:
        return load_mask(ref, volume) & cord, "manual"
    from basicseg.atlas import map_atlas   # lazy: only the training of lesion-aware networks needs it

    ks = np.flatnonzero(cord.any(axis=(0, 1)))
    step = max(1, int(round(GM_PRIOR_STEP_MM / volume.zooms[2])))
    mapped = ks[::step]
    gm = map_atlas(cord, volume.zooms, level="mean", slices=mapped).gm
    nearest = mapped[np.abs(ks[:, None] - mapped[None, :]).argmin(axis=1)]
    gm[:, :, ks] = gm[:, :, nearest]
    return gm & cord, "atlas prior (AMU7T mean cross-section)"


# --- training pairs ---------------------------------------------------------------------------------------

@dataclass
class Variant:
    """One volume to cut training boxes from, with the tissue masks domain randomisation recolours."""
    image: np.ndarray
    target: np.ndarray          # bool: what the network learns (the cord, or the lesion)
    cord: np.ndarray            # bool: the cord, swollen where a lesion swelled it, lesion included
    gm: np.ndarray              # bool: the grey matter (manual or atlas prior)
    lesion: np.ndarray | None = None   # bool: the SIMULATED lesion, None on a lesion-free volume


def is_isotropic(volume: AxialVolume) -> bool:
    z = volume.zooms
    return max(z) / min(z) < ISOTROPIC_RATIO


def draw_lesion_kind(rng: np.random.Generator) -> tuple[str, bool]:
    """(pattern, haemorrhage): the spindle of :mod:`.simulate` or a clinical pattern of :mod:`.patterns`."""
    kind = LESION_KINDS[int(rng.integers(len(LESION_KINDS)))]
    return kind, kind != "spindle" and bool(rng.random() < HAEMORRHAGE_SHARE)


def lesion_variant(example: Example, rng: np.random.Generator, target: str) -> Variant:
    """The example with one SIMULATED lesion: the lesion is the target of lesion networks and part of the
    cord for cord networks (an oedematous, swollen section is cord)."""
    from basicseg.training.patterns import simulate_pattern
    from basicseg.training.simulate import simulate_lesion_detailed

    vol, gm = example.volume, example.gm
    kind, haem = draw_lesion_kind(rng)
    if kind == "spindle":
        sim = simulate_lesion_detailed(vol.data, example.cord, vol.zooms, rng)
        cord = sim.cord | sim.lesion
        gm = gm & cord
    else:
        sim = simulate_pattern(vol.data, example.cord, gm, vol.zooms, kind, haem, rng)
        cord, gm = sim.cord | sim.lesion, sim.gm
    return Variant(sim.image.astype(np.float32), sim.lesion if target == "lesion" else cord, cord, gm, sim.lesion)


def simulated_lesions(example: Example, rng: np.random.Generator, n: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """``n`` (image, lesion mask) pairs, each with one SIMULATED lesion of a random kind in the example's cord."""
    return [(v.image, v.lesion) for v in (lesion_variant(example, rng, "lesion") for _ in range(n))]


def _thick(v: Variant, thickness: int) -> Variant:
    def mask(m):
        return None if m is None else augment.thick_slice_volume(m.astype(np.float32), thickness) > MASK_LEVEL
    return Variant(augment.thick_slice_volume(v.image, thickness), mask(v.target), mask(v.cord), mask(v.gm),
                   mask(v.lesion))


def base_variants(example: Example, target: str, rng: np.random.Generator, lesions: int) -> list[Variant]:
    """The lesion-free image (for lesion networks: whole-volume negatives) and, for box networks, copies with
    SIMULATED lesions."""
    healthy = Variant(example.volume.data, example.cord if target != "lesion" else np.zeros_like(example.cord),
                      example.cord, example.gm)
    if target == "localiser":
        return [healthy]
    n = lesions if target == "lesion" else CORD_LESION_VARIANTS
    return [healthy] * HEALTHY_VARIANTS + [lesion_variant(example, rng, target) for _ in range(n)]


def prepare_variants(example: Example, target: str, rng: np.random.Generator, lesions: int = LESIONS_PER_IMAGE):
    """Volumes to sample from: the bases of :func:`base_variants` and thick-slice versions of 1 mm volumes
    (lesions are inserted before thick-slicing, as a scanner would average them)."""
    thin = is_isotropic(example.volume) and example.volume.zooms[2] <= THIN_SLICE_MM
    variants = []
    for v in base_variants(example, target, rng, lesions):
        variants.append(v)
        if thin:
            variants.append(_thick(v, int(rng.integers(augment.THICK_SLICES_MM[0], augment.THICK_SLICES_MM[1] + 1))))
    example.variants = variants


def validation_set(examples, target, seed):
    """Fixed validation pairs: originals for cord, fixed-seed SIMULATED lesions (of every kind) for lesion models."""
    rng = np.random.default_rng(seed + VALIDATION_SEED_OFFSET)
    out = []
    for e in examples:
        if target != "lesion":
            out.append((e.name, e, e.volume.data, e.cord))
            continue
        for r, (img, lesion) in enumerate(simulated_lesions(e, rng, VALIDATION_LESIONS)):
            out.append((f"{e.name}_sim-{r + 1}", e, img, lesion))
    return out
