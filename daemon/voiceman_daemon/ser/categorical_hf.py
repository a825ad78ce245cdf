"""Any transformers audio-classification directory (AutoModelForAudioClassification).

Labels come from config.id2label. Segments are batched with an attention mask
only when the model's own preprocessor declares attention-mask support
(return_attention_mask=true, e.g. layer-norm wav2vec2); models whose
preprocessor does not (group-norm wav2vec2-base and the like) would see the
padding, so their segments run one at a time.
"""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import AutoFeatureExtractor, AutoModelForAudioClassification

from .errors import ModelDirectoryError
from .integrity import load_complete_checkpoint, require_files



class TransformersAudioClassifierBackend:
    kind = "transformers"

    def __init__(self, model_dir: Path, device: str):
        require_files(model_dir, ["config.json", "preprocessor_config.json"], "a transformers audio classifier")
        self.feature_extractor, model = load_complete_checkpoint(
            model_dir, AutoFeatureExtractor, AutoModelForAudioClassification, "audio classifier")

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
