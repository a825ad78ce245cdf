"""A CTranslate2 Whisper directory -> the same model as a transformers Whisper directory.

The Whisper models ``voiceman models prepare`` ships are float16 CTranslate2 files
(``model.bin``).  CTranslate2's converter only re-arranges transformers' tensors (it fuses
the q/k/v projections into one matrix, stores the absent k bias as zeros and aliases the
output projection to the token embeddings), so the tensors map back bit for bit:
``voiceman.whisper_ct2_weights`` reads ``model.bin`` itself (CTranslate2's binary layout,
version 6) and undoes those steps, and this module writes a
``WhisperForConditionalGeneration`` directory (config, generation config with the
alignment heads, tokenizer and feature-extractor files, ``model.safetensors``) that the
torch backend (``voiceman_daemon.asr_transformers``) loads with ``local_files_only``.

Nothing is lost: every float16 tensor is copied as is, and `convert` reads the written
safetensors back and compares each tensor with its source bytes before the directory is
put in place.  Quantized (int8/int16) CTranslate2 models cannot be turned back into their
original weights, so they are refused.

    python -m voiceman.whisper_convert models/whisper-tiny.en models/whisper-tiny.en-hf
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from .hashing import sha256_file, sha256_weights
from .whisper_ct2_weights import ConversionError, read_ct2_model, state_dict_from_ct2

CONVERTER_VERSION = 1
RECORD = "voiceman_conversion.json"  # provenance: the CTranslate2 source and its digests
SAMPLE_RATE = 16000


# -- configs -----------------------------------------------------------------------------------
def _special_ids(tokenizer_json: dict) -> dict[str, int]:
    return {t["content"]: int(t["id"]) for t in tokenizer_json.get("added_tokens", [])}


def _need(ids: dict[str, int], token: str) -> int:
    if token not in ids:
        raise ConversionError(f"tokenizer.json has no special token {token}")
    return ids[token]


def build_configs(facts: dict[str, Any], ct2_config: dict, tokenizer_json: dict):
    """(WhisperConfig, GenerationConfig) from the architecture facts, CTranslate2's
    config.json (suppress lists, language ids, alignment heads) and the tokenizer's ids."""
    from transformers import GenerationConfig, WhisperConfig

    ids = _special_ids(tokenizer_json)
    eot, sot = _need(ids, "<|endoftext|>"), _need(ids, "<|startoftranscript|>")
    no_timestamps = _need(ids, "<|notimestamps|>")
    lang_ids = [int(i) for i in ct2_config.get("lang_ids") or []]
    by_id = {v: k for k, v in ids.items()}
    multilingual = facts["vocab_size"] >= 51865
    suppress = [int(i) for i in ct2_config.get("suppress_ids") or []]
    begin_suppress = [int(i) for i in ct2_config.get("suppress_ids_begin") or [220, eot]]
    heads = [[int(layer), int(head)] for layer, head in (ct2_config.get("alignment_heads") or [])]
    if not heads:  # CTranslate2's own default: every head of the second half of the decoder layers
        n, h = facts["decoder_layers"], facts["decoder_attention_heads"]
        heads = [[layer, head] for layer in range(n // 2, n) for head in range(h)]
    config = WhisperConfig(
        vocab_size=facts["vocab_size"],
        num_mel_bins=facts["num_mel_bins"],
        d_model=facts["d_model"],
        encoder_layers=facts["encoder_layers"],
        decoder_layers=facts["decoder_layers"],
        encoder_attention_heads=facts["encoder_attention_heads"],
        decoder_attention_heads=facts["decoder_attention_heads"],
        encoder_ffn_dim=facts["encoder_ffn_dim"],
        decoder_ffn_dim=facts["decoder_ffn_dim"],
        max_source_positions=facts["max_source_positions"],
        max_target_positions=facts["max_target_positions"],
        activation_function="gelu",
        scale_embedding=False,
        tie_word_embeddings=facts["tie_word_embeddings"],
        pad_token_id=eot,
        bos_token_id=eot,
        eos_token_id=eot,
        decoder_start_token_id=sot,
        begin_suppress_tokens=begin_suppress,
        architectures=["WhisperForConditionalGeneration"],
        torch_dtype=facts["dtype"],
        use_cache=True,
    )
    generation = GenerationConfig(
        decoder_start_token_id=sot,
        bos_token_id=eot,
        eos_token_id=eot,
        pad_token_id=eot,
        max_length=facts["max_target_positions"],
        begin_suppress_tokens=begin_suppress,
        suppress_tokens=suppress,
        no_timestamps_token_id=no_timestamps,
        alignment_heads=heads,
        is_multilingual=multilingual,
        prev_sot_token_id=ids.get("<|startofprev|>"),
        max_initial_timestamp_index=50,
        return_timestamps=False,
    )
    if multilingual:
        generation.lang_to_id = {by_id[i]: i for i in lang_ids if i in by_id}
        generation.task_to_id = {"transcribe": _need(ids, "<|transcribe|>"), "translate": _need(ids, "<|translate|>")}
    return config, generation


def build_processor(src: Path, num_mel_bins: int):
    from transformers import WhisperFeatureExtractor, WhisperProcessor, WhisperTokenizerFast

    special = "<|endoftext|>"
    tokenizer = WhisperTokenizerFast(
        tokenizer_file=str(src / "tokenizer.json"),
        unk_token=special,
        bos_token=special,
        eos_token=special,
        pad_token=special,
    )
    extractor = WhisperFeatureExtractor(
        feature_size=num_mel_bins, sampling_rate=SAMPLE_RATE, hop_length=160, chunk_length=30, n_fft=400
    )
    return WhisperProcessor(feature_extractor=extractor, tokenizer=tokenizer)


# -- the directory -----------------------------------------------------------------------------
def source_digests(src: Path) -> dict[str, str]:
    return {name: sha256_file(src / name) for name in ("model.bin", "config.json", "tokenizer.json")}


def read_record(dst: str | Path) -> dict[str, Any] | None:
    try:
        return json.loads((Path(dst) / RECORD).read_text())
    except (OSError, ValueError):
        return None


def is_current(src: str | Path, dst: str | Path, digests: dict[str, str] | None = None) -> bool:
    """``dst`` is this converter's output for ``src`` as ``src`` is now."""
    record = read_record(dst)
    if not record or record.get("converter_version") != CONVERTER_VERSION:
        return False
    if not (Path(dst) / "model.safetensors").is_file():
        return False
    return record.get("source", {}).get("sha256") == (digests or source_digests(Path(src)))


def write_hf_dir(src: Path, out_dir: Path, digests: dict[str, str]) -> dict[str, Any]:
    """Write the transformers form of ``src`` into ``out_dir`` (which must exist, empty) and
    verify it tensor by tensor.  Returns the provenance record."""
    import torch
    from safetensors.torch import load_file
    from transformers import WhisperForConditionalGeneration

    model_bin = read_ct2_model(src / "model.bin")
    state, facts = state_dict_from_ct2(model_bin)
    ct2_config = json.loads((src / "config.json").read_text())
    tokenizer_json = json.loads((src / "tokenizer.json").read_text())
    config, generation = build_configs(facts, ct2_config, tokenizer_json)
    dtype = getattr(torch, facts["dtype"])
    with torch.device("meta"):
        model = WhisperForConditionalGeneration(config)
    missing, unexpected = model.load_state_dict(state, strict=False, assign=True)
    missing = [k for k in missing if not (k == "proj_out.weight" and facts["tie_word_embeddings"])]
    if missing or unexpected:
        raise ConversionError(
            f"tensor names do not match transformers' Whisper: missing {missing[:5]}, unexpected {unexpected[:5]}"
        )
    if facts["tie_word_embeddings"]:
        model.tie_weights()
    model.generation_config = generation
    model.to(dtype)
    model.save_pretrained(out_dir, safe_serialization=True)
    build_processor(src, facts["num_mel_bins"]).save_pretrained(out_dir)
    # Lossless: every written tensor equals its source bytes.
    written = load_file(str(out_dir / "model.safetensors"))
    for name, tensor in state.items():
        if name not in written or written[name].dtype != tensor.dtype or not torch.equal(written[name], tensor):
            raise ConversionError(f"{name}: the written tensor differs from model.bin's")
    record = {
        "converter": "voiceman.whisper_convert",
        "converter_version": CONVERTER_VERSION,
        "source": {
            "path": str(src.resolve()),
            "format": f"CTranslate2 {model_bin.spec} revision {model_bin.revision}",
            "sha256": digests,
        },
        "lossless": True,
        "tensors": len(state),
        "dtype": facts["dtype"],
        "weights_sha256": sha256_weights(out_dir),
        "architecture": facts,
    }
    (out_dir / RECORD).write_text(json.dumps(record, indent=2) + "\n")
    return record


def convert(src: str | Path, dst: str | Path, force: bool = False) -> Path:
    """Write the transformers form of the CTranslate2 Whisper directory ``src`` at ``dst``.

    Idempotent (an up-to-date ``dst`` is left alone) and atomic: the new directory is built
    next to ``dst`` and renamed into place, so ``dst`` is either the old complete directory
    or the new complete one, never a half-written mix."""
    src, dst = Path(src), Path(dst)
    for name in ("model.bin", "config.json", "tokenizer.json"):
        if not (src / name).is_file():
            raise ConversionError(f"{src} is not a CTranslate2 Whisper directory: {name} is missing")
    digests = source_digests(src)
    if not force and is_current(src, dst, digests):
        return dst
    dst.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{dst.name}.", suffix=".converting", dir=dst.parent))
    try:
        write_hf_dir(src, staging, digests)
        for path in staging.iterdir():  # readable like the CTranslate2 files beside it
            os.chmod(path, 0o644)
        os.chmod(staging, 0o755)
        if dst.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{dst.name}.", suffix=".old", dir=dst.parent))
            os.rename(dst, old / dst.name)
            os.rename(staging, dst)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(staging, dst)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return dst


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m voiceman.whisper_convert", description=__doc__.splitlines()[0])
    parser.add_argument("src", help="CTranslate2 Whisper directory (model.bin, config.json, tokenizer.json)")
    parser.add_argument("dst", nargs="?", help="output directory (default: SRC-hf)")
    parser.add_argument("--force", action="store_true", help="rewrite even when DST is up to date")
    args = parser.parse_args(argv)
    dst = args.dst or f"{args.src.rstrip('/')}-hf"
    try:
        out = convert(args.src, dst, force=args.force)
    except ConversionError as exc:
        print(f"whisper_convert: {exc}", file=sys.stderr)
        return 1
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
