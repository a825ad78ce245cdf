"""Any transformers audio-classification directory (AutoModelForAudioClassification).

Labels come from config.id2label. Segments are batched with an attention mask
only when the model's own preprocessor declares attention-mask support
(return_attention_mask=true, e.g. layer-norm wav2vec2); models whose
preprocessor does not (group-norm wav2vec2-base and the like) would see the
padding, so their segments run one at a time.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from transformers import AutoFeatureExtractor, AutoModelForAudioClassification, Wav2Vec2Model

from . import wav2vec2_encoding
from .errors import ModelDirectoryError
from .integrity import load_complete_checkpoint, require_files


class TransformersAudioClassifierBackend:
    kind = "transformers"

    def __init__(self, model_dir: Path, device: str):
        require_files(model_dir, ["config.json", "preprocessor_config.json"], "a transformers audio classifier")
        self.feature_extractor, model = load_complete_checkpoint(
            model_dir, AutoFeatureExtractor, AutoModelForAudioClassification, "audio classifier"
        )

        id2label = model.config.id2label or {}
        self.labels = [str(id2label[i]) for i in sorted(int(k) for k in id2label)]
        if len(self.labels) != model.config.num_labels or len(set(self.labels)) != len(self.labels):
            raise ModelDirectoryError(f"{model_dir / 'config.json'}: id2label must give one distinct label per output")

        model.requires_grad_(False)
        self.model = model.to(device).eval()
        self.device = device
        self.sample_rate = int(getattr(self.feature_extractor, "sampling_rate", 16000))
        self.uses_attention_mask = bool(getattr(self.feature_extractor, "return_attention_mask", False))
        self.min_samples = self._model_min_samples()

    def _model_min_samples(self) -> int:
        config = self.model.config
        kernels, strides = getattr(config, "conv_kernel", None), getattr(config, "conv_stride", None)
        if not kernels or not strides:
            return 1
        receptive, jump = 1, 1
        for kernel, stride in zip(kernels, strides):
            receptive += (kernel - 1) * jump
            jump *= stride
        return receptive

    def _run(self, waveforms: list[torch.Tensor]) -> torch.Tensor:
        inputs = self.feature_extractor(
            [w.numpy() for w in waveforms],
            sampling_rate=self.sample_rate,
            padding=True,
            return_attention_mask=self.uses_attention_mask,
            return_tensors="pt",
        )
        inputs = {k: v.to(self.device) for k, v in inputs.items()}
        return torch.softmax(self.model(**inputs).logits.float(), dim=-1)

    def probabilities(self, waveforms: list[torch.Tensor]) -> torch.Tensor:
        if self.uses_attention_mask:
            return self._run(waveforms)
        return torch.cat([self._run([w]) for w in waveforms], dim=0)

    # -- the bucketed / CUDA-graph path (ser/cuda_graphs.py) -------------------------------
    def prepare(self, waveform: torch.Tensor) -> torch.Tensor:
        """The segment after the model's own preprocessor (normalised on its own samples)."""
        values = self.feature_extractor(
            waveform.numpy(), sampling_rate=self.sample_rate, return_tensors="np"
        ).input_values[0]
        return torch.from_numpy(np.ascontiguousarray(values, dtype=np.float32))

    def probabilities_prepared(self, waveforms: list[torch.Tensor]) -> torch.Tensor:
        """The eager forward of prepared segments: batched with an attention mask where the
        preprocessor declares one, else one at a time (as `probabilities`)."""
        if not self.uses_attention_mask:
            return torch.cat(
                [
                    torch.softmax(self.model(input_values=w[None].to(self.device)).logits.float(), dim=-1)
                    for w in waveforms
                ],
                dim=0,
            )
        lengths = torch.tensor([w.shape[0] for w in waveforms])
        padded = torch.nn.utils.rnn.pad_sequence(waveforms, batch_first=True)
        mask = (torch.arange(padded.shape[1])[None, :] < lengths[:, None]).long()
        logits = self.model(input_values=padded.to(self.device), attention_mask=mask.to(self.device)).logits
        return torch.softmax(logits.float(), dim=-1)

    def padded_unsupported(self) -> str | None:
        encoder = getattr(self.model, "wav2vec2", None)
        if not isinstance(encoder, Wav2Vec2Model):
            return f"{type(self.model).__name__} is not a wav2vec2 classifier"
        if getattr(self.model.config, "use_weighted_layer_sum", False):
            return "use_weighted_layer_sum classifiers are not supported on the bucketed path"
        if not hasattr(self.model, "projector") or not hasattr(self.model, "classifier"):
            return f"{type(self.model).__name__} has no projector/classifier head"
        return wav2vec2_encoding.supports_padded(encoder)

    def padded_probabilities(self, waves: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Wav2Vec2ForSequenceClassification's eval forward on a fixed-shape batch with true
        lengths: encoder, projector, mean over each segment's own frames, classifier."""
        hidden, mask = wav2vec2_encoding.encode_padded(self.model.wav2vec2, waves, lengths)
        pooled = wav2vec2_encoding.masked_mean(self.model.projector(hidden), mask)
        return torch.softmax(self.model.classifier(pooled).float(), dim=-1)
