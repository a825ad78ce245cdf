"""Tiny random-weight speech-emotion model directories with the real layouts.

Each builder writes a folder laid out like the published model and returns its
path; tests then load it through the same loader a user's real checkpoint goes
through. The weights are random (seeded), the shapes tiny (hidden 32, 2 layers,
2 heads, a 4-layer conv stack with 40x downsampling) so everything runs fast on
a CPU -- or, for the benchmark (size="published"), the published models' sizes.
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import save_file
from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2ForSequenceClassification, Wav2Vec2Model

IEMOCAP_LABELS = ("neu", "ang", "hap", "sad")
HF_CLASSIFIER_LABELS = ("angry", "calm", "fearful", "happy", "sad")


def tiny_wav2vec2_config(feat_extract_norm: str = "layer", **extra) -> Wav2Vec2Config:
    """Tiny wav2vec2 config; "layer" matches wav2vec2-large-robust, "group" wav2vec2-base."""
    stable = feat_extract_norm == "layer"
    return Wav2Vec2Config(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        conv_dim=(16, 16, 16, 16),
        conv_kernel=(10, 3, 3, 2),
        conv_stride=(5, 2, 2, 2),
        conv_bias=stable,
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=2,
        feat_extract_norm=feat_extract_norm,
        do_stable_layer_norm=stable,
        mask_time_prob=0.0,
        vocab_size=8,
        **extra,
    )


def published_wav2vec2_config(feat_extract_norm: str = "layer", **extra) -> Wav2Vec2Config:
    """The published sizes, for benchmarks (timing needs the shape, not the training):
    "layer" = wav2vec2-large-robust cut to 12 layers (audeering's dimensional SER model),
    "group" = wav2vec2-base (the encoder of SpeechBrain's IEMOCAP model)."""
    large = feat_extract_norm == "layer"
    return Wav2Vec2Config(
        hidden_size=1024 if large else 768,
        num_hidden_layers=12,
        num_attention_heads=16 if large else 12,
        intermediate_size=4096 if large else 3072,
        conv_bias=large,
        feat_extract_norm=feat_extract_norm,
        do_stable_layer_norm=large,
        mask_time_prob=0.0,
        vocab_size=32,
        **extra,
    )


SIZES = {"tiny": tiny_wav2vec2_config, "published": published_wav2vec2_config}


def randomise_norms(model: torch.nn.Module, spread: float = 0.3) -> torch.nn.Module:
    """Give every LayerNorm/GroupNorm non-trivial scale and shift, as trained ones have.

    Freshly initialised norms are identities, which would hide a missing or extra
    normalisation step from the tests.
    """
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (torch.nn.LayerNorm, torch.nn.GroupNorm)) and module.weight is not None:
                module.weight.copy_(1.0 + spread * torch.randn_like(module.weight))
                module.bias.copy_(spread * torch.randn_like(module.bias))
    return model


def _feature_extractor(return_attention_mask: bool) -> Wav2Vec2FeatureExtractor:
    return Wav2Vec2FeatureExtractor(
        feature_size=1,
        sampling_rate=16000,
        padding_value=0.0,
        do_normalize=True,
        return_attention_mask=return_attention_mask,
    )


def build_dimensional_model(directory: str | Path, seed: int = 0, size: str = "tiny") -> Path:
    """audeering/wav2vec2-large-robust-12-ft-emotion-msp-dim layout.

    The checkpoint is written from a bare Wav2Vec2Model plus plain tensors named
    classifier.dense.* / classifier.out_proj.*, not from the loader's own model
    class, so loading it proves the loader accepts the published key layout.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    config = SIZES[size](
        "layer",
        num_labels=3,
        id2label={0: "arousal", 1: "dominance", 2: "valence"},
        label2id={"arousal": 0, "dominance": 1, "valence": 2},
        architectures=["Wav2Vec2ForSpeechClassification"],
        final_dropout=0.1,
    )
    encoder = randomise_norms(Wav2Vec2Model(config))
    hidden = config.hidden_size
    state = {f"wav2vec2.{k}": v.contiguous() for k, v in encoder.state_dict().items()}
    state["classifier.dense.weight"] = torch.randn(hidden, hidden) * 0.3
    state["classifier.dense.bias"] = torch.randn(hidden) * 0.1
    state["classifier.out_proj.weight"] = torch.randn(3, hidden) * 0.3
    state["classifier.out_proj.bias"] = torch.randn(3) * 0.1
    save_file(state, str(directory / "model.safetensors"), metadata={"format": "pt"})
    config.save_pretrained(str(directory))
    _feature_extractor(return_attention_mask=True).save_pretrained(str(directory))
    return directory


def build_hf_audio_classifier(directory: str | Path, seed: int = 1, feat_extract_norm: str = "layer") -> Path:
    """A transformers audio-classification directory (Wav2Vec2ForSequenceClassification)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    config = tiny_wav2vec2_config(
        feat_extract_norm,
        num_labels=len(HF_CLASSIFIER_LABELS),
        id2label=dict(enumerate(HF_CLASSIFIER_LABELS)),
        label2id={name: i for i, name in enumerate(HF_CLASSIFIER_LABELS)},
        classifier_proj_size=16,
    )
    model = randomise_norms(Wav2Vec2ForSequenceClassification(config))
    with torch.no_grad():  # a larger head spread so the class probabilities differ visibly
        model.classifier.weight.mul_(20.0)
    model.save_pretrained(str(directory), safe_serialization=True)
    # As in the published models: only layer-norm wav2vec2 variants take attention masks.
    _feature_extractor(return_attention_mask=feat_extract_norm == "layer").save_pretrained(str(directory))
    return directory


# Same structure and keys as the published speechbrain/emotion-recognition-wav2vec2-IEMOCAP
# hyperparams.yaml; the dimensions are the tiny ones.
_HYPERPARAMS = """\
# wav2vec2 (HF) encoder + average pooling + linear layer, 4 IEMOCAP emotions
HPARAMS_NEEDED: ["encoder_dim", "out_n_neurons", "label_encoder", "softmax"]
MODULES_NEEDED: ["wav2vec2", "avg_pool", "output_mlp"]

wav2vec2_hub: facebook/wav2vec2-base
wav2vec2_folder: wav2vec2_checkpoint
pretrained_path: speechbrain/emotion-recognition-wav2vec2-IEMOCAP

encoder_dim: {hidden}
out_n_neurons: {n_labels}

wav2vec2: !new:speechbrain.lobes.models.huggingface_transformers.wav2vec2.Wav2Vec2
    source: !ref <wav2vec2_hub>
    output_norm: True
    freeze: True
    save_path: !ref <wav2vec2_folder>

avg_pool: !new:speechbrain.nnet.pooling.StatisticsPooling
    return_std: False

output_mlp: !new:speechbrain.nnet.linear.Linear
    input_size: !ref <encoder_dim>
    n_neurons: !ref <out_n_neurons>
    bias: False

model: !new:torch.nn.ModuleList
    - [!ref <output_mlp>]

modules:
    wav2vec2: !ref <wav2vec2>
    output_mlp: !ref <output_mlp>
    avg_pool: !ref <avg_pool>

softmax: !new:speechbrain.nnet.activations.Softmax

label_encoder: !new:speechbrain.dataio.encoder.CategoricalEncoder

pretrainer: !new:speechbrain.utils.parameter_transfer.Pretrainer
    loadables:
        wav2vec2: !ref <wav2vec2>
        model: !ref <model>
        label_encoder: !ref <label_encoder>
    paths:
        wav2vec2: !ref <pretrained_path>/wav2vec2.ckpt
        model: !ref <pretrained_path>/model.ckpt
        label_encoder: !ref <pretrained_path>/label_encoder.txt
"""

# The repository's interface class, same name, methods and behaviour.
_CUSTOM_INTERFACE = '''\
import torch
from speechbrain.inference.interfaces import Pretrained


class CustomEncoderWav2vec2Classifier(Pretrained):
    """wav2vec2 encoder + average pooling + linear classifier."""

    MODULES_NEEDED = ["wav2vec2", "avg_pool", "output_mlp"]

    def encode_batch(self, wavs, wav_lens=None, normalize=False):
        if wavs.dim() == 1:
            wavs = wavs.unsqueeze(0)
        if wav_lens is None:
            wav_lens = torch.ones(wavs.shape[0], device=self.device)
        wavs = wavs.to(self.device).float()
        wav_lens = wav_lens.to(self.device)
        features = self.mods.wav2vec2(wavs)
        pooled = self.mods.avg_pool(features, wav_lens)
        return pooled.view(pooled.shape[0], -1)

    def classify_batch(self, wavs, wav_lens=None):
        embeddings = self.encode_batch(wavs, wav_lens)
        out_prob = self.hparams.softmax(self.mods.output_mlp(embeddings))
        score, index = torch.max(out_prob, dim=-1)
        text_lab = self.hparams.label_encoder.decode_torch(index)
        return out_prob, score, index, text_lab

    def forward(self, wavs, wav_lens=None, normalize=False):
        return self.encode_batch(wavs=wavs, wav_lens=wav_lens, normalize=normalize)
'''

SPEECHBRAIN_ENCODER_SUBDIR = "wav2vec2_checkpoint"


def build_speechbrain_iemocap_model(directory: str | Path, seed: int = 2, size: str = "tiny") -> Path:
    """speechbrain/emotion-recognition-wav2vec2-IEMOCAP layout, plus the encoder's HF folder.

    Files: hyperparams.yaml, custom_interface.py, wav2vec2.ckpt (fine-tuned encoder,
    keys model.*), model.ckpt (ModuleList[output_mlp], keys 0.w.weight),
    label_encoder.txt, and wav2vec2_checkpoint/ holding what the yaml's
    `wav2vec2_hub` (facebook/wav2vec2-base) provides: config.json,
    preprocessor_config.json and base weights that wav2vec2.ckpt then replaces.
    """
    from speechbrain.dataio.encoder import CategoricalEncoder
    from speechbrain.nnet.linear import Linear

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    config = SIZES[size]("group", architectures=["Wav2Vec2ForPreTraining"])

    encoder_dir = directory / SPEECHBRAIN_ENCODER_SUBDIR
    randomise_norms(Wav2Vec2Model(config)).save_pretrained(str(encoder_dir), safe_serialization=True)
    _feature_extractor(return_attention_mask=False).save_pretrained(str(encoder_dir))

    finetuned = randomise_norms(Wav2Vec2Model(config))  # different random draw from the base weights
    torch.save({f"model.{k}": v for k, v in finetuned.state_dict().items()}, directory / "wav2vec2.ckpt")

    output_mlp = Linear(input_size=config.hidden_size, n_neurons=len(IEMOCAP_LABELS), bias=False)
    with torch.no_grad():
        output_mlp.w.weight.normal_(0.0, 0.5)
    torch.save(torch.nn.ModuleList([output_mlp]).state_dict(), directory / "model.ckpt")

    encoder = CategoricalEncoder()
    encoder.update_from_iterable(IEMOCAP_LABELS)
    encoder.save(directory / "label_encoder.txt")

    (directory / "hyperparams.yaml").write_text(
        _HYPERPARAMS.format(hidden=config.hidden_size, n_labels=len(IEMOCAP_LABELS)), encoding="utf-8"
    )
    (directory / "custom_interface.py").write_text(_CUSTOM_INTERFACE, encoding="utf-8")
    return directory
