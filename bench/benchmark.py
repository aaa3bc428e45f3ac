#!/usr/bin/env python3
"""Benchmark the participant pipeline stage by stage, per image and per slice.

    python bench/benchmark.py [BIDS_DIR ...] [--nprocs N] [--repeat R] [--cord-model M] [--lesion-model M]

Default datasets: the embedded demo (demo/ds-demo) and ../shared/data/spine-public when present.
Process start and imports are timed apart in a fresh interpreter; the model is loaded once; every other
stage is timed per image (median of --repeat runs) and divided by the image's number of axial slices.
Outputs go to a temporary folder.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
STAGES = ["load", "centreline", "crop", "inference", "backprojection", "recentre", "postprocess", "metrics", "write"]


def time_imports() -> float:
    code = "import bidsapp.participant, bidsapp.cli, tensorflow"
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
    return time.perf_counter() - t0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("datasets", nargs="*", type=Path)
    p.add_argument("--nprocs", type=int)
    p.add_argument("--repeat", type=int, default=3)
    # same names as the app's options: a shipped model name or a .keras path (e.g. lesion-basicseg3)
    p.add_argument("--cord-model")
    p.add_argument("--lesion-model")
    args = p.parse_args(argv)
    datasets = args.datasets or [d for d in (REPO / "demo" / "ds-demo", REPO.parent / "shared" / "data" /
                                             "spine-public") if d.is_dir()]
    import numpy as np

    print(f"process start + imports (fresh interpreter): {time_imports():.2f} s")
    from bidsapp.config import Config
    from bidsapp.discovery import discover
    from basicseg.segment.infer import configure_tensorflow
    from basicseg.networks.registry import DEFAULT_MODELS
    from bidsapp import write as outputs
    from basicseg.segment.pipeline import Models
    from bidsapp.participant import process_image

    device = configure_tensorflow(args.nprocs)
    t0 = time.perf_counter()
    cord, lesion = args.cord_model or DEFAULT_MODELS["cord"], args.lesion_model or DEFAULT_MODELS["lesion"]
    models = Models.load(cord, lesion, DEFAULT_MODELS["localiser"])
    print(f"model load ({cord}, {lesion}, localiser; once per process): {time.perf_counter() - t0:.2f} s; "
          f"device: {device}")
    # warm-up: the first call of each network traces its graph
    first = discover(datasets[0], Path(tempfile.mkdtemp()))[0]
    with tempfile.TemporaryDirectory() as tmp:
        process_image(first, models, Config(datasets[0], Path(tmp), "participant"))

    header = f"{'image':42s} {'slices':>6s} " + " ".join(f"{s[:8]:>8s}" for s in STAGES) + \
        f" {'total s':>8s} {'ms/slice':>8s}"
    for dataset in datasets:
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            jobs = discover(dataset, Path(tmp) / "work")
            index_s = time.perf_counter() - t0
            print(f"\n{dataset}: BIDS indexing {index_s:.2f} s for {len(jobs)} image(s)")
            print(header)
            config = Config(dataset, Path(tmp) / "out", "participant", overwrite=True)
            totals = []
            for job in jobs:
                runs = []
                try:
                    for _ in range(args.repeat):
                        seg, _ = process_image(job, models, config)
                        runs.append(seg.timings)
                except Exception as exc:   # e.g. a sagittal image: report and go on
                    print(f"{job.path.name[:42]:42s} skipped: {str(exc)[:80]}")
                    continue
                med = {s: float(np.median([r.get(s, 0.0) for r in runs])) for s in STAGES}
                n = seg.volume.n_slices
                total = sum(med.values())
                totals.append((n, total))
                print(f"{job.path.name[:42]:42s} {n:6d} " + " ".join(f"{med[s]:8.3f}" for s in STAGES) +
                      f" {total:8.2f} {1000 * total / n:8.1f}")
            t0 = time.perf_counter()
            subjects = sorted({j.subject for j in jobs})
            for subject in subjects:
                sj = [j for j in jobs if j.subject == subject]
                outputs.write_report(subject, sj, {}, models, config)
            report_s = (time.perf_counter() - t0) / max(1, len(subjects))
            if totals:
                slices = sum(n for n, _ in totals)
                secs = sum(t for _, t in totals)
                print(f"{'all images':42s} {slices:6d} {'':>{9 * len(STAGES) - 1}s} {secs:8.2f} "
                      f"{1000 * secs / slices:8.1f}")
                print(f"per 40-slice image: {40 * secs / slices:.2f} s; report: {report_s:.2f} s per subject")
    return 0


if __name__ == "__main__":
    sys.exit(main())
