"""Find reference (manual or other-tool) masks for an image, in every naming convention the field uses.

Looked up under ``<root>/derivatives/labels`` (or any derivative folder given), mirroring the image's
``sub-X/[ses-Y/]anat/`` path:

* spine-generic / ivadomed / SCT:  ``<stem>_seg-manual.nii.gz`` (cord), ``<stem>_lesion-manual.nii.gz``
* newer spine-generic:             ``<stem>_label-SC_seg.nii.gz``
* BIDS-valid derivatives:          ``<stem>_label-SC_mask.nii.gz``, ``<stem>_label-lesion_mask.nii.gz``
  and basicseg's own outputs ``<entities>_space-orig_label-SC_mask.nii.gz``

where ``<stem>`` is the image file name without extension (``sub-X_T2w``) and ``<entities>`` the stem
without its suffix (``sub-X``).
"""
from __future__ import annotations

from pathlib import Path

TARGETS = ("cord", "lesion", "gm")

_PATTERNS = {
    "cord": [
        "{stem}_seg-manual", "{stem}_label-SC_seg", "{stem}_label-SC_mask", "{stem}_seg",
        "{entities}_space-orig_label-SC_mask", "{entities}_label-SC_mask", "{entities}_label-SC_seg",
    ],
    "lesion": [
        "{stem}_lesion-manual", "{stem}_label-lesion_mask", "{stem}_label-lesion_seg",
        "{entities}_space-orig_label-lesion_mask", "{entities}_label-lesion_mask",
    ],
    "gm": ["{stem}_gmseg-manual", "{stem}_label-GM_seg", "{stem}_label-GM_mask", "{entities}_label-GM_mask"],
}


def image_stem(image_path: str | Path) -> str:
    name = Path(image_path).name
    for ext in (".nii.gz", ".nii"):
        if name.endswith(ext):
            return name[: -len(ext)]
    return name


def split_suffix(stem: str) -> tuple[str, str]:
    """``sub-1_run-1_T2w`` -> (``sub-1_run-1``, ``T2w``)."""
    entities, _, suffix = stem.rpartition("_")
    return entities, suffix


def find_reference(image_path: str | Path, target: str, derivative_dirs: list[str | Path] | None = None,
                   bids_root: str | Path | None = None) -> Path | None:
    """Return the first reference mask for ``image_path`` and ``target`` ("cord", "lesion" or "gm", the grey matter), or None.

    ``derivative_dirs`` defaults to ``<bids_root>/derivatives/labels``; ``bids_root`` defaults to the
    folder above ``sub-*`` in the image path.
    """
    if target not in TARGETS:
        raise ValueError(f"target must be one of {TARGETS}, not {target!r}")
    image_path = Path(image_path)
    rel = _relative_to_subject(image_path)
    if bids_root is None:
        bids_root = image_path.parents[len(rel.parts) - 1]
    if derivative_dirs is None:
        derivative_dirs = [Path(bids_root) / "derivatives" / "labels"]
    stem = image_stem(image_path)
    entities, _ = split_suffix(stem)
    for folder in derivative_dirs:
        base = Path(folder) / rel.parent
        for pattern in _PATTERNS[target]:
            for ext in (".nii.gz", ".nii"):
                candidate = base / (pattern.format(stem=stem, entities=entities) + ext)
                if candidate.is_file():
                    return candidate
    return None


def _relative_to_subject(image_path: Path) -> Path:
    parts = image_path.parts
    for i in range(len(parts) - 1, -1, -1):
        if parts[i].startswith("sub-") and i < len(parts) - 1:
            return Path(*parts[i:])
    raise ValueError(f"{image_path}: not inside a sub-<label> folder")
