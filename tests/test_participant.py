"""End to end: the participant level on the embedded demo dataset with the shipped models."""
import json
import shutil

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from basicseg.measure.confidence import SUMMARY_KEYS
from basicseg.measure.morphometrics import ALL_QC_FLAGS
from basicseg.networks.registry import DEFAULT_MODELS, resolve_model
from basicseg.segment.hyperintensity import LESION_CONTRAST_MIN
from bidsapp.cli import main
from basicseg.references import find_reference
from bidsapp.validate import errors, validator_report

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory, demo_dataset):
    out = tmp_path_factory.mktemp("demo") / "out"
    work = out.parent / "work"
    code = main([str(demo_dataset), str(out), "participant", "--work-dir", str(work), "--nprocs", "2"])
    return demo_dataset, out, work, code


def masks(out, kind="SC"):
    return sorted(out.glob(f"sub-*/anat/*_space-orig_label-{kind}_mask.nii.gz"))


def test_run_succeeds_for_every_t2w(demo_run):
    bids, out, _, code = demo_run
    assert code == 0
    inputs = sorted(bids.glob("sub-*/anat/*_T2w.nii.gz"))
    assert len(masks(out)) == len(inputs) == len(masks(out, "lesion"))


def test_masks_on_the_input_grid_and_on_the_cord(demo_run):
    bids, out, _, _ = demo_run
    for image in sorted(bids.glob("sub-*/anat/*_T2w.nii.gz")):
        entities = image.name.replace("_T2w.nii.gz", "")
        sc = out / image.parent.relative_to(bids) / f"{entities}_space-orig_label-SC_mask.nii.gz"
        src, seg = nib.load(image), nib.load(sc)
        assert seg.shape == src.shape
        assert np.allclose(seg.affine, src.affine, atol=1e-5)
        assert seg.header.get_xyzt_units()[0] == "mm"
        data = np.asanyarray(seg.dataobj)
        assert set(np.unique(data)) <= {0, 1} and data.sum() > 0
        ref = find_reference(image, "cord")
        if ref is not None:   # the demo's manual masks
            truth = np.asanyarray(nib.load(ref).dataobj) > 0.5
            dice = 2 * (truth & (data > 0)).sum() / (truth.sum() + (data > 0).sum())
            assert dice >= 0.85, f"{image.name}: cord Dice {dice:.3f}"


def test_sidecars_name_sources_and_models(demo_run):
    _, out, _, _ = demo_run
    for mask in masks(out) + masks(out, "lesion"):
        side = json.loads(mask.with_name(mask.name.replace(".nii.gz", ".json")).read_text())
        assert side["Sources"][0].startswith("bids:raw:sub-")
        assert side["Type"] in ("ROI", "Lesion")
        # the threshold and the lesion's minimum volume are the model card's (tune_lesion.py writes them)
        card = json.loads(resolve_model(DEFAULT_MODELS["cord" if side["Type"] == "ROI" else "lesion"])
                          .with_suffix(".json").read_text())
        assert len(side["Model"]["SHA256"]) == 64 and side["Threshold"] == card["threshold"]
        if side["Type"] == "Lesion":
            assert side["MinimumComponentVolumeMM3"] == card.get("min_lesion_volume_mm3", 20.0)
            assert side["ExtentThreshold"] == (card.get("extent_threshold") or card["threshold"])
            assert side["MinimumLogContrast"] == card.get("min_lesion_contrast", LESION_CONTRAST_MIN)
        # the shipped lesion model averages each box with its left-right mirror; the cord model does not
        assert side["Model"]["MirrorAverage"] is (side["Type"] == "Lesion")
        # the lesion mask says which components it leaves out
        assert ("MinimumComponentVolumeMM3" in side) is (side["Type"] == "Lesion")


def test_morphometrics_and_reports(demo_run):
    _, out, _, _ = demo_run
    tables = sorted(out.glob("sub-*/anat/*_morphometrics.tsv"))
    rows = pd.concat([pd.read_csv(t, sep="\t") for t in tables if "desc-" not in t.name])
    assert (rows["status"] == "ok").all()
    assert (rows["cord_volume_mm3"] > 0).all() and (rows["csa_mean_mm2"] > 20).all()
    # the confidence summary's columns, and only known flags (each explained in the report)
    assert {f"qc_{k}" for k in SUMMARY_KEYS} <= set(rows.columns)
    assert rows["qc_cord_mean_prob"].between(0.5, 1).all()
    flags = {f.split(":")[0] for text in rows["qc_flags"].dropna() for f in str(text).split(";") if f}
    assert flags <= set(ALL_QC_FLAGS)
    for subject in rows["participant_id"]:
        assert (out / f"{subject}.html").is_file()
    assert (out / "dataset_description.json").is_file()
    description = json.loads((out / "dataset_description.json").read_text())
    assert description["DatasetType"] == "derivative" and description["GeneratedBy"][0]["Name"] == "basicseg"
    assert list((out / "logs").glob("basicseg-*.log"))


def test_dseg_per_lesion_tables_citation_and_settings(demo_run):
    """The BIDS dseg agrees with the masks, each lesion has its row (SCT 7.4's columns), and the run
    leaves the methods text and its resolved settings under logs/."""
    _, out, _, _ = demo_run
    for sc in masks(out):
        prefix = sc.name.split("_space-orig")[0]
        dseg = np.asanyarray(nib.load(sc.parent / f"{prefix}_space-orig_dseg.nii.gz").dataobj)
        cord = np.asanyarray(nib.load(sc).dataobj) > 0
        lesion = np.asanyarray(nib.load(sc.parent / f"{prefix}_space-orig_label-lesion_mask.nii.gz").dataobj) > 0
        assert set(np.unique(dseg)) <= {0, 1, 2}
        assert ((dseg > 0) == (cord | lesion)).all() and ((dseg == 2) == lesion).all()
        lesions = pd.read_csv(sc.parent / f"{prefix}_desc-lesions_morphometrics.tsv", sep="\t")
        row = pd.read_csv(sc.parent / f"{prefix}_morphometrics.tsv", sep="\t").iloc[0]
        assert len(lesions) == row["lesion_count"]
        assert lesions["volume_mm3"].sum() == pytest.approx(row["lesion_volume_mm3"], rel=1e-6)
        assert {"length_mm", "max_axial_damage_ratio", "tissue_bridges_total_mm"} <= set(lesions.columns)
    labels = pd.read_csv(out / "dseg.tsv", sep="\t")
    assert list(labels["index"]) == [0, 1, 2]
    citation = (out / "logs" / "CITATION.md").read_text()
    sha = json.loads(next(out.glob("sub-*/anat/*_label-SC_mask.json")).read_text())["Model"]["SHA256"]
    assert sha in citation and "McCoy" in (out / "logs" / "CITATION.bib").read_text()
    assert "HowToAcknowledge" in json.loads((out / "dataset_description.json").read_text())
    (settings,) = list((out / "logs").glob("settings-*.json"))[:1]
    resolved = json.loads(settings.read_text())
    assert resolved["config"]["nprocs"] == 2 and resolved["models"]["cord"]["sha256"] == sha
    assert resolved["versions"]["basicseg"]


def test_simulated_lesions_are_found(demo_run):
    bids, out, _, _ = demo_run
    found = 0
    for ref in sorted(bids.glob("derivatives/labels/sub-*/anat/*_label-lesion_mask.nii.gz")):
        subject = ref.name.split("_")[0]
        pred = nib.load(out / subject / "anat" / f"{subject}_space-orig_label-lesion_mask.nii.gz")
        truth = np.asanyarray(nib.load(ref).dataobj) > 0
        found += bool((np.asanyarray(pred.dataobj) > 0)[truth].any())
    assert found >= 3   # of 4 SIMULATED lesions


def test_output_is_valid_bids_derivative(demo_run):
    _, out, _, _ = demo_run
    report = validator_report(out)
    assert errors(report) == [], errors(report)[:5]


def test_rerun_skips_and_overwrite_redoes(demo_run):
    bids, out, work, _ = demo_run
    mask = masks(out)[0]
    before = mask.stat().st_mtime_ns
    subject = mask.name.split("_")[0]
    assert main([str(bids), str(out), "participant", "--participant-label", subject, "-w", str(work),
                 "--skip-bids-validation"]) == 0
    assert mask.stat().st_mtime_ns == before
    assert main([str(bids), str(out), "participant", "--participant-label", subject, "-w", str(work),
                 "--skip-bids-validation", "--overwrite"]) == 0
    assert mask.stat().st_mtime_ns != before


def test_tta_is_recorded_and_a_change_redoes_the_image(demo_run, caplog):
    """--tta none runs one pass per network: the lesion sidecar says so, and outputs made under another --tta
    are stale (redone, not skipped)."""
    bids, out, work, _ = demo_run
    lesion = masks(out, "lesion")[0]
    subject = lesion.name.split("_")[0]
    sidecar = lesion.with_name(lesion.name.replace(".nii.gz", ".json"))
    assert json.loads(sidecar.read_text())["Model"]["ShiftAveragePixels"]      # the shipped card's shifts
    args = [str(bids), str(out), "participant", "--participant-label", subject, "-w", str(work),
            "--skip-bids-validation"]
    before = lesion.stat().st_mtime_ns
    assert main(args + ["--tta", "none"]) == 0
    assert lesion.stat().st_mtime_ns != before
    model = json.loads(sidecar.read_text())["Model"]
    assert model["MirrorAverage"] is False and model["ShiftAveragePixels"] == []
    assert "made with other settings" in caplog.text and "--tta none" in caplog.text
    citation = out / "logs" / "CITATION.md"                   # the methods text says what ran
    assert "averaged" not in citation.read_text()
    assert main(args) == 0                                    # back to full: redone again, with the card's views
    assert json.loads(sidecar.read_text())["Model"]["ShiftAveragePixels"]
    card = json.loads(resolve_model(DEFAULT_MODELS["lesion"]).with_suffix(".json").read_text())
    text = " ".join(citation.read_text().split())
    assert "its left-right mirror and the box shifted by +-1 mm" in text
    assert f"reached {card['threshold']} over at least {card['min_lesion_volume_mm3']:g} mm3" in text


def test_one_bad_image_does_not_stop_the_others(tmp_path, demo_dataset):
    bids = tmp_path / "bids"
    shutil.copytree(demo_dataset, bids, ignore=shutil.ignore_patterns("derivatives", "sub-errsm*", "sub-test001"))
    bad = bids / "sub-unf01/anat/sub-unf01_T2w.nii.gz"
    bad.write_bytes(bad.read_bytes()[:2000])                     # truncated file
    out = tmp_path / "out"
    code = main([str(bids), str(out), "participant", "--skip-bids-validation", "-w", str(tmp_path / "w")])
    assert code == 1
    assert masks(out) and all("unf01" not in m.name for m in masks(out))
    row = pd.read_csv(out / "sub-unf01/anat/sub-unf01_morphometrics.tsv", sep="\t").iloc[0]
    assert row["status"] == "failed" and "sub-unf01_T2w.nii.gz" in row["error"]
    assert not list(out.rglob(".*.nii.gz"))                       # no temporary files left behind


def test_t2star_through_the_filter_file(tmp_path, demo_dataset):
    f = tmp_path / "filter.json"
    f.write_text(json.dumps({"t2w": {"suffix": "T2starw"}}))
    out = tmp_path / "out"
    assert main([str(demo_dataset), str(out), "participant", "--bids-filter-file", str(f), "--skip-bids-validation",
                 "-w", str(tmp_path / "w"), "--save-probabilities", "--lesion-model", "none"]) == 0
    produced = masks(out)
    assert [p.name for p in produced] == ["sub-9418_run-1_space-orig_label-SC_mask.nii.gz"]
    assert list(out.glob("sub-9418/anat/*_label-SC_probseg.nii.gz"))
