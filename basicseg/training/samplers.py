"""Samplers: augmented training batches drawn from the labelled examples.

Box models see the 128 x 128 boxes of :func:`basicseg.segment.crop.crop_slices`, the crop inference uses,
centred on the reference cord plus jitter (the centreline is never exact at inference); the localiser
sees 1 mm full-field patches.
"""
from __future__ import annotations

import numpy as np

from basicseg.segment.centerline import centres_from_mask, resample_slices, smooth_path
from basicseg.segment.crop import crop_slices
from basicseg.segment.normalise import normalise
from basicseg.training import augment
from basicseg.training.data import MASK_LEVEL, Example, Variant

T2STAR_SHARE = 0.3              # share of each batch drawn from T2*w images when both contrasts exist
LESION_SLICE_SHARE = 0.4        # volumes with a SIMULATED lesion: share of samples on its slices (the rest: lesion-free cord)
LOCALISER_PATCH = 96            # localiser training patch (mm at 1 mm)
HARD_NEGATIVE_POOL = 384        # lesion networks: lesion-free boxes scored after every epoch
HARD_NEGATIVE_SHARE = 0.1       # share of the next epoch's boxes taken from the highest-scored of them
FLIP_SHARE = 0.5                # localiser patches mirrored left-right
CORD_PATCH_SHARE = 0.8          # localiser patches that contain the cord
PATCH_MARGIN = 8                # the cord lies at least this far (pixels) inside a patch that contains it


def contrast_of(example: Example) -> str:
    return "T2starw" if "star" in example.suffix.lower() else "T2w"


class BoxSampler:
    """Draws augmented (box, mask) training pairs from examples, balancing contrasts."""

    def __init__(self, examples: list[Example], target: str, rng: np.random.Generator):
        self.examples, self.target, self.rng = examples, target, rng
        self.hard = None        # (boxes, masks) of the hard negatives mined after the last epoch
        self.centres = [smooth_path(centres_from_mask(e.cord), e.volume.zooms, smooth_mm=0) for e in examples]
        self.groups = {}
        for i, e in enumerate(examples):
            self.groups.setdefault(contrast_of(e), []).append(i)

    def _pick_example(self) -> int:
        if len(self.groups) > 1 and "T2starw" in self.groups:
            group = "T2starw" if self.rng.random() < T2STAR_SHARE else "T2w"
        else:
            group = next(iter(self.groups))
        return int(self.rng.choice(self.groups[group]))

    def _pick_slice(self, v: Variant) -> int:
        """A cord slice; a lesion slice ``LESION_SLICE_SHARE`` of the time on a volume with a lesion."""
        if v.lesion is not None and self.rng.random() < LESION_SLICE_SHARE:
            on_lesion = np.nonzero(v.lesion.any(axis=(0, 1)))[0]
            if len(on_lesion):
                return int(self.rng.choice(on_lesion))
        return int(self.rng.choice(np.nonzero(v.cord.any(axis=(0, 1)))[0]))

    def _draw_variants(self, n: int, lesion_free: bool = False) -> dict[tuple[int, int], int]:
        """How many boxes to cut from each (example, variant): one crop call per variant."""
        counts = {}
        for _ in range(n):
            i = self._pick_example()
            choices = [v for v, var in enumerate(self.examples[i].variants) if not lesion_free or var.lesion is None]
            v = int(self.rng.choice(choices))
            counts[(i, v)] = counts.get((i, v), 0) + 1
        return counts

    def _boxes(self, i: int, v: int, count: int) -> tuple[np.ndarray, np.ndarray]:
        e, var = self.examples[i], self.examples[i].variants[v]
        ks = np.array([self._pick_slice(var) for _ in range(count)])
        centres = self.centres[i][ks] + augment.random_shifts(self.rng, len(ks), e.volume.zooms)
        tf = augment.random_transforms(self.rng, len(ks))

        def cut(mask):
            return crop_slices(mask.astype(np.float32), e.volume.zooms, centres, ks, transforms=tf) > MASK_LEVEL

        x = normalise(crop_slices(var.image, e.volume.zooms, centres, ks, transforms=tf))
        if var.gm is not None:          # the localiser's variants carry no GM: no domain randomisation there
            x = augment.tissue_contrast(self.rng, x, cut(var.cord), cut(var.gm))
        return augment.intensity(self.rng, x), cut(var.target)

    def sample(self, n: int, lesion_free: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """``n`` augmented (box, mask) pairs; only from lesion-free volumes with ``lesion_free``."""
        pairs = [self._boxes(i, v, count) for (i, v), count in self._draw_variants(n, lesion_free).items()]
        order = self.rng.permutation(n)
        xs, ys = np.concatenate([x for x, _ in pairs]), np.concatenate([y for _, y in pairs])
        xs, ys = xs[order, ..., None], ys[order, ..., None].astype(np.float32)
        if self.hard is not None and not lesion_free:     # hard negatives replace a share of the batch
            k = min(len(self.hard[0]), n)
            xs[:k], ys[:k] = self.hard[0][:k], self.hard[1][:k]
            order = self.rng.permutation(n)
            xs, ys = xs[order], ys[order]
        return xs, ys


def mine_hard_negatives(predict, sampler: BoxSampler, n_keep: int) -> None:
    """Hard-negative mining: score ``HARD_NEGATIVE_POOL`` fresh lesion-free boxes with the network
    (``predict``: boxes -> probabilities) and keep the ``n_keep`` with the strongest false lesion (largest
    probability anywhere in the box) for the next epoch's batches."""
    x, y = sampler.sample(HARD_NEGATIVE_POOL, lesion_free=True)
    strength = predict(x).reshape(len(x), -1).max(axis=1)
    keep = np.argsort(strength)[::-1][:n_keep]
    sampler.hard = (x[keep], y[keep])


class LocaliserSampler(BoxSampler):
    """Full-field 1 mm slice patches for the coarse cord localiser."""

    def __init__(self, examples, rng):
        super().__init__(examples, "cord", rng)
        self.slices = []
        for e in examples:
            pairs = []
            for v in e.variants:
                x, _ = resample_slices(v.image, e.volume.zooms)
                y, _ = resample_slices(v.target.astype(np.float32), e.volume.zooms)
                pairs.append((normalise(x), y > MASK_LEVEL))
            self.slices.append(pairs)

    def sample(self, n):
        p = LOCALISER_PATCH
        xs, ys = np.zeros((n, p, p), np.float32), np.zeros((n, p, p), np.float32)
        for b in range(n):
            i = self._pick_example()
            x, y = self.slices[i][int(self.rng.integers(len(self.slices[i])))]
            k = int(self.rng.integers(x.shape[0]))
            xi, yi = _random_patch(self.rng, x[k], y[k], p)
            if self.rng.random() < FLIP_SHARE:
                xi, yi = xi[::-1], yi[::-1]
            xs[b], ys[b] = augment.intensity(self.rng, xi[None])[0], yi
        return xs[..., None], ys[..., None]


def _random_patch(rng, x, y, p):
    """A p x p patch (zero-padded), containing the cord most of the time."""
    pad = [(max(0, p - s) // 2 + 1, max(0, p - s) // 2 + 1) for s in x.shape]
    x, y = np.pad(x, pad), np.pad(y, pad)
    if y.any() and rng.random() < CORD_PATCH_SHARE:
        ci, cj = np.argwhere(y)[rng.integers(int(y.sum()))]
        i0 = int(np.clip(ci - rng.integers(PATCH_MARGIN, p - PATCH_MARGIN), 0, x.shape[0] - p))
        j0 = int(np.clip(cj - rng.integers(PATCH_MARGIN, p - PATCH_MARGIN), 0, x.shape[1] - p))
    else:
        i0, j0 = rng.integers(0, x.shape[0] - p + 1), rng.integers(0, x.shape[1] - p + 1)
    return x[i0:i0 + p, j0:j0 + p], y[i0:i0 + p, j0:j0 + p].astype(np.float32)
