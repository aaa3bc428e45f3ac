"""Command line: ``basicseg bids_dir output_dir {participant,group} [options]`` (BIDS App convention)."""
from __future__ import annotations

import argparse
import logging
import os
import sys
import time
import traceback
from pathlib import Path

from basicseg import __version__
from basicseg.errors import CANT_CREATE, FAILURE, INVALID_BIDS, IO_ERR, NO_INPUT, UNKNOWN_LEVEL, USAGE, BasicsegError
from basicseg.io import remove_own_temps, temp_path, remove_stale_temps
from bidsapp import signals
from basicseg.networks.registry import DEFAULT_MODELS, TTA_MODES
from basicseg.segment.backends import BACKENDS, DEFAULT_BACKEND, TENSORFLOW
from bidsapp.config import Config, write_settings
from bidsapp.scratch import ensure_scratch

# TensorFlow's C++ start-up lines (INFO and WARNING) stay off the console; its errors still print.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

log = logging.getLogger("basicseg")
LEVELS = ("participant", "group")


class _Parser(argparse.ArgumentParser):
    def error(self, message):   # usage errors exit 64 (EX_USAGE), not argparse's 2
        self.print_usage(sys.stderr)
        self.exit(USAGE, f"{self.prog}: error: {message}\n")


def positive_int(text: str) -> int:
    """argparse type for counts: an integer >= 1 (a usage error otherwise, exit 64)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="basicseg", description="BASICseg: spinal cord and contusion-lesion segmentation on axial "
                "T2-weighted MRI (McCoy et al., AJNR 2019), as a BIDS App.")
    p.add_argument("bids_dir", type=Path, help="the input BIDS dataset")
    p.add_argument("output_dir", type=Path, help="the derivative dataset to write (created if missing)")
    p.add_argument("analysis_level", help="participant: segment images; group: statistics and comparisons")
    p.add_argument("--version", action="version", version=f"basicseg {__version__}")
    g = p.add_argument_group("selection")
    g.add_argument("--participant-label", "--participant_label", nargs="+", default=[], metavar="LABEL",
                   help="subjects to process (with or without 'sub-'); default all")
    g.add_argument("--session-label", "--session_label", nargs="+", default=[], metavar="LABEL")
    g.add_argument("--bids-filter-file", "--bids_filter_file", type=Path, metavar="FILE",
                   help='JSON whose key "t2w" replaces entities of the default query, e.g. '
                        '{"t2w": {"suffix": "T2starw"}} or {"t2w": {"acquisition": "axial"}}')
    g.add_argument("--skip-bids-validation", "--skip_bids_validation", "--skip_bids_validator",
                   action="store_true", help="do not run bids-validator-deno on the input")
    r = p.add_argument_group("resources")
    r.add_argument("--batch-images", type=positive_int, default=4, metavar="N",
                   help="images whose slices go through each network together (default 4; more keeps a GPU busy)")
    r.add_argument("--work-dir", "-w", type=Path, help="scratch folder (pybids index, temporary files)")
    r.add_argument("--nprocs", "--n_cpus", "--n-cpus", type=positive_int, metavar="N",
                   help="CPU threads (default: SLURM_CPUS_PER_TASK or all)")
    m = p.add_argument_group("participant level")
    m.add_argument("--cord-model", default=DEFAULT_MODELS["cord"], help="shipped model name or .keras path")
    m.add_argument("--lesion-model", default=DEFAULT_MODELS["lesion"],
                   help="shipped model name, .keras path, or 'none' to skip lesions")
    m.add_argument("--centerline", default="auto", metavar="{auto,sct,DIR}",
                   help="auto: built-in localiser; sct: sct_get_centerline -method optic; DIR: a folder of "
                        "centreline masks laid out like the input (<stem>_centerline.nii.gz)")
    m.add_argument("--backend", choices=BACKENDS, default=DEFAULT_BACKEND,
                   help="what runs the networks: onnx (ONNX Runtime, the shipped .onnx exports; fast start-up) "
                        "or tensorflow (the .keras files); default %(default)s (an image may set BASICSEG_BACKEND)")
    m.add_argument("--tta", choices=TTA_MODES, default="full",
                   help="test-time augmentation. full (default): as each model card says, the setting the README's "
                        "figures were measured with (the lesion network: its left-right mirror and +-1 mm shifts); "
                        "mirror: the mirror without the shifts (about 2.5x faster on CPU; more false lesions on "
                        "healthy cords, docs/models.md); none: one pass per network (not validated)")
    m.add_argument("--save-probabilities", action="store_true", help="also write _probseg maps")
    m.add_argument("--basic-score", action="store_true",
                   help="EXPERIMENTAL (validated on simulated lesions only): BASIC grade, haemorrhage mask and "
                        "tract-wise lesion load from the AMU7T atlas mapped onto each slice (slow: seconds per slice)")
    m.add_argument("--overwrite", action="store_true", help="redo images whose outputs exist")
    s = p.add_argument_group("group level")
    s.add_argument("--outcome", action="append", default=[], metavar="COL",
                   help="motor score column(s) (default: columns named like LEMS*)")
    s.add_argument("--predictor", action="append", default=[], metavar="COL",
                   help="predictor column(s) (default: lesion_volume_mm3)")
    s.add_argument("--compare", action="append", default=[], metavar="NAME=DIR",
                   help="another method's derivative folder to compare against the reference masks")
    s.add_argument("--reference-method", default="basicseg", help="reference level of the method factor")
    # --- QC ratings (bidsapp/group/ratings.py) ---
    s.add_argument("--qc-ratings", nargs="+", action="extend", default=[], type=Path, metavar="FILE",
                   help="visual QC ratings exported from the subject pages (one or more TSVs): images rated "
                        "fail are excluded, artefact is listed")
    # --- end QC ratings ---
    p.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv for debug)")
    p.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
    return p


def parse_config(argv) -> tuple[Config, argparse.Namespace]:
    args = build_parser().parse_args(argv)
    if args.analysis_level not in LEVELS:
        raise BasicsegError(f"unknown analysis level {args.analysis_level!r}: expected one of {', '.join(LEVELS)}",
                            UNKNOWN_LEVEL)
    compare = {}
    for item in args.compare:
        name, sep, folder = item.partition("=")
        if not sep or not name or not folder:
            raise BasicsegError(f"--compare {item!r}: expected NAME=DIR", USAGE)
        compare[name] = Path(folder)
    config = Config(
        bids_dir=args.bids_dir, output_dir=args.output_dir, analysis_level=args.analysis_level,
        work_dir=args.work_dir, participant_label=args.participant_label, session_label=args.session_label,
        bids_filter_file=args.bids_filter_file, nprocs=args.nprocs, skip_bids_validation=args.skip_bids_validation,
        overwrite=args.overwrite, cord_model=args.cord_model,
        lesion_model=None if str(args.lesion_model).lower() == "none" else args.lesion_model,
        centerline=args.centerline, tta=args.tta, batch_images=args.batch_images, basic_score=args.basic_score, save_probabilities=args.save_probabilities, outcome=args.outcome,
        backend=args.backend, predictor=args.predictor, compare=compare, reference_method=args.reference_method,
        qc_ratings=args.qc_ratings)  # QC ratings
    return config, args


def setup_logging(output_dir: Path, verbose: int, quiet: bool) -> Path | None:
    """The console gets INFO (or less), the run's log file under logs/ everything. A log file that
    stops taking lines (a full disk) must not print logging's own tracebacks on the console."""
    logging.raiseExceptions = False
    level = logging.WARNING if quiet else (logging.DEBUG if verbose > 1 else logging.INFO)
    fmt = logging.Formatter("%(asctime)s [%(levelname)s] %(message)s", "%Y-%m-%d %H:%M:%S")
    root = logging.getLogger("basicseg")
    root.setLevel(logging.DEBUG)
    root.handlers.clear()
    console = logging.StreamHandler(sys.stderr)
    console.setLevel(level)
    console.setFormatter(fmt)
    root.addHandler(console)
    log_path = Path(output_dir) / "logs" / f"basicseg-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log"
    try:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(log_path)
        handler.setLevel(logging.DEBUG)
        handler.setFormatter(fmt)
        root.addHandler(handler)
    except OSError:
        handler, log_path = logging.NullHandler(), None
    # the libraries' warnings (nibabel, numpy) go to the log file only: the console says what basicseg says
    logging.captureWarnings(True)
    py_warnings = logging.getLogger("py.warnings")
    py_warnings.handlers[:] = [handler]
    py_warnings.propagate = False
    return log_path


def _inside(path: Path, folder: Path) -> bool:
    return path.resolve().is_relative_to(folder.resolve())


def check_paths(config: Config) -> None:
    bids_dir, output_dir = config.bids_dir, config.output_dir
    if not bids_dir.is_dir():
        raise BasicsegError(f"bids_dir {bids_dir} does not exist or is not a folder", NO_INPUT)
    try:
        has_description = (bids_dir / "dataset_description.json").is_file()
        os.listdir(bids_dir)
    except PermissionError as exc:
        raise BasicsegError(f"bids_dir {bids_dir} cannot be read by uid {os.getuid()} ({exc.strerror})",
                            NO_INPUT) from exc
    if not has_description:
        raise BasicsegError(f"{bids_dir}: no dataset_description.json, not a BIDS dataset", INVALID_BIDS)
    if output_dir.resolve() == bids_dir.resolve():
        raise BasicsegError("output_dir must differ from bids_dir", USAGE)
    # inside the input, only derivatives/ is ignored by the validator and by indexing; anywhere else the
    # outputs would make the next run's input invalid
    if _inside(output_dir, bids_dir) and not _inside(output_dir, bids_dir / "derivatives"):
        raise BasicsegError(f"output_dir {output_dir} is inside bids_dir: use {bids_dir / 'derivatives' / 'basicseg'} "
                            "or a folder outside the input dataset", USAGE)
    for folder in (output_dir, config.work_dir):
        if folder is not None:
            _check_writable(folder)


def _check_writable(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = temp_path(folder / "write-test")
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise BasicsegError(f"cannot write to {folder}: {exc.strerror or exc}", CANT_CREATE) from exc


def validate_bids(bids_dir: Path) -> None:
    from bidsapp.validate import run_validator
    run_validator(bids_dir)


def main(argv=None) -> int:
    """Run one level; every error ends as a message and an exit code, never a traceback on the console."""
    argv = sys.argv[1:] if argv is None else argv
    signals.install()
    try:
        return _run(argv)
    except BasicsegError as exc:
        print(f"basicseg: error: {exc}", file=sys.stderr)
        log.debug("exit %d", exc.code)
        return exc.code
    except (signals.Interrupted, KeyboardInterrupt) as exc:
        code = exc.code if isinstance(exc, signals.Interrupted) else 130
        name = str(exc) if isinstance(exc, signals.Interrupted) else "SIGINT"
        log.error("interrupted by %s: partial files removed; a rerun continues where this one stopped", name)
        print(f"basicseg: interrupted by {name}: partial files removed; rerun to continue", file=sys.stderr)
        return code
    except OSError as exc:
        print(f"basicseg: error: {exc.filename or 'I/O'}: {exc.strerror or exc}", file=sys.stderr)
        log.debug("%s", traceback.format_exc())
        return IO_ERR
    except Exception as exc:   # a bug: the console gets one line, the log the traceback
        log.debug("%s", traceback.format_exc())
        print(f"basicseg: internal error: {type(exc).__name__}: {exc} (details in the log under logs/)",
              file=sys.stderr)
        return FAILURE
    finally:
        remove_own_temps()


def _run(argv) -> int:
    config, args = parse_config(argv)
    check_paths(config)
    ensure_scratch(config.work_dir, config.output_dir)
    log_path = setup_logging(config.output_dir, args.verbose, args.quiet)
    log.info("basicseg %s: %s level on %s -> %s%s", __version__, config.analysis_level, config.bids_dir,
             config.output_dir, f" (log: {log_path})" if log_path else "")
    for folder in filter(None, (config.output_dir, config.work_dir)):
        removed = remove_stale_temps(folder)
        if removed:
            log.info("removed %d temporary file(s) left by killed runs under %s", len(removed), folder)
    write_settings(config)
    if config.analysis_level == "participant":
        return participant(config)
    return group(config)


def participant(config: Config) -> int:
    from bidsapp.discovery import discover
    from bidsapp.participant import run_participant

    if not config.skip_bids_validation:
        validate_bids(config.bids_dir)
    jobs = discover(config.bids_dir, config.work_dir, config.participant_label, config.session_label,
                    config.bids_filter_file,
                    centreline_dir=None if config.centerline in ("auto", "sct") else Path(config.centerline))
    log.info("%d image(s) to segment", len(jobs))
    if config.backend == TENSORFLOW:     # ONNX Runtime sets its threads per session (backends.OnnxRunner)
        from basicseg.segment.infer import configure_tensorflow
        configure_tensorflow(config.nprocs)
    return run_participant(jobs, config)


def group(config: Config) -> int:
    from bidsapp.group.run import run_group

    return run_group(config)


if __name__ == "__main__":
    sys.exit(main())
