"""Training data: labelled images, their sites, the train/validation split and the pairs sampled from them.

Reference masks are read from ``BIDS_DIR/derivatives/labels`` in every naming convention of
:mod:`basicseg.references`. Lesion models learn from contusion-like lesions inserted into the real images
by :mod:`basicseg.training.simulate`: no public contusion labels exist.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from basicseg.references import find_reference
from basicseg.segment.load import AxialVolume, load_axial, load_mask
from basicseg.training import augment

LESIONS_PER_IMAGE = 6           # simulated lesion variants per training image
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
    variants: list = field(default_factory=list)   # (data, target) pairs: original, thick slices, lesions

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


def load_examples(bids_dir: Path, suffixes, subjects=None) -> list[Example]:
    """Every labelled image of ``suffixes`` (of ``subjects`` only, when given), loaded in canonical order."""
    sites = subject_sites(bids_dir)
    examples = []
    for image, ref in labelled_images(bids_dir, suffixes):
        subject = image.name.split("_")[0]
        if subjects is not None and subject not in subjects:
            continue
        volume = load_axial(image)
        cord = load_mask(ref, volume)
        suffix = image.name.split(".")[0].rsplit("_", 1)[1]
        examples.append(Example(subject, sites.get(subject, subject), suffix, image, volume, cord))
    return examples


def split_examples(examples, val_sites=(), val_subjects=()):
    """(training, validation) examples: whole sites or subjects are held out, never single images."""
    held_out = [e.site in val_sites or e.subject in val_subjects for e in examples]
    train = [e for e, held in zip(examples, held_out) if not held]
    val = [e for e, held in zip(examples, held_out) if held]
    return train, val


# --- training pairs ---------------------------------------------------------------------------------------

def is_isotropic(volume: AxialVolume) -> bool:
    z = volume.zooms
    return max(z) / min(z) < ISOTROPIC_RATIO


def simulated_lesions(example: Example, rng: np.random.Generator, n: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """``n`` (image, lesion mask) pairs, each with one simulated lesion in the example's cord."""
    from basicseg.training.simulate import simulate_lesion

    pairs = []
    for _ in range(n):
        img, lesion, _ = simulate_lesion(example.volume.data, example.cord, example.volume.zooms, rng)
        pairs.append((img.astype(np.float32), lesion))
    return pairs


def prepare_variants(example: Example, target: str, rng: np.random.Generator, lesions: int = LESIONS_PER_IMAGE):
    """Pairs (image, target mask) to sample from: the original, thick-slice versions of 1 mm volumes,
    and for lesion models simulated lesions (before thick-slicing, as a scanner would average them)."""
    volume = example.volume
    bases = simulated_lesions(example, rng, lesions) if target == "lesion" else [(volume.data, example.cord)]
    thin = is_isotropic(volume) and volume.zooms[2] <= THIN_SLICE_MM
    variants = []
    for img, mask in bases:
        variants.append((img, mask))
        if thin:
            thick = int(rng.integers(augment.THICK_SLICES_MM[0], augment.THICK_SLICES_MM[1] + 1))
            variants.append((augment.thick_slice_volume(img, thick),
                             augment.thick_slice_volume(mask.astype(np.float32), thick) > MASK_LEVEL))
    example.variants = variants


def validation_set(examples, target, seed):
    """Fixed validation pairs: originals for cord, fixed-seed simulated lesions for lesion models."""
    rng = np.random.default_rng(seed + VALIDATION_SEED_OFFSET)
    out = []
    for e in examples:
        if target != "lesion":
            out.append((e.name, e, e.volume.data, e.cord))
            continue
        for r, (img, lesion) in enumerate(simulated_lesions(e, rng, VALIDATION_LESIONS)):
            out.append((f"{e.name}_sim-{r + 1}", e, img, lesion))
    return out
