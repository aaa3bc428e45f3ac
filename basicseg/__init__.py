"""basicseg: BASICseg spinal cord and contusion-lesion segmentation as a BIDS App."""
from importlib import metadata as _metadata
from pathlib import Path as _Path


def _read_version() -> str:
    local = _Path(__file__).resolve().parent.parent / "version"
    if local.is_file():  # source checkout: the repository's version file is the truth
        return local.read_text().strip()
    try:
        return _metadata.version("basicseg")
    except _metadata.PackageNotFoundError:
        return "0+unknown"


__version__ = _read_version()
