"""Load: read a NIfTI image and present it as a stack of axial slices.

Everything downstream works in the image's *closest canonical* (RAS+) voxel order, where axis 2 is
the voxel axis nearest inferior-superior, so axial slices are ``data[:, :, k]``. No resampling is
done here: only axis permutations and flips, which are undone exactly by :meth:`AxialVolume.to_native`.
"""
from __future__ import annotations

import gzip
import logging
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np

from basicseg.errors import DATA_ERR, BasicsegError

# A volume whose voxel sizes differ by less than this ratio is treated as 3D near-isotropic and
# resliced axially; otherwise its thick-slice axis must be the inferior-superior one.
ISOTROPY_RATIO = 1.5
# Scanners write axes that are orthogonal to rounding; a grid sheared beyond this (cosine between two
# voxel axes) breaks the orthogonal in-plane boxes of the networks and is refused.
MAX_SHEAR_COSINE = 0.05
# NIfTI xyz units other than millimetres, as factors to millimetres (nibabel's affine ignores them).
UNIT_TO_MM = {"meter": 1000.0, "mm": 1.0, "micron": 1e-3, "unknown": 1.0}
# the voxel sizes the networks were trained on: in-plane 0.5-1 mm (blurred in training to about 1.2 mm) and
# axial slices up to 7 mm thick (training simulates 2-7 mm); coarser, the cord (~8 mm across) is a handful of
# voxels and the outputs are not validated (flagged outside_validated_resolution)
VALIDATED_IN_PLANE_MM = 1.5
VALIDATED_SLICE_MM = 7.0
NIFTI_HEADER_BYTES = 348      # the smallest NIfTI-1 header; a shorter file is empty or cut off

log = logging.getLogger("basicseg")


@dataclass
class AxialVolume:
    path: Path
    native: nib.Nifti1Image        # the image as read, for writing outputs on its grid
    data: np.ndarray               # float32, canonical voxel order, axial slices along axis 2
    affine: np.ndarray             # canonical affine
    ornt: np.ndarray               # native -> canonical orientation transform
    nonfinite_voxels: int = 0      # NaN/Inf voxels of the input, replaced by their slice's median
    warnings: list = field(default_factory=list)

    @property
    def zooms(self) -> tuple[float, float, float]:
        return tuple(float(z) for z in np.linalg.norm(self.affine[:3, :3], axis=0))

    @property
    def n_slices(self) -> int:
        return self.data.shape[2]

    def to_native(self, array: np.ndarray) -> np.ndarray:
        """Map a canonical-order array back onto the native voxel grid (exact: permutes and flips)."""
        back = nib.orientations.ornt_transform(nib.orientations.axcodes2ornt("RAS"), self.ornt_native)
        return nib.orientations.apply_orientation(array, back)

    def to_canonical(self, array: np.ndarray) -> np.ndarray:
        return nib.orientations.apply_orientation(array, self.ornt)

    @property
    def ornt_native(self) -> np.ndarray:
        return nib.orientations.io_orientation(self.native.affine)


def read_verified(path: Path) -> bytes:
    """The file's bytes, decompressed and checked to their end (gzip CRC and length). nibabel alone stops
    reading before the gzip trailer, so a corrupted stream would be segmented silently."""
    raw = Path(path).read_bytes()
    compressed = raw[:2] == b"\x1f\x8b"
    if compressed:
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as exc:
            raise BasicsegError(f"{path}: corrupt gzip stream ({exc}); the file is damaged or truncated",
                                DATA_ERR) from exc
    pointer = pointer_file(raw)
    if pointer:
        raise BasicsegError(f"{path}: {pointer}", DATA_ERR)
    if len(raw) < NIFTI_HEADER_BYTES:
        size = f"{len(raw)} bytes{' decompressed' if compressed else ''}"
        raise BasicsegError(f"{path}: {size}, shorter than a NIfTI header: the file is empty or truncated", DATA_ERR)
    return raw


def pointer_file(raw: bytes) -> str | None:
    """What a small text file standing in for an image is (git-annex unlocked files, Git LFS), or None."""
    if len(raw) > 1024:
        return None
    if b"/annex/objects/" in raw[:200]:
        return "a git-annex pointer, not the image: its content was not fetched (`datalad get` it)"
    if raw.startswith(b"version https://git-lfs"):
        return "a Git LFS pointer, not the image: its content was not fetched (`git lfs pull`)"
    return None


def _from_bytes(raw: bytes):
    for kind in (nib.Nifti1Image, nib.Nifti2Image):
        try:
            return kind.from_bytes(raw)
        except Exception as exc:   # the header of the other kind; the last error is reported
            error = exc
    raise error


def load_image(path: str | Path) -> nib.Nifti1Image:
    """Read a NIfTI file whole and check its geometry, or raise a :class:`BasicsegError` that names the
    file and the problem."""
    path = Path(path)
    try:
        img = _from_bytes(read_verified(path))
    except BasicsegError:
        raise
    except OSError as exc:
        raise BasicsegError(f"{path}: cannot read ({exc.strerror or exc})", DATA_ERR) from exc
    except Exception as exc:  # nibabel raises many kinds (HeaderDataError, ValueError ...)
        raise BasicsegError(f"{path}: cannot read as NIfTI ({type(exc).__name__}: {exc})", DATA_ERR) from exc
    if len(img.shape) == 4 and img.shape[3] == 1:
        img = img.slicer[..., 0]
    if len(img.shape) != 3:
        raise BasicsegError(f"{path}: expected a 3D image, found shape {img.shape}", DATA_ERR)
    dtype = img.get_data_dtype()
    if dtype.kind == "c" or dtype.fields:
        raise BasicsegError(f"{path}: {'complex' if dtype.kind == 'c' else 'RGB'} voxel data ({dtype}); basicseg "
                            "reads real-valued magnitude images", DATA_ERR)
    check_geometry(img, path)
    return img


def load_header(path: str | Path):
    """The image's header and affine only (nibabel reads lazily): enough to tell the acquisition plane
    without reading the voxels. Raises BasicsegError; the whole file is checked by ``load_image``."""
    try:
        return nib.load(str(path))
    except Exception as exc:
        raise BasicsegError(f"{path}: cannot read as NIfTI ({type(exc).__name__}: {exc})", DATA_ERR) from exc


def check_geometry(img, path: Path) -> None:
    """Refuse what would silently change geometry: no orientation, a singular or sheared grid."""
    hdr = img.header
    if int(hdr["sform_code"]) == 0 and int(hdr["qform_code"]) == 0:
        raise BasicsegError(f"{path}: neither qform nor sform is set (codes 0): the orientation is unknown",
                            DATA_ERR)
    if hdr.get_xyzt_units()[0] not in UNIT_TO_MM:
        raise BasicsegError(f"{path}: unsupported spatial unit {hdr.get_xyzt_units()[0]!r}", DATA_ERR)
    affine = affine_mm(img)
    if not np.all(np.isfinite(affine)) or abs(np.linalg.det(affine[:3, :3])) < 1e-9:
        raise BasicsegError(f"{path}: the affine is singular or not finite", DATA_ERR)
    axes = affine[:3, :3] / np.linalg.norm(affine[:3, :3], axis=0)
    cosines = np.abs(axes.T @ axes - np.eye(3))
    if cosines.max() > MAX_SHEAR_COSINE:
        raise BasicsegError(f"{path}: the voxel grid is sheared (axis cosine {cosines.max():.3f} > "
                            f"{MAX_SHEAR_COSINE}); reslice it to an orthogonal grid first", DATA_ERR)


def resolution_problem(zooms) -> str | None:
    """Why voxels of ``zooms`` (canonical R, A, S; mm) lie outside the validated range, or None."""
    in_plane, thickness = max(float(zooms[0]), float(zooms[1])), float(zooms[2])
    if in_plane > VALIDATED_IN_PLANE_MM:
        return f"in-plane voxel {in_plane:.3g} mm, coarser than the {VALIDATED_IN_PLANE_MM:g} mm validated"
    if thickness > VALIDATED_SLICE_MM:
        return f"axial slices {thickness:.3g} mm thick, thicker than the {VALIDATED_SLICE_MM:g} mm validated"
    return None


def affine_mm(img) -> np.ndarray:
    """The voxel-to-world affine in millimetres, honouring the header's xyz unit."""
    scale = UNIT_TO_MM[img.header.get_xyzt_units()[0]]
    affine = img.affine.copy()
    affine[:3, :] *= scale
    return affine


def axial_problem(img: nib.Nifti1Image) -> str | None:
    """Why this image cannot be read as an axial stack, or None when it can."""
    ornt = nib.orientations.io_orientation(img.affine)
    zooms = np.linalg.norm(img.affine[:3, :3], axis=0)
    canon_zooms = zooms[np.argsort(ornt[:, 0])]   # voxel size along canonical R, A, S axes
    if canon_zooms.max() / canon_zooms.min() < ISOTROPY_RATIO:
        return None                                # near-isotropic 3D: resliced axially
    thick_axis = int(np.argmax(canon_zooms))
    if thick_axis == 2:
        return None                                # thick-slice axial stack
    plane = "sagittal" if thick_axis == 0 else "coronal"
    return (f"thick-slice {plane} acquisition (voxel {canon_zooms.round(2).tolist()} mm in R,A,S): "
            "axial slices would be {:.1f} mm wide; basicseg needs axial images".format(canon_zooms[thick_axis]))


def load_axial(path: str | Path, img: nib.Nifti1Image | None = None) -> AxialVolume:
    img = img if img is not None else load_image(path)
    problem = axial_problem(img)
    if problem:
        raise BasicsegError(f"{path}: {problem}", DATA_ERR)
    ornt = nib.orientations.io_orientation(img.affine)
    try:
        native = np.asanyarray(img.dataobj, dtype=np.float32)
    except Exception as exc:
        raise BasicsegError(f"{path}: cannot read voxel data ({exc})", DATA_ERR) from exc
    native, nonfinite = replace_nonfinite(native)
    if nonfinite == native.size:
        raise BasicsegError(f"{path}: every voxel is NaN or Inf", DATA_ERR)
    warnings = []
    if nonfinite:
        warnings.append(f"{nonfinite} NaN/Inf voxel(s) replaced by their slice's median")
        log.warning("%s: %s", path, warnings[-1])
    data = nib.orientations.apply_orientation(native, ornt).astype(np.float32, copy=False)
    affine = affine_mm(img) @ nib.orientations.inv_ornt_aff(ornt, img.shape)
    return AxialVolume(Path(path), img, np.ascontiguousarray(data), affine, ornt, nonfinite, warnings)


def replace_nonfinite(data: np.ndarray) -> tuple[np.ndarray, int]:
    """NaN/Inf voxels set to the median of their slice's finite voxels (along the last voxel axis):
    zero would read as a dark, haemorrhage-like spot inside the cord."""
    bad = ~np.isfinite(data)
    count = int(bad.sum())
    if count:
        data = data.copy()
        for k in np.unique(np.nonzero(bad)[2]):
            finite = data[..., k][~bad[..., k]]
            data[..., k][bad[..., k]] = np.median(finite) if finite.size else 0.0
    return data, count


def load_mask(path: str | Path, like: AxialVolume) -> np.ndarray:
    """Read a mask on ``like``'s grid and return it in canonical order as bool."""
    img = load_image(path)
    if img.shape != like.native.shape or not np.allclose(img.affine, like.native.affine, atol=1e-3):
        raise BasicsegError(f"{path}: mask grid {img.shape} differs from image {like.path} {like.native.shape}",
                            DATA_ERR)
    return like.to_canonical(np.asanyarray(img.dataobj) > 0.5)
