"""The model card written beside every trained network, and its learning curves.

The card is what inference reads (``threshold``, ``mirror_average``) and what the README's tables are
built from (scripts/model_report.py); settings.json (:mod:`basicseg.training.settings`) records the run.
"""
from __future__ import annotations

import shlex
from pathlib import Path

import pandas as pd

from basicseg import __version__
from basicseg.training import augment
from basicseg.training.build import LOSS, OPTIMIZER
from basicseg.training import data
from basicseg.training.samplers import FLIP_SHARE, HARD_NEGATIVE_SHARE, LESION_SLICE_SHARE, T2STAR_SHARE
from basicseg.training.schedule import schedule_description
from basicseg.training.settings import relative_image, software_versions
from basicseg.training.validation import THRESHOLD

AUGMENTATION_SETTINGS = ("ROTATION_DEG", "SCALE_RANGE", "ANISO_SCALE", "OBLIQUE_PROB", "OBLIQUE_MAX_DEG", "SHIFT_MM",
                         "GAMMA_LOG_SD", "BIAS_AMPLITUDE", "NOISE_SD", "REMAP_PROB", "BLUR_PROB", "THICK_SLICES_MM",
                         "TISSUE_PROB", "CORD_GAIN", "GM_GAIN", "CSF_GAIN", "CSF_RING_MM")
LOCALISER_ARCHITECTURE = "localiser (BASICseg-1 graph, fully convolutional, 1 mm full-field slices)"
LOCALISER_INPUT = "full-field axial slice at 1 mm, padded to a multiple of 16"
BOX_INPUT = "128x128 axial box at 0.2 mm (25.6 mm) centred on the cord centreline, percentile-normalised"
LESION_NOTE = ("SIMULATED lesions, {n} per training image redrawn every epoch, of the kinds {kinds} (spindle: "
               "basicseg.training.simulate; gm/rim/whole: the clinical patterns of basicseg.training.patterns, {haem:.0%} "
               "with a haemorrhagic core, some with extra foci), drawn from the grey matter (manual or atlas prior); "
               "{share:.0%} of the boxes on lesion slices; no real lesion labels")
LESION_NETWORK_NOTE = (" {healthy} lesion-free copy per image beside them; {hard:.0%} of each epoch's boxes are hard "
                       "negatives: the lesion-free boxes the network scored highest after the epoch before")
CORD_LESION_NOTE = ("the cord label includes {n} copies per image with a SIMULATED lesion inside the (swollen) cord, "
                    "so that an oedematous section is cord")
EMA_KIND = "exponential moving average of the trainable weights, updated every batch"


def describe_network(config) -> dict:
    localiser = config.target == "localiser"
    return {
        "name": config.model_name, "target": "cord" if localiser else config.target,
        "role": "localiser" if localiser else "segmentation",
        "architecture": LOCALISER_ARCHITECTURE if localiser else f"BASICseg-{config.architecture}",
        "input": LOCALISER_INPUT if localiser else BOX_INPUT,
        "threshold": THRESHOLD, "basicseg_version": __version__,
        # lesion models: mean of the box and its left-right mirror at inference (infer.Model.predict)
        "mirror_average": config.target == "lesion",
        # cord networks learn SIMULATED lesions as cord (data.CORD_LESION_VARIANTS); for the record
        "lesions_in_cord_label": config.target == "cord",
    }


def lesion_note(target: str) -> str | None:
    """How the network saw SIMULATED lesions (none for the localiser)."""
    note = LESION_NOTE.format(n=data.LESIONS_PER_IMAGE if target == "lesion" else data.CORD_LESION_VARIANTS,
                              kinds="/".join(data.LESION_KINDS), haem=data.HAEMORRHAGE_SHARE, share=LESION_SLICE_SHARE)
    if target == "lesion":
        return note + ";" + LESION_NETWORK_NOTE.format(healthy=data.HEALTHY_VARIANTS, hard=HARD_NEGATIVE_SHARE)
    if target == "cord":
        return note + "; " + CORD_LESION_NOTE.format(n=data.CORD_LESION_VARIANTS)
    return None


def describe_data(config, train_ex, val_ex, state: dict) -> dict:
    images = [{"image": relative_image(e.path, config.bids_dir), "subject": e.subject, "site": e.site,
               "suffix": e.suffix} for e in train_ex]
    lesions = lesion_note(config.target)
    return {
        "training_images": images, "training_sites": sorted({e.site for e in train_ex}),
        "validation_sites": sorted({e.site for e in val_ex}),
        "validation_dice_per_image": state.get("best_scores", {}), "lesions": lesions,
        "augmentation": {k: getattr(augment, k) for k in AUGMENTATION_SETTINGS}
        | {"left_right_flip": FLIP_SHARE, "t2star_share": T2STAR_SHARE},
    }


def describe_training(config, state: dict, validated: bool, batch_size: int) -> dict:
    averaging = {"kind": EMA_KIND, "momentum": config.ema} if config.ema > 0 else None
    return {
        "initialised_from": state.get("initialised_from"),
        "epochs_run": state["epoch"], "best_epoch": state["best_epoch"],
        "selection": "best validation Dice" if validated else "last epoch (no held-out images)",
        "best_validation_dice": state["best_dice"] if validated else None,
        "steps_per_epoch": config.steps, "batch_size": batch_size, "learning_rate": config.learning_rate,
        "learning_rate_schedule": schedule_description() + restarts(state.get("history", [])),
        "loss": LOSS, "optimizer": OPTIMIZER,
        "seed": config.seed, "weight_averaging": averaging,
    }


def restarts(history: list[dict]) -> str:
    """The epochs where the rate rose again: a run resumed with more --epochs starts a second decay."""
    rates = [row.get("learning_rate") for row in history]
    up = [history[i]["epoch"] for i in range(1, len(rates))
          if rates[i] is not None and rates[i - 1] is not None and rates[i] > rates[i - 1] * 1.01]
    return f"; restarted at epoch {', '.join(map(str, up))} (resumed with more --epochs)" if up else ""


def model_card(config, train_ex, val_ex, state: dict, validated: bool, batch_size: int, device: str) -> dict:
    """Everything about the network: what it is, what it saw, how it was trained and selected."""
    versions = {k: v for k, v in software_versions().items() if k != "basicseg"}
    return (describe_network(config) | describe_data(config, train_ex, val_ex, state)
            | describe_training(config, state, validated, batch_size)
            | {"training_seconds": round(state["seconds"]), "device": device, "software": versions,
               "command": "basicseg-train " + " ".join(shlex.quote(a) for a in config.argv)})


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
