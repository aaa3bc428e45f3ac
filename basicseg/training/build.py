"""The network a run starts from: a fresh graph, or the weights of a trained donor (``--init-from``)."""
from __future__ import annotations

from pathlib import Path

from basicseg.io import sha256_file

OPTIMIZER = "Adam"
LOSS = "binary cross-entropy + soft Dice"


def build(target: str, architecture: int, learning_rate: float):
    """A compiled fresh network: the localiser graph, or BASICseg-``architecture``."""
    import keras
    from basicseg.networks.unet import bce_dice_loss, build_localiser, build_model, dice_coefficient

    model = build_localiser() if target == "localiser" else build_model(architecture)
    model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss=bce_dice_loss, metrics=[dice_coefficient])
    return model


def leaked_subjects(card: dict, held_out: list) -> list[str]:
    """The held-out examples' subjects that a donor's model card lists among its training images."""
    seen = {i["subject"] for i in card.get("training_images", [])}
    return sorted({f"{e.subject} ({e.site})" for e in held_out if e.subject in seen})


# a run's last-epoch checkpoints beside its selected NAME.keras and its card NAME.json (train.RunFiles)
LAST_SUFFIX, LAST_AVERAGE_SUFFIX = ".last", ".last-average"


def run_card(path: Path) -> dict:
    """The model card of the run that wrote ``path``: its own, or the run's ``NAME.json`` for a last-epoch checkpoint
    (``NAME.last.keras``, ``NAME.last-average.keras``), which was trained on the same images."""
    from basicseg.networks.registry import model_card

    card = model_card(path)
    for suffix in (LAST_AVERAGE_SUFFIX, LAST_SUFFIX):
        if not card and path.stem.endswith(suffix):
            card = model_card(path.with_name(path.stem[:-len(suffix)] + path.suffix))
    return card


def initialise_from(model, source: str, held_out: list) -> dict:
    """Start from the weights of a trained network of the same graph (a lesion network from the cord network of
    the same fold): it already finds the cord, so the lesion network's minutes go to the lesion. Refuses a source
    trained on any image this run holds out (``held_out``: the validation examples), which would leak them into
    the validation figures. Returns the donor's provenance, its SHA-256 included."""
    import keras
    from basicseg.networks.registry import resolve_model
    from basicseg.networks.unet import custom_objects

    path = resolve_model(source)
    card = run_card(path)
    if held_out and not card:
        raise SystemExit(f"--init-from {path}: no model card beside it to prove it never saw the held-out images")
    leaked = leaked_subjects(card, held_out)
    if leaked:
        raise SystemExit(f"--init-from {path}: it was trained on held-out subject(s) {', '.join(leaked)}")
    donor = keras.models.load_model(path, custom_objects=custom_objects(), compile=False)
    try:
        model.set_weights(donor.get_weights())
    except ValueError as err:
        raise SystemExit(f"--init-from {path}: not the same architecture ({err})") from None
    return {"model": card.get("name", path.stem), "path": str(source), "file": str(path), "sha256": sha256_file(path),
            "training_sites": card.get("training_sites"), "epochs_run": card.get("epochs_run")}
