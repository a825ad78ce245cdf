"""SHA-256 for the chain of custody (inputs, model weights, config) — the one place that
defines how each digest is computed, so a report's hashes can be recomputed by an auditor."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

WEIGHT_SUFFIXES = (".bin", ".safetensors", ".pt", ".ckpt", ".onnx", ".pth")
_CHUNK = 1 << 20  # 1 MiB reads keep memory flat for hour-long recordings


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:  # read-only: evidence is never opened for writing
        for block in iter(lambda: fh.read(_CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def weight_file_digests(model_dir: str | Path) -> dict[str, str]:
    """{relative path: sha256} of every weight file under ``model_dir`` (hidden folders such
    as .cache are skipped)."""
    root = Path(model_dir)
    digests = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if path.suffix in WEIGHT_SUFFIXES and path.is_file() and not any(p.startswith(".") for p in rel.parts):
            digests[rel.as_posix()] = sha256_file(path)
    return digests


def combine_digests(digests: dict[str, str]) -> str:
    """SHA-256 of the ``sha256sum`` listing ("<sha256>  <path>" lines, sorted by path):
    ``sha256sum $(find . -name '*.bin' | sort) | sed 's| ./| |' | sha256sum`` gives the same."""
    listing = "".join(f"{sha}  {name}\n" for name, sha in sorted(digests.items()))
    return hashlib.sha256(listing.encode("utf-8")).hexdigest()


def sha256_weights(model_dir: str | Path) -> str | None:
    """One digest over a model directory's weight files; changes when any weight file
    changes, appears or disappears.  None when there are none (e.g. an unresolved hub id)."""
    if not Path(model_dir).is_dir():
        return None
    digests = weight_file_digests(model_dir)
    return combine_digests(digests) if digests else None


def sha256_json(obj: Any) -> str:
    """Hash of a JSON-able object in canonical form (sorted keys, no whitespace)."""
    canon = json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(canon.encode("utf-8")).hexdigest()


# -- config_sha256: the analysis settings, not where things are --------------------------------
# Two runs with the same evidence and the same analysis settings must carry the same
# config_sha256, wherever their case and results folders lie and however they reach the
# daemon.  These keys are left out of the hash (dotted paths; "*" = any model kind), each
# because it cannot change a finding:
CONFIG_KEYS_NOT_HASHED: dict[str, str] = {
    "case_dir": "where the evidence lies; each recording is identified by its own SHA-256 in custody",
    "results_dir": "where the outputs are written",
    "audio_extensions": "which entries of the case folder are taken as recordings, never how one is analysed "
    "(case.json lists every entry either way)",
    "daemon": "how rule jobs reach the daemon (endpoint, CURVE keys, timeouts, heartbeats, retries, autostart) "
    "and what it may read (case/model roots, message size, decode time limit): transport, security "
    "and limits; a limit that is hit fails the file, it never changes a finding",
    "governor": "the daemon's thermal/memory policy and its settings file (sensor, trace, sample log, "
    "backpressure); what it does depends on the machine's temperature during the run, so a config "
    "hash could not capture it, and the device each model really ran on is recorded per model "
    "in custody",
    "models.*.sha256": "a pin checked before a model loads; the model's own digest is in custody either way",
    "models.*.cpu_threads": "CPU threads for inference: speed only",
}


def _drop(obj: Any, path: list[str]) -> None:
    if not isinstance(obj, dict) or not path:
        return
    head, rest = path[0], path[1:]
    for key in list(obj) if head == "*" else [head]:
        if key not in obj:
            continue
        if rest:
            _drop(obj[key], rest)
        else:
            del obj[key]


def analysis_config(config: dict[str, Any]) -> dict[str, Any]:
    """The part of a workflow config that ``config_sha256`` covers: everything except
    :data:`CONFIG_KEYS_NOT_HASHED` (unknown keys are kept, to be on the safe side)."""
    copy = json.loads(json.dumps(config, default=str))
    for dotted in CONFIG_KEYS_NOT_HASHED:
        _drop(copy, dotted.split("."))
    return copy


def config_sha256(config: dict[str, Any]) -> str:
    """``config_sha256`` of reports and case.json: :func:`sha256_json` of :func:`analysis_config`."""
    return sha256_json(analysis_config(config))
