"""Group level: collect -> join -> statistics -> figures -> report, in that order, from one Config.

Outputs (under ``<output_dir>``)::

    group/morphometrics.tsv          one row per image: every participant's ``*_morphometrics.tsv``
    group/joined.tsv (+ .json)       the same joined with participants.tsv and phenotype/*.tsv
    group/regressions.tsv (+ .json)  each motor score ~ predictor by the paper's procedure
    group/dice_per_slice.tsv         per-slice Dice of every method against the reference cord mask
    group/table2.tsv (+ .json)       mixed models as the paper's Table 2 (Satterthwaite df)
    group/exclusions.tsv             every image left out (participant_id, session_id, source, reason) -- with
                                     --qc-ratings, images rated fail ("rated fail: <note>")
    group/figures/*.png
    group_report.html

Exit codes (basicseg.errors): 0; NO_INPUT 66 (no participant output, or a --qc-ratings file that does
not exist or cannot be opened); NO_MATCH 18; USAGE 64 (an
--outcome, --predictor, --compare or --reference-method name that does not exist, with the valid
choices); DATA_ERR 65 (no readable morphometrics row); IO_ERR 74 (a table, figure or the report could
not be written: logged in one line, the rest is still written). No traceback reaches the console: an
unexpected error is logged in one line, its traceback goes to the log file.

See docs/statistics.md for the statistics and their agreement with R (lme4 + lmerTest).
"""
from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np
import pandas as pd

from basicseg import errors as exits
from basicseg.io import write_json, write_tsv
from bidsapp.config import Config
from bidsapp.group import basic, ratings, stats
from bidsapp.group.collect import collect
from bidsapp.group.figures import draw_figures
from bidsapp.group.join import join
from bidsapp.group.report import write_report
from bidsapp.group.state import OUTPUTS, GroupState

log = logging.getLogger("basicseg")

GROUP_DIR = "group"
REGRESSION_PROCEDURE = ("OLS outcome ~ predictor; linearity: t test of an added quadratic term at alpha; if "
                        "non-linear, OLS on log(predictor + 1) kept when R^2 improves, else Spearman (P as R "
                        "cor.test)")
TABLE2_DESCRIPTION = ("Per-slice Dice compared between methods with linear mixed models (random intercept per "
                      "participant), REML, Satterthwaite degrees of freedom (as R lmerTest)")


def _clean(obj):
    """JSON-ready: numpy scalars to Python, NaN and inf to null."""
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if isinstance(obj, (np.bool_,)):
        return bool(obj)
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return float(obj) if math.isfinite(obj) else None
    return obj


# --- names given on the command line ----------------------------------------------------------------------------

def check_methods(config: Config) -> None:
    """--compare names must be new and their folders exist; --reference-method must name a method.
    Raises BasicsegError USAGE."""
    for name, folder in config.compare.items():
        if name == stats.OWN_METHOD:
            raise exits.BasicsegError(f"--compare {name}={folder}: {name!r} names basicseg's own masks; "
                                      "choose another name", exits.USAGE)
        if not Path(folder).is_dir():
            raise exits.BasicsegError(f"--compare {name}={folder}: no such folder", exits.USAGE)
    methods = [stats.OWN_METHOD, *config.compare]
    if config.reference_method not in methods:
        raise exits.BasicsegError(f"--reference-method {config.reference_method!r} is not a method; valid: "
                                  f"{', '.join(methods)}", exits.USAGE)


def check_columns(config: Config, joined: pd.DataFrame) -> None:
    """Every --outcome and --predictor names a column of the joined table (one without numbers is fitted on
    n = 0 and reported as skipped: a data problem, not a typo). Raises BasicsegError USAGE listing the
    numeric columns."""
    numeric = [str(c) for c in joined.columns
               if pd.api.types.is_numeric_dtype(joined[c]) and not str(c).startswith("entity_")]
    for option, names in (("--outcome", config.outcome), ("--predictor", config.predictor)):
        wrong = [n for n in names if n not in joined.columns]
        if wrong:
            raise exits.BasicsegError(f"{option} {', '.join(wrong)}: no such column; valid: "
                                      f"{', '.join(numeric) or 'none'}", exits.USAGE)


# --- writing ----------------------------------------------------------------------------------------------------

def _write(state: GroupState, writer, name: str, data) -> None:
    """One output file; a failure (a full disk) is a one-line error that makes the exit code IO_ERR."""
    try:
        writer(state.output_dir / GROUP_DIR / name, data)
    except OSError as exc:
        message = f"{GROUP_DIR}/{name} could not be written: {exc.strerror or exc}"
        log.error("%s", message)
        state.write_errors.append(message)
        state.note(OUTPUTS, message, level=None)


def write_tables(state: GroupState, config: Config, regressions: pd.DataFrame) -> None:
    joined = state.joined
    _write(state, write_tsv, "morphometrics.tsv", state.morph)
    _write(state, write_tsv, "joined.tsv", joined)
    _write(state, write_json, "joined.json", _clean({c: {"Description": state.descriptions[c]}
                                                     for c in joined.columns if c in state.descriptions}))
    _write(state, write_tsv, "regressions.tsv", regressions)
    _write(state, write_json, "regressions.json", _clean({"procedure": REGRESSION_PROCEDURE,
                                                          "results": [r.to_dict() for r in state.regressions]}))
    _write(state, write_tsv, "dice_per_slice.tsv", state.dice)
    _write(state, write_tsv, "table2.tsv", state.table2)
    _write(state, write_json, "table2.json", _clean({
        "description": TABLE2_DESCRIPTION, "reference_method": state.methods[0] if state.methods
        else config.reference_method, "methods": state.methods, "models": state.models}))
    _write(state, write_tsv, "exclusions.tsv", state.exclusion_table())
    if state.basic is not None:
        _write(state, write_tsv, "basic.tsv", state.basic)


# --- the run ----------------------------------------------------------------------------------------------------

def _analyse(config: Config, state: GroupState) -> pd.DataFrame:
    check_methods(config)
    ratings.check_files(ratings.as_paths(getattr(config, "qc_ratings", None)))
    state.morph = collect(state.output_dir, state, config.participant_label or None)
    log.info("group: %d image(s) collected", len(state.morph))
    ratings.apply_ratings(config, state)
    state.joined = join(state.bids_dir, state.morph, state)
    check_columns(config, state.joined)
    analysed = ratings.analysed(state.joined)          # images rated fail enter no analysis
    predictors = config.predictor or [stats.DEFAULT_PREDICTOR, *basic.tract_predictors(analysed)]
    regressions = stats.regressions(analysed, state, config.outcome or None, predictors)
    if basic.graded(analysed):
        state.basic = basic.basic_tests(analysed, state, config.outcome or None)
    state.dice = stats.dice_table(analysed, state, config.compare)
    state.table2 = stats.table2(state.dice, state, config.reference_method)
    return regressions


def _outputs(config: Config, state: GroupState, regressions: pd.DataFrame) -> int:
    write_tables(state, config, regressions)
    state.figures = draw_figures(state, config.work_dir)
    try:
        log.info("group report: %s", write_report(state))
    except OSError as exc:
        message = f"the group report could not be written: {exc.strerror or exc}"
        log.error("%s", message)
        state.write_errors.append(message)
    if state.write_errors:
        log.error("group level: %d output(s) could not be written (exit %d)", len(state.write_errors),
                  exits.IO_ERR)
        return exits.IO_ERR
    return exits.OK


def run_group(config: Config) -> int:
    """Run the group level; returns an exit code of basicseg.errors (see the module docstring)."""
    try:
        state = GroupState(Path(config.bids_dir), Path(config.output_dir))
        regressions = _analyse(config, state)
        return _outputs(config, state, regressions)
    except exits.BasicsegError as exc:
        log.error("%s", exc)
        return exc.code
    except Exception as exc:   # a bug must not print a traceback on the user's console
        log.error("group level failed: %s: %s (traceback in the log file)", type(exc).__name__, exc)
        log.debug("group level failure", exc_info=True)
        return exits.FAILURE
