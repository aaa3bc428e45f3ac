"""Visual QC ratings on the subject page: a reviewer rates each image ``pass``, ``fail`` or ``artefact``.

Everything is inline (no network, no external script) and plain JavaScript.  Without JavaScript the
rating controls stay ``hidden`` and the page reads as before (a ``<noscript>`` line says why).

Keys (never while typing in a text field; no Ctrl/Alt/Meta): ``j``/``k`` next/previous image (also the
arrow keys while an image section has focus); on the focused image ``p`` pass, ``f`` fail, ``a``
artefact, ``c`` clear, ``n`` to its note (``Esc`` or ``Enter`` back).  Every control is also a button
or a labelled field.

Ratings are kept in ``localStorage`` under one key per page (``basicseg-qc:v1:<page path>``) and
exported as a TSV (:data:`COLUMNS`) through a ``data:`` download link that is rewritten on every change;
``window.basicsegQC.tsv()`` returns the same text.  ``group --qc-ratings`` reads it
(:mod:`bidsapp.group.ratings`).
"""
from __future__ import annotations

from pathlib import PurePosixPath

from bidsapp.report.html import escape as _e

COLUMNS = ("participant_id", "session_id", "source", "rating", "note", "rater", "timestamp")
RATINGS = ("pass", "fail", "artefact")
KEYS = {"pass": "p", "fail": "f", "artefact": "a"}

CSS = """
[hidden]{display:none!important}
.qc-rate{display:flex;flex-wrap:wrap;gap:.4em .6em;align-items:center;margin:.6em 0;padding:.45em .7em;
background:#f7f7f7;border:1px solid #ccc;border-radius:6px}
.qc-btn,.qc-clear,.qc-export{font:inherit;font-size:.92em;padding:.2em .75em;border:2px solid #555;border-radius:4px;
background:#fff;color:#222;cursor:pointer;text-decoration:none;display:inline-block}
.qc-btn[aria-pressed=true]{color:#fff}
.qc-btn[data-rating=pass][aria-pressed=true],.qc-badge.qc-pass{background:#2e7d32;border-color:#2e7d32}
.qc-btn[data-rating=fail][aria-pressed=true],.qc-badge.qc-fail{background:#c62828;border-color:#c62828}
.qc-btn[data-rating=artefact][aria-pressed=true],.qc-badge.qc-artefact{background:#8a5300;border-color:#8a5300}
.qc-note{font:inherit;font-size:.92em;width:22em;max-width:100%;padding:.15em .3em}
.qc-current{font-weight:bold}
.qc-badge{font-size:.62em;vertical-align:middle;padding:.1em .5em;border-radius:3px;margin-left:.6em;color:#fff}
:focus-visible{outline:3px solid #1a56db;outline-offset:2px}
section.qc-image:focus{outline:3px solid #1a56db;outline-offset:6px}
.qc-btn[aria-pressed=true] kbd{background:transparent;color:#fff;border-color:#fff}
section.qc-image{scroll-margin-top:12px}
section.qc-image[data-rating=fail]{border-left:6px solid #c62828;padding-left:.8em}
section.qc-image[data-rating=artefact]{border-left:6px solid #8a5300;padding-left:.8em}
kbd{border:1px solid #999;border-radius:3px;padding:0 .3em;background:#fafafa;font-size:.9em}
"""

SCRIPT = r"""<script>
(function () {
  'use strict';
  var COLUMNS = ['participant_id', 'session_id', 'source', 'rating', 'note', 'rater', 'timestamp'];
  var KEYS = {p: 'pass', f: 'fail', a: 'artefact'};
  var panel = document.getElementById('qc-panel');
  if (!panel || !window.JSON) { return; }
  var participant = panel.getAttribute('data-participant');
  var storeKey = 'basicseg-qc:v1:' + location.pathname;
  var sections = [].slice.call(document.querySelectorAll('section.qc-image'));
  var stored = true;
  var state = load();

  function load() {
    try {
      var s = JSON.parse(window.localStorage.getItem(storeKey) || 'null');
      if (s && typeof s.ratings === 'object' && s.ratings) { return s; }
    } catch (e) { stored = false; }
    return {rater: '', ratings: {}};
  }
  function save() {
    try { window.localStorage.setItem(storeKey, JSON.stringify(state)); stored = true; } catch (e) { stored = false; }
  }
  function text(value) {
    var t = String(value == null ? '' : value).replace(/[\t\r\n]+/g, ' ').trim();
    return t || 'n/a';
  }
  function entry(sec) { return state.ratings[sec.getAttribute('data-source')]; }
  function rated(sec) { var r = entry(sec); return !!(r && r.rating); }
  function tsv() {
    var lines = [COLUMNS.join('\t')];
    sections.forEach(function (sec) {
      if (!rated(sec)) { return; }
      var r = entry(sec);
      lines.push([participant, sec.getAttribute('data-session') || 'n/a', sec.getAttribute('data-source'),
                  r.rating, text(r.note), text(state.rater), r.timestamp].join('\t'));
    });
    return lines.join('\n') + '\n';
  }
  function sectionOf(node) {
    while (node && node !== document) {
      if (node.classList && node.classList.contains('qc-image')) { return node; }
      node = node.parentNode;
    }
    return null;
  }
  function show(sec) {
    var r = entry(sec), rating = (r && r.rating) || '';
    [].forEach.call(sec.querySelectorAll('.qc-btn'), function (b) {
      b.setAttribute('aria-pressed', String(b.getAttribute('data-rating') === rating));
    });
    sec.querySelector('.qc-current').textContent = rating ? 'rated ' + rating : 'not rated';
    var badge = sec.querySelector('.qc-badge');
    badge.textContent = rating;
    badge.className = 'qc-badge' + (rating ? ' qc-' + rating : '');
    badge.hidden = !rating;
    var note = sec.querySelector('.qc-note');
    if (document.activeElement !== note) { note.value = (r && r.note) || ''; }
    var cell = document.getElementById('qc-cell-' + sec.id);
    if (cell) { cell.textContent = rating || 'not rated'; }
    sec.setAttribute('data-rating', rating);
  }
  function render() {
    sections.forEach(show);
    var n = sections.filter(rated).length;
    document.getElementById('qc-export').href = 'data:text/tab-separated-values;charset=utf-8,' + encodeURIComponent(tsv());
    document.getElementById('qc-count').textContent = n + ' of ' + sections.length + ' image(s) rated.';
    document.getElementById('qc-store').textContent = stored
      ? 'Ratings are kept in this browser (localStorage) for this page; export them to use them.'
      : 'Ratings cannot be kept in this browser: export them before closing the page.';
    document.documentElement.setAttribute('data-qc-rated', n + '/' + sections.length);
  }
  function announce(message) { document.getElementById('qc-live').textContent = message; }
  function rate(sec, rating) {
    var src = sec.getAttribute('data-source'), r = state.ratings[src] || {};
    if (rating) {
      r.rating = rating;
      r.timestamp = new Date().toISOString();
      state.ratings[src] = r;
    } else if (r.note) {
      delete r.rating;
    } else {
      delete state.ratings[src];
    }
    save();
    render();
    announce(sec.getAttribute('data-name') + (rating ? ' rated ' + rating : ': rating cleared'));
  }
  function noted(sec, value) {
    var src = sec.getAttribute('data-source'), r = state.ratings[src] || {};
    r.note = value;
    if (r.rating) { r.timestamp = new Date().toISOString(); }
    state.ratings[src] = r;
    save();
    render();
  }
  function move(step) {
    var i = sections.indexOf(sectionOf(document.activeElement));
    i = i < 0 ? (step > 0 ? 0 : sections.length - 1) : Math.min(sections.length - 1, Math.max(0, i + step));
    sections[i].scrollIntoView({block: 'start'});
    sections[i].focus({preventScroll: true});
  }
  function typing(t) {
    return t && (t.tagName === 'INPUT' || t.tagName === 'TEXTAREA' || t.tagName === 'SELECT' || t.isContentEditable);
  }
  function onKey(ev) {
    if (ev.ctrlKey || ev.metaKey || ev.altKey || ev.defaultPrevented || !sections.length) { return; }
    var t = ev.target, sec = sectionOf(t);
    if (typing(t)) {
      if (sec && (ev.key === 'Escape' || (ev.key === 'Enter' && t.classList.contains('qc-note')))) {
        sec.focus();
        ev.preventDefault();
      }
      return;
    }
    var key = ev.key && ev.key.length === 1 ? ev.key.toLowerCase() : ev.key;
    var onSection = t === sec;
    if (key === 'j' || (onSection && (key === 'ArrowDown' || key === 'ArrowRight'))) { move(1); }
    else if (key === 'k' || (onSection && (key === 'ArrowUp' || key === 'ArrowLeft'))) { move(-1); }
    else if (sec && KEYS[key]) { rate(sec, KEYS[key]); }
    else if (sec && key === 'c') { rate(sec, null); }
    else if (sec && key === 'n') { sec.querySelector('.qc-note').focus(); }
    else { return; }
    ev.preventDefault();
  }
  function onClick(ev) {
    var b = ev.target.closest ? ev.target.closest('button') : null, sec = sectionOf(b);
    if (!b || !sec) { return; }
    rate(sec, b.classList.contains('qc-clear') ? null : b.getAttribute('data-rating'));
  }
  function onInput(ev) {
    var t = ev.target;
    if (t.id === 'qc-rater') { state.rater = t.value; save(); render(); }
    else if (t.classList.contains('qc-note') && sectionOf(t)) { noted(sectionOf(t), t.value); }
  }

  sections.forEach(function (sec) { sec.tabIndex = 0; });
  [].forEach.call(document.querySelectorAll('.qc-js'), function (el) { el.hidden = false; });
  document.getElementById('qc-rater').value = state.rater || '';
  document.addEventListener('keydown', onKey);
  document.addEventListener('click', onClick);
  document.addEventListener('input', onInput);
  window.basicsegQC = {tsv: tsv, storageKey: storeKey};
  render();
}());
</script>"""

HELP = ("Rate every image for quality control. Keys: <kbd>j</kbd> / <kbd>k</kbd> next / previous image "
        "(or the arrow keys while an image has focus); on the focused image <kbd>p</kbd> pass, <kbd>f</kbd> fail, "
        "<kbd>a</kbd> artefact, <kbd>c</kbd> clear, <kbd>n</kbd> its note (<kbd>Esc</kbd> or <kbd>Enter</kbd> "
        "back). <b>fail</b> excludes the image from the group analyses (<code>group --qc-ratings FILE</code>); "
        "<b>artefact</b> is listed in the group report but kept.")


def session_of(source: str) -> str:
    """``ses-<label>`` of an image from its path relative to the BIDS root ('' without sessions)."""
    return next((p for p in PurePosixPath(str(source)).parts[:-1] if p.startswith("ses-")), "")


def section_attributes(name: str, source: str) -> str:
    """What the script needs on an image's ``<section>`` (it sets ``tabindex`` itself)."""
    return (f"class='qc-image' data-name='{_e(name)}' data-source='{_e(source)}' "
            f"data-session='{_e(session_of(source))}'")


def widget(name: str, anchor: str) -> str:
    """The rating controls of one image: three toggle buttons, clear, a labelled note, the current rating."""
    buttons = "".join(
        f"<button type='button' class='qc-btn' data-rating='{r}' aria-pressed='false' aria-keyshortcuts='{KEYS[r]}'"
        f" title='{r} (key {KEYS[r]})'>{r.capitalize()} <kbd aria-hidden='true'>{KEYS[r]}</kbd></button>"
        for r in RATINGS)
    return (f"<div class='qc-rate qc-js' role='group' aria-label='QC rating of {_e(name)}' hidden>"
            f"<span>QC rating:</span>{buttons}"
            "<button type='button' class='qc-clear' aria-keyshortcuts='c' title='clear (key c)'>Clear</button>"
            f"<label for='qc-note-{_e(anchor)}'>Note</label><input type='text' class='qc-note' "
            f"id='qc-note-{_e(anchor)}' aria-keyshortcuts='n' placeholder='optional'>"
            "<span class='qc-current'>not rated</span></div>")


def badge() -> str:
    """Shown after the image's title once it is rated."""
    return "<span class='qc-badge' hidden></span>"


def summary_cells(anchor: str) -> str:
    return f"<td class='qc-js' id='qc-cell-{_e(anchor)}' hidden>not rated</td>"


SUMMARY_HEADER = "<th class='qc-js' hidden>QC rating</th>"


def panel(participant: str) -> str:
    """The page's rating panel: keys, the optional rater name, the export link, the counts."""
    return f"""<noscript><p class=meta>QC ratings need JavaScript; the report itself does not.</p></noscript>
<section id='qc-panel' class='box note qc-js' data-participant='{_e(participant)}' aria-labelledby='qc-title' hidden>
<h2 id='qc-title' style='margin-top:0'>Visual QC ratings</h2>
<p>{HELP}</p>
<p><label for='qc-rater'>Rater (optional)</label> <input type='text' id='qc-rater' autocomplete='name'>
<a id='qc-export' class='qc-export' href='#' download='{_e(participant)}_qc-ratings.tsv'>Export ratings (TSV)</a>
<span id='qc-count'></span></p>
<p id='qc-store' class=meta></p>
<p id='qc-live' role='status' aria-live='polite'></p>
</section>"""
