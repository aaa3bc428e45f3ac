"""Train BASICseg-1/2/3 (cord or lesion) or the centreline localiser on a labelled BIDS dataset.

    basicseg-train BIDS_DIR OUT_DIR --target cord --architecture 1 [--val-sites SITE ...]

Reference masks are read from ``BIDS_DIR/derivatives/labels`` in every naming convention of
:mod:`basicseg.labels`. Lesion models are trained on contusion-like lesions inserted into the real
images by :mod:`basicseg.simulate` (no public contusion labels exist). The box crops come from the
same :func:`basicseg.crop.crop_slices` as inference, with the centre taken from the reference cord
mask plus jitter (the centreline is never exact at inference).

Deviations from McCoy et al. (2019), measured on a 2-core CPU: Adam at 1e-3 instead of 1e-5 (1e-5 does
not converge in a run of tens of minutes) and binary cross-entropy + soft Dice loss.
"""
from __future__ import annotations

import argparse
import json
import logging
import platform
import shlex
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from basicseg import __version__
from basicseg.training import augment
from basicseg.segment.centerline import centres_from_mask, resample_slices, smooth_path
from basicseg.segment.crop import crop_slices
from basicseg.segment.normalise import normalise
from basicseg.segment.backproject import uncrop_slices
from basicseg.segment.infer import predict_batches
from basicseg.io import write_json, write_tsv
from basicseg.references import find_reference
from basicseg.segment.load import AxialVolume, load_axial, load_mask
from basicseg.measure.scores import dice

log = logging.getLogger("basicseg.train")

BATCH_SIZE = 32                 # the paper's batch size
LEARNING_RATE = 1e-3            # see module docstring
LR_POLY_POWER = 0.9             # nnU-Net's polynomial decay of the learning rate over the run ...
LR_FLOOR = 0.02                 # ... down to this fraction of the base rate
T2STAR_SHARE = 0.3              # share of each batch drawn from T2*w images when both contrasts exist
LESION_SLICE_SHARE = 0.4        # lesion models: share of samples on lesion slices (the rest: lesion-free cord)
LESIONS_PER_IMAGE = 6           # simulated lesion variants per training image
LOCALISER_PATCH = 96            # localiser training patch (mm at 1 mm)


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
        if site in ("", "n/a"):
            site = row.get("source", "n/a").split(":")[0]
        sites[row["participant_id"]] = site if site not in ("", "n/a") else row["participant_id"]
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
    val = [e for e in examples if e.site in val_sites or e.subject in val_subjects]
    train = [e for e in examples if e not in val]
    return train, val


# --- training variants ------------------------------------------------------------------------------------

def is_isotropic(volume: AxialVolume) -> bool:
    z = volume.zooms
    return max(z) / min(z) < 1.5


def prepare_variants(example: Example, target: str, rng: np.random.Generator, lesions: int = LESIONS_PER_IMAGE):
    """Pairs (image, target mask) to sample from: the original, thick-slice versions of 1 mm volumes,
    and for lesion models simulated lesions (before thick-slicing, as a scanner would average them)."""
    data, cord = example.volume.data, example.cord
    if target == "lesion":
        from basicseg.training.simulate import simulate_lesion
        bases = []
        for _ in range(lesions):
            img, lesion, _ = simulate_lesion(data, cord, example.volume.zooms, rng)
            bases.append((img.astype(np.float32), lesion))
    else:
        bases = [(data, cord)]
    variants = []
    for img, mask in bases:
        variants.append((img, mask))
        if is_isotropic(example.volume) and example.volume.zooms[2] <= 1.5:
            thick = int(rng.integers(augment.THICK_SLICES_MM[0], augment.THICK_SLICES_MM[1] + 1))
            variants.append((augment.thick_slice_volume(img, thick),
                             augment.thick_slice_volume(mask.astype(np.float32), thick) > 0.5))
    example.variants = variants


class BoxSampler:
    """Draws augmented (box, mask) training pairs from examples, balancing contrasts."""

    def __init__(self, examples: list[Example], target: str, rng: np.random.Generator):
        self.examples, self.target, self.rng = examples, target, rng
        self.centres = [smooth_path(centres_from_mask(e.cord), e.volume.zooms, smooth_mm=0) for e in examples]
        self.groups = {}
        for i, e in enumerate(examples):
            self.groups.setdefault("T2starw" if "star" in e.suffix.lower() else "T2w", []).append(i)

    def _pick_example(self) -> int:
        if len(self.groups) > 1 and "T2starw" in self.groups:
            group = "T2starw" if self.rng.random() < T2STAR_SHARE else "T2w"
        else:
            group = next(iter(self.groups))
        return int(self.rng.choice(self.groups[group]))

    def _pick_slice(self, cord: np.ndarray, mask: np.ndarray) -> int:
        on_target = np.nonzero(mask.any(axis=(0, 1)))[0]
        on_cord = np.nonzero(cord.any(axis=(0, 1)))[0]
        if self.target == "lesion" and len(on_target) and self.rng.random() < LESION_SLICE_SHARE:
            return int(self.rng.choice(on_target))
        return int(self.rng.choice(on_cord))

    def sample(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        picks = {}
        for _ in range(n):
            i = self._pick_example()
            v = int(self.rng.integers(len(self.examples[i].variants)))
            picks.setdefault((i, v), []).append(None)
        xs, ys = [], []
        for (i, v), items in picks.items():
            e = self.examples[i]
            img, mask = e.variants[v]
            ks = np.array([self._pick_slice(e.cord, mask) for _ in items])
            centres = self.centres[i][ks] + augment.random_shifts(self.rng, len(ks), e.volume.zooms)
            tf = augment.random_transforms(self.rng, len(ks))
            x = crop_slices(img, e.volume.zooms, centres, ks, transforms=tf)
            y = crop_slices(mask.astype(np.float32), e.volume.zooms, centres, ks, transforms=tf) > 0.5
            xs.append(augment.intensity(self.rng, normalise(x)))
            ys.append(y)
        order = self.rng.permutation(n)
        return np.concatenate(xs)[order, ..., None], np.concatenate(ys)[order, ..., None].astype(np.float32)


class LocaliserSampler(BoxSampler):
    """Full-field 1 mm slice patches for the coarse cord localiser."""

    def __init__(self, examples, rng):
        super().__init__(examples, "cord", rng)
        self.slices = []
        for e in examples:
            pairs = []
            for img, mask in e.variants:
                x, _ = resample_slices(img, e.volume.zooms)
                y, _ = resample_slices(mask.astype(np.float32), e.volume.zooms)
                pairs.append((normalise(x), y > 0.5))
            self.slices.append(pairs)

    def sample(self, n):
        p = LOCALISER_PATCH
        xs, ys = np.zeros((n, p, p), np.float32), np.zeros((n, p, p), np.float32)
        for b in range(n):
            i = self._pick_example()
            x, y = self.slices[i][int(self.rng.integers(len(self.slices[i])))]
            k = int(self.rng.integers(x.shape[0]))
            xi, yi = _random_patch(self.rng, x[k], y[k], p)
            if self.rng.random() < 0.5:
                xi, yi = xi[::-1], yi[::-1]
            xs[b], ys[b] = augment.intensity(self.rng, xi[None])[0], yi
        return xs[..., None], ys[..., None]


def _random_patch(rng, x, y, p):
    """A p x p patch (zero-padded), containing the cord most of the time."""
    pad = [(max(0, p - s) // 2 + 1, max(0, p - s) // 2 + 1) for s in x.shape]
    x, y = np.pad(x, pad), np.pad(y, pad)
    if y.any() and rng.random() < 0.8:
        ci, cj = np.argwhere(y)[rng.integers(int(y.sum()))]
        i0 = int(np.clip(ci - rng.integers(8, p - 8), 0, x.shape[0] - p))
        j0 = int(np.clip(cj - rng.integers(8, p - 8), 0, x.shape[1] - p))
    else:
        i0, j0 = rng.integers(0, x.shape[0] - p + 1), rng.integers(0, x.shape[1] - p + 1)
    return x[i0:i0 + p, j0:j0 + p], y[i0:i0 + p, j0:j0 + p].astype(np.float32)


# --- validation: whole images, by subject -----------------------------------------------------------------

def traced(keras_model):
    """The model's compiled predict step as a ``forward(x, training=False)`` (eager calls are ~30 % slower)."""
    return lambda x, training=False: keras_model.predict_on_batch(x)


def predict_volume(keras_model, data, zooms, centres, slices) -> np.ndarray:
    boxes = normalise(crop_slices(data, zooms, centres, slices))[..., None]
    prob = predict_batches(traced(keras_model), boxes)
    return uncrop_slices(prob, data.shape, zooms, centres, slices)


def validation_set(examples, target, seed):
    """Fixed validation pairs: originals for cord, fixed-seed simulated lesions for lesion models."""
    rng = np.random.default_rng(seed + 1000)
    out = []
    for e in examples:
        if target == "lesion":
            from basicseg.training.simulate import simulate_lesion
            for r in range(2):
                img, lesion, _ = simulate_lesion(e.volume.data, e.cord, e.volume.zooms, rng)
                out.append((f"{e.name}_sim-{r + 1}", e, img.astype(np.float32), lesion))
        else:
            out.append((e.name, e, e.volume.data, e.cord))
    return out


def validate(keras_model, val_pairs, target) -> dict[str, float]:
    scores = {}
    for name, e, img, mask in val_pairs:
        if target == "localiser":
            x, grid = resample_slices(img, e.volume.zooms)
            prob = predict_batches(traced(keras_model), normalise(x)[..., None])
            y, _ = resample_slices(mask.astype(np.float32), e.volume.zooms)
            scores[name] = dice(prob > 0.5, y > 0.5)
            continue
        slices = np.nonzero(e.cord.any(axis=(0, 1)))[0]
        centres = smooth_path(centres_from_mask(e.cord), e.volume.zooms, smooth_mm=0)[slices]
        prob = predict_volume(keras_model, img, e.volume.zooms, centres, slices)
        scores[name] = dice(prob > 0.5, mask)
    return scores


# --- the run -------------------------------------------------------------------------------------------------

def build(target: str, architecture: int, learning_rate: float):
    import keras
    from basicseg.networks.unet import bce_dice_loss, build_localiser, build_model, dice_coefficient

    model = build_localiser() if target == "localiser" else build_model(architecture)
    model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss=bce_dice_loss, metrics=[dice_coefficient])
    return model


def weight_average(momentum: float, path: Path):
    """A callback keeping an exponential moving average of the trainable weights, updated after every batch
    (``--ema``; 0.99 spans about the last 100 batches) and kept in ``path`` for ``--resume``. Written here
    because the optimizers' own ``use_ema`` does not average under ``fit`` with the TensorFlow backend
    (Keras 3.15: the average stayed equal to the weights). Batch-norm statistics are not averaged: they
    are moving averages over a window of the same length already."""
    import keras

    class WeightAverage(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.average = list(np.load(path).values()) if path.is_file() else None

        def on_train_batch_end(self, batch, logs=None):
            weights = [v.numpy() for v in self.model.trainable_variables]
            if self.average is None:
                self.average = weights
                return
            for average, w in zip(self.average, weights):
                average *= momentum
                average += (1.0 - momentum) * w

        def save(self):
            from basicseg.io import atomic_path
            with atomic_path(path) as tmp:
                np.savez(tmp, *self.average)

    return WeightAverage()


@contextmanager
def averaged_weights(model, average=None):
    """Inside the block the network holds the moving average of its weights, which is what is validated,
    selected and saved as the model; the raw weights, which training continues from, come back after it.
    A no-op without an average (no ``--ema``)."""
    if average is None or average.average is None:
        yield model
        return
    raw = [v.numpy() for v in model.trainable_variables]
    for variable, value in zip(model.trainable_variables, average.average):
        variable.assign(value)
    try:
        yield model
    finally:
        for variable, value in zip(model.trainable_variables, raw):
            variable.assign(value)


def initialise_from(model, source: str, held_out: list) -> dict:
    """Start from the weights of a trained network of the same graph (a lesion network from the cord network of
    the same fold): it already finds the cord, so the lesion network's minutes go to the lesion. Refuses a source
    trained on any image this run holds out (``held_out``: the validation examples), which would leak them into
    the validation figures."""
    import keras
    from basicseg.networks.registry import model_card, resolve_model
    from basicseg.networks.unet import custom_objects

    path = resolve_model(source)
    card = model_card(path)
    if held_out and not card:
        raise SystemExit(f"--init-from {path}: no model card beside it to prove it never saw the held-out images")
    seen = {i["subject"] for i in card.get("training_images", [])}
    leaked = sorted({f"{e.subject} ({e.site})" for e in held_out if e.subject in seen})
    if leaked:
        raise SystemExit(f"--init-from {path}: it was trained on held-out subject(s) {', '.join(leaked)}")
    donor = keras.models.load_model(path, custom_objects=custom_objects(), compile=False)
    try:
        model.set_weights(donor.get_weights())
    except ValueError as err:
        raise SystemExit(f"--init-from {path}: not the same architecture ({err})") from None
    return {"model": card.get("name", path.stem), "path": str(source), "training_sites": card.get("training_sites"),
            "epochs_run": card.get("epochs_run")}


def decayed_learning_rate(base: float, progress: float) -> float:
    """Polynomial decay from ``base`` (progress 0) to ``LR_FLOOR * base`` (progress 1, the end of the run):
    the last epochs take small steps, so the last epoch -- which the final models keep -- has settled
    (at a constant 1e-3 the held-out Dice swung between 0.4 and 0.7 from one epoch to the next)."""
    return base * max(LR_FLOOR, (1.0 - min(max(progress, 0.0), 1.0)) ** LR_POLY_POWER)


def model_name(target: str, architecture: int) -> str:
    return "localiser" if target == "localiser" else f"{target}-basicseg{architecture}"


def train(args) -> dict:
    import keras
    import tensorflow as tf
    from basicseg.segment.infer import configure_tensorflow
    from basicseg.networks.unet import custom_objects

    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    device = configure_tensorflow(args.nprocs)
    rng = np.random.default_rng(args.seed)
    keras.utils.set_random_seed(args.seed)
    name = model_name(args.target, args.architecture)

    examples = load_examples(Path(args.bids_dir), args.suffix, args.subjects)
    if not examples:
        raise SystemExit(f"no images with cord reference masks found under {args.bids_dir}/derivatives/labels")
    train_ex, val_ex = split_examples(examples, args.val_sites or (), args.val_subjects or ())
    if not train_ex:
        raise SystemExit("the validation split leaves no training images")
    log.info("training on %d images (%s), validating on %d (%s)", len(train_ex),
             ", ".join(sorted({e.site for e in train_ex})), len(val_ex), ", ".join(sorted({e.site for e in val_ex})))
    for e in train_ex:
        prepare_variants(e, "lesion" if args.target == "lesion" else "cord", rng)
    sampler = LocaliserSampler(train_ex, rng) if args.target == "localiser" else BoxSampler(train_ex, args.target, rng)
    val_pairs = validation_set(val_ex, args.target, args.seed)

    state_path, last_path, best_path = out / "state.json", out / f"{name}.last.keras", out / f"{name}.keras"
    state = {"epoch": 0, "best_epoch": None, "best_dice": -1.0, "history": [], "seconds": 0.0}
    if args.resume and state_path.is_file() and last_path.is_file():
        state = json.loads(state_path.read_text())
        model = keras.models.load_model(last_path, custom_objects=custom_objects())
        rng = np.random.default_rng([args.seed, state["epoch"]])
        sampler.rng = rng
        log.info("resuming %s at epoch %d (best %.4f at epoch %s)", name, state["epoch"], state["best_dice"],
                 state["best_epoch"])
    else:
        model = build(args.target, args.architecture, args.learning_rate)
        if args.init_from:
            state["initialised_from"] = initialise_from(model, args.init_from, val_ex)
            log.info("initialised from %s", args.init_from)

    average = weight_average(args.ema, out / "weight_average.npz") if args.ema > 0 else None
    start = time.time() - state["seconds"]
    while state["epoch"] < args.epochs and (time.time() - start) < args.max_minutes * 60:
        epoch = state["epoch"] + 1
        t0 = time.time()
        # progress: the share of the run's epochs or of its wall time used, whichever is larger (runs are capped
        # in time); a run resumed with a larger cap therefore warms up again from where the new cap puts it
        progress = max(state["epoch"] / args.epochs, (t0 - start) / (args.max_minutes * 60))
        lr = decayed_learning_rate(args.learning_rate, progress)
        model.optimizer.learning_rate.assign(lr)
        x, y = sampler.sample(args.steps * BATCH_SIZE)
        if args.target == "lesion":
            for e in train_ex:      # fresh lesions for the next epoch (~0.1 s each): a fixed set would be memorised
                prepare_variants(e, "lesion", rng)
        hist = model.fit(x, y, batch_size=BATCH_SIZE, epochs=1, verbose=0, shuffle=False,
                         callbacks=[average] if average else None)
        with averaged_weights(model, average):
            scores = validate(model, val_pairs, args.target) if val_pairs else {}
            val = float(np.nanmean(list(scores.values()))) if scores else float("nan")
            if val_pairs and val > state["best_dice"]:    # model selection: best validation epoch, not the last
                state.update(best_dice=val, best_epoch=epoch, best_scores=scores)
                model.save(best_path)
        train_dice = float(hist.history["dice_coefficient"][0])
        row = {"epoch": epoch, "samples": len(x), "learning_rate": lr, "loss": float(hist.history["loss"][0]), "train_dice": train_dice, "val_dice": val,
               "seconds": round(time.time() - t0, 1), "slices_per_s": round(len(x) / (time.time() - t0), 1)}
        state["history"].append(row)
        model.save(last_path)           # the raw weights and the optimizer state, for --resume
        if average:
            average.save()
            with averaged_weights(model, average):     # what a final run stopped here would ship
                model.save(out / f"{name}.last-average.keras")
        state["epoch"], state["seconds"] = epoch, time.time() - start
        write_json(state_path, state)
        print(f"[{name}] epoch {epoch:3d}/{args.epochs} loss {row['loss']:.4f} train Dice {row['train_dice']:.3f} "
              + (f"val Dice {val:.3f} (best {state['best_dice']:.3f} @ {state['best_epoch']}) " if val_pairs else "")
              + f"{row['seconds']:.0f}s {row['slices_per_s']:.0f} slices/s", flush=True)

    if not val_pairs and state["epoch"] and state["best_epoch"] != state["epoch"]:
        # final models: no held-out images, and the training Dice under augmentation is no selection signal,
        # so the last epoch -- taken at the end of the learning-rate decay -- is the model
        with averaged_weights(model, average):
            model.save(best_path)
        state["best_epoch"] = state["epoch"]
        write_json(state_path, state)

    history = pd.DataFrame(state["history"])
    write_tsv(out / f"{name}_curves.tsv", history)
    plot_curves(history, out / f"{name}_curves.png", name)
    card = {
        "name": name, "target": "cord" if args.target == "localiser" else args.target,
        "role": "localiser" if args.target == "localiser" else "segmentation",
        "architecture": "localiser (BASICseg-1 graph, fully convolutional, 1 mm full-field slices)"
        if args.target == "localiser" else f"BASICseg-{args.architecture}",
        "input": "full-field axial slice at 1 mm, padded to a multiple of 16" if args.target == "localiser"
        else "128x128 axial box at 0.2 mm (25.6 mm) centred on the cord centreline, percentile-normalised",
        "threshold": 0.5, "basicseg_version": __version__,
        # lesion models: mean of the box and its left-right mirror at inference (infer.Model.predict)
        "mirror_average": args.target == "lesion",
        "training_images": [{"image": str(e.path.relative_to(Path(args.bids_dir).resolve()) if e.path.is_absolute() and
                                           str(e.path).startswith(str(Path(args.bids_dir).resolve())) else e.path.name),
                             "subject": e.subject, "site": e.site, "suffix": e.suffix} for e in train_ex],
        "training_sites": sorted({e.site for e in train_ex}),
        "validation_sites": sorted({e.site for e in val_ex}),
        "validation_dice_per_image": state.get("best_scores", {}),
        "lesions": "SIMULATED contusion-like lesions (basicseg.simulate), "
                   f"{LESIONS_PER_IMAGE} per training image, redrawn every epoch, {LESION_SLICE_SHARE:.0%} of the boxes "
                   "on lesion slices; no real lesion labels" if args.target == "lesion" else None,
        "augmentation": {k: getattr(augment, k) for k in ("ROTATION_DEG", "SCALE_RANGE", "ANISO_SCALE", "OBLIQUE_PROB", "OBLIQUE_MAX_DEG", "SHIFT_MM",
                         "GAMMA_LOG_SD", "BIAS_AMPLITUDE", "NOISE_SD", "REMAP_PROB", "BLUR_PROB", "THICK_SLICES_MM")}
        | {"left_right_flip": 0.5, "t2star_share": T2STAR_SHARE},
        "initialised_from": state.get("initialised_from"),
        "epochs_run": state["epoch"], "best_epoch": state["best_epoch"],
        "selection": "best validation Dice" if val_pairs else "last epoch (no held-out images)",
        "best_validation_dice": state["best_dice"] if val_pairs else None,
        "steps_per_epoch": args.steps, "batch_size": BATCH_SIZE, "learning_rate": args.learning_rate,
        "learning_rate_schedule": f"polynomial decay (power {LR_POLY_POWER}) over the run's epochs or wall time, "
                                  f"to {LR_FLOOR:.0%} of the base rate",
        "loss": "binary cross-entropy + soft Dice", "optimizer": "Adam", "seed": args.seed,
        "weight_averaging": {"kind": "exponential moving average of the trainable weights, updated every batch",
                             "momentum": args.ema}
        if args.ema > 0 else None,
        "training_seconds": round(state["seconds"]), "device": device,
        "software": {"python": platform.python_version(), "tensorflow": tf.__version__, "keras": keras.__version__,
                     "numpy": np.__version__},
        "command": "basicseg-train " + " ".join(shlex.quote(a) for a in args.argv),
    }
    if not best_path.is_file():
        model.save(best_path)
    write_json(out / f"{name}.json", card)
    return card


def plot_curves(history: pd.DataFrame, path: Path, title: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from basicseg.io import atomic_path

    if history.empty:
        return
    fig, ax = plt.subplots(1, 2, figsize=(9, 3.2))
    ax[0].plot(history["epoch"], history["loss"])
    ax[0].set(xlabel="epoch", ylabel="training loss", title=title)
    ax[1].plot(history["epoch"], history["train_dice"], label="train (augmented)")
    if history["val_dice"].notna().any():
        ax[1].plot(history["epoch"], history["val_dice"], label="validation (held-out sites)")
    ax[1].set(xlabel="epoch", ylabel="Dice", ylim=(0, 1))
    ax[1].legend()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=90)
    plt.close(fig)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="basicseg-train", description=__doc__.split("\n\n")[0])
    p.add_argument("bids_dir", type=Path)
    p.add_argument("out_dir", type=Path)
    p.add_argument("--target", choices=("cord", "lesion", "localiser"), default="cord")
    p.add_argument("--architecture", type=int, choices=(1, 2, 3), default=1)
    p.add_argument("--suffix", nargs="+", default=["T2w", "T2starw"], help="image suffixes to train on")
    p.add_argument("--subjects", nargs="+", help="restrict to these subjects (sub-X)")
    p.add_argument("--val-sites", nargs="*", default=[], help="hold these whole sites out for validation")
    p.add_argument("--val-subjects", nargs="*", default=[], help="hold these subjects out for validation")
    p.add_argument("--epochs", type=int, default=40)
    p.add_argument("--steps", type=int, default=25, help="batches of 32 per epoch")
    p.add_argument("--max-minutes", type=float, default=45.0, help="stop after this wall time")
    p.add_argument("--learning-rate", type=float, default=LEARNING_RATE)
    p.add_argument("--ema", type=float, default=0.0, metavar="MOMENTUM",
                   help="validate, select and ship an exponential moving average of the weights (e.g. 0.99: about the "
                        "last 100 batches) instead of the last batch's; 0 (default) turns it off")
    p.add_argument("--seed", type=int, default=20190701)
    p.add_argument("--nprocs", type=int)
    p.add_argument("--resume", action="store_true", help="continue from OUT_DIR/state.json")
    p.add_argument("--init-from", metavar="MODEL",
                   help="start from this same-architecture network's weights, a shipped name or a .keras file (e.g. a lesion "
                        "run from the cord network of the same fold); refused if it was trained on a held-out image")
    return p


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parser().parse_args(argv)
    args.argv = argv
    if args.subjects:
        args.subjects = {s if s.startswith("sub-") else f"sub-{s}" for s in args.subjects}
    args.val_subjects = [s if s.startswith("sub-") else f"sub-{s}" for s in args.val_subjects]
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    card = train(args)
    print(json.dumps({k: card[k] for k in ("name", "best_epoch", "best_validation_dice", "validation_dice_per_image")},
                     indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
