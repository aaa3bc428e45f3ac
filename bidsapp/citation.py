"""The methods text to cite (``logs/CITATION.md`` and ``logs/CITATION.bib``), as fMRIPrep writes its
boilerplate: what ran, with which models (SHA-256), thresholds and steps, and the references."""
from __future__ import annotations

import os
from math import isfinite
from pathlib import Path


from basicseg import __version__
from basicseg.io import write_text
from basicseg.networks.registry import model_card, resolve_model, sha256
from basicseg.segment.crop import MATRIX, PIXEL_MM
from basicseg.segment.hyperintensity import REFERENCE_GAP_MM, REFERENCE_MM
from basicseg.segment.infer import card_settings

HOW_TO_ACKNOWLEDGE = ("Cite basicseg (version and container as in GeneratedBy), the BASICseg paper "
                      "(McCoy et al., AJNR 2019, doi:10.3174/ajnr.A6020) and, for the lesion metrics, the Spinal "
                      "Cord Toolbox (De Leener et al., NeuroImage 2017). logs/CITATION.md has a methods paragraph.")

BIB = r"""@article{mccoy2019basicseg,
  author  = {McCoy, David B. and Dupont, Sara M. and Gros, Charley and Cohen-Adad, Julien and Huie, J. Russell
             and Ferguson, Adam and Duong-Fernandez, Xuan and Thomas, Leigh H. and Singh, Vineeta and Narvid, Jared
             and Pascual, Lisa and Kyritsis, Nikos and Beattie, Michael S. and Bresnahan, Jacqueline C.
             and Dhall, Sanjay and Whetstone, William and Talbott, Jason F.},
  title   = {Convolutional Neural Network-Based Automated Segmentation of the Spinal Cord and Contusion Injury:
             Deep Learning Biomarker Correlates of Motor Impairment in Acute Spinal Cord Injury},
  journal = {American Journal of Neuroradiology}, year = {2019}, volume = {40}, number = {4}, pages = {737--744},
  doi     = {10.3174/ajnr.A6020}}

@article{deleener2017sct,
  author  = {De Leener, Benjamin and L{\'e}vy, Simon and Dupont, Sara M. and others and Cohen-Adad, Julien},
  title   = {{SCT}: Spinal Cord Toolbox, an open-source software for processing spinal cord {MRI} data},
  journal = {NeuroImage}, year = {2017}, volume = {145}, pages = {24--43}, doi = {10.1016/j.neuroimage.2016.10.009}}
"""


def _model_line(role: str, name: str) -> str:
    path = resolve_model(name)
    card = model_card(path)
    return (f"* {role}: `{card.get('name', path.stem)}` ({card.get('architecture', 'U-Net')}, threshold "
            f"{card.get('threshold', 0.5)}, SHA-256 `{sha256(path)}`)")


def averaging_text(card: dict, tta: str) -> str:
    """How a network's probabilities were averaged over views under --tta ``tta`` (as infer.Model runs it)."""
    views = card_settings(card, tta)
    shift_mm = max((abs(v) for s in views["shifts"] for v in s), default=0) * PIXEL_MM
    named = ["its left-right mirror"] * views["mirror"] + \
        [f"the box shifted by +-{shift_mm:g} mm along each in-plane axis"] * bool(views["shifts"])
    return f", its probabilities averaged over each box and {' and '.join(named)}" if named else ""


def lesion_text(name: str, tta: str) -> str:
    """The lesion network's rule as its model card gives it (scripts/tune_lesion.py writes it)."""
    card = model_card(resolve_model(name))
    rule = card_settings(card, tta)
    outline = (f", each outlined where its probability exceeded {rule['extent_threshold']:g}"
               if rule["extent_threshold"] != rule["threshold"] else "")
    return (f" Intramedullary lesions were segmented by a second network in the same boxes{averaging_text(card, tta)}; "
            f"lesions were the components whose probability reached {rule['threshold']:g} over at least "
            f"{rule['min_volume_mm3']:g} mm3{outline}{hyperintensity_text(rule['min_contrast'])}. The lesion network "
            "was trained on SIMULATED contusion-like lesions only.")


def hyperintensity_text(min_contrast: float | None) -> str:
    """The rule of basicseg.segment.hyperintensity, as a clause."""
    if min_contrast is None or not isfinite(min_contrast):
        return ""
    return (f", and whose median intensity exceeded that of the same share of the brightest normal cord "
            f"{REFERENCE_GAP_MM:g}-{REFERENCE_MM:g} mm above and below them by a log-ratio of at least {min_contrast:g}")


def methods_text(config) -> str:
    container = os.environ.get("BASICSEG_CONTAINER")
    models = [_model_line(role, name) for role, name in
              (("cord", config.cord_model), ("lesion", config.lesion_model),
               ("localiser", config.localiser_model if config.centerline == "auto" else None)) if name]
    lesion = lesion_text(config.lesion_model, config.tta) if config.lesion_model else ""
    cord_averaging = averaging_text(model_card(resolve_model(config.cord_model)), config.tta)
    return f"""# Methods (written by basicseg {__version__})

The spinal cord{' and intramedullary lesions' if config.lesion_model else ''} were segmented on axial
T2-weighted images with basicseg {__version__}{f' (container {container})' if container else ''}, an
implementation of the BASICseg U-Nets [@mccoy2019basicseg]. The cord centreline was found
{'by a localiser network on 1 mm slices' if config.centerline == 'auto' else 'from given centreline masks' if config.centerline not in ('auto', 'sct') else "with SCT's sct_get_centerline"}; on every axial
slice a {MATRIX * PIXEL_MM:.1f} mm box ({MATRIX} x {MATRIX}, {PIXEL_MM} mm pixels) was cut around it, the
cord was segmented by a U-Net{cord_averaging} and the probabilities were mapped back onto the image's own grid.{lesion}
Lesion morphometrics (volume, length, maximal width, axial damage ratio, midsagittal tissue bridges, one
row per lesion and the lesion masked by the cord) follow the definitions of the Spinal Cord Toolbox 7.4
`sct_analyze_lesion` [@deleener2017sct]; cross-sectional area is corrected for the cord's angle to the
slice normal.

Networks (weights ship inside the package):

{chr(10).join(models)}

References: `CITATION.bib` beside this file.
"""


def write_citation(config) -> Path:
    logs = Path(config.output_dir) / "logs"
    write_text(logs / "CITATION.bib", BIB)
    return write_text(logs / "CITATION.md", methods_text(config))
