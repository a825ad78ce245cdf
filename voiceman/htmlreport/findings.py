"""The case-wide findings queue of case.html: every flagged segment (or segment with a pattern
hit) of every recording in one table -- file, time, speaker, text with the hit highlighted,
hits, emotion and voice-stress evidence, score -- sortable and filterable, with a play control
for exactly that time range of the original recording and the reviewer's verdict.

Everything here is server-rendered and escaped; the one inline script (:data:`SCRIPT`, a
constant allowed by its hash in the page's CSP) reads only ``data-*`` attributes and form
controls and writes only text (never markup).  It filters (category, speaker, file, minimum
score, verdict; also read from the URL fragment, e.g. ``case.html#category=threat&min=40``),
sorts (click a column head), plays (one shared player; it seeks to the start and stops at the
end; the link alone carries ``#t=start,end`` for a browser without the script), and saves the
verdicts as a JSON file the analyst downloads (a Blob; nothing is sent anywhere) for
``voiceman review import``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from voiceman.htmlreport import media
from voiceman.htmlreport.html_parts import esc, fmt_num, fmt_time, highlight_text
from voiceman.review import VERDICTS

FINDINGS_STYLE = """
#findings .player-bar{position:sticky;top:0;background:#fafafa;border:1px solid #ddd;padding:.35em .6em;z-index:2;
display:flex;gap:1em;align-items:center;flex-wrap:wrap}
#findings .filters,#findings .savebar{margin:.5em 0;display:flex;gap:1em;flex-wrap:wrap;align-items:center}
#findings th[data-sort]{cursor:pointer;white-space:nowrap}
#findings th[aria-sort=ascending]::after{content:" ▲"}
#findings th[aria-sort=descending]::after{content:" ▼"}
#findings td.review{min-width:13em}#findings textarea.note{width:100%;box-sizing:border-box;font:inherit;font-size:.9em}
#findings tr.playing{outline:2px solid #1c7ed6}#findings tr.changed td.review{background:#fff9db}
#findings .v-confirmed{color:#b42318;font-weight:600}
#findings .v-rejected{color:#1a7f37;font-weight:600}
#findings .v-unsure{color:#8a5a00;font-weight:600}
#findings a.play{white-space:nowrap}#findings .fname{word-break:break-all}
#findings pre#verdicts-preview{max-height:20em;overflow:auto;background:#f6f6f6}
"""

# The page's one script.  A constant: the CSP allows it by its SHA-256 (html_parts.csp), so
# any other script -- injected or not -- is refused by the browser.
SCRIPT = r"""(function () {
  'use strict';
  var root = document.getElementById('findings');
  var table = document.getElementById('findings-table');
  if (!root || !table) { return; }
  var tbody = table.tBodies[0];
  var rows = Array.prototype.slice.call(tbody.rows);
  var player = document.getElementById('player');
  var nowPlaying = document.getElementById('now-playing');
  var shown = document.getElementById('shown');
  var reviewer = document.getElementById('reviewer');
  var saveButton = document.getElementById('save-verdicts');
  var saveLink = document.getElementById('download-verdicts');
  var saveStatus = document.getElementById('save-status');
  var preview = document.getElementById('verdicts-preview');
  var filters = {category: document.getElementById('f-category'), speaker: document.getElementById('f-speaker'),
                 file: document.getElementById('f-file'), min: document.getElementById('f-min'),
                 verdict: document.getElementById('f-verdict')};
  var SORTS = {score: -1, start: 1, file: 1, speaker: 1, severity: -1, verdict: 1};
  var sortKey = 'score', sortDir = -1, dirty = false, blobUrl = null;
  var current = null, startAt = null, stopAt = null;

  document.getElementById('js-needed').hidden = true;
  root.classList.add('js');

  function sel(row) { return row.querySelector('select.verdict'); }
  function note(row) { return row.querySelector('textarea.note'); }
  function num(value) { var n = parseFloat(value); return isNaN(n) ? null : n; }

  function hasOption(select, value) {
    for (var i = 0; i < select.options.length; i++) { if (select.options[i].value === value) { return true; } }
    return false;
  }

  function readHash() {
    var params = new URLSearchParams(location.hash.replace(/^#/, ''));
    Object.keys(filters).forEach(function (key) {
      if (!params.has(key)) { return; }
      var value = params.get(key), control = filters[key];
      if (control.tagName === 'SELECT') { if (hasOption(control, value)) { control.value = value; } }
      else if (num(value) !== null) { control.value = String(num(value)); }
    });
    if (params.has('sort') && Object.prototype.hasOwnProperty.call(SORTS, params.get('sort'))) {
      sortKey = params.get('sort');
      sortDir = params.get('dir') === 'asc' ? 1 : params.get('dir') === 'desc' ? -1 : SORTS[sortKey];
    }
  }

  function writeHash() {
    var params = new URLSearchParams();
    Object.keys(filters).forEach(function (key) {
      if (filters[key].value !== '') { params.set(key, filters[key].value); }
    });
    if (sortKey !== 'score' || sortDir !== -1) {
      params.set('sort', sortKey);
      params.set('dir', sortDir > 0 ? 'asc' : 'desc');
    }
    try {
      history.replaceState(null, '', '#' + params.toString());
    } catch (e) { /* a browser that refuses: filters still apply */ }
  }

  function matches(row) {
    var d = row.dataset, f = filters;
    if (f.category.value && d.categories.indexOf('|' + f.category.value + '|') < 0) { return false; }
    if (f.speaker.value && d.speaker !== f.speaker.value) { return false; }
    if (f.file.value && d.file !== f.file.value) { return false; }
    var min = num(f.min.value);
    if (min !== null && !(num(d.score) !== null && num(d.score) >= min)) { return false; }
    var wanted = f.verdict.value, has = sel(row).value;
    if (wanted === 'unreviewed') { return has === ''; }
    return !wanted || has === wanted;
  }

  function applyFilters() {
    var n = 0;
    rows.forEach(function (row) { var ok = matches(row); row.hidden = !ok; if (ok) { n += 1; } });
    shown.textContent = n + ' of ' + rows.length + ' findings shown';
    root.dataset.shown = String(n);
  }

  function sortValue(row, key) {
    var d = row.dataset;
    if (key === 'score') { return num(d.score) === null ? -1 : num(d.score); }
    if (key === 'severity') { return num(d.severity) === null ? -1 : num(d.severity); }
    if (key === 'start') { return num(d.start) || 0; }
    if (key === 'verdict') { return sel(row).value || '~'; }
    return d[key === 'file' ? 'name' : key] || '';
  }

  function compare(a, b) {
    var x = sortValue(a, sortKey), y = sortValue(b, sortKey);
    var order = typeof x === 'number' ? x - y : String(x).localeCompare(String(y));
    if (order === 0) {
      order = a.dataset.name.localeCompare(b.dataset.name) || (num(a.dataset.start) || 0) - (num(b.dataset.start) || 0);
      return order;
    }
    return order * sortDir;
  }

  function sortRows() {
    rows.sort(compare);
    rows.forEach(function (row) { tbody.appendChild(row); });
    Array.prototype.forEach.call(table.tHead.querySelectorAll('th[data-sort]'), function (th) {
      if (th.dataset.sort === sortKey) { th.setAttribute('aria-sort', sortDir > 0 ? 'ascending' : 'descending'); }
      else { th.removeAttribute('aria-sort'); }
    });
  }

  // ---------------------------------------------------------------- playing
  function say(row, text) {
    var box = row.querySelector('.play-note');
    if (box) { box.textContent = text; box.hidden = !text; }
  }

  function load(link, play) {
    var row = link.closest('tr');
    var start = num(link.dataset.start), end = num(link.dataset.end);
    var where = link.dataset.range;
    if (link.dataset.support === 'no' || (link.dataset.mime && player.canPlayType(link.dataset.mime) === '')) {
      say(row, 'This browser cannot play this file: open the evidence file (the link) in a player at ' + where + '.');
      return;
    }
    if (current) { current.classList.remove('playing'); }
    current = row; startAt = start; stopAt = end;
    row.classList.add('playing');
    var href = link.getAttribute('href');
    var base = href.split('#')[0];
    player.dataset.current = row.id;
    player.dataset.start = String(start);
    player.dataset.end = String(end);
    if (player.dataset.base !== base) {
      player.dataset.base = base;
      player.dataset.state = 'loading';
      player.src = href;  // #t=start,end: the browser seeks to start and stops at end
    } else if (start !== null) {
      player.currentTime = start;
    }
    nowPlaying.textContent = row.dataset.name + ', ' + where + (row.dataset.speaker ? ', ' + row.dataset.speaker : '');
    if (play) {
      var promise = player.play();
      if (promise && promise.catch) {
        promise.catch(function (err) {
          say(row, 'Could not play: ' + err.message + ' (open the evidence file at ' + where + ').');
        });
      }
    }
  }

  player.addEventListener('loadedmetadata', function () {
    if (startAt !== null && Math.abs(player.currentTime - startAt) > 0.05) { player.currentTime = startAt; }
    player.dataset.state = 'ready';
    player.dataset.position = player.currentTime.toFixed(3);
  });
  player.addEventListener('seeked', function () { player.dataset.position = player.currentTime.toFixed(3); });
  player.addEventListener('timeupdate', function () {
    if (stopAt !== null && player.currentTime >= stopAt && !player.paused) { player.pause(); }
  });
  // timeupdate comes every ~250 ms: a timer stops the playhead at the end of the range itself.
  var stopTimer = null;
  function armStop() {
    if (stopTimer) { clearTimeout(stopTimer); stopTimer = null; }
    if (stopAt === null || player.paused) { return; }
    var left = (stopAt - player.currentTime) / (player.playbackRate || 1);
    if (left <= 0.005) { player.pause(); return; }
    stopTimer = setTimeout(armStop, Math.max(5, Math.min(left * 1000, 200)));
  }
  ['playing', 'seeked', 'ratechange'].forEach(function (name) { player.addEventListener(name, armStop); });
  player.addEventListener('play', function () {
    if (startAt !== null && stopAt !== null &&
        (player.currentTime >= stopAt - 0.02 || player.currentTime < startAt - 0.25)) {
      player.currentTime = startAt;
    }
  });
  player.addEventListener('error', function () {
    player.dataset.state = 'error';
    if (current) {
      var link = current.querySelector('a.play');
      say(current, 'This browser cannot play this file (media error ' + (player.error ? player.error.code : '?') +
          '): open the evidence file (the link) in a player at ' + (link ? link.dataset.range : '') + '.');
    }
  });

  // ---------------------------------------------------------------- verdicts
  function verdictDocument() {
    var verdicts = [], loose = 0;
    rows.forEach(function (row) {
      var value = sel(row).value, d = row.dataset;
      if (!value) { if (note(row).value.trim()) { loose += 1; } return; }
      var item = {file: d.file, name: d.name, segment: parseInt(d.segment, 10), report_sha256: d.reportSha256,
                  verdict: value, note: note(row).value, decided_utc: d.decided || new Date().toISOString()};
      if (num(d.start) !== null) { item.start = num(d.start); }
      if (num(d.end) !== null) { item.end = num(d.end); }
      if (d.reviewer) { item.reviewer = d.reviewer; }
      verdicts.push(item);
    });
    var doc = {format: 'voiceman-review', version: 1, case_dir: root.dataset.caseDir || null,
               case_config_sha256: root.dataset.configSha256 || null,
               page_generated_utc: root.dataset.generated || null,
               saved_utc: new Date().toISOString(), reviewer: reviewer.value, verdicts: verdicts};
    return {doc: doc, loose: loose};
  }

  function refresh() {
    var built = verdictDocument();
    preview.textContent = JSON.stringify(built.doc, null, 1);
    root.dataset.verdicts = String(built.doc.verdicts.length);
    saveStatus.textContent = built.doc.verdicts.length + ' verdicts' + (dirty ? ' (unsaved changes)' : '') +
      (built.loose ? '; ' + built.loose + ' note(s) without a verdict are not saved' : '');
  }

  function touched(row) {
    row.dataset.decided = new Date().toISOString();
    row.dataset.reviewer = reviewer.value;
    row.classList.add('changed');
    dirty = true;
  }

  rows.forEach(function (row) {
    sel(row).addEventListener('change', function () { touched(row); refresh(); applyFilters(); });
    note(row).addEventListener('input', function () { touched(row); });
    note(row).addEventListener('change', refresh);
    var link = row.querySelector('a.play');
    if (link) { link.addEventListener('click', function (event) { event.preventDefault(); load(link, true); }); }
  });

  saveButton.addEventListener('click', function () {
    var built = verdictDocument();
    var text = JSON.stringify(built.doc, null, 1) + '\n';
    if (blobUrl) { URL.revokeObjectURL(blobUrl); }
    blobUrl = URL.createObjectURL(new Blob([text], {type: 'application/json'}));
    saveLink.href = blobUrl;
    saveLink.download = 'verdicts-' + built.doc.saved_utc.replace(/[^0-9TZ]/g, '') + '.json';
    saveLink.textContent = saveLink.download;
    saveLink.hidden = false;
    saveLink.click();
    dirty = false;
    refresh();
    saveStatus.textContent = 'saved ' + built.doc.verdicts.length + ' verdicts as ' + saveLink.download +
      ' (your downloads folder); store them with: voiceman review import ' + saveLink.download;
  });
  reviewer.addEventListener('change', refresh);
  window.addEventListener('beforeunload', function (event) {
    if (dirty) { event.preventDefault(); event.returnValue = ''; }
  });

  Object.keys(filters).forEach(function (key) {
    filters[key].addEventListener(filters[key].tagName === 'SELECT' ? 'change' : 'input', function () {
      applyFilters();
      writeHash();
    });
  });
  Array.prototype.forEach.call(table.tHead.querySelectorAll('th[data-sort]'), function (th) {
    th.tabIndex = 0;
    function go() {
      if (sortKey === th.dataset.sort) {
        sortDir = -sortDir;
      } else {
        sortKey = th.dataset.sort;
        sortDir = SORTS[sortKey];
      }
      sortRows(); writeHash();
    }
    th.addEventListener('click', go);
    th.addEventListener('keydown', function (event) {
      if (event.key === 'Enter' || event.key === ' ') { event.preventDefault(); go(); }
    });
  });
  window.addEventListener('hashchange', function () { readHash(); sortRows(); applyFilters(); });

  readHash();
  sortRows();
  applyFilters();
  refresh();
  // The player starts ready on the first finding shown (metadata only; nothing plays by itself).
  var first = rows.filter(function (row) { return !row.hidden; })[0];
  var firstLink = first && first.querySelector('a.play');
  if (firstLink) { load(firstLink, false); }
})();
"""


def _rel(path: Any, page_dir: str | Path | None) -> str | None:
    """A link to a results file relative to the page, percent-encoded."""
    if not path or page_dir is None:
        return None
    return media.evidence_href(str(Path(path).resolve()), page_dir)


def _num_attr(value: Any) -> str:
    """A number for a data attribute exactly as JSON writes it ('' when missing)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return ""
    return repr(float(value)) if isinstance(value, float) else str(value)


def _emotion_text(emotion: dict[str, Any]) -> str:
    if emotion.get("status") != "analysed":
        return (
            f'<span class="not-analysed">emotion not analysed: {esc(emotion.get("reason") or "no reason given")}</span>'
        )
    parts = [f"{k} {fmt_num(emotion.get(k))}" for k in ("arousal", "valence", "dominance")]
    if emotion.get("label"):
        prob = emotion.get("label_probability")
        parts.append(f"{emotion['label']}" + (f" ({prob:.2f})" if isinstance(prob, (int, float)) else ""))
    return "emotion: " + esc(", ".join(parts))


def _stress_text(stress: list[dict[str, Any]]) -> str:
    if not stress:
        return "voice: no stressed feature"
    items = [
        f"{s.get('feature')} z {s['z']:+.1f}" if isinstance(s.get("z"), (int, float)) else str(s.get("feature"))
        for s in stress
    ]
    return "stressed voice: " + esc(", ".join(items))


def _verdict_meta(verdict: dict[str, Any] | None) -> str:
    if not verdict:
        return ""
    who = f" by {verdict['reviewer']}" if verdict.get("reviewer") else ""
    text = f"imported: {verdict.get('verdict')}{who}, {verdict.get('decided_utc')} (import {verdict.get('import')})"
    history = verdict.get("history") or []
    if history:
        text += "; earlier: " + "; ".join(
            f"{h.get('verdict')}{' by ' + h['reviewer'] if h.get('reviewer') else ''} ({h.get('decided_utc')})"
            for h in history
        )
    return f'<div class="explain verdict-meta">{esc(text)}</div>'


def _play_cell(f: dict[str, Any], page_dir: str | Path | None) -> str:
    where = media.time_range(f.get("start"), f.get("end"))
    href = media.evidence_href(f.get("evidence"), page_dir)
    frag = media.fragment(f.get("start"), f.get("end"))
    if not href or not frag:
        return f'<span class="mono time">{esc(where)}</span>'
    level, why = media.playable(f.get("evidence"), f.get("codec"))
    mime = media.MIME.get(media.extension(f.get("evidence")), "")
    label = f"{fmt_time(f.get('start'))}–{fmt_time(f.get('end'))}"
    note = (
        ""
        if level == media.YES
        else f'<div class="media-note">{esc(why)}; if it does not play, open the file at {esc(where)}</div>'
    )
    if level == media.NO:
        note = f'<div class="media-note">{esc(why)}: open the file (the link) in a player at {esc(where)}</div>'
    return (
        f'<a class="play mono" href="{esc(href + frag)}" data-start="{_num_attr(f.get("start"))}" '
        f'data-end="{_num_attr(f.get("end"))}" data-range="{esc(where)}" data-mime="{esc(mime)}" '
        f'data-support="{esc(level)}" title="{esc(where)}">▶ {esc(label)}</a>{note}'
        '<div class="media-note play-note" hidden></div>'
    )


def _row(n: int, f: dict[str, Any], page_dir: str | Path | None) -> str:
    verdict = f.get("verdict") or {}
    value = verdict.get("verdict") or ""
    options = '<option value="">—</option>' + "".join(
        f'<option value="{v}"{" selected" if v == value else ""}>{v}</option>' for v in VERDICTS
    )
    report_href = _rel(str(f["report"])[:-5] + ".html" if str(f["report"]).endswith(".json") else None, page_dir)
    report_link = (
        f'<a href="{esc(report_href)}#seg-{int(f["segment"])}">report, segment {int(f["segment"])}</a>'
        if report_href
        else f"segment {int(f['segment'])}"
    )
    hits = "".join(
        f'<li>{esc(h.get("category"))} <span class="mono">{esc(h.get("pattern_id"))}</span> '
        f"severity {esc(h.get('severity'))}, {esc(h.get('context'))}</li>"
        for h in f["patterns"]
    )
    outcome = esc(f.get("outcome"))
    badge = f'<span class="badge{" flag" if f.get("flagged") else ""}">{outcome}</span>'
    return (
        f'<tr class="finding{" flagged" if f.get("flagged") else ""}" id="finding-{n}" data-file="{esc(f["file"])}" '
        f'data-name="{esc(f["name"])}" data-segment="{int(f["segment"])}" data-start="{_num_attr(f.get("start"))}" '
        f'data-end="{_num_attr(f.get("end"))}" data-speaker="{esc(f["speaker"])}" '
        f'data-categories="|{esc("|".join(f["categories"]))}|" data-severity="{_num_attr(f.get("max_severity"))}" '
        f'data-score="{_num_attr(f.get("score"))}" data-report-sha256="{esc(f["report_sha256"])}" '
        f'data-decided="{esc(verdict.get("decided_utc") or "")}" data-reviewer="{esc(verdict.get("reviewer") or "")}">'
        f'<td><span class="fname">{esc(f["name"])}</span><div class="explain">{report_link}</div></td>'
        f"<td>{_play_cell(f, page_dir)}</td>"
        f"<td>{esc(f['speaker'])}</td>"
        f'<td><div class="text">{highlight_text(str(f["text"]), f["patterns"])}</div></td>'
        f"<td>{f'<ul>{hits}</ul>' if hits else '—'}</td>"
        f'<td>{badge}<div class="explain">'
        f"{_emotion_text(f.get('emotion') or {})}<br>{_stress_text(f.get('stress') or [])}"
        f"<br>{esc(f.get('explanation'))}</div></td>"
        f'<td class="num f-score">{fmt_num(f.get("score"))}</td>'
        f'<td class="review"><select class="verdict" aria-label="verdict">{options}</select>'
        # the newline after <textarea> is dropped by the parser, so a note's own first newline is kept
        f'<textarea class="note" rows="2" maxlength="20000" placeholder="note" aria-label="note">\n'
        f"{esc(verdict['note']) if verdict.get('note') else ''}</textarea>{_verdict_meta(verdict or None)}</td>"
        "</tr>"
    )


def _options(values: list[tuple[str, str]]) -> str:
    return '<option value="">all</option>' + "".join(
        f'<option value="{esc(v)}">{esc(label)}</option>' for v, label in values
    )


def _stale_table(stale: list[dict[str, Any]]) -> str:
    if not stale:
        return ""
    rows = "".join(
        f'<tr><td>{esc(v.get("name") or v.get("file"))}</td><td class="num">{esc(v.get("segment"))}</td>'
        f"<td>{esc(v.get('verdict'))}</td><td>{esc(v.get('note') or '')}</td><td>{esc(v.get('reviewer') or '')}</td>"
        f'<td>{esc(v.get("decided_utc"))}</td><td class="explain">{esc(v.get("stale_reason"))}</td></tr>'
        for v in stale
    )
    return (
        f"<h3>Verdicts on earlier analyses ({len(stale)}): kept, not applied</h3>"
        '<p class="explain">These verdicts were made on a report that has since changed (the file was analysed '
        "again), so they are not shown as verdicts on the current findings. Review those findings again.</p>"
        '<table class="stale-verdicts"><thead><tr><th>file</th><th>segment</th><th>verdict</th><th>note</th>'
        f"<th>reviewer</th><th>decided</th><th>why not applied</th></tr></thead><tbody>{rows}</tbody></table>"
    )


def render_findings(
    findings: list[dict[str, Any]],
    stale: list[dict[str, Any]],
    page_dir: str | Path | None,
    case: dict[str, Any],
    review: dict[str, Any] | None = None,
) -> str:
    """The findings section of case.html (the caller adds :data:`SCRIPT` to the page)."""
    categories = sorted({c for f in findings for c in f["categories"]})
    speakers = sorted({str(f["speaker"]) for f in findings})
    files = sorted({(f["file"], f["name"]) for f in findings}, key=lambda x: x[1])
    counts = review or {}
    summary = ", ".join(f"{counts.get(k, 0)} {k}" for k in (*VERDICTS, "unreviewed")) if review else ""
    stale_note = (
        f"; {counts.get('stale_verdicts')} verdicts on earlier analyses" if counts.get("stale_verdicts") else ""
    )
    rows = "".join(_row(n, f, page_dir) for n, f in enumerate(findings, 1))
    head = (
        '<tr><th data-sort="file">file</th><th data-sort="start">time (▶ play)</th><th data-sort="speaker">speaker</th>'
        '<th>text (hits highlighted)</th><th data-sort="severity">hits</th><th>cross-check, emotion, voice stress</th>'
        '<th data-sort="score">score</th><th data-sort="verdict">verdict and note</th></tr>'
    )
    return (
        f'<section id="findings" data-case-dir="{esc(case.get("case_dir") or "")}" '
        f'data-config-sha256="{esc(case.get("config_sha256") or "")}" '
        f'data-generated="{esc(case.get("generated_utc") or "")}">'
        f"<h2>Findings ({len(findings)})</h2>"
        '<p class="explain">Every segment the cross-check flagged or with a pattern hit, across the case'
        + (f" — {esc(summary)}{esc(stale_note)}" if summary else "")
        + ". "
        "▶ plays exactly that time range of the original recording, read in place by a link relative to this page "
        "(no copy). Verdicts you set here are saved to a file you download (nothing is sent anywhere); store them "
        'with <span class="mono">voiceman review import FILE</span>, and the next case report shows them.</p>'
        '<p id="js-needed" class="media-note">Filtering, sorting, playing in the page and saving verdicts need '
        "JavaScript; the links still open each recording at its time range.</p>"
        '<div class="player-bar"><audio id="player" controls preload="metadata"></audio>'
        '<span id="now-playing" class="explain">nothing loaded</span></div>'
        '<div class="filters">'
        f'<label>category <select id="f-category">{_options([(c, c) for c in categories])}</select></label>'
        f'<label>speaker <select id="f-speaker">{_options([(s, s) for s in speakers])}</select></label>'
        f'<label>file <select id="f-file">{_options(files)}</select></label>'
        '<label>minimum score <input id="f-min" type="number" min="0" max="100" step="1" size="4"></label>'
        '<label>verdict <select id="f-verdict"><option value="">all</option>'
        '<option value="unreviewed">unreviewed</option>'
        + "".join(f'<option value="{v}">{v}</option>' for v in VERDICTS)
        + "</select></label>"
        f'<span id="shown" class="explain" role="status">{len(findings)} findings</span></div>'
        '<div class="savebar"><label>reviewer <input id="reviewer" type="text" maxlength="200" size="16"></label>'
        '<button type="button" id="save-verdicts">Download verdicts (JSON)</button>'
        '<a id="download-verdicts" hidden>verdicts.json</a>'
        '<span id="save-status" class="explain" role="status"></span></div>'
        f'<table id="findings-table"><thead>{head}</thead><tbody>{rows}</tbody></table>'
        "<details><summary>the verdicts file as it would be saved now</summary>"
        '<pre id="verdicts-preview" class="mono"></pre></details>' + _stale_table(stale) + "</section>"
    )
