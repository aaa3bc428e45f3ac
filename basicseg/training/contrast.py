"""Contrast stress: a labelled image recoloured into a contrast no training site has.

    basicseg-eval BIDS_DIR OUT_DIR --target lesion --lesion-set patterns --contrast bright-cord

The unseen-site evaluation found a 3 T T2*w site whose cord is nearly as bright as its CSF, with the grey
matter visible, where the cord network failed (Dice 0.66) without a QC flag. None of the project's nine
images looks like that. ``bright-cord`` makes each of them look like it, with its own anatomy, noise and
partial volume: the white matter is scaled to :data:`CORD_TO_CSF` of the CSF ring's median and the grey
matter to :data:`GM_TO_WM` of the white matter, with soft edges. The reference masks stay exact, so the cord
network and the QC flags can be scored on a contrast they were not tuned on. The image is cut to the slices its
cord mask covers, so that every slice the networks see is recoloured: sub-9604's manual cord covers 14 of its 20
slices, and on the other six, left native, the lesion rule and the QC found normal-contrast cord to compare with.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np
from scipy import ndimage

from basicseg.measure.confidence import ring_around
from basicseg.training.data import Example, cut_to_labelled_slices

CONTRASTS = ("native", "bright-cord")
CORD_TO_CSF = 0.9        # white matter / CSF: "nearly as bright as the CSF"
GM_TO_WM = 1.3           # grey matter / white matter: visible, as on T2*w
CSF_RING_MM = 2.0        # the CSF sampled around the cord (the subarachnoid space is 2-4 mm wide)
EDGE_MM = 0.5            # the gains' soft edge: partial volume, not a cut-out


def bright_cord(data: np.ndarray, cord: np.ndarray, gm: np.ndarray, zooms) -> np.ndarray:
    """``data`` with its white matter at CORD_TO_CSF x the CSF ring's median and its grey matter at
    GM_TO_WM x that (medians over the whole cord; arrays in canonical order, axial slices along axis 2)."""
    cord = cord.astype(bool)
    gm = gm.astype(bool) & cord
    wm = cord & ~gm
    ring = ring_around(cord, zooms, 0.0, CSF_RING_MM)
    if not wm.any() or not ring.any():
        return data
    wm_gain = CORD_TO_CSF * float(np.median(data[ring])) / max(float(np.median(data[wm])), 1e-6)
    sigma = (EDGE_MM / zooms[0], EDGE_MM / zooms[1], 0)
    gain = 1.0 + (wm_gain - 1.0) * ndimage.gaussian_filter(cord.astype(np.float32), sigma)
    gain += wm_gain * (GM_TO_WM - 1.0) * ndimage.gaussian_filter(gm.astype(np.float32), sigma)
    return (data * gain).astype(np.float32)


def with_contrast(example: Example, contrast: str) -> Example:
    """The example recoloured (``native``: itself), on its labelled slices. The grey matter is the example's
    manual mask or atlas prior (:func:`.data.grey_matter`); without one the whole cord is scaled as white matter."""
    if contrast == "native":
        return example
    if contrast != "bright-cord":
        raise ValueError(f"unknown contrast {contrast!r}: one of {', '.join(CONTRASTS)}")
    example = cut_to_labelled_slices(example)
    gm = example.gm if example.gm is not None else np.zeros_like(example.cord)
    data = bright_cord(example.volume.data, example.cord, gm, example.volume.zooms)
    return replace(example, volume=replace(example.volume, data=data))
