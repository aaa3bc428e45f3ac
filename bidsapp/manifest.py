"""Manifest: the record, written last and atomically, that one image's outputs are complete.

An image counts as done only when its manifest says ``ok``, every output it lists is on disk with the
recorded size and SHA-256, and it was made from the same input file (size and SHA-256), by the same
models (SHA-256) and the same basicseg version with the same output-changing settings. Anything
else is a reason to redo the image, and the reason is said.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

from basicseg import __version__
from basicseg.io import sha256_file, write_json
from bidsapp.naming import MANIFEST


@dataclass(frozen=True)
class Expected:
    """What a current run would record for an image: compared with what its manifest holds. Without the
    input's checksum and size (an input that cannot be read now) the rest is compared."""
    input_sha256: str | None
    input_size: int | None
    models: dict          # role -> SHA-256
    settings: dict        # the options that change outputs


def expected(job, model_sha256: dict, settings: dict) -> Expected:
    return Expected(sha256_file(job.path), job.path.stat().st_size, dict(model_sha256), dict(settings))


def expected_unread(model_sha256: dict, settings: dict) -> Expected:
    """What a run expects of an image whose input it cannot read (e.g. a DataLad file dropped after it was
    processed): its outputs are current if the models, settings and outputs are."""
    return Expected(None, None, dict(model_sha256), dict(settings))


def manifest_path(job, output_dir: Path) -> Path:
    return job.output(Path(output_dir), MANIFEST)


def read(job, output_dir: Path) -> dict | None:
    try:
        return json.loads(manifest_path(job, output_dir).read_text())
    except (OSError, ValueError):
        return None


def stale_reason(record: dict | None, want: Expected, output_dir: Path) -> str | None:
    """None when the recorded outputs are complete and current; otherwise why the image must be redone."""
    if record is None:
        return "no manifest (not processed, interrupted, or written by an older basicseg)"
    if record.get("status") != "ok":
        return f"the previous attempt failed: {record.get('error', 'unknown error')}"
    if record.get("basicseg_version") != __version__:
        return f"made by basicseg {record.get('basicseg_version')}, this is {__version__}"
    source = record.get("input", {})
    if want.input_sha256 is not None and (source.get("size") != want.input_size or
                                          source.get("sha256") != want.input_sha256):
        return "the input image has changed since its outputs were made"
    if record.get("models") != want.models:
        return "made with other models"
    if record.get("settings") != want.settings:
        return "made with other settings"
    for name, meta in record.get("outputs", {}).items():
        path = Path(output_dir) / name
        if not path.is_file() or path.stat().st_size != meta.get("size"):
            return f"output {name} is missing or incomplete"
        if sha256_file(path) != meta.get("sha256"):
            return f"output {name} was changed after it was written"
    return None


def outputs_record(paths: list[Path], output_dir: Path) -> dict:
    return {p.relative_to(output_dir).as_posix(): {"size": p.stat().st_size, "sha256": sha256_file(p)}
            for p in paths}


def write(job, output_dir: Path, want: Expected, status: str, outputs: dict, error: str | None = None) -> Path:
    record = {
        "basicseg_version": __version__, "status": status, "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "input": {"path": job.relpath, "size": want.input_size, "sha256": want.input_sha256},
        "models": want.models, "settings": want.settings, "outputs": outputs,
    }
    if error:
        record["error"] = error
    return write_json(manifest_path(job, output_dir), record)
