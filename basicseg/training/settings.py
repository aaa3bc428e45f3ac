"""settings.json: what a training or evaluation run resolved, written into its output folder.

A model card says what a network is; the settings say how the run that made it (or scored it) was
called: the inputs, every option after defaults, the networks it read (with their SHA-256), the
software versions and the threads -- enough to tell two runs apart, or to rerun one.
"""
from __future__ import annotations

import os
import platform
import shlex
import time
from pathlib import Path

import numpy as np

from basicseg import __version__
from basicseg.io import write_json

SETTINGS_FILE = "settings.json"


def software_versions() -> dict:
    import keras
    import tensorflow as tf

    return {"basicseg": __version__, "python": platform.python_version(), "numpy": np.__version__,
            "tensorflow": tf.__version__, "keras": keras.__version__}


def thread_counts(nprocs: int | None) -> dict:
    """The threads asked for and the ones TensorFlow holds (0: its own default, one per core)."""
    import tensorflow as tf

    return {"nprocs": nprocs, "SLURM_CPUS_PER_TASK": os.environ.get("SLURM_CPUS_PER_TASK"),
            "intra_op": tf.config.threading.get_intra_op_parallelism_threads(),
            "inter_op": tf.config.threading.get_inter_op_parallelism_threads(),
            "cpu_count": os.cpu_count(), "cpus_available": len(os.sched_getaffinity(0))
            if hasattr(os, "sched_getaffinity") else os.cpu_count()}


def relative_image(path: Path, bids_dir: Path) -> str:
    """An image path relative to the dataset when it lies inside it (settings stay valid if it moves)."""
    path, root = Path(path).resolve(), Path(bids_dir).resolve()
    return str(path.relative_to(root)) if path.is_relative_to(root) else str(path)


def resolved_settings(program: str, config, inputs: dict, models: dict, device: str) -> dict:
    return {
        "program": program, "command": f"{program} " + " ".join(shlex.quote(a) for a in config.argv),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "host": platform.node(),
        "inputs": {"bids_dir": str(Path(config.bids_dir).resolve())} | inputs,
        "options": config.to_json(), "models": models,
        "versions": software_versions(), "threads": thread_counts(config.nprocs), "device": device,
    }


def write_settings(out_dir: Path, settings: dict) -> Path:
    """``<out_dir>/settings.json``, written atomically (a resumed run replaces it with its own)."""
    return write_json(Path(out_dir) / SETTINGS_FILE, settings)
