"""scripts/tune_lesion.py: the lesion rule (threshold, minimum volume, extent threshold) chosen for specificity
leave-site-out,
and written into a model card that inference reads."""
from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from basicseg.networks.registry import resolve_model
from basicseg.segment.infer import Model
from basicseg.segment.postprocess import LESION_MIN_VOLUME_MM3

REPO = Path(__file__).resolve().parent.parent


def _tune():
    spec = importlib.util.spec_from_file_location("tune_lesion", REPO / "scripts" / "tune_lesion.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _sweep(sites=("A", "B", "C"), hysteresis_dice=None) -> pd.DataFrame:
    """Per site one healthy case and two lesion cases under two rules: the lenient one (0.5, 10 mm3) finds
    more of the lesions but leaves a false lesion on site B's healthy cord; the strict one (0.6, 40) is clean.
    With ``hysteresis_dice``, a third rule: the strict one outlined at 0.3, as clean, with that Dice."""
    rows = []
    rules = [((0.5, 10.0, 0.5), 0.80, 12.0), ((0.6, 40.0, 0.6), 0.70, 0.0)]
    if hysteresis_dice is not None:
        rules.append(((0.6, 40.0, 0.3), hysteresis_dice, 0.0))
    for site in sites:
        for rule, dice, false in rules:
            false = false if site == "B" or rule[0] != 0.5 else 0.0
            base = {"site": site, "suffix": "T2w", "threshold": rule[0], "min_volume_mm3": rule[1],
                    "extent_threshold": rule[2]}
            rows.append(base | {"case": f"{site}_healthy", "kind": "healthy", "lesion_dice": float("nan"),
                                "lesion_volume_error": float("nan"), "pred_lesion_mm3": false,
                                "false_lesion_mm3": false})
            for kind in ("gm", "whole"):
                rows.append(base | {"case": f"{site}_{kind}", "kind": kind, "lesion_dice": dice,
                                    "lesion_volume_error": -0.1, "pred_lesion_mm3": 100.0, "false_lesion_mm3": 0.0})
    return pd.DataFrame(rows)


def test_the_rule_is_specific_first():
    tune = _tune()
    rule = tune.choose(_sweep())                           # 8/9 cases clean at 0.5 / 10: below 95 %
    assert (rule["threshold"], rule["min_volume_mm3"]) == (0.6, 40.0)
    clean = _sweep(("A", "C"))                             # without site B the lenient rule is clean and better
    rule = tune.choose(clean)
    assert (rule["threshold"], rule["min_volume_mm3"]) == (0.5, 10.0)


def test_detection_under_half_or_of_fragments_is_never_chosen():
    """Clean and better on these sites, a rule detecting at 0.3 or reporting 5 mm3 fragments is still not taken;
    on a tie of the worst pattern the strictest detection is."""
    tune = _tune()
    sweep = _sweep(("A", "C"))
    for rule in ((0.3, 10.0), (0.6, 5.0)):
        sweep = pd.concat([sweep, _sweep(("A", "C")).query("threshold == 0.5").assign(
            threshold=rule[0], min_volume_mm3=rule[1], extent_threshold=rule[0], lesion_dice=0.95)])
    tied = _sweep(("A", "C")).query("threshold == 0.5").assign(threshold=0.7, extent_threshold=0.7)
    rule = tune.choose(pd.concat([sweep, tied]))
    assert (rule["threshold"], rule["min_volume_mm3"]) == (0.7, 10.0)


def test_hysteresis_is_chosen_when_it_outlines_better_and_not_on_a_tie():
    tune = _tune()
    rule = tune.choose(_sweep(hysteresis_dice=0.78))       # as clean as the strict rule, fuller outlines
    assert (rule["threshold"], rule["min_volume_mm3"], rule["extent_threshold"]) == (0.6, 40.0, 0.3)
    rule = tune.choose(_sweep(hysteresis_dice=0.70))       # no better: the plain rule
    assert rule["extent_threshold"] == 0.6


def test_a_sweep_without_extent_thresholds_outlines_at_the_threshold(tmp_path):
    old = _sweep().drop(columns="extent_threshold")
    old.to_csv(tmp_path / "old.tsv", sep="\t", index=False)
    sweep = _tune().read_sweeps([tmp_path / "old.tsv"])
    assert (sweep["extent_threshold"] == sweep["threshold"]).all()


def test_each_site_is_scored_with_the_rule_of_the_others():
    held = _tune().held_out(_sweep())
    chosen = held.groupby("site")["chosen"].first()
    # B is held out: A and C alone prefer the lenient rule, which is then applied to B (and shows its false lesion)
    assert chosen["B"] == "0.5 / 10 mm3 / 0.5" and chosen["A"] == chosen["C"] == "0.6 / 40 mm3 / 0.6"
    assert held.loc[(held["site"] == "B") & (held["kind"] == "healthy"), "pred_lesion_mm3"].item() == 12.0
    text = _tune().report(held)
    assert "| B | 0.5 / 10 mm3 / 0.5 | 0/1 | 2/3 |" in text and "healthy cases without any false lesion: 2/3" in text


def test_the_card_rule_reaches_inference(tmp_path):
    src = resolve_model("lesion-basicseg3")
    shutil.copy(src, tmp_path / src.name)
    shutil.copy(src.with_suffix(".json"), tmp_path / src.with_suffix(".json").name)
    card = tmp_path / src.with_suffix(".json").name
    assert Model(tmp_path / src.name, "tensorflow").min_volume_mm3 == pytest.approx(
        json.loads(card.read_text()).get("min_lesion_volume_mm3", LESION_MIN_VOLUME_MM3))
    sweeps = tmp_path / "sweep.tsv"
    _sweep().to_csv(sweeps, sep="\t", index=False)
    assert _tune().main([str(sweeps), "--write-card", str(card)]) == 0
    written = json.loads(card.read_text())
    assert (written["threshold"], written["min_lesion_volume_mm3"], written["extent_threshold"]) == (0.6, 40.0, 0.6)
    assert "tune_lesion.py" in written["threshold_source"]
    model = Model(tmp_path / src.name, "tensorflow")
    assert (model.threshold, model.min_volume_mm3, model.extent_threshold) == (0.6, 40.0, 0.6)
