"""SpeechBrain emotion classifier loaded offline from a local directory.

Layout of speechbrain/emotion-recognition-wav2vec2-IEMOCAP: hyperparams.yaml,
custom_interface.py (class CustomEncoderWav2vec2Classifier), wav2vec2.ckpt,
model.ckpt, label_encoder.txt. Loading goes through SpeechBrain's own
`foreign_class`, with the hub ids in the yaml overridden by local paths:
- the key behind the pretrainer paths (`pretrained_path`) -> the model directory;
- the key behind the wav2vec2 encoder's `source` (`wav2vec2_hub`, i.e.
  facebook/wav2vec2-base) -> a folder inside the model directory holding that
  encoder's config.json + preprocessor_config.json (+ its weights or a .ckpt),
  which the fine-tuned wav2vec2.ckpt then overwrites.

Prediction re-uses the loaded modules (mods.wav2vec2, mods.output_mlp,
hparams.label_encoder) but computes each segment on its own samples, because
the interface's batch path normalises the waveform and the encoder output over
the padded batch, and SpeechBrain's StatisticsPooling adds fresh random noise
(1e-5..9e-5) to every mean; the plain mean keeps results reproducible.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

from . import wav2vec2_encoding
from .errors import ModelDirectoryError, SERLoadError, WeightIntegrityError
from .integrity import require_files

SPEECHBRAIN_FILES = ["hyperparams.yaml", "custom_interface.py", "label_encoder.txt"]
INTERFACE_CLASS = "CustomEncoderWav2vec2Classifier"
_ENCODER_TYPES = {"wav2vec2", "hubert", "wavlm"}
_TOP_KEY = re.compile(r"^([A-Za-z_][\w]*)\s*:", re.MULTILINE)
_CKPT_REF = re.compile(r"!ref\s*<([\w]+)>/[^\s]+\.(?:ckpt|txt)")
_BLOCK = re.compile(r"^(\w+)\s*:\s*!new:([\w.]+)\s*\n((?:[ \t]+.*\n?)*)", re.MULTILINE)
_SOURCE_REF = re.compile(r"^\s+source\s*:\s*!ref\s*<([\w]+)>\s*$", re.MULTILINE)


def _hub_keys(yaml_text: str, yaml_path: Path) -> tuple[list[str], str]:
    """(keys naming the checkpoint folder, key naming the wav2vec2 encoder source)."""
    top_keys = set(_TOP_KEY.findall(yaml_text))
    ckpt_keys = sorted(set(_CKPT_REF.findall(yaml_text)) & top_keys)
    encoder_key = None
    for name, class_path, body in _BLOCK.findall(yaml_text):
        if "wav2vec2" in class_path.lower() or name == "wav2vec2":
            match = _SOURCE_REF.search(body)
            if match:
                encoder_key = match.group(1)
                break
    if encoder_key is None or encoder_key not in top_keys:
        raise ModelDirectoryError(
            f"{yaml_path}: cannot find the wav2vec2 encoder block with `source: !ref <key>`; "
            "the encoder source must be a top-level key so it can point at a local folder"
        )
    return ckpt_keys, encoder_key


def _is_encoder_folder(folder: Path) -> bool:
    config = folder / "config.json"
    if not (config.is_file() and (folder / "preprocessor_config.json").is_file()):
        return False
    try:
        return json.loads(config.read_text(encoding="utf-8")).get("model_type") in _ENCODER_TYPES
    except (OSError, ValueError):
        return False


def find_encoder_folder(model_dir: Path) -> Path:
    """The local stand-in for the yaml's encoder hub id (e.g. facebook/wav2vec2-base).

    Looks at the model directory itself, its direct sub-folders, and HF-cache
    snapshots below them (models--*/snapshots/*), in that order.
    """
    candidates = [model_dir]
    candidates += sorted(p for p in model_dir.iterdir() if p.is_dir() and not p.name.startswith("."))
    candidates += sorted(model_dir.glob("*/models--*/snapshots/*")) + sorted(model_dir.glob("models--*/snapshots/*"))
    for folder in candidates:
        if _is_encoder_folder(folder):
            return folder
    raise ModelDirectoryError(
        f"{model_dir}: no local wav2vec2 encoder folder found. Put the encoder named by the "
        "yaml's wav2vec2 source (facebook/wav2vec2-base for the IEMOCAP model): config.json, "
        "preprocessor_config.json and its weights, into a sub-folder such as "
        f"{model_dir / 'wav2vec2_checkpoint'}"
    )


def _check_transferred(pretrainer, model_dir: Path) -> None:
    """Fail if a checkpoint left any module parameter un-loaded.

    SpeechBrain's parameter transfer is non-strict (it only logs missing keys),
    which would leave random weights in place silently.
    """
    from speechbrain.utils.checkpoints import torch_patched_state_dict_load

    for name, loadable in pretrainer.loadables.items():
        if not isinstance(loadable, torch.nn.Module):
            continue
        path = Path(pretrainer.paths[name])
        state = torch_patched_state_dict_load(path, "cpu")
        missing = sorted(set(loadable.state_dict()) - set(state))
        if missing:
            raise WeightIntegrityError(
                f"{path}: checkpoint lacks {len(missing)} parameters of `{name}`, e.g. {missing[:5]}"
            )


class SpeechBrainEmotionBackend:
    kind = "speechbrain"

    def __init__(self, model_dir: Path, device: str):
        require_files(model_dir, SPEECHBRAIN_FILES, "a SpeechBrain emotion model")
        from speechbrain.inference.interfaces import foreign_class
        from speechbrain.utils.fetching import FetchConfig

        yaml_path = model_dir / "hyperparams.yaml"
        ckpt_keys, encoder_key = _hub_keys(yaml_path.read_text(encoding="utf-8"), yaml_path)
        encoder_dir = find_encoder_folder(model_dir)
        overrides = {key: str(model_dir) for key in ckpt_keys}
        overrides[encoder_key] = str(encoder_dir)

        path_before = list(sys.path)
        try:
            self.interface = foreign_class(
                source=str(model_dir),
                pymodule_file="custom_interface.py",
                classname=INTERFACE_CLASS,
                savedir=None,  # read files in place: nothing is copied or fetched
                overrides=overrides,
                fetch_config=FetchConfig(allow_network=False),
                run_opts={"device": device},
            )
        except Exception as exc:  # SpeechBrain, hyperpyyaml and torch raise assorted types
            raise SERLoadError(
                f"{model_dir}: could not load the SpeechBrain model: {type(exc).__name__}: {exc}"
            ) from exc
        finally:
            sys.path[:] = path_before  # foreign_class appends the model folder to sys.path

        hparams = self.interface.hparams
        _check_transferred(hparams.pretrainer, model_dir)
        self.encoder_dir = encoder_dir
        self.lobe = self.interface.mods.wav2vec2
        self.output_mlp = self.interface.mods.output_mlp
        if getattr(self.lobe, "output_all_hiddens", False):
            raise SERLoadError(f"{yaml_path}: output_all_hiddens=True encoders are not supported")
        wav2vec2_encoding.check_supported_encoder(self.lobe.model, str(yaml_path))

        label_encoder = hparams.label_encoder
        self.labels = [str(label_encoder.ind2lab[i]) for i in range(len(label_encoder))]
        n_out = self.output_mlp.w.out_features
        if n_out != len(self.labels):
            raise ModelDirectoryError(
                f"{model_dir / 'label_encoder.txt'}: {len(self.labels)} labels but the output layer has {n_out}"
            )
        self.interface.requires_grad_(False)
        self.interface.eval()
        self.sample_rate = int(self.lobe.feature_extractor.sampling_rate)
        self.min_samples = wav2vec2_encoding.min_input_samples(self.lobe.model)

    def prepare(self, waveform: torch.Tensor) -> torch.Tensor:
        """The segment as the encoder sees it: the lobe's layer_norm over the whole (unpadded)
        segment when the lobe normalises waveforms."""
        return F.layer_norm(waveform, waveform.shape) if self.lobe.normalize_wav else waveform

    def probabilities(self, waveforms: list[torch.Tensor]) -> torch.Tensor:
        """(B, n_labels) class probabilities; each row independent of the batch."""
        return self.probabilities_prepared([self.prepare(w) for w in waveforms])

    def padded_unsupported(self) -> str | None:
        return wav2vec2_encoding.supports_padded(self.lobe.model)

    def padded_probabilities(self, waves: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """(B, n_labels) for a fixed-shape batch of prepared segments with true lengths (the
        CUDA-graph path): tensor operations only, padded frames masked everywhere."""
        hidden, mask = wav2vec2_encoding.encode_padded(self.lobe.model, waves, lengths)
        pooled = wav2vec2_encoding.masked_mean(hidden, mask)
        if self.lobe.output_norm:
            # layer_norm over each segment's valid (time, channels), then the mean over time:
            # mean_t((h_t - mu) / s) = (mean_t h_t - mu) / s.
            weights = mask.to(hidden.dtype).unsqueeze(-1)
            count = weights.sum(dim=(1, 2)) * hidden.shape[-1]
            mu = (hidden * weights).sum(dim=(1, 2)) / count
            var = (((hidden - mu[:, None, None]) * weights) ** 2).sum(dim=(1, 2)) / count
            pooled = (pooled - mu[:, None]) * torch.rsqrt(var + 1e-5)[:, None]
        return torch.softmax(self.output_mlp(pooled).float(), dim=-1)

    def probabilities_prepared(self, waveforms: list[torch.Tensor]) -> torch.Tensor:
        """`probabilities` of segments already through `prepare` (the eager path)."""
        hidden, mask = wav2vec2_encoding.encode(self.lobe.model, waveforms)
        pooled = []
        for i in range(hidden.shape[0]):
            frames = hidden[i, mask[i]]
            if self.lobe.output_norm:  # the lobe's layer_norm over (time, channels)
                frames = F.layer_norm(frames, frames.shape)
            pooled.append(frames.mean(dim=0))
        logits = self.output_mlp(torch.stack(pooled))
        return torch.softmax(logits.float(), dim=-1)
