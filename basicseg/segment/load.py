"""Load: read a NIfTI image and present it as a stack of axial slices.

Everything downstream works in the image's *closest canonical* (RAS+) voxel order, where axis 2 is
the voxel axis nearest inferior-superior, so axial slices are ``data[:, :, k]``. No resampling is
done here: only axis permutations and flips, which are undone exactly by :meth:`AxialVolume.to_native`.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np

from basicseg.errors import DATA_ERR, BasicsegError

# A volume whose voxel sizes differ by less than this ratio is treated as 3D near-isotropic and
# resliced axially; otherwise its thick-slice axis must be the inferior-superior one.
ISOTROPY_RATIO = 1.5


@dataclass
class AxialVolume:
    path: Path
    native: nib.Nifti1Image        # the image as read, for writing outputs on its grid
    data: np.ndarray               # float32, canonical voxel order, axial slices along axis 2
    affine: np.ndarray             # canonical affine
    ornt: np.ndarray               # native -> canonical orientation transform

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


def load_image(path: str | Path) -> nib.Nifti1Image:
    """Read a NIfTI file or raise a :class:`BasicsegError` that names the file and the problem."""
    path = Path(path)
    try:
        img = nib.load(str(path))
        if len(img.shape) == 4 and img.shape[3] == 1:
            img = img.slicer[..., 0]
        if len(img.shape) != 3:
            raise BasicsegError(f"{path}: expected a 3D image, found shape {img.shape}", DATA_ERR)
        if not np.all(np.isfinite(img.affine)) or abs(np.linalg.det(img.affine[:3, :3])) < 1e-9:
            raise BasicsegError(f"{path}: the affine is singular or not finite", DATA_ERR)
        return img
    except BasicsegError:
        raise
    except Exception as exc:  # nibabel raises many kinds (ImageFileError, EOFError, zlib.error ...)
        raise BasicsegError(f"{path}: cannot read as NIfTI ({type(exc).__name__}: {exc})", DATA_ERR) from exc


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
    if not np.isfinite(native).all():
        native = np.nan_to_num(native, nan=0.0, posinf=0.0, neginf=0.0)
    data = nib.orientations.apply_orientation(native, ornt).astype(np.float32, copy=False)
    affine = img.affine @ nib.orientations.inv_ornt_aff(ornt, img.shape)
    return AxialVolume(Path(path), img, np.ascontiguousarray(data), affine, ornt)


def load_mask(path: str | Path, like: AxialVolume) -> np.ndarray:
    """Read a mask on ``like``'s grid and return it in canonical order as bool."""
    img = load_image(path)
    if img.shape != like.native.shape or not np.allclose(img.affine, like.native.affine, atol=1e-3):
        raise BasicsegError(f"{path}: mask grid {img.shape} differs from image {like.path} {like.native.shape}",
                            DATA_ERR)
    return like.to_canonical(np.asanyarray(img.dataobj) > 0.5)
