#!/usr/bin/env python3
"""Choose the confidence-QC thresholds (basicseg.measure.confidence) leave-site-out, and report how well
the flags catch failures on sites they were not tuned on.

    PYTHONPATH=$PWD python3 scripts/tune_qc.py EVAL_TSV... [--write] [--output PATH]
    PYTHONPATH=$PWD python3 scripts/tune_qc.py EVAL_TSV... --check [THRESHOLDS_JSON]

``--check`` tunes nothing: it applies fixed thresholds (default: the shipped ones) to the tables, site by site,
e.g. to see what the shipped flags catch on a retrained network's evaluation.

Each EVAL_TSV has one row per evaluated case, columns ``site``, ``image``, ``case`` ("healthy", or a lesion
pattern: "gm", "rim", "whole", "whole+haem", "spindle", ...), ``cord_dice`` (NaN if unknown),
``false_lesion_mm3`` (healthy cases: the predicted lesion volume), ``lesion_dice`` (lesion cases) and the
keys of ``confidence_summary`` (bare, or with the image row's ``qc_`` prefix).

A case is a CORD FAILURE when its cord Dice is < 0.85, a LESION FAILURE when it has a FALSE LESION (healthy and
got a lesion, or a component off its true lesion) or it is a lesion case with lesion Dice < 0.5; the others
are GOOD, except on a stress contrast (a ``contrast`` column other than "native", e.g. ``basicseg-eval --contrast
bright-cord``): there the image itself is outside what the networks were validated on, and a flag is expected
whatever the networks did, so a case that did not fail counts neither as good nor as a failure.

Thresholds are chosen by coordinate-wise grid search (the midpoints between observed values, and the extremes,
which flag none of them), starting from the priors of ``confidence.Thresholds``: each maximises the failures of its
own kind flagged by the flags of that kind (the cord flags for cord failures, ``lesion_not_hyperintense`` for false
lesions, the other lesion flags for lesion failures), subject to at most 10 % of the good cases flagged by all the
flags together; ties go to the fewest good flagged, then to the current value.  So a cord flag is never tightened
because a lesion failure happened to have a low cord probability, and a prior stays where the tuning rows hold no
failure of its kind; a test is never switched off.  For each site S the thresholds are chosen on the other sites
and applied to S; the final thresholds are chosen on all rows and, with --write, written to
basicseg/measure/qc_thresholds.json with the held-out figures and this command in ``source``.
"""
from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from basicseg.measure.confidence import COLUMN_PREFIX, RULES, SUMMARY_KEYS, THRESHOLDS_FILE, Thresholds, rule_fires

FAIL_CORD_DICE = 0.85      # below this the cord's morphometrics are not usable
FAIL_LESION_DICE = 0.5     # below this the lesion is more wrong than right
MAX_GOOD_FLAGGED = 0.10    # a reviewer will look at one good image in ten, not more
MAX_ROUNDS = 5             # coordinate search: each round revisits every threshold given the others
REQUIRED = ("site", "image", "case", "cord_dice", "false_lesion_mm3", "lesion_dice")
NAMES = tuple(dict.fromkeys(rule[2] for rule in RULES))


def read_tables(paths) -> pd.DataFrame:
    """The evaluation rows of every table; ``qc_``-prefixed summary columns are read as the bare keys."""
    frames = []
    for path in paths:
        frame = pd.read_csv(path, sep="\t", na_values=["n/a", "NaN", "nan", ""])
        frame = frame.rename(columns={f"{COLUMN_PREFIX}{k}": k for k in SUMMARY_KEYS if k not in frame})
        missing = [c for c in REQUIRED if c not in frame]
        if missing:
            raise SystemExit(f"{path}: missing column(s) {', '.join(missing)}")
        for key in dict.fromkeys(rule[1] for rule in RULES):
            if key not in frame:       # a table written before the summary had this key: its rule never fires
                print(f"{path}: no {key} column; its rule is left at its prior", file=sys.stderr)
                frame[key] = np.nan
        frames.append(frame)
    table = pd.concat(frames, ignore_index=True)
    table["site"] = table["site"].astype(str)
    return table


# the thresholds tuned on false lesions only: lesion_not_hyperintense exists for a "lesion" the image does not
# show; tuned on half-found SIMULATED lesions it would rise until it flags real but faint oedema. Since 0.2.0 the
# pipeline drops the components under the lesion card's min_lesion_contrast and QC reads the contrast it judged:
# a threshold at or below that never fires
FALSE_LESION_RULES = ("lesion_contrast_min",)


# the failures each threshold is tuned on: "false_lesion", "lesion" (the other lesion rules) or "cord"
RULE_KINDS = {name: "false_lesion" if name in FALSE_LESION_RULES else "lesion" if key.startswith("lesion_") else "cord"
              for _, key, name, _ in RULES}


def failure_kinds(table: pd.DataFrame) -> dict[str, np.ndarray]:
    """{"cord": cord failures, "lesion": lesion failures, "false_lesion": the lesion failures with a false
    lesion, "stress": the cases on a stress contrast} (module docstring); NaN measures do not fail."""
    kind = table["kind"] if "kind" in table else table["case"]     # basicseg-eval's kind; a bare table's case
    healthy = kind.astype(str).str.lower().eq("healthy").to_numpy()
    cord_dice = table["cord_dice"].to_numpy(float)
    false_lesion = table["false_lesion_mm3"].to_numpy(float)
    lesion_dice = table["lesion_dice"].to_numpy(float)
    contrast = table["contrast"].fillna("native") if "contrast" in table else pd.Series("native", index=table.index)
    stress = contrast.astype(str).str.lower().ne("native").to_numpy()
    with np.errstate(invalid="ignore"):
        false = false_lesion > 0          # healthy: anything found; lesion cases: components off the true lesion
        return {"cord": cord_dice < FAIL_CORD_DICE,
                "lesion": false | (~healthy & (lesion_dice < FAIL_LESION_DICE)), "false_lesion": false,
                "stress": stress}


def failures(table: pd.DataFrame) -> np.ndarray:
    """Whether each case is a failure of any kind."""
    kinds = failure_kinds(table)
    return kinds["cord"] | kinds["lesion"]


def good_cases(kinds: dict) -> np.ndarray:
    """The cases that did not fail, on a native contrast: a flag there is a false alarm."""
    return ~(kinds["cord"] | kinds["lesion"] | kinds.get("stress", False))


def flagged(table: pd.DataFrame, thresholds: dict, kind: str | None = None) -> np.ndarray:
    """Whether any confidence flag is raised on each row, with ``thresholds`` (name -> value or None);
    with ``kind``, only by the rules tuned on that kind of failure (``RULE_KINDS``)."""
    out = np.zeros(len(table), bool)
    for _, key, name, direction in RULES:
        if kind is None or RULE_KINDS[name] == kind:
            out |= rule_fires(table[key].to_numpy(float), thresholds.get(name), direction)
    return out


def candidates(values, direction: str) -> list:
    """From the most lenient to the strictest: the extreme observed value (which flags none: the rules are
    strict inequalities), then the midpoints between observed values."""
    values = np.unique(np.asarray(values, float)[np.isfinite(values)])
    if len(values) == 0:
        return []
    mids = [float(v) for v in (values[:-1] + values[1:]) / 2]
    return [float(values[0])] + mids if direction == "min" else [float(values[-1])] + mids[::-1]


def _score(table: pd.DataFrame, thresholds: dict, kinds: dict, kind: str):
    """(feasible, failures of ``kind`` flagged by the rules of that kind, -good flagged by all)."""
    good = good_cases(kinds)
    hit = flagged(table, thresholds)
    own = flagged(table, thresholds, kind)
    good_share = hit[good].mean() if good.any() else 0.0
    return good_share <= MAX_GOOD_FLAGGED + 1e-12, int(own[kinds[kind]].sum()), -int(hit[good].sum())


def choose_one(table: pd.DataFrame, kinds: dict, thresholds: dict, name: str):
    """The best value of one threshold, the others held fixed. The current value is tried first and wins
    ties: where the tuning rows hold no failure of its kind, a rule's prior stays (switching it off because
    these sites never failed would leave an unseen site's failure unflagged) unless it flags good cases."""
    key, direction = next((r[1], r[3]) for r in RULES if r[2] == name)
    best, best_score = thresholds.get(name), None
    for value in [thresholds.get(name)] + candidates(table[key].to_numpy(float), direction):
        score = _score(table, {**thresholds, name: value}, kinds, RULE_KINDS[name])
        if best_score is None or score > best_score:
            best, best_score = value, score
    return best


def fit(table: pd.DataFrame, kinds: dict) -> dict:
    """Thresholds chosen on ``table`` (``kinds``: :func:`failure_kinds` of its rows): the priors
    (:class:`Thresholds`' defaults) to start, then coordinate search until nothing changes."""
    thresholds = {name: getattr(Thresholds(), name) for name in NAMES}
    for _ in range(MAX_ROUNDS):
        before = dict(thresholds)
        for name in NAMES:
            thresholds[name] = choose_one(table, kinds, thresholds, name)
        if thresholds == before:
            break
    return thresholds


def _counts(hit: np.ndarray, fail: np.ndarray, good: np.ndarray) -> dict:
    return {"failures": int(fail.sum()), "failures_flagged": int(hit[fail].sum()),
            "good": int(good.sum()), "good_flagged": int(hit[good].sum())}


def leave_site_out(table: pd.DataFrame, kinds: dict) -> list[dict]:
    """For each site: the thresholds chosen on the other sites, and what they flag on it (and on those)."""
    fail, good = kinds["cord"] | kinds["lesion"], good_cases(kinds)
    rows = []
    for site in sorted(table["site"].unique()):
        held = (table["site"] == site).to_numpy()
        thresholds = fit(table[~held], {k: v[~held] for k, v in kinds.items()})
        train_hit = flagged(table[~held], thresholds)
        rows.append({"site": site, **_counts(flagged(table[held], thresholds), fail[held], good[held]),
                     "train_good_share": float(train_hit[good[~held]].mean()) if good[~held].any() else 0.0,
                     "thresholds": thresholds})
    return rows


def check(table: pd.DataFrame, kinds: dict, thresholds: dict) -> list[dict]:
    """For each site: what the fixed ``thresholds`` flag on it."""
    fail, good = kinds["cord"] | kinds["lesion"], good_cases(kinds)
    hit = flagged(table, thresholds)
    return [{"site": site, **_counts(hit[held], fail[held], good[held]),
             "false_lesions": int(kinds["false_lesion"][held].sum()),
             "false_lesions_flagged": int((hit & kinds["false_lesion"])[held].sum())}
            for site in sorted(table["site"].unique()) for held in [(table["site"] == site).to_numpy()]]


def check_markdown(rows: list[dict], source: Path) -> str:
    lines = [f"fixed thresholds: {source}", "",
             "| site | failures flagged | false lesions flagged | good flagged |", "|---|---|---|---|"]
    for r in rows + [{"site": "**all**", **total(rows, COUNTS + ("false_lesions", "false_lesions_flagged"))}]:
        lines.append(f"| {r['site']} | {_fraction(r['failures_flagged'], r['failures'])} | "
                     f"{_fraction(r['false_lesions_flagged'], r['false_lesions'])} | "
                     f"{_fraction(r['good_flagged'], r['good'])} |")
    return "\n".join(lines)


COUNTS = ("failures", "failures_flagged", "good", "good_flagged")


def total(rows: list[dict], keys=COUNTS) -> dict:
    return {k: sum(r[k] for r in rows) for k in keys}


def _fraction(n: int, d: int) -> str:
    return f"{n}/{d} ({100 * n / d:.0f} %)" if d else f"{n}/0"


def _values(thresholds: dict) -> str:
    return ", ".join(f"{k}={'off' if v is None else f'{v:.3g}'}" for k, v in thresholds.items())


def markdown(rows: list[dict], final: dict) -> str:
    """The held-out table and the final thresholds, as markdown."""
    lines = ["| held-out site | failures flagged | good flagged | thresholds (tuned on the other sites) |",
             "|---|---|---|---|"]
    for r in rows + [{"site": "**all**", **total(rows), "thresholds": final}]:
        text = "final (all sites): " + _values(r["thresholds"]) if r["site"] == "**all**" else _values(r["thresholds"])
        lines.append(f"| {r['site']} | {_fraction(r['failures_flagged'], r['failures'])} | "
                     f"{_fraction(r['good_flagged'], r['good'])} | {text} |")
    return "\n".join(lines)


def write_thresholds(path: Path, final: dict, rows: list[dict], command: str) -> None:
    t = total(rows)
    source = (f"scripts/tune_qc.py, leave-site-out over {len(rows)} site(s): "
              f"{_fraction(t['failures_flagged'], t['failures'])} failures and "
              f"{_fraction(t['good_flagged'], t['good'])} good cases flagged on held-out sites; "
              f"thresholds fitted on all sites; command: {command}")
    data = {"source": source, "thresholds": final, "leave_site_out": rows}
    Path(path).write_text(json.dumps(data, indent=2) + "\n")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("tables", nargs="+", type=Path, help="evaluation TSV(s), one row per case")
    parser.add_argument("--write", action="store_true", help="write the final thresholds (see --output)")
    parser.add_argument("--output", type=Path, default=THRESHOLDS_FILE, help="default: %(default)s")
    parser.add_argument("--check", type=Path, nargs="?", const=THRESHOLDS_FILE, metavar="THRESHOLDS_JSON",
                        help="apply these thresholds (default: the shipped ones) instead of tuning")
    args = parser.parse_args(argv)
    table = read_tables(args.tables)
    kinds = failure_kinds(table)
    if args.check:
        thresholds = json.loads(args.check.read_text())["thresholds"]
        print(check_markdown(check(table, kinds, thresholds), args.check))
        return 0
    rows = leave_site_out(table, kinds)
    final = fit(table, kinds)
    print(markdown(rows, final))
    if args.write:
        command = " ".join(["python3 scripts/tune_qc.py", *map(shlex.quote, map(str, args.tables)), "--write"]
                           + ([] if args.output == THRESHOLDS_FILE else ["--output", shlex.quote(str(args.output))]))
        write_thresholds(args.output, final, rows, command)
        print(f"\nwritten: {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
