"""``basicseg-measure``: the participant level's morphometrics on any pair of NIfTI masks.

    basicseg-measure CORD_MASK [LESION_MASK] -o OUT_DIR [--prefix NAME] [--no-angle-correction]

Writes, with the same code (:func:`basicseg.measure.morphometrics.measure_masks`) and columns as the BIDS App:

    OUT_DIR/NAME_morphometrics.tsv                 one row: the image (plus the two file names and QC flags)
    OUT_DIR/NAME_desc-perslice_morphometrics.tsv   one row per axial slice
    OUT_DIR/NAME_desc-lesions_morphometrics.tsv    one row per lesion (SCT 7.4 sct_analyze_lesion definitions)

Masks are any non-zero voxel, on any grid (oblique, anisotropic, sheared); they are measured in their closest
canonical (RAS+) voxel order, so slice numbers are axial indices in that order.  Exit codes (sysexits):
0 done; 64 bad usage; 65 a mask that cannot be used (unreadable, not 3D, or the two masks' grids differ);
66 a mask file that does not exist; 73 OUT_DIR cannot be written.  Errors are one line on stderr.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from basicseg import errors

PROG = "basicseg-measure"
GRID_ATOL_MM = 1e-4         # affines equal to 0.1 um: the same grid written by different tools


class _Parser(argparse.ArgumentParser):
    def error(self, message):           # argparse exits 2; the sysexits code for bad usage is 64
        self.print_usage(sys.stderr)
        raise errors.BasicsegError(message, errors.USAGE)


def parser() -> argparse.ArgumentParser:
    p = _Parser(prog=PROG, description="Cord and lesion morphometrics (SCT 7.4 definitions) of NIfTI masks.")
    p.add_argument("cord_mask", help="spinal cord mask (NIfTI, non-zero = cord)")
    p.add_argument("lesion_mask", nargs="?", help="lesion mask on the same grid (optional)")
    p.add_argument("-o", "--output-dir", required=True, help="folder for the three TSV files (created)")
    p.add_argument("--prefix", help="file name prefix (default: the cord mask's name without .nii[.gz])")
    p.add_argument("--no-angle-correction", action="store_true",
                   help="do not correct areas, lengths and widths for the cord's angle to the slices")
    return p


def _stem(path: Path) -> str:
    name = path.name
    for ext in (".nii.gz", ".nii"):
        if name.endswith(ext):
            return name[: -len(ext)]
    return path.stem


def load_mask(path: Path):
    """The mask's nibabel image (any readable NIfTI); BasicsegError with the right exit code otherwise."""
    import nibabel as nib

    if not path.is_file():
        raise errors.BasicsegError(f"{path}: no such file", errors.NO_INPUT)
    try:
        image = nib.load(str(path))
        shape = image.shape
    except Exception as exc:            # nibabel raises several types for a file that is not NIfTI
        raise errors.BasicsegError(f"{path}: not a readable NIfTI image ({exc})", errors.DATA_ERR) from None
    if len(shape) == 4 and shape[3] == 1:
        image = image.slicer[..., 0]
    if len(image.shape) != 3:
        raise errors.BasicsegError(f"{path}: a mask must be 3D, this image has shape {shape}", errors.DATA_ERR)
    return image


def check_same_grid(cord_path: Path, cord, lesion_path: Path, lesion) -> None:
    """Refuse two masks on different grids: measuring one against the other would be meaningless."""
    if cord.shape != lesion.shape or not np.allclose(cord.affine, lesion.affine, atol=GRID_ATOL_MM):
        raise errors.BasicsegError(
            f"the masks' grids differ: {cord_path} (shape {cord.shape}) and {lesion_path} "
            f"(shape {lesion.shape}) have a different shape or affine; resample one onto the other first",
            errors.DATA_ERR)


def _canonical_mask(image) -> tuple[np.ndarray, np.ndarray]:
    import nibabel as nib

    canonical = nib.as_closest_canonical(image)
    return np.asarray(canonical.dataobj) != 0, canonical.affine


def measure_files(cord_path: Path, lesion_path: Path | None, angle_correction: bool = True):
    """``(image_row, per_slice, per_lesion)`` of two mask files (image_row adds the names and QC flags)."""
    from .morphometrics import measure_masks, qc_flags

    cord_image = load_mask(cord_path)
    lesion_image = load_mask(lesion_path) if lesion_path is not None else None
    if lesion_image is not None:
        check_same_grid(cord_path, cord_image, lesion_path, lesion_image)
    cord, affine = _canonical_mask(cord_image)
    lesion = _canonical_mask(lesion_image)[0] if lesion_image is not None else None
    row, per_slice, per_lesion = measure_masks(cord, lesion, affine, angle_correction=angle_correction)
    row = {"cord_mask": str(cord_path), "lesion_mask": str(lesion_path) if lesion_path else "n/a", **row,
           "qc_flags": ";".join(qc_flags(cord, lesion))}
    return row, per_slice, per_lesion


def write_tables(out_dir: Path, prefix: str, row: dict, per_slice, per_lesion) -> list[Path]:
    from basicseg.io import write_tsv

    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        return [write_tsv(out_dir / f"{prefix}_morphometrics.tsv", pd.DataFrame([row])),
                write_tsv(out_dir / f"{prefix}_desc-perslice_morphometrics.tsv", per_slice),
                write_tsv(out_dir / f"{prefix}_desc-lesions_morphometrics.tsv", per_lesion)]
    except OSError as exc:
        raise errors.BasicsegError(f"{out_dir}: cannot write the tables ({exc.strerror or exc})",
                                   errors.CANT_CREATE) from None


def main(argv: list[str] | None = None) -> int:
    try:
        args = parser().parse_args(argv)
        cord_path = Path(args.cord_mask)
        lesion_path = Path(args.lesion_mask) if args.lesion_mask else None
        tables = measure_files(cord_path, lesion_path, angle_correction=not args.no_angle_correction)
        for path in write_tables(Path(args.output_dir), args.prefix or _stem(cord_path), *tables):
            print(path)
        return errors.OK
    except errors.BasicsegError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return exc.code
    except Exception as exc:            # never a traceback on the console: one line, and a non-zero code
        print(f"{PROG}: error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return errors.FAILURE


if __name__ == "__main__":
    sys.exit(main())
