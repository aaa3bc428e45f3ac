"""Measure masks: cord and lesion morphometrics (SCT definitions) and segmentation scores (Dice, HD95)."""
