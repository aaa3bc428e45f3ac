#!/usr/bin/env python3
"""Benchmark a whole participant job stage by stage, and the pipeline per image, for each backend.

    python bench/benchmark.py [BIDS_DIR ...] [--backend onnx tensorflow] [--job-runs 5] [--subject errsm11]
                              [--nprocs N] [--repeat R] [--cord-model M] [--lesion-model M] [--tta MODE]
                              [--skip-bids-validation]

1. **One-image job** (what one SLURM array task does): the real CLI (``bidsapp.cli.main``) in a fresh
   interpreter on a one-subject copy of the first dataset (default: the demo, sub-errsm11, 40 slices),
   ``--job-runs`` times per backend, the backends taking turns (A B A B ...) so that a drift of the shared
   machine's speed hits both alike. The child hoists the job's imports to the top and wraps the CLI's steps
   with timers; nothing else changes. Stages: process start (spawn -> first line of Python), imports,
   validation, indexing, TensorFlow set-up, model load, each pipeline stage, report, other (paths, logging,
   dataset_description, readable_as_axial), exit (main returned -> process reaped). Peak RSS is the child's
   (``wait4``; bids-validator-deno, a grandchild, counts when it is larger). Medians over the runs.
2. **Multi-image run in one process** (a big job): per backend in its own interpreter, the models loaded
   once and warmed up on one image, every image of every dataset ``--repeat`` times; the per-image stage
   table (medians), images per minute and ms per slice; the backends in turn, ``--throughput-rounds`` times.

Default datasets: the embedded demo (demo/ds-demo) and ../shared/data/spine-public when present.
Outputs go to temporary folders.
"""
from __future__ import annotations

import time

STARTED = time.time()     # a probed job's first line of Python: "start" ends, "imports" begin

import argparse  # noqa: E402  (after STARTED)
import json
import re
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BACKENDS = ("onnx", "tensorflow")
STAGES = ["load", "centreline", "crop", "inference", "backprojection", "recentre", "postprocess", "metrics", "write"]
JOB_STAGES = ["start", "imports", "validation", "indexing", "tf setup", "model load", *STAGES, "report", "other",
              "exit"]
JOB_SUBJECT = "errsm11"        # a 40-slice image, the one-image job
PROBE_ENV = "BASICSEG_BENCH_PROBE"   # the child writes its stage times here
# what a job imports, per backend: hoisted to the top of the child so that "imports" is one stage
JOB_IMPORTS = {"onnx": ["onnxruntime"], "tensorflow": ["tensorflow", "keras", "basicseg.networks.unet"]}
APP_IMPORTS = ["bidsapp.cli", "bidsapp.discovery", "bidsapp.participant", "bidsapp.write", "bidsapp.validate",
               "basicseg.segment.pipeline", "basicseg.measure.morphometrics", "bidsapp.report.subject"]


# --- the one-image job ----------------------------------------------------------------------------------------

def probe_child(backend: str, cli_args: list[str]) -> int:
    """In the job's interpreter: the real CLI with its steps timed (seconds to PROBE_ENV's file)."""
    import importlib
    for name in APP_IMPORTS + JOB_IMPORTS[backend]:
        importlib.import_module(name)
    stages = {"imports": time.time() - STARTED}    # with the benchmark's own few stdlib modules (the CLI's too)

    import bidsapp.cli as cli
    import bidsapp.discovery as discovery
    import bidsapp.participant as participant
    import basicseg.segment.infer as infer
    from basicseg.segment.pipeline import Models

    def timed(stage, fn):
        def wrapper(*args, **kwargs):
            t = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                stages[stage] = stages.get(stage, 0.0) + time.perf_counter() - t
        return wrapper

    def deliver(*args, **kwargs):
        outcome = run_deliver(*args, **kwargs)
        for stage, seconds in (outcome.result.timings.items() if outcome.result is not None else ()):
            stages[stage] = stages.get(stage, 0.0) + seconds
        return outcome

    run_deliver = participant.deliver
    participant.deliver = deliver
    cli.validate_bids = timed("validation", cli.validate_bids)
    discovery.discover = timed("indexing", discovery.discover)
    infer.configure_tensorflow = timed("tf setup", infer.configure_tensorflow)
    participant.write_reports = timed("report", participant.write_reports)
    load = Models.load
    Models.load = classmethod(lambda cls, *a, **k: timed("model load", load)(*a, **k))

    t0 = time.perf_counter()
    code = cli.main(cli_args)
    main_s = time.perf_counter() - t0
    inside = sum(v for k, v in stages.items() if k != "imports")
    stages["other"] = main_s - inside
    Path(os.environ[PROBE_ENV]).write_text(json.dumps({"started": STARTED, "stages": stages, "code": code,
                                                       "ended": time.time()}))
    return code


def one_subject_copy(dataset: Path, subject: str, root: Path) -> Path:
    """The dataset with one subject (and its top-level files): what one array task sees."""
    bids = root / "ds"
    bids.mkdir()
    for item in dataset.iterdir():
        if item.is_file():
            shutil.copy(item, bids / item.name)
    shutil.copytree(dataset / f"sub-{subject}", bids / f"sub-{subject}")
    return bids


def run_job(backend: str, bids: Path, root: Path, args) -> dict:
    """One probed job in a fresh interpreter: wall seconds, peak RSS (MiB) and stage seconds."""
    out, work, probe = root / f"out-{backend}", root / f"work-{backend}", root / f"probe-{backend}.json"
    shutil.rmtree(out, ignore_errors=True)
    cli_args = [str(bids), str(out), "participant", "--participant-label", args.subject, "--work-dir", str(work),
                "--backend", backend, "--overwrite", "-q"]
    cli_args += ["--nprocs", str(args.nprocs)] if args.nprocs else []
    cli_args += ["--skip-bids-validation"] if args.skip_bids_validation else []
    cli_args += ["--cord-model", args.cord_model] if args.cord_model else []
    cli_args += ["--lesion-model", args.lesion_model] if args.lesion_model else []
    cli_args += ["--tta", args.tta]
    env = {**os.environ, "PYTHONPATH": str(REPO), PROBE_ENV: str(probe), "TF_CPP_MIN_LOG_LEVEL": "2"}
    t0, spawned = time.perf_counter(), time.time()
    child = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--probe", backend, "--", *cli_args],
                             env=env, cwd=root, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    stderr = child.stderr.read()
    _, status, usage = os.wait4(child.pid, 0)
    wall, reaped = time.perf_counter() - t0, time.time()
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode != 0 or not probe.is_file():
        raise RuntimeError(f"{backend} job failed ({child.returncode}): {stderr.decode()[-800:]}")
    report = json.loads(probe.read_text())
    stages = {"start": report["started"] - spawned, **report["stages"], "exit": reaped - report["ended"]}
    return {"wall": wall, "rss_mib": usage.ru_maxrss / 1024, "stages": stages}


def median(values) -> float:
    values = sorted(values)
    mid = len(values) // 2
    return values[mid] if len(values) % 2 else 0.5 * (values[mid - 1] + values[mid])


def job_table(runs: dict[str, list[dict]]) -> str:
    backends = list(runs)
    lines = [f"{'one-image job, median s':26s}" + "".join(f"{b:>12s}" for b in backends)]
    for stage in JOB_STAGES:
        if any(stage in r["stages"] for b in backends for r in runs[b]):
            lines.append(f"{stage:26s}" + "".join(f"{median(r['stages'].get(stage, 0.0) for r in runs[b]):12.3f}"
                                                  for b in backends))
    lines.append(f"{'wall (median)':26s}" + "".join(f"{median(r['wall'] for r in runs[b]):12.2f}" for b in backends))
    lines.append(f"{'wall (min-max)':26s}" + "".join(
        f"{min(r['wall'] for r in runs[b]):5.2f}-{max(r['wall'] for r in runs[b]):<6.2f}" for b in backends))
    lines.append(f"{'peak RSS MiB (median)':26s}" + "".join(f"{median(r['rss_mib'] for r in runs[b]):12.0f}"
                                                           for b in backends))
    lines.append(f"{'runs':26s}" + "".join(f"{len(runs[b]):12d}" for b in backends))
    if len(backends) == 2:
        a, b = backends
        ratios = [ra["wall"] / rb["wall"] for ra, rb in zip(runs[a], runs[b])]
        lines.append(f"wall {a}/{b} pair by pair: median {median(ratios):.2f} "
                     f"({', '.join(f'{r:.2f}' for r in ratios)})")
    return "\n".join(lines)


def benchmark_job(dataset: Path, args) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        bids = one_subject_copy(dataset, args.subject, root)
        runs = {b: [] for b in args.backend}
        for _ in range(args.job_runs):
            for backend in args.backend:
                runs[backend].append(run_job(backend, bids, root, args))
    print(f"\none-image job: sub-{args.subject} of {dataset}, real CLI in a fresh interpreter, "
          f"{args.job_runs} run(s) per backend in turn{'' if args.skip_bids_validation else ', validation on'}")
    print(job_table(runs))


# --- many images in one process ---------------------------------------------------------------------------------

def throughput_child(backend: str, datasets: list[Path], args) -> int:
    """In its own interpreter: every image through one process's models, stage by stage."""
    import numpy as np

    from bidsapp.config import Config
    from bidsapp.discovery import discover
    from basicseg.networks.registry import DEFAULT_MODELS
    from bidsapp import manifest, write
    from basicseg.segment.pipeline import Models
    from bidsapp.participant import Outcome, process_image, write_reports

    if backend == "tensorflow":
        from basicseg.segment.infer import configure_tensorflow
        configure_tensorflow(args.nprocs)
    t0 = time.perf_counter()
    cord, lesion = args.cord_model or DEFAULT_MODELS["cord"], args.lesion_model or DEFAULT_MODELS["lesion"]
    models = Models.load(cord, lesion, DEFAULT_MODELS["localiser"], backend=backend,
                         nprocs=args.nprocs).with_tta(args.tta)
    print(f"\n[{backend}] model load ({cord}, {lesion}, localiser; once per process): "
          f"{time.perf_counter() - t0:.2f} s")
    # warm-up: the first call of each network traces its graph (TensorFlow) or sizes its buffers (ONNX Runtime)
    first = discover(datasets[0], Path(tempfile.mkdtemp()))[0]
    with tempfile.TemporaryDirectory() as tmp:
        process_image(first, models, Config(datasets[0], Path(tmp), "participant", backend=backend))

    header = f"{'image':42s} {'slices':>6s} " + " ".join(f"{s[:8]:>8s}" for s in STAGES) + \
        f" {'total s':>8s} {'ms/slice':>8s}"
    for dataset in datasets:
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            jobs = discover(dataset, Path(tmp) / "work")
            index_s = time.perf_counter() - t0
            print(f"\n[{backend}] {dataset}: BIDS indexing {index_s:.2f} s for {len(jobs)} image(s)")
            print(header)
            config = Config(dataset, Path(tmp) / "out", "participant", overwrite=True, backend=backend)
            totals, outcomes = [], []
            for job in jobs:
                runs = []
                try:
                    for _ in range(args.repeat):
                        result = process_image(job, models, config)
                        t_write = time.perf_counter()
                        write.write_image(job, result, models, config, manifest.expected(job, {}, {}), None)
                        result.timings["write"] = time.perf_counter() - t_write
                        seg = result.seg
                        runs.append(result.timings)
                    outcomes.append(Outcome(job, "ok", result))
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
            subjects = sorted({o.job.subject for o in outcomes})
            write_reports(outcomes, models, config)
            report_s = (time.perf_counter() - t0) / max(1, len(subjects))
            if totals:
                slices = sum(n for n, _ in totals)
                secs = sum(t for _, t in totals)
                print(f"{'all images':42s} {slices:6d} {'':>{9 * len(STAGES) - 1}s} {secs:8.2f} "
                      f"{1000 * secs / slices:8.1f}")
                print(f"[{backend}] {60 * len(totals) / secs:.1f} images per minute (+ report {report_s:.2f} s "
                      f"per subject); per 40-slice image: {40 * secs / slices:.2f} s")
    return 0


def benchmark_throughput(datasets: list[Path], args) -> None:
    """Each backend's child in turn, ``--throughput-rounds`` times (a drift of the machine hits both alike)."""
    rates = {b: [] for b in args.backend}      # images per minute, per round, per dataset
    for _ in range(args.throughput_rounds):
        for backend in args.backend:
            cmd = [sys.executable, str(Path(__file__).resolve()), "--throughput", backend, "--repeat",
                   str(args.repeat), *map(str, datasets)]
            cmd += ["--nprocs", str(args.nprocs)] if args.nprocs else []
            cmd += ["--cord-model", args.cord_model] if args.cord_model else []
            cmd += ["--lesion-model", args.lesion_model] if args.lesion_model else []
            cmd += ["--tta", args.tta]
            out = subprocess.run(cmd, check=True, capture_output=True, text=True,
                                 env={**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "2"}).stdout
            print(out, end="")
            rates[backend].append([float(m) for m in re.findall(r"\] ([\d.]+) images per minute", out)])
    print(f"\nmany images in one process, images per minute (median of {args.throughput_rounds} round(s)):")
    for i, dataset in enumerate(datasets):
        print(f"  {dataset}: " + ", ".join(
            f"{b} {median(r[i] for r in rates[b] if len(r) > i):.1f}" for b in args.backend))


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--probe"]:                # the job's child: --probe BACKEND -- CLI ARGS
        return probe_child(argv[1], argv[3:])
    from basicseg.networks.registry import TTA_MODES  # not at the top: the probed job times its own imports
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("datasets", nargs="*", type=Path)
    p.add_argument("--backend", nargs="+", choices=BACKENDS, default=list(BACKENDS))
    p.add_argument("--nprocs", type=int)
    p.add_argument("--repeat", type=int, default=3, help="runs per image in the multi-image part")
    p.add_argument("--job-runs", type=int, default=5, help="one-image jobs per backend (0: none)")
    p.add_argument("--subject", default=JOB_SUBJECT, help="the one-image job's subject (of the first dataset)")
    p.add_argument("--skip-bids-validation", action="store_true", help="pass it to the one-image job")
    p.add_argument("--no-throughput", action="store_true", help="only the one-image job")
    p.add_argument("--throughput-rounds", type=int, default=2, help="multi-image runs per backend, in turn")
    # same names as the app's options: a shipped model name or a .keras path (e.g. lesion-basicseg3)
    p.add_argument("--cord-model")
    p.add_argument("--lesion-model")
    p.add_argument("--tta", choices=TTA_MODES, default="full", help="test-time augmentation, as the app's --tta")
    p.add_argument("--throughput", choices=BACKENDS, help=argparse.SUPPRESS)   # the multi-image child
    args = p.parse_args(argv)
    datasets = args.datasets or [d for d in (REPO / "demo" / "ds-demo", REPO.parent / "shared" / "data" /
                                             "spine-public") if d.is_dir()]
    if args.throughput:
        return throughput_child(args.throughput, datasets, args)
    if args.job_runs:
        benchmark_job(datasets[0], args)
    if not args.no_throughput:
        benchmark_throughput(datasets, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
