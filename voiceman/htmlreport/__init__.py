"""Self-contained HTML reports (inline CSS and SVG, no scripts, no network) from report dicts."""

from voiceman.htmlreport.case_report import render_case_report
from voiceman.htmlreport.file_report import render_file_report
from voiceman.htmlreport.timeline_svg import render_timeline

__all__ = ["render_case_report", "render_file_report", "render_timeline"]
