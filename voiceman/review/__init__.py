"""Analyst review of a case's findings: the analyst marks findings confirmed / rejected /
unsure in ``case.html``, ``voiceman review import`` stores the downloaded verdicts under
``results/review/`` bound to the report hash they were made on, and ``voiceman review export``
writes the findings with their verdicts; the next ``case.json`` and ``case.html`` count and show
them.  This package re-exports what the CLI, the HTML report and the tests use."""

from .exporting import CSV_COLUMNS, export
from .findings import case_findings, findings_of
from .importing import import_file, validate_document
from .store import VERDICTS, ReviewError, file_sha256, load_state, review_dir, state_path, verdict_inputs

__all__ = [
    "CSV_COLUMNS",
    "VERDICTS",
    "ReviewError",
    "case_findings",
    "export",
    "file_sha256",
    "findings_of",
    "import_file",
    "load_state",
    "review_dir",
    "state_path",
    "validate_document",
    "verdict_inputs",
]
