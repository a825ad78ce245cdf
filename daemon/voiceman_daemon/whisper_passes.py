"""The forward passes of the torch Whisper backend (``asr_transformers``) over a batch of
chunks: the log-mel features, the encoder, language detection, generation under the
CTranslate2 decoding rules (``whisper_rules``), and word times from the alignment heads'
cross-attention (``whisper_word_times``)."""

from __future__ import annotations

from typing import Any

import numpy as np

from voiceman.audio import SAMPLE_RATE

from .whisper_rules import DecodingRules
from .whisper_word_times import dtw, median_filter, words_from_alignment

N_FRAMES = 3000  # mel frames in Whisper's 30 s window
MAX_NEW_TOKENS = 224  # CTranslate2: min(448 / 2, 448 - prompt)
MEDIAN_FILTER_WIDTH = 7


class WhisperPasses:
    """The passes of ``asr_transformers.TransformersWhisperASR`` (a mixin), kept apart from the
    loading and the request loop; they use what that class loads: ``model``, ``processor``,
    ``hf_tokenizer``, ``_tokenizer_cls``, ``multilingual``, ``lang_ids``, ``alignment_heads``,
    ``suppress_begin``, ``beam_size``, ``device``, ``torch_device`` and ``dtype``."""

    def tokenizer(self, language: str | None):
        return self._tokenizer_cls(
            self.hf_tokenizer, self.multilingual, task="transcribe", language=language if self.multilingual else None
        )

    def features(self, pieces: list[np.ndarray]):
        """Log-mel of each piece on its own (as faster-whisper's batched pipeline computes it),
        zero-padded to the 30 s window: (batch, mels, 3000)."""
        import torch

        extractor = self.processor.feature_extractor
        out = torch.zeros((len(pieces), extractor.feature_size, N_FRAMES), dtype=torch.float32)
        for i, piece in enumerate(pieces):
            mel = extractor(
                piece[: N_FRAMES * extractor.hop_length],
                sampling_rate=SAMPLE_RATE,
                padding="longest",
                return_tensors="pt",
                device=self.device if self.device.startswith("cuda") else "cpu",
            ).input_features[0][:, :N_FRAMES]
            out[i, :, : mel.shape[1]] = mel.cpu()
        return out.to(self.torch_device, self.dtype)

    def encode(self, features):
        return self.model.model.encoder(features).last_hidden_state

    def detect_language(self, encoded) -> tuple[str, float]:
        import torch

        tokenizer = self.tokenizer("en")
        start = torch.full((encoded.shape[0], 1), tokenizer.sot, dtype=torch.long, device=self.torch_device)
        hidden = self.model.model.decoder(
            input_ids=start, encoder_hidden_states=encoded, use_cache=False
        ).last_hidden_state
        logits = self.model.proj_out(hidden[:, -1]).float()
        ids = torch.tensor(self.lang_ids, device=self.torch_device)
        probs = torch.softmax(logits[:, ids], dim=-1)[0]
        best = int(probs.argmax())
        token = self.hf_tokenizer.id_to_token(self.lang_ids[best])
        return token[2:-2], float(probs[best])

    def generate(self, encoded, tokenizer) -> list[tuple[list[int], float]]:
        """Decode a batch of encoded chunks: [(tokens without prompt and eot, avg_logprob)]."""
        import torch
        from faster_whisper.transcribe import get_suppressed_tokens
        from transformers import GenerationConfig, GenerationMixin, LogitsProcessorList
        from transformers.modeling_outputs import BaseModelOutput

        prompt = list(tokenizer.sot_sequence)
        rules = DecodingRules(
            vocab_size=self.model.config.vocab_size,
            sample_begin=len(prompt),
            eot=tokenizer.eot,
            no_timestamps=tokenizer.no_timestamps,
            timestamp_begin=tokenizer.timestamp_begin,
            suppress=list(get_suppressed_tokens(tokenizer, [-1])),
            suppress_begin=self.suppress_begin,
            device=self.torch_device,
            rows_per_item=self.beam_size,
        )
        config = GenerationConfig(
            decoder_start_token_id=tokenizer.sot,
            bos_token_id=tokenizer.eot,
            eos_token_id=tokenizer.eot,
            pad_token_id=tokenizer.eot,
            max_new_tokens=min(MAX_NEW_TOKENS, self.model.config.max_target_positions - len(prompt)),
            num_beams=self.beam_size,
            do_sample=False,
            num_return_sequences=1,
            use_cache=True,
            **({"length_penalty": 1.0, "early_stopping": True} if self.beam_size > 1 else {}),
        )
        batch = encoded.shape[0]
        start = torch.tensor([prompt] * batch, dtype=torch.long, device=self.torch_device)
        sequences = GenerationMixin.generate(
            self.model,
            encoder_outputs=BaseModelOutput(last_hidden_state=encoded),
            decoder_input_ids=start,
            generation_config=config,
            logits_processor=LogitsProcessorList([rules]),
        )
        results = []
        for item, row in enumerate(sequences):
            row = row.cpu()
            generated = row[len(prompt) :].tolist()
            end = generated.index(tokenizer.eot) if tokenizer.eot in generated else len(generated)
            tokens = generated[:end]
            finished = row[: len(prompt) + end + (1 if end < len(generated) else 0)]
            cumulative = rules.sequence_logprob(finished.to(self.torch_device), item)
            results.append((tokens, (cumulative / (len(tokens) + 1)) if cumulative is not None else float("nan")))
        return results

    def align(self, encoded, tokenizer, text_tokens: list[list[int]], num_frames: list[int]) -> list[list[dict]]:
        """Word timings for each chunk's text tokens (faster-whisper's ``find_alignment``)."""
        import torch
        import torch.nn.functional as F

        sot_sequence = list(tokenizer.sot_sequence)
        inputs = [sot_sequence + [tokenizer.no_timestamps] + tokens + [tokenizer.eot] for tokens in text_tokens]
        width = max(len(x) for x in inputs)
        ids = torch.tensor([x + [tokenizer.eot] * (width - len(x)) for x in inputs], device=self.torch_device)
        decoder = self.model.model.decoder
        layers = sorted({layer for layer, _ in self.alignment_heads})
        captured: dict[int, Any] = {}
        hooks = [
            decoder.layers[layer].encoder_attn.register_forward_pre_hook(
                lambda module, args, kwargs, layer=layer: captured.__setitem__(
                    layer, kwargs["hidden_states"] if "hidden_states" in kwargs else args[0]
                ),
                with_kwargs=True,
            )
            for layer in layers
        ]
        try:
            hidden = decoder(input_ids=ids, encoder_hidden_states=encoded, use_cache=False).last_hidden_state
        finally:
            for hook in hooks:
                hook.remove()
        logits = self.model.proj_out(hidden).float()
        token_probs = torch.softmax(logits[..., : tokenizer.eot], dim=-1)
        qk = []
        keys: dict[int, Any] = {}
        for layer, head in self.alignment_heads:
            attention = decoder.layers[layer].encoder_attn
            size = attention.head_dim
            rows = slice(head * size, (head + 1) * size)
            if layer not in keys:
                keys[layer] = attention.k_proj(encoded)
            query = (
                F.linear(captured[layer], attention.q_proj.weight[rows], attention.q_proj.bias[rows])
                * attention.scaling
            )
            qk.append(torch.matmul(query.float(), keys[layer][..., rows].float().transpose(1, 2)))
        weights_all = torch.stack(qk, dim=1)  # (batch, heads, tokens, frames)
        results = []
        for b, tokens in enumerate(text_tokens):
            if not tokens:
                results.append([])
                continue
            length = len(inputs[b])
            frames = min(num_frames[b], N_FRAMES) // 2
            weights = torch.softmax(weights_all[b, :, :length, :frames], dim=-1)
            std, mean = torch.std_mean(weights, dim=-2, keepdim=True, unbiased=False)
            weights = median_filter((weights - mean) / std, MEDIAN_FILTER_WIDTH)
            matrix = weights.mean(dim=0)[len(sot_sequence) : -1]
            text_indices, time_indices = dtw(-matrix.double().cpu().numpy())
            offset = len(sot_sequence) + 1
            probs = (
                token_probs[b, offset - 1 : offset - 1 + len(tokens)]
                .gather(-1, torch.tensor(tokens, device=self.torch_device)[:, None])[:, 0]
                .cpu()
                .numpy()
            )
            results.append(words_from_alignment(tokenizer, tokens, text_indices, time_indices, probs))
        return results
