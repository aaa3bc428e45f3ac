"""Visual QC ratings: rated with the keyboard in a real browser, exported, and used by the group level.

The subject page is built from the embedded demo (tests/test_report.py's three images of sub-errsm11:
real anatomy, "no cord", failed) and moved before it is opened.  Headless Chromium is driven over the
DevTools protocol on 127.0.0.1 (tests/cdp.py): real key and mouse events, the TSV read back from the
page's own export link.  That TSV, with a second reviewer's file, then goes to ``run_group`` on the demo's
group fixture (tests/test_group_inputs.py): the image rated fail must be excluded with ``rated fail`` and
its note, in exclusions.tsv and in the report; ratings of images the run does not know are notes naming
file and line.  The browser tests skip when Chromium (or websocket-client) is absent; the rest never do.
"""
from __future__ import annotations

import csv
import datetime as dt
import io
import logging
import re
import shutil
from pathlib import Path
from urllib.parse import unquote

import pandas as pd
import pytest

from basicseg import errors as exits
from bidsapp.cli import main, parse_config
from bidsapp.config import Config
from bidsapp.group.run import run_group
from bidsapp.report.rating import COLUMNS
from bidsapp.report.subject import write_subject_report
from test_group_inputs import PROCESSED, make_demo
from test_report import _images

CHROMIUM = shutil.which("chromium")
try:
    import websocket  # noqa: F401 -- test-only dependency
    HAVE_WS = True
except ImportError:
    HAVE_WS = False
browser_only = pytest.mark.skipif(CHROMIUM is None or not HAVE_WS,
                                  reason="needs Debian's chromium and the websocket-client package")

REAL, NOCORD, BROKEN = ("img-sub-errsm11_T2w", "img-sub-errsm11_acq-nocord_T2w", "img-sub-errsm11_acq-broken_T2w")
SOURCE = "sub-errsm11/anat/sub-errsm11_T2w.nii.gz"
NOTE = "jk: cord lost on 3 slices, fail a p"         # typed into the note: its letters must not rate or move


@pytest.fixture(scope="module")
def report(demo_dataset, tmp_path_factory) -> Path:
    built = tmp_path_factory.mktemp("built")
    write_subject_report(built, "sub-errsm11", _images(demo_dataset))
    moved = tmp_path_factory.mktemp("moved") / "derivatives"
    shutil.move(str(built), str(moved))
    return moved / "sub-errsm11.html"


@pytest.fixture
def browser(tmp_path):
    from cdp import Browser

    b = Browser(CHROMIUM, tmp_path / "profile")
    yield b
    b.close()


def _focused(b) -> str:
    return b.evaluate("document.activeElement.id")


def _shown(b, anchor: str) -> dict:
    """What the page shows of one image's rating."""
    return b.evaluate(f"""(function () {{
      var s = document.getElementById('{anchor}');
      return {{rating: s.getAttribute('data-rating'), badge: s.querySelector('.qc-badge').textContent,
               badgeHidden: s.querySelector('.qc-badge').hidden,
               pressed: [].map.call(s.querySelectorAll('.qc-btn[aria-pressed=true]'), function (b) {{
                 return b.getAttribute('data-rating'); }}),
               current: s.querySelector('.qc-current').textContent,
               cell: document.getElementById('qc-cell-{anchor}').textContent,
               note: s.querySelector('.qc-note').value}};
    }}())""")


def _rate_like_a_person(b) -> None:
    """Keyboard first (j/k, arrows, p/f/a, n, Enter, Tab), then buttons and fields with the mouse."""
    b.key("j")
    assert _focused(b) == REAL
    assert b.evaluate("getComputedStyle(document.activeElement).outlineStyle") == "solid"    # focus is visible
    b.key("f")
    b.key("n")
    assert _focused(b) == f"qc-note-{REAL}"
    b.type(NOTE)
    b.key("Enter")
    assert _focused(b) == REAL                               # back on the image, still rated fail
    b.key("ArrowDown")
    assert _focused(b) == NOCORD
    b.key("a")
    b.key("j")
    assert _focused(b) == BROKEN
    b.key("j")
    assert _focused(b) == BROKEN                             # the last image stays focused
    b.key("f")
    b.key("c")                                               # cleared again
    assert _shown(b, BROKEN)["rating"] == "" and _shown(b, BROKEN)["badgeHidden"] is True
    b.key("Tab")                                             # the first control inside the image: Pass
    assert b.evaluate("document.activeElement.getAttribute('data-rating')") == "pass"
    b.key("Enter")                                           # a button pressed from the keyboard
    assert _shown(b, BROKEN)["rating"] == "pass"
    b.key("k")
    assert _focused(b) == NOCORD
    b.key("ArrowUp")
    assert _focused(b) == REAL
    b.click(f"#{NOCORD} .qc-btn[data-rating=pass]")        # a change of mind, with the mouse
    b.click(f"#{NOCORD} .qc-clear")
    assert _shown(b, NOCORD)["rating"] == ""
    b.click(f"#{NOCORD} .qc-btn[data-rating=artefact]")
    b.click("#qc-rater")
    b.type("alice")


def _exported(b) -> str:
    href = b.evaluate("document.getElementById('qc-export').href")
    prefix = "data:text/tab-separated-values;charset=utf-8,"
    assert href.startswith(prefix)
    text = unquote(href[len(prefix):])
    assert text == b.evaluate("window.basicsegQC.tsv()")
    return text


@browser_only
def test_rate_with_the_keyboard_export_reload_and_group(report, browser, tmp_path, demo_dataset):
    b = browser
    b.open(report.resolve().as_uri())
    assert b.evaluate("document.documentElement.getAttribute('data-qc-rated')") == "0/3"
    assert b.evaluate("document.getElementById('qc-panel').hidden") is False
    _rate_like_a_person(b)

    # the page shows every rating: the buttons, the badge, the text, the summary table
    real = _shown(b, REAL)
    assert real == {"rating": "fail", "badge": "fail", "badgeHidden": False, "pressed": ["fail"],
                    "current": "rated fail", "cell": "fail", "note": NOTE}
    assert _shown(b, NOCORD)["pressed"] == ["artefact"] and _shown(b, BROKEN)["cell"] == "pass"
    assert b.evaluate("document.documentElement.getAttribute('data-qc-rated')") == "3/3"
    assert "rated artefact" in b.evaluate("document.getElementById('qc-live').textContent")
    assert b.evaluate("document.getElementById('qc-export').getAttribute('download')") == "sub-errsm11_qc-ratings.tsv"

    text = _exported(b)
    rows = list(csv.DictReader(io.StringIO(text), delimiter="\t"))
    assert text.splitlines()[0].split("\t") == list(COLUMNS)
    assert [(r["source"], r["rating"]) for r in rows] == [
        (SOURCE, "fail"), ("sub-errsm11/anat/sub-errsm11_acq-nocord_T2w.nii.gz", "artefact"),
        ("sub-errsm11/anat/sub-errsm11_acq-broken_T2w.nii.gz", "pass")]
    assert {r["participant_id"] for r in rows} == {"sub-errsm11"} and {r["session_id"] for r in rows} == {"n/a"}
    assert rows[0]["note"] == NOTE and rows[1]["note"] == "n/a" and {r["rater"] for r in rows} == {"alice"}
    for r in rows:
        stamp = dt.datetime.fromisoformat(r["timestamp"].replace("Z", "+00:00"))
        assert abs((dt.datetime.now(dt.timezone.utc) - stamp).total_seconds()) < 600

    # a reload keeps everything (localStorage)
    b.open(None, reload=True)
    assert b.evaluate("document.documentElement.getAttribute('data-qc-rated')") == "3/3"
    assert _shown(b, REAL)["note"] == NOTE and b.evaluate("document.getElementById('qc-rater').value") == "alice"
    assert _exported(b) == text
    assert b.problems() == [], b.problems()                 # no console message, exception or failed load

    _group_with(text, tmp_path, demo_dataset)


def _group_with(exported: str, tmp_path: Path, demo_dataset: Path) -> None:
    """The browser's TSV and a second reviewer's: fail wins, the exclusion is in the TSV and the report."""
    bids, out = make_demo(tmp_path / "group", demo_dataset)
    alice = tmp_path / "sub-errsm11_qc-ratings.tsv"
    alice.write_text(exported)
    bob = tmp_path / "bob.tsv"
    bob.write_text("\t".join(COLUMNS) + "\n"
                   f"sub-errsm11\tn/a\t{SOURCE}\tpass\tn/a\tbob\t2026-01-01T00:00:00Z\n"
                   "sub-errsm21\tn/a\tsub-errsm21/anat/sub-errsm21_T2w.nii.gz\tartefact\tghosting\tbob\tn/a\n")
    code = run_group(Config(bids_dir=bids, output_dir=out, analysis_level="group", qc_ratings=[alice, bob]))
    assert code == exits.OK
    exc = pd.read_csv(out / "group" / "exclusions.tsv", sep="\t", keep_default_na=False)
    rated = exc[exc["reason"].str.startswith("rated")]
    assert list(rated["source"]) == [SOURCE]                 # artefact is not an exclusion
    reason = rated["reason"].iloc[0]
    assert reason.startswith(f"rated fail: {NOTE}") and "reviewers disagree" in reason and "bob: pass" in reason
    assert rated["participant_id"].iloc[0] == "sub-errsm11"
    dice = pd.read_csv(out / "group" / "dice_per_slice.tsv", sep="\t")
    assert set(dice["participant_id"]) == {f"sub-{s}" for s in PROCESSED} - {"sub-errsm11"}
    morph = pd.read_csv(out / "group" / "morphometrics.tsv", sep="\t").set_index("source")
    assert morph.loc[SOURCE, "qc_rating"] == "fail"
    assert morph.loc["sub-errsm21/anat/sub-errsm21_T2w.nii.gz", "qc_rating"] == "artefact"
    page = (out / "group_report.html").read_text()
    for text in ("Visual QC ratings", "rated fail: jk: cord lost", "not excluded", "ghosting",
                 "Reviewers disagree on 1 image(s)", f"{alice} line 3: sub-errsm11/anat/sub-errsm11_acq-nocord",
                 f"{alice} line 4: sub-errsm11/anat/sub-errsm11_acq-broken"):
        assert text in page, text


@browser_only
def test_without_javascript_the_page_still_reads(report, browser):
    b = browser
    b.send("Emulation.setScriptExecutionDisabled", value=True)
    b.open(report.resolve().as_uri())
    root = b.send("DOM.getDocument", depth=-1)["root"]["nodeId"]
    dom = b.send("DOM.getOuterHTML", nodeId=root)["outerHTML"]
    assert "Morphometrics" in dom and "sub-errsm11_T2w" in dom
    html_tag = re.search(r"<html[^>]*>", dom).group(0)
    assert "data-qc-rated" not in html_tag and "data-images-loaded" not in html_tag      # no script ran
    panel = re.search(r'<section id="qc-panel"[^>]*>', dom).group(0)
    widgets = re.findall(r'<div class="qc-rate qc-js"[^>]*>', dom)
    assert len(widgets) == 3 and all('hidden=""' in tag for tag in [panel, *widgets])   # controls stay hidden
    assert "QC ratings need JavaScript" in dom


def test_page_is_self_contained_and_accessible(report):
    page = report.read_text()
    assert "<script src" not in page and "http://" not in page and "https://" not in page
    assert page.count("class='qc-rate qc-js'") == 3 and page.count("aria-pressed='false'") == 9
    assert page.count("<label for='qc-note-") == 3 and "<label for='qc-rater'>" in page
    assert ":focus-visible" in page and "section.qc-image:focus" in page


# --- the group level without a browser ---------------------------------------------------------------------

@pytest.fixture
def demo(tmp_path, demo_dataset):
    return make_demo(tmp_path, demo_dataset)


def _ratings(path: Path, *rows: str, header: str = "\t".join(COLUMNS)) -> Path:
    path.write_text(header + "\n" + "".join(r + "\n" for r in rows))
    return path


def test_bad_ratings_lines_are_notes_with_file_and_line(demo, tmp_path, caplog):
    bids, out = demo
    src = "sub-errsm21/anat/sub-errsm21_T2w.nii.gz"
    bad = _ratings(tmp_path / "bad.tsv",
                   f"sub-errsm21\tn/a\t{src}\tmaybe\tn/a\tcarol\tn/a",                 # line 2: not a rating
                   f"sub-errsm21\tn/a\t{src}\t\tn/a\tdave\tn/a",                       # line 3: no rating
                   f"sub-errsm21\tn/a\t{src}\tfail\tx\tx\tx\textra",                   # line 4: extra field
                   "sub-nobody\tn/a\tsub-nobody/anat/sub-nobody_T2w.nii.gz\tfail\tn/a\tcarol\tn/a",   # 5: unknown
                   "\t".join(COLUMNS),                                                  # 6: header repeated
                   f"sub-errsm11\tn/a\t{src}\tartifact\tn/a\terin\tn/a")               # 7: wrong participant
    garbage = tmp_path / "garbage.tsv"
    garbage.write_bytes(b"\x00\xff\xfe binary\n\x89PNG\r\n")
    no_rating = _ratings(tmp_path / "norating.tsv", f"sub-errsm21\t{src}", header="participant_id\tsource")
    with caplog.at_level(logging.WARNING, logger="basicseg"):
        code = run_group(Config(bids_dir=bids, output_dir=out, analysis_level="group",
                                qc_ratings=[bad, garbage, no_rating]))
    assert code == exits.OK
    page = (out / "group_report.html").read_text()
    for note in (f"{bad} line 2: rating &#x27;maybe&#x27; is not pass, fail or artefact",
                 f"{bad} line 3: no rating", f"{bad} line 4: more fields than the header",
                 f"{bad} line 5: sub-nobody/anat/sub-nobody_T2w.nii.gz is not an image of this run",
                 f"{bad} line 7: participant_id sub-errsm11 but {src} belongs to sub-errsm21",
                 f"{no_rating}: no rating column"):
        assert note in page, note
        assert note.replace("&#x27;", "'") in caplog.text, note
    assert "line 6" not in page
    exc = pd.read_csv(out / "group" / "exclusions.tsv", sep="\t", keep_default_na=False)
    assert not exc["reason"].str.startswith("rated").any()   # artifact (line 7) is artefact: listed, kept
    assert "listed, not excluded" in page


def test_missing_ratings_file_is_exit_66_without_traceback(demo, tmp_path, capsys):
    bids, out = demo
    missing = tmp_path / "nowhere.tsv"
    assert main([str(bids), str(out), "group", "--qc-ratings", str(missing)]) == exits.NO_INPUT
    err = capsys.readouterr().err
    assert f"--qc-ratings {missing}: no such file" in err and "Traceback" not in err
    assert not (out / "group").exists()                     # checked before anything is written
    assert run_group(Config(bids_dir=bids, output_dir=out, analysis_level="group",
                            qc_ratings=[tmp_path])) == exits.NO_INPUT


def test_command_line_takes_several_files(tmp_path):
    config, _ = parse_config([str(tmp_path), str(tmp_path / "out"), "group", "--qc-ratings", "a.tsv", "b.tsv",
                              "--qc-ratings", "c.tsv"])
    assert config.qc_ratings == [Path("a.tsv"), Path("b.tsv"), Path("c.tsv")]
    assert parse_config([str(tmp_path), str(tmp_path / "out"), "group"])[0].qc_ratings == []
