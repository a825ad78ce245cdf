"""Reviewer verdicts: the verdicts file's schema, `voiceman review import` (validated, stored in
results/review/ beside the evidence and the reports without touching them, every import kept,
merged with history), custody (a verdict names the report hash it was made on: stale ones are
refused on import and never applied later), the case summary counting and showing them, the
page saving what import accepts, export as CSV/JSON, and the workflow rerunning the case
summary -- and only it -- after an import."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import re
import shutil
from pathlib import Path

import pytest

from test_findings_page import CHROMIUM, _dom, build_results, rows_of
from voiceman import atomic, review
from voiceman.benchmark.inprocess import case_summary
from voiceman.cli import main as cli_main


@pytest.fixture
def built(tmp_path):
    return build_results(tmp_path)


def findings(built):
    return review.case_findings(
        built.reports,
        {k: built.results / "report" / f"{k}.json" for k in built.keys},
        {k: r["file"] for k, r in built.reports.items()},
    )


def verdict(f, value="confirmed", note="", when="2026-11-28T09:00:00.000Z", reviewer="analyst A"):
    return {
        "file": f["file"],
        "name": f["name"],
        "segment": f["segment"],
        "start": f["start"],
        "end": f["end"],
        "report_sha256": f["report_sha256"],
        "verdict": value,
        "note": note,
        "decided_utc": when,
        "reviewer": reviewer,
    }


def document(*verdicts, reviewer="analyst A"):
    return {
        "format": "voiceman-review",
        "version": 1,
        "case_dir": "/x",
        "case_config_sha256": None,
        "page_generated_utc": None,
        "saved_utc": "2026-11-28T09:05:00.000Z",
        "reviewer": reviewer,
        "verdicts": list(verdicts),
    }


def write(path: Path, doc) -> Path:
    path.write_text(json.dumps(doc, ensure_ascii=False), encoding="utf-8")
    return path


def snapshot(*folders: Path) -> dict[str, str]:
    out = {}
    for folder in folders:
        for path in sorted(folder.rglob("*")):
            if path.is_file() and "review" not in path.relative_to(folder).parts:
                out[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest() + f":{path.stat().st_mtime_ns}"
    return out


# ------------------------------------------------------------------ schema


def test_schema_accepts_a_verdicts_file_and_refuses_bad_ones(built):
    fs = findings(built)
    good = document(verdict(fs[0]), verdict(fs[1], "unsure", "why? 왜"))
    review.validate_document(good)
    bad_cases = {
        "unknown verdict": lambda d: d["verdicts"][0].update(verdict="maybe"),
        "no report hash": lambda d: d["verdicts"][0].pop("report_sha256"),
        "short report hash": lambda d: d["verdicts"][0].update(report_sha256="abc"),
        "extra field": lambda d: d["verdicts"][0].update(score=99),
        "negative segment": lambda d: d["verdicts"][0].update(segment=-1),
        "segment as text": lambda d: d["verdicts"][0].update(segment="0"),
        "bad time": lambda d: d["verdicts"][0].update(decided_utc="yesterday"),
        "wrong format": lambda d: d.update(format="something-else"),
        "duplicate finding": lambda d: d["verdicts"].append(dict(d["verdicts"][0])),
    }
    for what, change in bad_cases.items():
        doc = json.loads(json.dumps(good))
        change(doc)
        with pytest.raises(review.ReviewError):
            review.validate_document(doc)
            pytest.fail(what)


# ------------------------------------------------------------------ import


def test_import_stores_in_results_review_and_touches_nothing_else(built, tmp_path):
    fs = findings(built)
    before = snapshot(built.case, built.results)
    source = write(tmp_path / "verdicts from page.json", document(verdict(fs[0]), verdict(fs[2], "rejected", "=1+1")))
    result = review.import_file(source, built.results)
    assert (result.added, result.changed, result.unchanged) == (2, 0, 0)
    assert snapshot(built.case, built.results) == before  # evidence, reports, case.json/html: untouched
    state = json.loads(review.state_path(built.results).read_text())
    assert [(v["file"], v["segment"], v["verdict"]) for v in state["verdicts"]] == sorted(
        [(fs[0]["file"], fs[0]["segment"], "confirmed"), (fs[2]["file"], fs[2]["segment"], "rejected")]
    )
    assert state["imports"][0]["id"] == result.import_id and result.record.is_file()
    record = json.loads(result.record.read_text())
    assert record["document"] == json.loads(source.read_text())  # the import as it came
    assert record["source_sha256"] == hashlib.sha256(source.read_bytes()).hexdigest()
    # No temp files left behind (atomic writes).
    assert not [p for p in review.review_dir(built.results).rglob("*.tmp")]


def test_imports_merge_with_history_and_are_all_kept(built, tmp_path):
    fs = findings(built)
    first = write(tmp_path / "a.json", document(verdict(fs[0])))
    assert review.import_file(first, built.results).added == 1
    again = review.import_file(first, built.results)
    assert again.already and again.import_id is None  # the same bytes twice: nothing changes
    second = write(
        tmp_path / "b.json",
        document(
            verdict(fs[0], "rejected", "misheard: 'kill' is 'bill'", "2026-11-29T10:00:00Z", "analyst B"),
            verdict(fs[1], "unsure"),
            reviewer="analyst B",
        ),
    )
    result = review.import_file(second, built.results)
    assert (result.added, result.changed, result.unchanged) == (1, 1, 0)
    state = review.load_state(built.results)
    current = {(v["file"], v["segment"]): v for v in state["verdicts"]}
    changed = current[(fs[0]["file"], fs[0]["segment"])]
    assert changed["verdict"] == "rejected" and changed["reviewer"] == "analyst B"
    assert [h["verdict"] for h in changed["history"]] == ["confirmed"]
    assert changed["history"][0]["import"] == state["imports"][0]["id"]
    assert len(state["imports"]) == 2
    assert len(list((review.review_dir(built.results) / "imports").glob("*.json"))) == 2
    # An unchanged verdict in a later file changes nothing.
    third = write(tmp_path / "c.json", document(verdict(fs[1], "unsure")))
    assert review.import_file(third, built.results).unchanged == 1


def test_verdict_on_another_analysis_is_refused(built, tmp_path):
    fs = findings(built)
    source = write(tmp_path / "v.json", document(verdict(fs[0]), verdict(fs[3], "rejected")))
    # The first finding's file is analysed again: its report changes, so its hash does.
    report_path = built.results / "report" / f"{fs[0]['file']}.json"
    changed = json.loads(report_path.read_text())
    changed["notes"] = ["analysed again"]
    atomic.write_json(report_path, changed)
    with pytest.raises(review.ReviewError, match="earlier analysis") as err:
        review.import_file(source, built.results)
    assert fs[0]["file"] in str(err.value) and not review.state_path(built.results).exists()
    result = review.import_file(source, built.results, skip_stale=True)
    assert result.added == 1 and [v["segment"] for v in result.stale] == [fs[0]["segment"]]
    state = review.load_state(built.results)
    assert [(v["file"], v["segment"]) for v in state["verdicts"]] == [(fs[3]["file"], fs[3]["segment"])]
    record = json.loads(result.record.read_text())
    assert (
        record["refused_stale"][0]["file"] == fs[0]["file"]
        and "report changed" in record["refused_stale"][0]["stale_reason"]
    )


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda v: v.update(file="../../../etc/passwd"), "not an analysed recording"),
        (lambda v: v.update(file="no-such.wav"), "not an analysed recording"),
        (lambda v: v.update(segment=99), "no segment 99"),
        (lambda v: v.update(segment=1), "is not a finding"),  # the calm line
        (lambda v: v.update(start=0.5), "starts at"),
    ],
)
def test_verdicts_that_are_not_this_cases_findings_are_refused(built, tmp_path, change, message):
    fs = findings(built)
    bad = verdict(fs[0])
    change(bad)
    if bad["segment"] == 1:  # a real segment of the same report: same hash, not a finding
        bad.update(start=4.0, end=6.0)
    source = write(tmp_path / "v.json", document(verdict(fs[1]), bad))
    with pytest.raises(review.ReviewError, match=re.escape(message)):
        review.import_file(source, built.results)
    assert not review.state_path(built.results).exists()


def test_import_refuses_what_is_not_a_verdicts_file(built, tmp_path):
    for content in (b"\xff\xfe not text", b"{not json", json.dumps({"verdicts": []}).encode()):
        path = tmp_path / "x.json"
        path.write_bytes(content)
        with pytest.raises(review.ReviewError):
            review.import_file(path, built.results)
    with pytest.raises(review.ReviewError, match="case.json not found"):
        review.import_file(write(tmp_path / "ok.json", document()), tmp_path / "no-results")


# ------------------------------------------------------------------ case summary


def test_case_summary_counts_and_shows_verdicts_and_flags_stale_ones(built, tmp_path):
    fs = findings(built)
    review.import_file(
        write(
            tmp_path / "v.json",
            document(verdict(fs[0], note="<b>heard it</b>"), verdict(fs[1], "rejected"), verdict(fs[2], "unsure")),
        ),
        built.results,
    )
    assert review.verdict_inputs(built.results) == [str(review.state_path(built.results))]
    case_summary(built.config, built.keys)
    summary = json.loads((built.results / "case.json").read_text())
    counts = summary["review"]
    assert (counts["confirmed"], counts["rejected"], counts["unsure"], counts["unreviewed"]) == (1, 1, 1, 3)
    assert counts["imports"] == 1 and counts["stale_verdicts"] == 0
    html = (built.results / "case.html").read_text(encoding="utf-8")
    rows = {(r["data-file"], int(r["data-segment"])): r for r in rows_of(html).rows}
    assert rows[(fs[0]["file"], fs[0]["segment"])]["selected"] == "confirmed"
    assert rows[(fs[1]["file"], fs[1]["segment"])]["selected"] == "rejected"
    assert "&lt;b&gt;heard it&lt;/b&gt;" in html and "<b>heard it" not in html
    assert "1 confirmed, 1 rejected, 1 unsure, 3 unreviewed" in html

    # The first file is analysed again: its verdict no longer applies -- shown apart, counted stale.
    report_path = built.results / "report" / f"{fs[0]['file']}.json"
    changed = json.loads(report_path.read_text())
    changed["notes"] = ["analysed again"]
    atomic.write_json(report_path, changed)
    case_summary(built.config, built.keys)
    counts = json.loads((built.results / "case.json").read_text())["review"]
    # both verdicts on that file (segments 0 and 2) are stale; the one on another file still applies
    assert (counts["confirmed"], counts["rejected"], counts["unsure"]) == (0, 0, 1)
    assert (counts["stale_verdicts"], counts["unreviewed"]) == (2, 5)
    html = (built.results / "case.html").read_text(encoding="utf-8")
    assert rows_of(html).rows and all(r["selected"] != "confirmed" for r in rows_of(html).rows)
    assert 'class="stale-verdicts"' in html and "made on another analysis" in html


def test_a_broken_verdicts_file_is_reported_not_fatal(built):
    review.review_dir(built.results).mkdir(parents=True, exist_ok=True)
    review.state_path(built.results).write_text("{broken")
    case_summary(built.config, built.keys)
    counts = json.loads((built.results / "case.json").read_text())["review"]
    assert "cannot read the stored verdicts" in counts["error"] and counts["unreviewed"] == 6


@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed")
def test_the_page_saves_what_import_accepts(built, tmp_path):
    """case.html after an import: its verdicts file (what 'Download verdicts' saves, shown in
    the page) is schema-valid, carries the imported verdicts unchanged, and imports as such."""
    fs = findings(built)
    review.import_file(
        write(
            tmp_path / "v.json",
            document(verdict(fs[0], note="line one\nline two"), verdict(fs[4], "unsure", reviewer="분석가")),
        ),
        built.results,
    )
    case_summary(built.config, built.keys)
    dom, console = _dom(tmp_path, built.results / "case.html")
    assert console == []
    parsed = rows_of(dom)
    saved = json.loads("".join(parsed.preview))
    review.validate_document(saved)
    assert parsed.section["data-verdicts"] == "2"
    got = {(v["file"], v["segment"]): v for v in saved["verdicts"]}
    mine = got[(fs[0]["file"], fs[0]["segment"])]
    assert mine["verdict"] == "confirmed" and mine["note"] == "line one\nline two"
    assert mine["decided_utc"] == "2026-11-28T09:00:00.000Z" and mine["report_sha256"] == fs[0]["report_sha256"]
    assert got[(fs[4]["file"], fs[4]["segment"])]["reviewer"] == "분석가"
    result = review.import_file(write(tmp_path / "saved.json", saved), built.results)
    assert (result.added, result.changed, result.unchanged) == (0, 0, 2)


# ------------------------------------------------------------------ export and CLI


def test_export_csv_and_json(built, tmp_path):
    fs = findings(built)
    review.import_file(
        write(tmp_path / "v.json", document(verdict(fs[0], "rejected", '=HYPERLINK("x")'))), built.results
    )
    rows = list(csv.DictReader(io.StringIO(review.export(built.results, "csv"))))
    assert len(rows) == len(fs) == 6 and set(review.CSV_COLUMNS) == set(rows[0])
    mine = next(r for r in rows if r["file"] == fs[0]["file"] and r["segment"] == str(fs[0]["segment"]))
    assert mine["verdict"] == "rejected" and mine["note"] == '\'=HYPERLINK("x")'  # never a formula
    assert mine["report_sha256"] == fs[0]["report_sha256"] and mine["evidence"] == fs[0]["evidence"]
    assert "threat EN-THR-001 severity 5 direct: will kill you" in mine["hits"]
    assert sum(1 for r in rows if not r["verdict"]) == 5
    doc = json.loads(review.export(built.results, "json"))
    assert doc["format"] == "voiceman-findings" and doc["review"]["rejected"] == 1 and len(doc["findings"]) == 6
    exported = next(f for f in doc["findings"] if f["verdict"])
    assert exported["verdict"]["note"] == '=HYPERLINK("x")' and exported["text"] == fs[0]["text"]


def test_cli_import_and_export(built, tmp_path, capsys):
    fs = findings(built)
    source = write(tmp_path / "v.json", document(verdict(fs[0])))
    assert cli_main(["review", "import", str(source), "--results", str(built.results)]) == 0
    assert "1 new, 0 changed, 0 unchanged" in capsys.readouterr().out
    assert cli_main(["review", "import", str(source), "--results", str(built.results)]) == 0
    assert "already imported" in capsys.readouterr().out
    bad = write(tmp_path / "bad.json", document(dict(verdict(fs[1]), verdict="yes")))
    assert cli_main(["review", "import", str(bad), "--results", str(built.results)]) == 1
    assert "not a valid verdicts file" in capsys.readouterr().err
    out = tmp_path / "export dir" / "findings.csv"
    assert cli_main(["review", "export", "--format", "csv", "--results", str(built.results), "--out", str(out)]) == 0
    assert out.read_bytes().count(b"\r\n") == 7 and "findings with verdicts" in capsys.readouterr().out
    assert cli_main(["review", "export", "--format", "json", "--results", str(built.results)]) == 0
    assert json.loads(capsys.readouterr().out)["review"]["confirmed"] == 1


# ------------------------------------------------------------------ the workflow


@pytest.mark.timeout(900)
def test_an_import_reruns_only_the_case_summary(tmp_path, tiny_model, runtime_dir):
    import numpy as np

    from conftest import run_snakemake
    from voiceman.demo import encode, speak

    if shutil.which("espeak-ng") is None:
        pytest.fail("espeak-ng is required (scripts/setup.sh installs it)")
    case = tmp_path / "case"
    case.mkdir()
    pause = np.zeros(8000, dtype=np.float32)
    encode(np.concatenate([pause, speak("I will kill you if you call the police."), pause]), case / "threat.wav", "wav")
    results = tmp_path / "results"
    run_snakemake(results, case, tiny_model)
    summary = json.loads((results / "case.json").read_text())
    assert summary["review"]["findings"] >= 1 and summary["review"]["imports"] == 0
    report_path = results / "report" / "threat.wav.json"
    report = json.loads(report_path.read_text())
    f = review.findings_of("threat.wav", "threat.wav", report, report_path, review.file_sha256(report_path))[0]
    html = (results / "report" / "threat.wav.html").read_text()
    assert f'src="../../case/threat.wav#t={f["start"]:.3f},{f["end"]:.3f}"' in html

    source = write(tmp_path / "v.json", document(verdict(f, note="heard it")))
    assert cli_main(["review", "import", str(source), "--results", str(results)]) == 0
    dry = run_snakemake(results, case, tiny_model, "--dry-run", "--quiet", "rules")
    would = {m.group(1) for m in re.finditer(r"^(\w+)\s+\d+\s*$", dry.stdout + dry.stderr, flags=re.M)} - {"total"}
    assert would == {"case_summary", "all"}, dry.stdout[-3000:]
    run_snakemake(results, case, tiny_model)
    counts = json.loads((results / "case.json").read_text())["review"]
    assert counts["confirmed"] == 1 and counts["imports"] == 1
    assert os.path.getmtime(report_path) < os.path.getmtime(results / "case.json")
    assert "heard it" in (results / "case.html").read_text()
    nothing = run_snakemake(results, case, tiny_model, "--dry-run", "--quiet", "rules")
    assert "Nothing to be done" in nothing.stdout + nothing.stderr
