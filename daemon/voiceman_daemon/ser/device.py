"""Device choice for the speech-emotion models (spec S2: CPU fallback).

"auto" takes the GPU only when CUDA is present and at least 8 GiB of its memory
are free; otherwise the model runs on the CPU. The memory probe is a plain
callable so tests (and the daemon's memory governor) can inject their own.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from .errors import DeviceUnavailableError

GIB = 1024**3
MIN_FREE_GPU_BYTES = 8 * GIB

# Returns (free_bytes, total_bytes) of the GPU, or None when there is no usable CUDA.
MemoryProbe = Callable[[], tuple[int, int] | None]


def cuda_memory_probe() -> tuple[int, int] | None:
    """Free/total bytes of the current CUDA device, or None without CUDA."""
    if not torch.cuda.is_available():
        return None
    free, total = torch.cuda.mem_get_info()
    return int(free), int(total)


@dataclass(frozen=True)
class DeviceChoice:
    device: str
    reason: str

    def to_dict(self) -> dict:
        return {"device": self.device, "reason": self.reason}


def _gib(n_bytes: int) -> str:
    return f"{n_bytes / GIB:.1f} GiB"


def select_device(
    requested: str = "auto",
    memory_probe: MemoryProbe | None = None,
    min_free_bytes: int = MIN_FREE_GPU_BYTES,
) -> DeviceChoice:
    """Pick "cuda" or "cpu" and say why.

    requested: "auto", "cpu", "cuda" or "cuda:N". An explicit CUDA request that
    cannot be met raises DeviceUnavailableError instead of silently using the CPU.
    """
    probe = memory_probe or cuda_memory_probe
    requested = (requested or "auto").strip().lower()

    if requested == "cpu":
        return DeviceChoice("cpu", "CPU requested explicitly")

    if requested.startswith("cuda"):
        info = probe()
        if info is None:
            raise DeviceUnavailableError(f"device {requested!r} was requested but CUDA is not available")
        free, total = info
        return DeviceChoice(requested, f"{requested} requested explicitly ({_gib(free)} of {_gib(total)} free)")

    if requested != "auto":
        raise DeviceUnavailableError(f"unknown device {requested!r}: use 'auto', 'cpu', 'cuda' or 'cuda:N'")

    try:
        info = probe()
    except Exception as exc:  # a broken driver must not stop the CPU path
        return DeviceChoice("cpu", f"CUDA memory probe failed ({exc}); using CPU")
    if info is None:
        return DeviceChoice("cpu", "CUDA not available; using CPU")
    free, total = info
    if free >= min_free_bytes:
        return DeviceChoice(
            "cuda",
            f"CUDA available with {_gib(free)} of {_gib(total)} free (>= {_gib(min_free_bytes)} needed)",
        )
    return DeviceChoice(
        "cpu",
        f"CUDA available but only {_gib(free)} of {_gib(total)} free (< {_gib(min_free_bytes)} needed); using CPU",
    )
