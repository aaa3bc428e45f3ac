"""Cord atlas on axial slices: the AMU7T template's grey matter and tracts mapped onto each slice's cord mask."""
from .mapping import AtlasMap, fill_labels, map_atlas
from .template import GM_IDS, TRACT_GROUPS, load_atlas

__all__ = ["AtlasMap", "map_atlas", "fill_labels", "load_atlas", "TRACT_GROUPS", "GM_IDS"]
