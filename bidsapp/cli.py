"""Command line: ``basicseg bids_dir output_dir {participant,group} [options]`` (BIDS App convention)."""
from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path

from basicseg import __version__
from basicseg.errors import CANT_CREATE, INVALID_BIDS, NO_INPUT, UNKNOWN_LEVEL, USAGE, BasicsegError
from basicseg.networks.registry import DEFAULT_MODELS
from basicseg.segment.backends import BACKENDS, DEFAULT_BACKEND, TENSORFLOW
from bidsapp.config import Config
from bidsapp.scratch import ensure_scratch

log = logging.getLogger("basicseg")
LEVELS = ("participant", "group")


class _Parser(argparse.ArgumentParser):
    def error(self, message):   # usage errors exit 64 (EX_USAGE), not argparse's 2
        self.print_usage(sys.stderr)
        self.exit(USAGE, f"{self.prog}: error: {message}\n")


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
    r.add_argument("--work-dir", "-w", type=Path, help="scratch folder (pybids index, temporary files)")
    r.add_argument("--nprocs", "--n_cpus", "--n-cpus", type=int, metavar="N",
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
    m.add_argument("--save-probabilities", action="store_true", help="also write _probseg maps")
    m.add_argument("--overwrite", action="store_true", help="redo images whose outputs exist")
    s = p.add_argument_group("group level")
    s.add_argument("--outcome", action="append", default=[], metavar="COL",
                   help="motor score column(s) (default: columns named like LEMS*)")
    s.add_argument("--predictor", action="append", default=[], metavar="COL",
                   help="predictor column(s) (default: lesion_volume_mm3)")
    s.add_argument("--compare", action="append", default=[], metavar="NAME=DIR",
                   help="another method's derivative folder to compare against the reference masks")
    s.add_argument("--reference-method", default="basicseg", help="reference level of the method factor")
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
        centerline=args.centerline, save_probabilities=args.save_probabilities, outcome=args.outcome,
        backend=args.backend, predictor=args.predictor, compare=compare, reference_method=args.reference_method)
    return config, args


def setup_logging(output_dir: Path, verbose: int, quiet: bool) -> Path | None:
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
        return log_path
    except OSError:
        return None


def check_paths(config: Config) -> None:
    if not config.bids_dir.is_dir():
        raise BasicsegError(f"bids_dir {config.bids_dir} does not exist or is not a folder", NO_INPUT)
    if not (config.bids_dir / "dataset_description.json").is_file():
        raise BasicsegError(f"{config.bids_dir}: no dataset_description.json, not a BIDS dataset", INVALID_BIDS)
    if config.output_dir.resolve() == config.bids_dir.resolve():
        raise BasicsegError("output_dir must differ from bids_dir", USAGE)
    for folder in (config.output_dir, config.work_dir):
        if folder is None:
            continue
        try:
            folder.mkdir(parents=True, exist_ok=True)
            probe = folder / f".basicseg-write-test-{os.getpid()}"
            probe.write_text("")
            probe.unlink()
        except OSError as exc:
            raise BasicsegError(f"cannot write to {folder}: {exc.strerror or exc}", CANT_CREATE) from exc


def validate_bids(bids_dir: Path) -> None:
    from bidsapp.validate import run_validator
    run_validator(bids_dir)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        config, args = parse_config(argv)
        check_paths(config)
        ensure_scratch(config.work_dir, config.output_dir)
        log_path = setup_logging(config.output_dir, args.verbose, args.quiet)
        log.info("basicseg %s: %s level on %s -> %s%s", __version__, config.analysis_level, config.bids_dir,
                 config.output_dir, f" (log: {log_path})" if log_path else "")
        if config.analysis_level == "participant":
            return participant(config)
        return group(config)
    except BasicsegError as exc:
        print(f"basicseg: error: {exc}", file=sys.stderr)
        log.debug("exit %d", exc.code)
        return exc.code
    except KeyboardInterrupt:
        return 130


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

    return run_group(config.bids_dir, config.output_dir, participant_labels=config.participant_label or None,
                     outcomes=config.outcome or None, predictors=config.predictor or None,
                     compare=config.compare or None, reference_method=config.reference_method,
                     work_dir=config.work_dir)


if __name__ == "__main__":
    sys.exit(main())
