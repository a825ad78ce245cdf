#!/usr/bin/env python3
"""Which lock file and which package index a machine needs (called by scripts/setup.sh).

    python3 scripts/platform_install.py plan [--json]       what this machine would get, and why
    python3 scripts/platform_install.py install --python .venv/bin/python -- python3 -m uv
    python3 scripts/platform_install.py derive-lock [--check]   requirements.lock -> requirements-aarch64-cuda.lock

VOICEMAN_KEEP_TORCH=1 (NVIDIA's PyTorch container, a venv made with --system-site-packages):
install everything but torch/torchaudio/torchvision and use the ones already there.
VOICEMAN_TORCH_INDEX=URL: take the CUDA torch from a mirror of that index (a proxy, or a file:// PEP 503 tree).

x86_64 (and every platform other than linux-aarch64) installs ``requirements.lock`` exactly as
setup.sh always has.  linux-aarch64 cannot: PyPI's torch for it is a ``+cpu`` build (its
nvidia-* requirements carry an x86_64 marker) and torchcodec 0.7.0 has no aarch64 wheel.
There the environment comes from ``requirements-aarch64-cuda.lock`` in two ``--no-deps``
steps: every pin but torch/torchaudio/torchvision from PyPI, then those three from PyPI
(no NVIDIA driver: the CPU build) or from PyTorch's CUDA 12.9 index (an NVIDIA driver that
supports CUDA 12.9) -- see the lock's header for why CUDA 12.9.

`decide` is the whole decision, a pure function of `PlatformFacts`, so it is tested with
faked facts (tests/test_platform_install.py); `detect` reads the real ones.  Standard library
only: this runs under the system python3 before the virtual environment exists.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import textwrap
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

REPO = Path(__file__).resolve().parents[1]
MAIN_LOCK = "requirements.lock"
AARCH64_LOCK = "requirements-aarch64-cuda.lock"

# PyTorch's own wheel index for the CUDA builds: torch 2.8.0 publishes linux-aarch64 CUDA
# wheels only for cu129 (there is no 2.8.0+cu128 aarch64 wheel).  VOICEMAN_TORCH_INDEX points
# the same step at a mirror of it (a proxy, or a file:// PEP 503 tree on offline evidence machines).
TORCH_CUDA_INDEX = "https://download.pytorch.org/whl/cu129"
TORCH_CUDA_LINE = (12, 9)
TORCH_PACKAGES = ("torch", "torchaudio", "torchvision")
# What the aarch64 lock pins for them (torch's version must equal requirements.lock's).
TORCH_CUDA_PINS = {"torch": "2.8.0+cu129", "torchaudio": "2.8.0", "torchvision": "0.23.0"}
# Locked packages with no linux-aarch64 wheel, left out of the aarch64 lock, and why.
NO_AARCH64_WHEEL = {
    "torchcodec": "0.7.0 has no linux-aarch64 wheel (torchcodec's aarch64 wheels begin with 0.12.1); "
    "pyannote-audio falls back with a warning, voiceman decodes audio with PyAV",
}
# Packages PyPI has only as source for linux-aarch64 (checked by tests/test_platform_install.py);
# the native ones need a C/C++ compiler on the box.
SOURCE_BUILDS_AARCH64 = {
    "connection-pool": False,
    "kiwipiepy-model": False,
    "praat-parselmouth": True,
    "webrtcvad": True,
}
# The lowest driver branch whose CUDA is >= the version (CUDA's release notes, Linux).
DRIVER_CUDA = [
    ((580, 65), (13, 0)),
    ((575, 51), (12, 9)),
    ((570, 26), (12, 8)),
    ((560, 28), (12, 6)),
    ((550, 54), (12, 4)),
    ((535, 54), (12, 2)),
    ((525, 60), (12, 0)),
]


@dataclass(frozen=True)
class PlatformFacts:
    system: str  # platform.system(): Linux, Darwin, Windows
    machine: str  # platform.machine(): x86_64, aarch64, arm64
    nvidia_driver: bool  # nvidia-smi on PATH or /proc/driver/nvidia present
    driver_version: Optional[str] = None  # "580.95.05"
    driver_cuda: Optional[str] = None  # the highest CUDA the driver supports ("13.0", nvidia-smi's header)

    @property
    def linux_aarch64(self) -> bool:
        return self.system == "Linux" and self.machine in ("aarch64", "arm64")

    def supported_cuda(self) -> Optional[Tuple[int, int]]:
        """The CUDA version the driver supports: nvidia-smi's word, else from the driver version."""
        if self.driver_cuda:
            parsed = _version_tuple(self.driver_cuda)
            if parsed:
                return parsed
        driver = _version_tuple(self.driver_version or "")
        if driver:
            for minimum, cuda in DRIVER_CUDA:
                if driver >= minimum:
                    return cuda
            return (11, 0)
        return None


@dataclass(frozen=True)
class InstallStep:
    what: str
    args: Tuple[str, ...]  # after `uv pip install --python PY`
    requirements: Tuple[str, ...] = ()  # pin lines, written to a temporary -r file


@dataclass(frozen=True)
class InstallPlan:
    lock: str
    torch: str  # "as locked" | "cuda" | "cpu"
    why: str
    steps: Tuple[InstallStep, ...]
    warnings: Tuple[str, ...] = ()
    source_builds: Tuple[str, ...] = ()  # native packages built from source (need a compiler)
    check_ignores: Tuple[str, ...] = field(default=())  # packages `uv pip check` may miss on purpose

    def to_dict(self) -> dict:
        out = asdict(self)
        for step in out["steps"]:
            step["requirements"] = list(step["requirements"])
        return out


def _version_tuple(text: str) -> Optional[Tuple[int, int]]:
    match = re.match(r"\s*(\d+)\.(\d+)", text)
    return (int(match.group(1)), int(match.group(2))) if match else None


# -- reading the lock -------------------------------------------------------------------
def lock_blocks(text: str) -> List[Tuple[str, List[str]]]:
    """[(requirement line, its indented comment lines)] in file order (header comments dropped)."""
    blocks: List[Tuple[str, List[str]]] = []
    for line in text.splitlines():
        if line and not line[0].isspace() and not line.startswith("#"):
            blocks.append((line, []))
        elif blocks and line.startswith(" "):
            blocks[-1][1].append(line)
    return blocks


def requirement_name(line: str) -> str:
    return re.split(r"[=<>!~ ;\[]", line, maxsplit=1)[0].strip().lower().replace("_", "-")


def pins(text: str) -> List[str]:
    return [line for line, _ in lock_blocks(text)]


# -- the decision -------------------------------------------------------------------------
def decide(
    facts: PlatformFacts, repo: Path = REPO, torch_index: Optional[str] = None, keep_torch: bool = False
) -> InstallPlan:
    if not facts.linux_aarch64:
        return InstallPlan(
            lock=MAIN_LOCK,
            torch="as locked",
            why=f"{facts.system}-{facts.machine}: the universal lock, as always",
            steps=(InstallStep("the locked environment", ("--compile-bytecode", "-r", MAIN_LOCK)),),
        )
    locked = pins((repo / AARCH64_LOCK).read_text())
    base = tuple(p for p in locked if requirement_name(p) not in TORCH_PACKAGES)
    torch_pins = tuple(p for p in locked if requirement_name(p) in TORCH_PACKAGES)
    sources = tuple(name for name, native in SOURCE_BUILDS_AARCH64.items() if native)
    first = InstallStep(
        "every locked package but torch/torchaudio/torchvision, from PyPI", ("--compile-bytecode", "--no-deps"), base
    )
    if keep_torch:
        return InstallPlan(
            AARCH64_LOCK,
            "kept",
            "linux-aarch64, torch/torchaudio/torchvision kept from this environment "
            "(VOICEMAN_KEEP_TORCH, e.g. NVIDIA's PyTorch container)",
            (first,),
            (),
            sources,
            tuple(NO_AARCH64_WHEEL) + TORCH_PACKAGES,
        )
    warnings: List[str] = []
    cuda = facts.supported_cuda()
    line = ".".join(map(str, TORCH_CUDA_LINE))
    if facts.nvidia_driver and (cuda is None or cuda >= TORCH_CUDA_LINE):
        if cuda is None:
            warnings.append(f"could not read which CUDA the NVIDIA driver supports; assuming >= {line}")
        index = torch_index or TORCH_CUDA_INDEX
        second = InstallStep(
            f"torch/torchaudio/torchvision, CUDA {line} builds, from {index}",
            ("--compile-bytecode", "--no-deps", "--index-url", index),
            torch_pins,
        )
        return InstallPlan(
            AARCH64_LOCK,
            "cuda",
            f"linux-aarch64 with an NVIDIA driver (CUDA {'.'.join(map(str, cuda)) if cuda else '?'}): "
            f"PyPI's torch is CPU-only here, so torch comes from PyTorch's CUDA {line} index",
            (first, second),
            tuple(warnings),
            sources,
            tuple(NO_AARCH64_WHEEL),
        )
    if facts.nvidia_driver:
        warnings.append(
            f"the NVIDIA driver ({facts.driver_version or '?'}) supports CUDA {'.'.join(map(str, cuda or ()))}, "
            f"but torch {TORCH_CUDA_PINS['torch']} needs CUDA {line} (driver >= 575): installing the CPU build of "
            f"torch; every model will run on the CPU and the daemon says so at every start. Update the "
            f"driver and run ./scripts/setup.sh again."
        )
        why = "linux-aarch64 with an NVIDIA driver too old for the CUDA builds: CPU torch from PyPI"
    else:
        why = "linux-aarch64 without an NVIDIA driver: CPU torch from PyPI"
    cpu_pins = tuple(re.sub(r"\+[A-Za-z0-9.]+", "", p) for p in torch_pins)
    second = InstallStep(
        "torch/torchaudio/torchvision, CPU builds, from PyPI", ("--compile-bytecode", "--no-deps"), cpu_pins
    )
    return InstallPlan(AARCH64_LOCK, "cpu", why, (first, second), tuple(warnings), sources, tuple(NO_AARCH64_WHEEL))


# -- the real machine -----------------------------------------------------------------------
def parse_nvidia_smi(output: str) -> Tuple[Optional[str], Optional[str]]:
    """(driver version, CUDA version) from nvidia-smi's header."""
    driver = re.search(r"Driver Version:\s*([\d.]+)", output)
    cuda = re.search(r"CUDA Version:\s*([\d.]+)", output)
    return (driver.group(1) if driver else None, cuda.group(1) if cuda else None)


def parse_proc_version(text: str) -> Optional[str]:
    """The driver version from /proc/driver/nvidia/version ("NVRM version: ... 580.95.05 ...")."""
    match = re.search(r"NVRM version:.*?\s(\d+\.\d+(?:\.\d+)?)\s", text)
    return match.group(1) if match else None


def detect(proc_root: Path = Path("/proc")) -> PlatformFacts:
    system, machine = platform.system(), platform.machine()
    proc_nvidia = proc_root / "driver" / "nvidia"
    smi = shutil.which("nvidia-smi")
    driver_version = driver_cuda = None
    if smi:
        try:
            out = subprocess.run([smi], capture_output=True, text=True, timeout=30).stdout
            driver_version, driver_cuda = parse_nvidia_smi(out)
        except (OSError, subprocess.SubprocessError):
            pass
    if driver_version is None and (proc_nvidia / "version").is_file():
        try:
            driver_version = parse_proc_version((proc_nvidia / "version").read_text())
        except OSError:
            pass
    return PlatformFacts(system, machine, bool(smi) or proc_nvidia.exists(), driver_version, driver_cuda)


# -- the aarch64 lock, derived from requirements.lock -----------------------------------------
AARCH64_HEADER = """\
# requirements-aarch64-cuda.lock -- linux-aarch64 (the GB10 "EdgeXpert": Grace CPU, Blackwell GPU of
# compute capability 12.1, 128 GB unified memory).  Derived from requirements.lock by
#    python3 scripts/platform_install.py derive-lock
# (tests/test_platform_install.py fails when the two drift apart).  scripts/setup.sh installs it through
# scripts/platform_install.py in two --no-deps steps: every pin but torch/torchaudio/torchvision from
# PyPI, then those three from https://download.pytorch.org/whl/cu129 (NVIDIA driver for CUDA >= 12.9)
# or, without one, their CPU builds from PyPI.
#
# Why torch 2.8.0 + CUDA 12.9:
#  - PyPI's torch for linux-aarch64 is "+cpu" (its nvidia-* requirements carry an x86_64 marker), so
#    the CUDA build has to come from PyTorch's own index.
#  - Blackwell needs CUDA >= 12.8.  torch 2.8.0 publishes its linux-aarch64 CUDA wheels for cu129
#    only (there is no 2.8.0+cu128 aarch64 wheel); they carry sm_80/sm_90/sm_100/sm_120 kernels, and
#    CUDA runs sm_120 cubins on compute capability 12.1 (same major, higher minor).  torch 2.8 may
#    print "Found GPU0 NVIDIA GB10 which is of cuda capability 12.1 ... (8.0) - (12.0)": that warning
#    is about the newest kernel it carries, not about whether they run.
#  - whisperx 3.8.6 breaks with torch 2.9, so torch stays at requirements.lock's 2.8.0; torchaudio
#    2.8.0 and torchvision 0.23.0 are the builds that go with it (PyTorch's aarch64 ones carry no
#    "+cu129" label).
#  - The 2.8.0 aarch64 CUDA wheel bundles its CUDA 12.9 libraries (no nvidia-* packages needed); it
#    needs an NVIDIA driver >= 575 (the GB10's DGX OS ships 580, CUDA 13.0).
#
# Left out of requirements.lock's pins: those for other platforms (nvidia-*-cu12 and triton are
# x86_64-only, colorama and pyreadline3 Windows-only), and
{left_out}
# Built from source on linux-aarch64 (PyPI has no wheel for them):
#    {sources}.
# praat-parselmouth and webrtcvad need a C/C++ compiler (setup.sh installs g++ when run as root).
# CTranslate2 4.8.5's aarch64 wheel has no CUDA: ASR on the GB10's GPU is Whisper on torch
# (models.asr.backend: auto or transformers); the daemon says at start which model runs where.
"""


def _on_linux_aarch64(line: str) -> bool:
    """Whether a universal-lock line's marker can hold on linux-aarch64 (CPython 3.11 or 3.12)."""
    if ";" not in line:
        return True
    try:
        from packaging.markers import Marker
    except ImportError:  # the system python3 may lack it; pip always carries a copy
        from pip._vendor.packaging.markers import Marker  # type: ignore[no-redef]
    marker = Marker(line.split(";", 1)[1])
    return any(
        marker.evaluate(
            {
                "sys_platform": "linux",
                "platform_system": "Linux",
                "platform_machine": "aarch64",
                "os_name": "posix",
                "implementation_name": "cpython",
                "platform_python_implementation": "CPython",
                "python_version": v[:4],
                "python_full_version": v,
            }
        )
        for v in ("3.11.9", "3.12.3")
    )


def derive_aarch64_lock(main_text: str) -> str:
    from_main = {requirement_name(line): line for line, _ in lock_blocks(main_text)}
    main_torch = from_main.get("torch", "")
    want = TORCH_CUDA_PINS["torch"].split("+")[0]
    if main_torch.split(";")[0].strip() != f"torch=={want}":
        raise SystemExit(
            f"requirements.lock pins {main_torch!r}, the aarch64 lock is made for torch=={want}: "
            f"choose the CUDA line for the new torch (TORCH_CUDA_PINS in {Path(__file__).name})"
        )
    left_out = "\n".join(
        textwrap.fill(f"{name}: {why}", 100, initial_indent="#  - ", subsequent_indent="#    ")
        for name, why in NO_AARCH64_WHEEL.items()
    )
    out = [AARCH64_HEADER.format(left_out=left_out, sources=", ".join(SOURCE_BUILDS_AARCH64))]
    for line, comments in lock_blocks(main_text):
        name = requirement_name(line)
        if name in NO_AARCH64_WHEEL or not _on_linux_aarch64(line):
            continue
        if name in TORCH_PACKAGES:
            line = f"{name}=={TORCH_CUDA_PINS[name]}"
            comments = comments + [f"    # from {TORCH_CUDA_INDEX} (CPU build from PyPI without an NVIDIA driver)"]
        out.append("\n".join([line] + comments))
    return "\n".join(out) + "\n"


# -- running it -------------------------------------------------------------------------------
def _has_compiler() -> bool:
    return any(shutil.which(c) for c in ("c++", "g++", "clang++"))


def install(plan: InstallPlan, uv: Sequence[str], python: str, quiet: bool = True, cwd: Path = REPO) -> int:
    for warning in plan.warnings:
        print(f"setup: WARNING: {warning}", file=sys.stderr)
    print(f"setup: {plan.why}; lock {plan.lock}")
    if plan.source_builds and not _has_compiler():
        print(
            f"setup: {', '.join(plan.source_builds)} must be built from source here and no C++ compiler was "
            f"found: install one (sudo apt-get install g++) and run ./scripts/setup.sh again",
            file=sys.stderr,
        )
        return 2
    with tempfile.TemporaryDirectory(prefix="voiceman-setup-") as tmp:
        for i, step in enumerate(plan.steps):
            args = list(uv) + ["pip", "install"] + (["-q"] if quiet else []) + ["--python", python] + list(step.args)
            if step.requirements:
                req = Path(tmp) / f"step{i + 1}.txt"
                req.write_text("\n".join(step.requirements) + "\n")
                args += ["-r", str(req)]
            print(f"setup: {step.what}")
            rc = subprocess.run(args, cwd=cwd).returncode
            if rc:
                return rc
    if plan.lock != MAIN_LOCK:
        # Both steps were --no-deps: anything a wheel needs that the lock lacks shows up here.
        check = subprocess.run(list(uv) + ["pip", "check", "--python", python], capture_output=True, text=True, cwd=cwd)
        problems = [
            line
            for line in (check.stdout + check.stderr).splitlines()
            if line.strip()
            and not any(name in line for name in plan.check_ignores)
            and not line.startswith(("Checked ", "Found ", "All installed"))
        ]
        if check.returncode and problems:
            print("setup: the installed environment is incomplete:\n  " + "\n  ".join(problems), file=sys.stderr)
            return 1
        if plan.torch == "kept":
            versions = subprocess.run([python, "-c", KEPT_TORCH_CHECK], capture_output=True, text=True).stdout.strip()
            print(f"setup: kept from the environment: {versions or 'nothing (torch is not importable)'}")
            if not versions.startswith("torch 2.8"):
                print(
                    f"setup: WARNING: voiceman is locked to torch {TORCH_CUDA_PINS['torch'].split('+')[0]} "
                    "(whisperx 3.8.6 breaks with torch 2.9): use a container with torch 2.8",
                    file=sys.stderr,
                )
    return 0


KEPT_TORCH_CHECK = """
import importlib
out = []
for name in ("torch", "torchaudio", "torchvision"):
    try:
        module = importlib.import_module(name)
        out.append(f"{name} {module.__version__}")
    except Exception as exc:
        out.append(f"{name} MISSING ({type(exc).__name__})")
print(", ".join(out))
"""


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p_plan = sub.add_parser("plan", help="print what this machine would install, and why")
    p_plan.add_argument("--json", action="store_true")
    p_install = sub.add_parser("install", help="install the plan into a virtual environment")
    p_install.add_argument("--python", required=True, help="the environment's python (e.g. .venv/bin/python)")
    p_install.add_argument("uv", nargs="+", help="how to run uv, after -- (e.g. -- python3 -m uv)")
    p_derive = sub.add_parser("derive-lock", help=f"write {AARCH64_LOCK} from {MAIN_LOCK}")
    p_derive.add_argument("--check", action="store_true", help="only say whether the committed file is current")
    args = parser.parse_args(argv)
    if args.command == "derive-lock":
        derived = derive_aarch64_lock((REPO / MAIN_LOCK).read_text())
        target = REPO / AARCH64_LOCK
        if args.check:
            current = target.is_file() and target.read_text() == derived
            print(f"{AARCH64_LOCK} is {'current' if current else 'out of date: run derive-lock'}")
            return 0 if current else 1
        target.write_text(derived)
        print(f"wrote {target}")
        return 0
    plan = decide(
        detect(),
        torch_index=os.environ.get("VOICEMAN_TORCH_INDEX") or None,
        keep_torch=os.environ.get("VOICEMAN_KEEP_TORCH", "") not in ("", "0"),
    )
    if args.command == "plan":
        if args.json:
            print(json.dumps(plan.to_dict(), indent=2))
        else:
            print(f"{plan.why}\nlock: {plan.lock}\ntorch: {plan.torch}")
            for step in plan.steps:
                print(
                    f"  uv pip install {' '.join(step.args)}"
                    + (f"  ({len(step.requirements)} pins)" if step.requirements else "")
                    + f"  # {step.what}"
                )
            for warning in plan.warnings:
                print(f"WARNING: {warning}")
        return 0
    return install(plan, args.uv, args.python)


if __name__ == "__main__":
    sys.exit(main())
