"""Watching and accounting for a run: the live terminal view (``dashboard``) and the run
report written at the end of every run (``runreport``: the numbers, ``governor_samples``: its
GPU figures, ``runreport_html``: the page).  They only read what a run leaves behind; nothing
here changes a result."""
