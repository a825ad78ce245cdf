(function () {
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
