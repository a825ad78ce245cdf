"""Play controls for the original recording: a relative link to the evidence file (never a
copy) with a media fragment for exactly one time range, and what a browser can play.

``#t=start,end`` (W3C Media Fragments) makes the browser seek to ``start`` and pause at
``end``; the findings page's script also seeks and stops by itself.  Whether a browser can
play a file is decided from its codec when the ingest record names it, else from its
extension: WAV/MP3/FLAC/Ogg/Opus play everywhere, AAC in M4A/MP4 in every current browser,
AMR, WMA or ALAC in none (or not reliably) -- those get the time range to open elsewhere.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from urllib.parse import quote

from voiceman.htmlreport.html_parts import esc, fmt_time

YES, MAYBE, NO = "yes", "maybe", "no"

_EXT = {
    **dict.fromkeys(("wav", "mp3", "flac", "ogg", "oga", "opus", "webm"), YES),
    **dict.fromkeys(("m4a", "mp4", "aac", "m4b"), MAYBE),
    **dict.fromkeys(("amr", "awb", "3gp", "3ga", "wma", "asf", "aif", "aiff", "ape", "ra", "caf"), NO),
}
_CODEC_YES = ("mp3", "flac", "opus", "vorbis", "aac", "pcm_s16le", "pcm_s24le", "pcm_s32le", "pcm_f32le", "pcm_u8")
_CODEC_NO = (
    "amr_nb",
    "amr_wb",
    "wmav1",
    "wmav2",
    "wmapro",
    "wmavoice",
    "alac",
    "gsm",
    "gsm_ms",
    "adpcm_ms",
    "adpcm_ima_wav",
    "g723_1",
    "g729",
    "qcelp",
    "evrc",
)
# The MIME type the findings page asks the browser about (canPlayType) before it tries.
MIME = {
    "wav": "audio/wav",
    "mp3": "audio/mpeg",
    "flac": "audio/flac",
    "ogg": "audio/ogg",
    "oga": "audio/ogg",
    "opus": "audio/ogg",
    "webm": "audio/webm",
    "m4a": "audio/mp4",
    "mp4": "audio/mp4",
    "m4b": "audio/mp4",
    "aac": "audio/aac",
    "amr": "audio/amr",
    "awb": "audio/amr-wb",
    "3gp": "audio/3gpp",
    "3ga": "audio/3gpp",
    "wma": "audio/x-ms-wma",
    "asf": "audio/x-ms-wma",
    "aif": "audio/aiff",
    "aiff": "audio/aiff",
    "caf": "audio/x-caf",
}


def extension(path: str | None) -> str:
    return os.path.splitext(str(path or ""))[1].lstrip(".").lower()


def playable(path: str | None, codec: str | None = None) -> tuple[str, str]:
    """(yes / maybe / no, why) for a recording at ``path`` whose audio codec may be known."""
    ext = extension(path) or "?"
    if codec:
        if codec in _CODEC_YES:
            return YES, f"{codec} audio in .{ext}"
        if codec in _CODEC_NO:
            return NO, f"browsers cannot play {codec} audio (.{ext})"
        return MAYBE, f"{codec} audio in .{ext} may not play in every browser"
    level = _EXT.get(ext, MAYBE)
    if level == YES:
        return YES, f".{ext}"
    if level == NO:
        return NO, f"browsers cannot play .{ext} files"
    return MAYBE, (
        f".{ext} plays where the browser has its codec (AAC does; ALAC or AMR inside it does not)"
        if ext in ("m4a", "mp4", "m4b", "aac")
        else f".{ext} may not play in every browser"
    )


def evidence_href(input_path: str | None, page_dir: str | Path | None) -> str | None:
    """The evidence file's path relative to the page's folder, percent-encoded (spaces,
    quotes, '#', '%', Hangul, bytes that are not UTF-8); None without both paths."""
    if not input_path or page_dir is None:
        return None
    rel = os.path.relpath(os.path.abspath(input_path), os.path.abspath(page_dir))
    # bytes: names that are not UTF-8 (surrogate escapes) encode as the bytes they are; ':' is
    # encoded too, so a first segment never reads as a URL scheme.
    return quote(os.fsencode(rel), safe="/")


def fragment(start: Any, end: Any) -> str:
    """``#t=start,end`` in seconds (3 decimals); '' when the range is unusable."""
    try:
        s, e = float(start), float(end)
    except (TypeError, ValueError):
        return ""
    if not (0 <= s < e):
        return ""
    return f"#t={s:.3f},{e:.3f}"


def time_range(start: Any, end: Any) -> str:
    """'0:04.0–0:09.0 (4.000–9.000 s)': the range to find in another player."""
    try:
        secs = f" ({float(start):.3f}–{float(end):.3f} s)"
    except (TypeError, ValueError):
        secs = ""
    return f"{fmt_time(start)}–{fmt_time(end)}{secs}"


def segment_player(href: str | None, start: Any, end: Any, support: tuple[str, str]) -> str:
    """A script-free play control for one segment (the per-file report): an <audio> element
    that loads nothing until played, with the media fragment; or, where the browser cannot
    play the file, the link and the time range to open elsewhere."""
    frag = fragment(start, end)
    where = esc(time_range(start, end))
    if not href or not frag:
        return f'<span class="explain">{where}</span>'
    url = esc(href + frag)
    level, why = support
    link = f'<a class="evidence" href="{url}">evidence file</a>'
    if level == NO:
        return f'<span class="media-note">{esc(why)}: open the {link} in a player at {where}</span>'
    note = (
        f'<div class="media-note">{esc(why)}; if it does not play, open the {link} at {where}</div>'
        if level == MAYBE
        else f'<div class="explain">{link}, {where}</div>'
    )
    return (
        f'<details class="play"><summary>▶ play</summary>'
        f'<audio class="segment-audio" controls preload="none" src="{url}"></audio>{note}</details>'
    )
