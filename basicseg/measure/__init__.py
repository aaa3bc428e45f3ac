"""Measure masks: cord and lesion morphometrics (SCT 7.4 definitions; ``morphometrics.measure_masks`` gives the
image, per-slice and per-lesion tables, ``lesions`` the per-lesion metrics, ``cli`` the ``basicseg-measure``
command) and segmentation scores (Dice, HD95)."""
