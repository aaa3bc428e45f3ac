"""Learning-rate schedule: nnU-Net's polynomial decay over the run, to a floor.

Runs are capped in wall time as well as in epochs, so the schedule follows whichever of the two is
further along: a run stopped by its time cap still ends on small steps.
"""
from __future__ import annotations

LR_POLY_POWER = 0.9             # nnU-Net's polynomial decay of the learning rate over the run ...
LR_FLOOR = 0.02                 # ... down to this fraction of the base rate


def decayed_learning_rate(base: float, progress: float) -> float:
    """Polynomial decay from ``base`` (progress 0) to ``LR_FLOOR * base`` (progress 1, the end of the run):
    the last epochs take small steps, so the last epoch -- which the final models keep -- has settled
    (docs/models.md: how much a constant rate swings the held-out Dice)."""
    return base * max(LR_FLOOR, (1.0 - min(max(progress, 0.0), 1.0)) ** LR_POLY_POWER)


def run_progress(epochs_done: int, epochs: int, seconds: float, max_seconds: float) -> float:
    """The share of the run's epochs or of its wall time used, whichever is larger. A run resumed with a
    larger cap therefore warms up again from where the new cap puts it."""
    by_epochs = epochs_done / epochs if epochs else 1.0
    by_time = seconds / max_seconds if max_seconds > 0 else 1.0
    return max(by_epochs, by_time)


def schedule_description() -> str:
    """The schedule in words, for the model card."""
    return f"polynomial decay (power {LR_POLY_POWER}) over the run's epochs or wall time, to {LR_FLOOR:.0%} of the base rate"
