"""BASIC score (Talbott et al., J Neurosurg Spine 2015) and tract-wise lesion load, from masks.

EXPERIMENTAL: validated on SIMULATED lesions only (scripts/validate_basic.py, docs/atlas.md).

On the axial slice of the epicentre (the slice of greatest injury), the grade is

* 0 -- no intramedullary signal abnormality (no lesion voxel in the cord);
* 1 -- T2 hyperintensity confined to the grey matter: at least ``GM_CONFINED_SHARE`` of the slice's
  lesion lies in the atlas GM mapped onto the cord (:func:`basicseg.atlas.map_atlas`), dilated by
  ``GM_TOLERANCE_MM`` (the atlas is a registered prior, not the patient's own GM);
* 2 -- beyond the expected GM margins, not the entire transverse extent: a white-matter rim is spared,
  i.e. at least ``RIM_SPARED_SHARE`` of the cord's outermost voxel layer is free of lesion;
* 3 -- the entire transverse extent (the rim is not spared);
* 4 -- grade 3 plus T2-hypointense foci (haemorrhage, :mod:`.haemorrhage`) on the epicentre slice.

Epicentre: the lesion slice with the largest share of the cross-section involved; ties (e.g. several
fully involved slices) go to the larger haemorrhage, then the larger lesion area.

Tract-wise lesion load, for the groups of :data:`basicseg.atlas.TRACT_GROUPS` (left and right lateral
corticospinal tracts, dorsal columns, lateral and ventral funiculi, left and right ventral horns):
the percentage of the group's area involved at the epicentre and the volume involved over the lesion.
The thresholds were tuned on the simulated lesions of one site (UCL, sub-9418) and validated on the
others (leave-site-out), from the TRUE lesion masks.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage

from basicseg.atlas import TRACT_GROUPS, fill_labels, map_atlas
from .haemorrhage import detect_haemorrhage

GM_CONFINED_SHARE = 0.75   # lesion share inside the (tolerant) atlas GM for grade 1 (tuned on UCL)
GM_TOLERANCE_MM = 0.5      # GM dilated by about one voxel: registration error of the atlas
RIM_SPARED_SHARE = 0.5     # share of the outer cord layer free of lesion for a spared rim (grade 2; tuned on UCL)
STATUS = "experimental: validated on simulated lesions only"
NAN = float("nan")


def _zooms(affine) -> tuple[float, float, float]:
    return tuple(float(z) for z in np.linalg.norm(np.asarray(affine)[:3, :3], axis=0))


def slice_evidence(cord2d, lesion2d, haem2d) -> dict:
    """The GM-independent BASIC evidence on one axial slice (``lesion2d`` within the cord)."""
    lesion2d = lesion2d & cord2d
    n_lesion, n_cord = int(lesion2d.sum()), int(cord2d.sum())
    outer = cord2d & ~ndimage.binary_erosion(cord2d)
    return {"lesion_px": n_lesion, "haem_px": int((haem2d & lesion2d).sum()),
            "involved": n_lesion / n_cord if n_cord else NAN,
            "rim_spared": (outer & ~lesion2d).sum() / outer.sum() if outer.any() else NAN}


def gm_share(cord2d, lesion2d, gm2d, zooms) -> float:
    """Share of the slice's lesion inside the atlas GM dilated by GM_TOLERANCE_MM."""
    lesion2d = lesion2d & cord2d
    if not lesion2d.any():
        return NAN
    reach = max(1, int(round(GM_TOLERANCE_MM / min(zooms[:2]))))
    gm_tol = ndimage.binary_dilation(gm2d, iterations=reach) & cord2d if gm2d.any() else gm2d
    return float((lesion2d & gm_tol).sum() / lesion2d.sum())


def grade_from_evidence(ev: dict, gm_min: float = GM_CONFINED_SHARE, rim_min: float = RIM_SPARED_SHARE) -> int:
    if not ev or ev["lesion_px"] == 0:
        return 0
    if not ev["rim_spared"] >= rim_min:
        return 4 if ev["haem_px"] > 0 else 3
    return 1 if ev["in_gm"] >= gm_min else 2


def epicentre(evidence: dict[int, dict]) -> int | None:
    if not evidence:
        return None
    return max(evidence, key=lambda k: (evidence[k]["involved"], evidence[k]["haem_px"], evidence[k]["lesion_px"]))


def tract_load(lesion, labels, k_epi, voxel_mm3) -> dict:
    """Per tract group: % of its area involved at the epicentre and mm^3 involved over the lesion."""
    out = {}
    for name, ids in TRACT_GROUPS.items():
        group = np.isin(labels, ids)
        area = group[:, :, k_epi].sum() if k_epi is not None else 0
        hit = (group[:, :, k_epi] & lesion[:, :, k_epi]).sum() if k_epi is not None else 0
        out[f"tract_{name}_epicentre_pct"] = float(100 * hit / area) if area else (0.0 if k_epi is None else NAN)
        out[f"tract_{name}_volume_mm3"] = float((group & lesion).sum() * voxel_mm3)
    return out


def assess(volume_data, zooms, cord, lesion, atlas_map=None) -> dict:
    """The epicentre and its evidence, the haemorrhage mask and summary. The epicentre needs no atlas,
    so without ``atlas_map`` the atlas is mapped onto the epicentre slice only."""
    lesion = lesion & cord
    haem, summary = detect_haemorrhage(volume_data, cord, lesion, zooms)
    evidence = {int(k): slice_evidence(cord[:, :, k], lesion[:, :, k], haem[:, :, k])
                for k in np.flatnonzero(lesion.any(axis=(0, 1)))}
    k = epicentre(evidence)
    ev = dict(evidence.get(k, {}))
    if k is not None:
        if atlas_map is None or atlas_map.levels[k] == "":
            atlas_map = map_atlas(cord, zooms, slices=[k])
        ev["in_gm"] = gm_share(cord[:, :, k], lesion[:, :, k], atlas_map.gm[:, :, k], zooms)
    return {"epicentre": k, "evidence": ev, "haemorrhage": haem, "summary": summary}


def grade_image(volume_data: np.ndarray, affine: np.ndarray, cord: np.ndarray, lesion: np.ndarray | None,
                atlas_map=None) -> tuple[dict, np.ndarray]:
    """``(columns, haemorrhage mask)`` of one image: the BASIC score, its evidence, the haemorrhage and
    the tract-wise load (columns for the per-image morphometrics TSV; :data:`COLUMNS`).

    Arrays in canonical RAS voxel order (axial slices ``[:, :, k]``; e.g. ``AxialVolume.data``,
    ``.affine``); ``basic_epicentre_slice`` is a canonical axial index. ``atlas_map``: a precomputed
    :func:`basicseg.atlas.map_atlas` of this ``cord`` (else mapped on the lesion's slices)."""
    cord = np.asarray(cord, bool)
    lesion = np.zeros_like(cord) if lesion is None else np.asarray(lesion, bool) & cord
    zooms = _zooms(affine)
    voxel = float(np.prod(zooms))
    if atlas_map is None:
        atlas_map = map_atlas(cord, zooms, slices=np.flatnonzero(lesion.any(axis=(0, 1))))
    result = assess(volume_data, zooms, cord, lesion, atlas_map)
    k, ev, haem, summary = result["epicentre"], result["evidence"], result["haemorrhage"], result["summary"]
    row = {"basic_score": grade_from_evidence(ev), "basic_epicentre_slice": NAN if k is None else k,
           "basic_lesion_in_gm_share": ev.get("in_gm", NAN), "basic_section_involved_share": ev.get("involved", NAN),
           "basic_rim_spared_share": ev.get("rim_spared", NAN),
           "basic_wm_rim_spared": NAN if k is None else int(ev["rim_spared"] >= RIM_SPARED_SHARE),
           "basic_haemorrhage_at_epicentre": NAN if k is None else int(ev["haem_px"] > 0),
           **summary, "basic_status": STATUS}
    row |= tract_load(lesion, fill_labels(atlas_map, cord), k, voxel)
    return {c: (float(v) if isinstance(v, (np.floating, np.integer)) else v) for c, v in row.items()}, haem


COLUMNS = ("basic_score", "basic_epicentre_slice", "basic_lesion_in_gm_share", "basic_section_involved_share",
           "basic_rim_spared_share", "basic_wm_rim_spared", "basic_haemorrhage_at_epicentre",
           "haemorrhage_volume_mm3", "haemorrhage_n_foci", "haemorrhage_length_mm", "basic_status") + tuple(
    f"tract_{g}_{m}" for g in TRACT_GROUPS for m in ("epicentre_pct", "volume_mm3"))
