"""What the GPU is, and what the model libraries can make of it (never silently on the CPU).

NVML (through the governor's one wrapper, `NvmlQuery`) says whether the machine has an
NVIDIA GPU.  That says nothing about whether the model libraries can use it: on
linux-aarch64 (the GB10) PyPI's ``torch`` is a ``+cpu`` build and CTranslate2's wheels carry
no CUDA, so every model would run on the CPU while the box's GPU sits idle.  `probe` puts
the two side by side in a `DeviceReport`; a GPU that is present but that a configured model
cannot use becomes a warning (logged loudly at start, in ``status``, ``stats`` and the run
report), and `check_requested_device` turns an explicit ``device: cuda`` that cannot be met
into a start-up error.

Which library runs which model:
- ``ser_dimensional`` / ``ser_categorical``: torch;
- ``asr`` by ``models.asr.backend``: ``ctranslate2`` needs CTranslate2's CUDA,
  ``transformers`` needs torch's CUDA, ``auto`` (the default) takes either.

Library facts are gathered by `torch_facts` / `ctranslate2_facts`; tests hand in their own
(`LibraryFacts`) and a fake NVML module.
"""

from __future__ import annotations

import contextlib
import logging
import platform
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

from .governor.nvml_query import NvmlQuery

log = logging.getLogger(__name__)

SER_KINDS = ("ser_dimensional", "ser_categorical")
ASR_BACKENDS = ("auto", "ctranslate2", "transformers")
INSTALL_HINT = (
    "on linux-aarch64 install with ./scripts/setup.sh (requirements-aarch64-cuda.lock: torch from "
    "PyTorch's CUDA index) or run in NVIDIA's PyTorch container; see README 'GB10 / ARM64'"
)


class DeviceError(RuntimeError):
    """The config asks for CUDA where the library that would run the model cannot use it."""


@dataclass(frozen=True)
class LibraryFacts:
    """What one model library can do with CUDA on this machine."""

    name: str  # "torch" | "ctranslate2"
    version: str | None  # None = not installed
    cuda_built: bool | None  # compiled with CUDA (None = cannot tell)
    device_count: int  # CUDA devices the library sees
    cuda_version: str | None = None  # torch.version.cuda
    capability: tuple[int, int] | None = None  # device 0's compute capability (torch)
    arch_list: tuple[str, ...] = ()  # kernels the build carries (torch.cuda.get_arch_list())
    error: str | None = None  # why the facts could not be read / CUDA could not start

    @property
    def can_use_cuda(self) -> bool:
        return bool(self.version) and self.cuda_built is not False and self.device_count > 0

    def cause(self) -> str | None:
        """Why this library cannot run on the GPU ("torch 2.8.0+cpu has no CUDA"); None when it can."""
        label = f"{self.name} {self.version}" if self.version else f"{self.name} (not installed)"
        if not self.version:
            return f"{label}{': ' + self.error if self.error else ''}"
        if self.cuda_built is False:
            if self.name == "ctranslate2":
                return f"{label} has no CUDA on this platform"
            return f"{label} has no CUDA"
        if self.device_count <= 0:
            detail = f" ({self.error})" if self.error else ""
            built = f" (built for CUDA {self.cuda_version})" if self.cuda_version else ""
            return f"{label}{built} sees no CUDA device{detail}"
        return None

    def kernel_gap(self) -> str | None:
        """torch only: the GPU's compute capability has no kernels in this build.  A cubin for
        sm_XY runs on any X.Z with Z >= Y (CUDA's binary compatibility), so sm_120 serves the
        GB10's 12.1; a PTX entry (compute_XY) is JIT-compiled for anything newer."""
        if self.capability is None or not self.arch_list:
            return None
        major, minor = self.capability
        for arch in self.arch_list:
            kind, _, digits = arch.partition("_")
            digits = digits.rstrip("af")
            if not digits.isdigit() or len(digits) < 2:
                continue
            a_major, a_minor = int(digits[:-1]), int(digits[-1])
            if kind == "sm" and a_major == major and a_minor <= minor:
                return None
            if kind == "compute" and (a_major, a_minor) <= (major, minor):
                return None
        return (
            f"{self.name} {self.version} carries no kernels for compute capability {major}.{minor} "
            f"(built for {', '.join(self.arch_list)})"
        )


@dataclass
class DeviceReport:
    machine: str  # platform.machine(): x86_64, aarch64, ...
    gpu_present: bool
    gpu_name: str | None
    nvml: str  # "ok" or why NVML has no device
    torch: LibraryFacts
    ctranslate2: LibraryFacts
    models: dict[str, dict[str, Any]] = field(default_factory=dict)  # kind -> device / library / on_gpu
    warnings: list[str] = field(default_factory=list)
    cause: str | None = None  # why a present GPU goes unused ("torch 2.8.0+cpu has no CUDA; ...")

    @property
    def summary(self) -> str:
        if not self.gpu_present:
            return f"no GPU (NVML: {self.nvml}); models run on the CPU"
        where = ", ".join(f"{k}: {'GPU' if m['on_gpu'] else 'CPU'}" for k, m in self.models.items())
        return f"GPU {self.gpu_name or '?'}" + (f"; {where}" if where else "")

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        for lib in ("torch", "ctranslate2"):
            facts: LibraryFacts = getattr(self, lib)
            out[lib]["can_use_cuda"] = facts.can_use_cuda
            out[lib]["cause"] = facts.cause()
            out[lib]["capability"] = list(facts.capability) if facts.capability else None
            out[lib]["arch_list"] = list(facts.arch_list)
        out["summary"] = self.summary
        return out


# -- facts ------------------------------------------------------------------------------
def torch_facts() -> LibraryFacts:
    try:
        import torch
    except Exception as exc:  # noqa: BLE001 - any import failure means: torch cannot run a model
        return LibraryFacts("torch", None, None, 0, error=f"{type(exc).__name__}: {exc}")
    version = str(torch.__version__)
    cuda_version = getattr(torch.version, "cuda", None)
    if cuda_version is None:
        return LibraryFacts("torch", version, False, 0)
    try:
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        error = (
            None
            if count
            else "torch.cuda.is_available() is False: driver older than the CUDA it was built for, or no device visible"
        )
        capability = tuple(torch.cuda.get_device_capability(0)) if count else None
        arch_list = tuple(torch.cuda.get_arch_list()) if count else ()
    except Exception as exc:  # noqa: BLE001 - CUDA initialisation errors are the point of the probe
        count, error, capability, arch_list = 0, f"{type(exc).__name__}: {exc}", None, ()
    return LibraryFacts("torch", version, True, count, cuda_version, capability, arch_list, error)


def ctranslate2_facts() -> LibraryFacts:
    try:
        import ctranslate2
    except Exception as exc:  # noqa: BLE001
        return LibraryFacts("ctranslate2", None, None, 0, error=f"{type(exc).__name__}: {exc}")
    version = str(getattr(ctranslate2, "__version__", "?"))
    try:
        count = int(ctranslate2.get_cuda_device_count())
    except Exception as exc:  # noqa: BLE001
        return LibraryFacts("ctranslate2", version, None, 0, error=f"{type(exc).__name__}: {exc}")
    if count > 0:
        return LibraryFacts("ctranslate2", version, True, count)
    # 0 devices: a build without CUDA ("This CTranslate2 package was not compiled with CUDA
    # support") or a CUDA build that sees no device.
    try:
        ctranslate2.get_supported_compute_types("cuda")
    except Exception as exc:  # noqa: BLE001
        message = str(exc)
        if "not compiled with CUDA" in message:
            return LibraryFacts("ctranslate2", version, False, 0, error=message)
        return LibraryFacts("ctranslate2", version, True, 0, error=message)
    return LibraryFacts("ctranslate2", version, True, 0)


@contextlib.contextmanager
def _quiet(logger_name: str) -> Iterator[None]:
    """The governor logs "no GPU sensor" itself when it starts; the probe's NVML look must not
    say it a second time."""
    logger = logging.getLogger(logger_name)
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def nvml_gpu(nvml: Any = None) -> tuple[bool, str | None, str]:
    """(present, name, "ok" or why not) from NVML, through the governor's wrapper."""
    query = NvmlQuery(nvml)
    with _quiet("voiceman_daemon.governor.nvml_query"):
        if not query.init():
            return False, None, query.unavailable_reason or "no NVML device"
        try:
            return True, query.device_name(), "ok"
        finally:
            query.close()


# -- the report -------------------------------------------------------------------------
def _models(config: dict | None) -> dict[str, dict[str, Any]]:
    """kind -> its config section, for the models this config names."""
    if config is None:
        return {}
    sections = config.get("models") or {}
    return {
        kind: dict(sections.get(kind) or {}) for kind in ("asr", *SER_KINDS) if (sections.get(kind) or {}).get("id")
    }


def asr_backend(section: dict[str, Any]) -> str:
    backend = str(section.get("backend") or "auto")
    return backend if backend in ASR_BACKENDS else "auto"


def _libraries_for(kind: str, section: dict[str, Any]) -> tuple[str, ...]:
    """The libraries that could run this model on a GPU (any one of them suffices)."""
    if kind != "asr":
        return ("torch",)
    return {"ctranslate2": ("ctranslate2",), "transformers": ("torch",), "auto": ("ctranslate2", "torch")}[
        asr_backend(section)
    ]


def _what(kind: str, section: dict[str, Any]) -> str:
    if kind == "asr":
        return f"ASR (backend {asr_backend(section)})"
    return {"ser_dimensional": "SER (dimensional)", "ser_categorical": "SER (categorical)"}[kind]


def probe(
    config: dict | None = None,
    *,
    nvml: Any = None,
    torch: LibraryFacts | None = None,
    ctranslate2: LibraryFacts | None = None,
    machine: str | None = None,
) -> DeviceReport:
    """Compare what NVML sees with what the model libraries can use, for the models ``config``
    names (all libraries when config is None).  Never raises."""
    present, name, nvml_state = nvml_gpu(nvml)
    facts = {"torch": torch or torch_facts(), "ctranslate2": ctranslate2 or ctranslate2_facts()}
    # A GPU that the libraries see counts even where NVML cannot be read (a container without
    # libnvidia-ml, say).
    present = present or any(f.device_count > 0 for f in facts.values())
    report = DeviceReport(
        machine=machine or platform.machine(),
        gpu_present=present,
        gpu_name=name,
        nvml=nvml_state,
        torch=facts["torch"],
        ctranslate2=facts["ctranslate2"],
    )
    gpu = f"GPU {name}" if name else "a GPU"
    causes: list[str] = []
    for kind, section in _models(config).items():
        libs = _libraries_for(kind, section)
        usable = [lib for lib in libs if facts[lib].can_use_cuda]
        device = str(section.get("device") or "auto")
        report.models[kind] = {
            "device": device,
            "libraries": list(libs),
            "library": (usable or list(libs))[0],
            "on_gpu": bool(usable) and device != "cpu",
        }
        if present and not usable and device != "cpu":
            why = "; ".join(c for c in (facts[lib].cause() for lib in libs) if c)
            causes.append(why)
            hint = (
                " (models.asr.backend: auto or transformers runs Whisper on torch's CUDA)"
                if kind == "asr" and facts["torch"].can_use_cuda
                else ""
            )
            report.warnings.append(f"{gpu} is present but {_what(kind, section)} runs on the CPU: {why}{hint}")
    if config is None and present:
        for f in facts.values():
            if f.cause():
                causes.append(f.cause())
                report.warnings.append(f"{gpu} is present but {f.cause()}")
    gap = facts["torch"].kernel_gap() if present and facts["torch"].can_use_cuda else None
    if gap:
        causes.append(gap)
        report.warnings.append(f"{gpu}: {gap}; torch work on it fails with 'no kernel image is available'")
    if report.warnings and not facts["torch"].can_use_cuda and report.machine in ("aarch64", "arm64"):
        report.warnings.append(f"fix: {INSTALL_HINT}")
    report.cause = "; ".join(dict.fromkeys(causes)) or None
    return report


def check_requested_device(report: DeviceReport, config: dict) -> None:
    """Raise DeviceError when a model's config says ``device: cuda`` but the library that would
    run it cannot use CUDA (a clear start-up error instead of a load failure, or the CPU)."""
    problems = []
    for kind, section in _models(config).items():
        if str(section.get("device") or "auto") != "cuda":
            continue
        libs = _libraries_for(kind, section)
        if any(getattr(report, lib).can_use_cuda for lib in libs):
            continue
        why = "; ".join(c for c in (getattr(report, lib).cause() for lib in libs) if c)
        hint = ""
        if kind == "asr" and asr_backend(section) == "ctranslate2" and report.torch.can_use_cuda:
            hint = " (models.asr.backend: transformers or auto runs Whisper on torch's CUDA)"
        problems.append(f"models.{kind}.device is cuda, but {why}{hint}")
    if problems:
        where = "" if report.gpu_present else " (no GPU found: NVML " + report.nvml + ")"
        fix = (
            f"; {INSTALL_HINT}"
            if report.machine in ("aarch64", "arm64") and report.gpu_present
            else "; set device: auto or cpu, or install a CUDA build"
        )
        raise DeviceError("; ".join(problems) + where + fix)


def log_report(report: DeviceReport, logger: logging.Logger = log) -> None:
    """One INFO line when all is well; every warning at WARNING level, framed so it stands out."""
    logger.info(
        "devices: %s; torch %s (CUDA %s, %d device(s)); ctranslate2 %s (%d CUDA device(s))",
        report.summary,
        report.torch.version,
        report.torch.cuda_version,
        report.torch.device_count,
        report.ctranslate2.version,
        report.ctranslate2.device_count,
    )
    for warning in report.warnings:
        logger.warning("!!! DEVICE WARNING: %s", warning)
