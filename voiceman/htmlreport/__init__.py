"""Self-contained HTML reports (inline CSS and SVG, no network) from report dicts.

The per-file report has no script; the case report's findings queue has one inline script,
allowed by its hash in the page's CSP.  Play controls read the original recording in place
through a link relative to the page (media-src 'self' file:)."""

from voiceman.htmlreport.case_report import render_case_report
from voiceman.htmlreport.file_report import render_file_report
from voiceman.htmlreport.timeline_svg import render_timeline

__all__ = ["render_case_report", "render_file_report", "render_timeline"]
