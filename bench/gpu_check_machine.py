"""The GPU check's first two parts, what the machine and its software are: ``environment`` (1:
python, torch/CUDA, transformers, ctranslate2 and its CUDA devices) and ``device_probe`` (2: the
daemon's own device probe for a config with both ASR backends possible)."""

from __future__ import annotations

import platform
import sys
from pathlib import Path
from typing import Any

from gpu_check_common import Skip


def environment(device: str) -> dict[str, Any]:
    info: dict[str, Any] = {
        "python": sys.version.split()[0],
        "machine": platform.machine(),
        "host": platform.node(),
        "device": device,
        "executable": sys.executable,
    }
    try:
        import torch

        info["torch"] = torch.__version__
        info["torch_cuda"] = torch.version.cuda
        info["cuda_available"] = torch.cuda.is_available()
        if torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
            info["capability"] = list(torch.cuda.get_device_capability(0))
            info["gpu_memory_gb"] = round(torch.cuda.get_device_properties(0).total_memory / 1e9, 1)
    except Exception as exc:  # noqa: BLE001
        info["torch"] = f"unavailable: {exc}"
    for name in ("transformers", "ctranslate2", "faster_whisper", "av"):
        try:
            module = __import__(name)
            info[name] = getattr(module, "__version__", "?")
        except Exception as exc:  # noqa: BLE001
            info[name] = f"unavailable: {type(exc).__name__}: {exc}"
    try:
        import ctranslate2

        info["ctranslate2_cuda_devices"] = ctranslate2.get_cuda_device_count()
    except Exception as exc:  # noqa: BLE001
        info["ctranslate2_cuda_devices"] = f"unavailable: {exc}"
    return info


def device_probe(models_dir: Path) -> dict[str, Any]:
    try:
        from voiceman_daemon.device_probe import probe
    except ImportError as exc:
        raise Skip(f"voiceman_daemon.device_probe is not there: {exc}") from exc
    config = {
        "models": {
            "asr": {"id": str(models_dir / "whisper-tiny.en"), "device": "auto", "backend": "auto"},
            "ser_dimensional": {"id": str(models_dir / "bench"), "device": "auto"},
        }
    }
    return probe(config).to_dict()
