"""Train BASICseg-1/2/3 (cord or lesion) or the centreline localiser on a labelled BIDS dataset.

    basicseg-train BIDS_DIR OUT_DIR --target cord --architecture 1 [--val-sites SITE ...]

Reference masks are read from ``BIDS_DIR/derivatives/labels`` in every naming convention of
:mod:`basicseg.references`. Lesion models are trained on contusion-like lesions inserted into the real
images (:mod:`basicseg.training.data`: spindles and the clinical patterns; no public contusion labels exist),
beside lesion-free copies and mined hard negatives; cord models learn the same lesions as cord. Every box
is recoloured per tissue class (domain randomisation, :func:`basicseg.training.augment.tissue_contrast`). The box crops come from the
same :func:`basicseg.segment.crop.crop_slices` as inference, with the centre taken from the reference cord
mask plus jitter (the centreline is never exact at inference).

Deviations from McCoy et al. (2019), for runs capped at minutes on a CPU (docs/models.md): Adam at 1e-3
instead of 1e-5, decayed over the run, and binary cross-entropy + soft Dice loss.

The steps live in their own modules: :mod:`~basicseg.training.config` (the options),
:mod:`~basicseg.training.data` (examples, sites, splits, training pairs), :mod:`~basicseg.training.samplers`,
:mod:`~basicseg.training.schedule`, :mod:`~basicseg.training.averaging`, :mod:`~basicseg.training.build`,
:mod:`~basicseg.training.validation`, :mod:`~basicseg.training.card` and :mod:`~basicseg.training.settings`.
This one holds the run: set up, one epoch after another, the final model.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from basicseg.io import write_json, write_tsv
from basicseg.training import settings as run_settings
from basicseg.training.averaging import averaged_weights, weight_average
from basicseg.training.build import LAST_AVERAGE_SUFFIX, LAST_SUFFIX, build, initialise_from
from basicseg.training.card import model_card, plot_curves
from basicseg.training.config import ARCHITECTURES, TRAIN_TARGETS, TrainConfig
from basicseg.training.data import crop_to_cord, load_examples, prepare_variants, split_examples, validation_set
from basicseg.training.samplers import HARD_NEGATIVE_SHARE, BoxSampler, LocaliserSampler, mine_hard_negatives
from basicseg.training.schedule import decayed_learning_rate, run_progress
from basicseg.training.validation import mean_dice, validate

# Names other code imported from this module before the split; they stay importable from here.
from basicseg.training.data import (Example, LESIONS_PER_IMAGE, is_isotropic, labelled_images,  # noqa: F401
                                    subject_sites)
from basicseg.training.samplers import LESION_SLICE_SHARE, LOCALISER_PATCH, T2STAR_SHARE  # noqa: F401
from basicseg.training.config import model_name  # noqa: F401
from basicseg.training.schedule import LR_FLOOR, LR_POLY_POWER  # noqa: F401
from basicseg.training.validation import predict_volume, traced  # noqa: F401

log = logging.getLogger("basicseg.train")

BATCH_SIZE = 32                 # the paper's batch size


@dataclass(frozen=True)
class RunFiles:
    """What a run keeps in its output folder."""
    out: Path
    name: str

    @property
    def state(self) -> Path:            # epochs done, best epoch, history: what --resume continues from
        return self.out / "state.json"

    @property
    def last(self) -> Path:             # the raw weights and the optimizer state of the last epoch
        return self.out / f"{self.name}{LAST_SUFFIX}.keras"

    @property
    def last_average(self) -> Path:     # --ema: what a final run stopped at the last epoch would ship
        return self.out / f"{self.name}{LAST_AVERAGE_SUFFIX}.keras"

    @property
    def model(self) -> Path:            # the selected network
        return self.out / f"{self.name}.keras"

    @property
    def average(self) -> Path:
        return self.out / "weight_average.npz"

    @property
    def card(self) -> Path:
        return self.out / f"{self.name}.json"

    def curves(self, ext: str) -> Path:
        return self.out / f"{self.name}_curves.{ext}"


@dataclass
class Run:
    """One training run: its options, data, network and the state that --resume picks up."""
    config: TrainConfig
    files: RunFiles
    device: str
    train_ex: list
    val_ex: list
    val_pairs: list
    sampler: BoxSampler
    model: object
    state: dict
    average: object | None
    rng: np.random.Generator
    start: float = 0.0

    @property
    def validated(self) -> bool:
        return bool(self.val_pairs)


def new_state() -> dict:
    return {"epoch": 0, "best_epoch": None, "best_dice": -1.0, "history": [], "seconds": 0.0}


# --- set-up -------------------------------------------------------------------------------------------------

def load_split(config: TrainConfig) -> tuple[list, list]:
    """(training, validation) examples; exits when there is nothing to train on."""
    examples = load_examples(config.bids_dir, config.suffix, config.subjects, with_gm=config.target != "localiser")
    if not examples:
        raise SystemExit(f"no images with cord reference masks found under {config.bids_dir}/derivatives/labels")
    if config.target != "localiser":    # the localiser learns full fields; the box networks see the cord +- 32 mm
        examples = [crop_to_cord(e) for e in examples]
    train_ex, val_ex = split_examples(examples, config.val_sites, config.val_subjects)
    if not train_ex:
        raise SystemExit("the validation split leaves no training images")
    log.info("training on %d images (%s), validating on %d (%s)", len(train_ex),
             ", ".join(sorted({e.site for e in train_ex})), len(val_ex), ", ".join(sorted({e.site for e in val_ex})))
    return train_ex, val_ex


def make_sampler(config: TrainConfig, train_ex: list, rng: np.random.Generator) -> BoxSampler:
    for e in train_ex:
        prepare_variants(e, config.target, rng)
    if config.target == "localiser":
        return LocaliserSampler(train_ex, rng)
    return BoxSampler(train_ex, config.target, rng)


def start_model(config: TrainConfig, files: RunFiles, val_ex: list):
    """(network, state, resumed): the last epoch's network and state with --resume when there is one,
    else a fresh network (or one started from --init-from)."""
    import keras
    from basicseg.networks.unet import custom_objects

    if config.resume and files.state.is_file() and files.last.is_file():
        state = json.loads(files.state.read_text())
        model = keras.models.load_model(files.last, custom_objects=custom_objects())
        log.info("resuming %s at epoch %d (best %.4f at epoch %s)", files.name, state["epoch"], state["best_dice"],
                 state["best_epoch"])
        return model, state, True
    state = new_state()
    model = build(config.target, config.architecture, config.learning_rate)
    if config.init_from:
        state["initialised_from"] = initialise_from(model, config.init_from, val_ex)
        log.info("initialised from %s", config.init_from)
    return model, state, False


def open_run(config: TrainConfig) -> Run:
    """Everything before the first epoch, in the order that fixes the random streams."""
    import keras
    from basicseg.segment.infer import configure_tensorflow

    files = RunFiles(config.out_dir, config.model_name)
    files.out.mkdir(parents=True, exist_ok=True)
    device = configure_tensorflow(config.nprocs)
    rng = np.random.default_rng(config.seed)
    keras.utils.set_random_seed(config.seed)
    train_ex, val_ex = load_split(config)
    sampler = make_sampler(config, train_ex, rng)
    val_pairs = validation_set(val_ex, config.target, config.seed)
    model, state, resumed = start_model(config, files, val_ex)
    if resumed:     # a fresh stream per resumed epoch: a resumed run does not replay the first run's draws
        rng = np.random.default_rng([config.seed, state["epoch"]])
        sampler.rng = rng
    average = weight_average(config.ema, files.average) if config.ema > 0 else None
    run = Run(config, files, device, train_ex, val_ex, val_pairs, sampler, model, state, average, rng)
    run_settings.write_settings(files.out, train_settings(run, resumed))
    return run


def train_settings(run: Run, resumed: bool) -> dict:
    config = run.config
    images = {"training_images": [run_settings.relative_image(e.path, config.bids_dir) for e in run.train_ex],
              "validation_images": [run_settings.relative_image(e.path, config.bids_dir) for e in run.val_ex]}
    donor = run.state.get("initialised_from")      # a resumed run: the donor its first run started from
    models = {"name": config.model_name,
              "init_from": {"name": donor["path"], "file": donor.get("file"), "sha256": donor.get("sha256")}
              if donor else None,
              "resumed_from": {"file": str(run.files.last), "epoch": run.state["epoch"]} if resumed else None}
    return run_settings.resolved_settings("basicseg-train", config, images, models, run.device)


# --- one epoch ----------------------------------------------------------------------------------------------

def fit_epoch(run: Run, lr: float) -> tuple[dict, int]:
    """One epoch of ``--steps`` batches: (Keras history, samples seen)."""
    config = run.config
    run.model.optimizer.learning_rate.assign(lr)
    x, y = run.sampler.sample(config.steps * BATCH_SIZE)
    if config.target != "localiser":
        for e in run.train_ex:      # fresh lesions for the next epoch: a fixed set would be memorised
            prepare_variants(e, config.target, run.rng)
    hist = run.model.fit(x, y, batch_size=BATCH_SIZE, epochs=1, verbose=0, shuffle=False,
                         callbacks=[run.average] if run.average else None)
    if config.target == "lesion":
        mine_hard_negatives(lambda boxes: run.model.predict(boxes, batch_size=BATCH_SIZE, verbose=0), run.sampler,
                            int(HARD_NEGATIVE_SHARE * config.steps * BATCH_SIZE))
    return hist.history, len(x)


def validate_epoch(run: Run, epoch: int) -> float:
    """Mean validation Dice of the (averaged) network; saves it when it is the best so far."""
    if not run.validated:
        return float("nan")
    with averaged_weights(run.model, run.average):
        scores = validate(run.model, run.val_pairs, run.config.target)
        val = mean_dice(scores)
        if val > run.state["best_dice"]:    # model selection: best validation epoch, not the last
            run.state.update(best_dice=val, best_epoch=epoch, best_scores=scores)
            run.model.save(run.files.model)
    return val


def save_epoch(run: Run, epoch: int, row: dict) -> None:
    """The state --resume continues from: raw network and optimizer, moving average, history."""
    run.state["history"].append(row)
    run.model.save(run.files.last)
    if run.average:
        run.average.save()
        with averaged_weights(run.model, run.average):
            run.model.save(run.files.last_average)
    run.state["epoch"], run.state["seconds"] = epoch, time.time() - run.start
    write_json(run.files.state, run.state)


def print_epoch(run: Run, row: dict) -> None:
    state = run.state
    best = f"val Dice {row['val_dice']:.3f} (best {state['best_dice']:.3f} @ {state['best_epoch']}) "
    print(f"[{run.files.name}] epoch {row['epoch']:3d}/{run.config.epochs} loss {row['loss']:.4f} "
          f"train Dice {row['train_dice']:.3f} " + (best if run.validated else "")
          + f"{row['seconds']:.0f}s {row['slices_per_s']:.0f} slices/s", flush=True)


def run_epoch(run: Run) -> None:
    epoch = run.state["epoch"] + 1
    t0 = time.time()
    progress = run_progress(run.state["epoch"], run.config.epochs, t0 - run.start, run.config.max_seconds)
    lr = decayed_learning_rate(run.config.learning_rate, progress)
    history, samples = fit_epoch(run, lr)
    val = validate_epoch(run, epoch)
    seconds = time.time() - t0
    row = {"epoch": epoch, "samples": samples, "learning_rate": lr, "loss": float(history["loss"][0]),
           "train_dice": float(history["dice_coefficient"][0]), "val_dice": val,
           "seconds": round(seconds, 1), "slices_per_s": round(samples / seconds, 1)}
    save_epoch(run, epoch, row)
    print_epoch(run, row)


def within_budget(run: Run) -> bool:
    return run.state["epoch"] < run.config.epochs and (time.time() - run.start) < run.config.max_seconds


# --- the end ------------------------------------------------------------------------------------------------

def keep_last_epoch(run: Run) -> None:
    """Final models: no held-out images, and the training Dice under augmentation is no selection signal,
    so the last epoch -- taken at the end of the learning-rate decay -- is the model."""
    state = run.state
    if run.validated or not state["epoch"] or state["best_epoch"] == state["epoch"]:
        return
    with averaged_weights(run.model, run.average):
        run.model.save(run.files.model)
    state["best_epoch"] = state["epoch"]
    write_json(run.files.state, state)


def finish(run: Run) -> dict:
    """The selected network, its learning curves and its model card."""
    keep_last_epoch(run)
    history = pd.DataFrame(run.state["history"])
    write_tsv(run.files.curves("tsv"), history)
    plot_curves(history, run.files.curves("png"), run.files.name)
    card = model_card(run.config, run.train_ex, run.val_ex, run.state, run.validated, BATCH_SIZE, run.device)
    if not run.files.model.is_file():       # no epoch run (--epochs 0): the starting network
        run.model.save(run.files.model)
    write_json(run.files.card, card)
    return card


def train(config: TrainConfig) -> dict:
    """One run, resumable: epochs until ``--epochs`` or ``--max-minutes``, then the model and its card."""
    run = open_run(config)
    run.start = time.time() - run.state["seconds"]
    while within_budget(run):
        run_epoch(run)
    return finish(run)


# --- command line -------------------------------------------------------------------------------------------

def parser() -> argparse.ArgumentParser:
    d = TrainConfig         # the defaults live on the config
    p = argparse.ArgumentParser(prog="basicseg-train", description=__doc__.split("\n\n")[0])
    p.add_argument("bids_dir", type=Path)
    p.add_argument("out_dir", type=Path)
    p.add_argument("--target", choices=TRAIN_TARGETS, default=d.target)
    p.add_argument("--architecture", type=int, choices=ARCHITECTURES, default=d.architecture)
    p.add_argument("--suffix", nargs="+", default=list(d.suffix), help="image suffixes to train on")
    p.add_argument("--subjects", nargs="+", help="restrict to these subjects (sub-X)")
    p.add_argument("--val-sites", nargs="*", default=[], help="hold these whole sites out for validation")
    p.add_argument("--val-subjects", nargs="*", default=[], help="hold these subjects out for validation")
    p.add_argument("--epochs", type=int, default=d.epochs)
    p.add_argument("--steps", type=int, default=d.steps, help=f"batches of {BATCH_SIZE} per epoch")
    p.add_argument("--max-minutes", type=float, default=d.max_minutes, help="stop after this wall time")
    p.add_argument("--learning-rate", type=float, default=d.learning_rate)
    p.add_argument("--ema", type=float, default=d.ema, metavar="MOMENTUM",
                   help="validate, select and ship an exponential moving average of the weights (e.g. 0.99: about the "
                        "last 100 batches) instead of the last batch's; 0 (default) turns it off")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--nprocs", type=int)
    p.add_argument("--resume", action="store_true", help="continue from OUT_DIR/state.json")
    p.add_argument("--init-from", metavar="MODEL",
                   help="start from this same-architecture network's weights, a shipped name or a .keras file (e.g. a lesion "
                        "run from the cord network of the same fold); refused if it was trained on a held-out image")
    return p


def resolve_config(argv) -> TrainConfig:
    """The command line as a :class:`TrainConfig` (argparse's usage errors exit 2 as before)."""
    return TrainConfig.from_namespace(parser().parse_args(argv), argv)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    config = resolve_config(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    card = train(config)
    print(json.dumps({k: card[k] for k in ("name", "best_epoch", "best_validation_dice", "validation_dice_per_image")},
                     indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
