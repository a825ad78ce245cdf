"""scripts/platform_install.py: which lock and which index a machine gets (faked platform facts),
the aarch64 lock kept in step with requirements.lock, and that lock resolving for
aarch64-unknown-linux-gnu against PyPI (skipped only when PyPI cannot be reached)."""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("platform_install", REPO / "scripts" / "platform_install.py")
pi = importlib.util.module_from_spec(_spec)
sys.modules["platform_install"] = pi
_spec.loader.exec_module(pi)

GB10 = pi.PlatformFacts("Linux", "aarch64", True, "580.95.05", "13.0")


def step_pins(step) -> dict[str, str]:
    return {pi.requirement_name(p): p for p in step.requirements}


# -- the decision --------------------------------------------------------------------------
@pytest.mark.parametrize(
    "facts",
    [
        pi.PlatformFacts("Linux", "x86_64", False),
        pi.PlatformFacts("Linux", "x86_64", True, "580.95.05", "13.0"),
        pi.PlatformFacts("Darwin", "arm64", False),
    ],
)
def test_everything_but_linux_aarch64_installs_requirements_lock_as_before(facts):
    plan = pi.decide(facts)
    assert plan.lock == "requirements.lock" and plan.torch == "as locked"
    # exactly setup.sh's own line: uv pip install -q --compile-bytecode --python .venv/bin/python -r requirements.lock
    assert [s.args for s in plan.steps] == [("--compile-bytecode", "-r", "requirements.lock")]
    assert not plan.steps[0].requirements and not plan.warnings and not plan.source_builds


def test_gb10_gets_the_aarch64_lock_and_cuda_torch_from_pytorchs_index():
    plan = pi.decide(GB10)
    assert plan.lock == "requirements-aarch64-cuda.lock" and plan.torch == "cuda" and not plan.warnings
    first, second = plan.steps
    assert "--no-deps" in first.args and "--index-url" not in first.args  # PyPI
    assert not set(step_pins(first)) & {"torch", "torchaudio", "torchvision", "torchcodec"}
    assert second.args[-2:] == ("--index-url", "https://download.pytorch.org/whl/cu129") and "--no-deps" in second.args
    assert step_pins(second) == {
        "torch": "torch==2.8.0+cu129",
        "torchaudio": "torchaudio==2.8.0",
        "torchvision": "torchvision==0.23.0",
    }
    assert "praat-parselmouth" in plan.source_builds and plan.check_ignores == ("torchcodec",)


def test_a_mirror_can_stand_in_for_pytorchs_index():
    plan = pi.decide(GB10, torch_index="file:///srv/wheels/cu129")
    assert plan.steps[1].args[-1] == "file:///srv/wheels/cu129"


def test_driver_cuda_read_from_the_driver_version_when_nvidia_smi_is_absent():
    assert pi.PlatformFacts("Linux", "aarch64", True, "580.95.05").supported_cuda() == (13, 0)
    assert pi.PlatformFacts("Linux", "aarch64", True, "575.51.03").supported_cuda() == (12, 9)
    assert pi.PlatformFacts("Linux", "aarch64", True, "570.86.10").supported_cuda() == (12, 8)
    assert pi.decide(pi.PlatformFacts("Linux", "aarch64", True, "580.95.05")).torch == "cuda"


def test_aarch64_driver_too_old_for_cuda_12_9_gets_cpu_torch_and_a_loud_warning():
    plan = pi.decide(pi.PlatformFacts("Linux", "aarch64", True, "570.86.10", "12.8"))
    assert plan.torch == "cpu" and plan.lock == "requirements-aarch64-cuda.lock"
    assert "--index-url" not in plan.steps[1].args
    assert step_pins(plan.steps[1])["torch"] == "torch==2.8.0"
    assert len(plan.warnings) == 1 and "supports CUDA 12.8" in plan.warnings[0] and "CPU" in plan.warnings[0]


def test_aarch64_without_a_driver_gets_cpu_torch_from_pypi():
    plan = pi.decide(pi.PlatformFacts("Linux", "aarch64", False))
    assert plan.torch == "cpu" and not plan.warnings
    assert step_pins(plan.steps[1]) == {
        "torch": "torch==2.8.0",
        "torchaudio": "torchaudio==2.8.0",
        "torchvision": "torchvision==0.23.0",
    }
    assert all("--index-url" not in s.args for s in plan.steps)


def test_nvidias_container_keeps_its_own_torch():
    """VOICEMAN_KEEP_TORCH: a venv with --system-site-packages inside nvcr.io/nvidia/pytorch."""
    plan = pi.decide(GB10, keep_torch=True)
    assert plan.torch == "kept" and len(plan.steps) == 1
    assert not set(step_pins(plan.steps[0])) & {"torch", "torchaudio", "torchvision", "torchcodec"}
    assert pi.decide(pi.PlatformFacts("Linux", "x86_64", True), keep_torch=True).lock == "requirements.lock"


def test_unknown_driver_cuda_assumes_cuda_with_a_warning():
    plan = pi.decide(pi.PlatformFacts("Linux", "aarch64", True))
    assert plan.torch == "cuda" and "could not read" in plan.warnings[0]


# -- reading the real machine ------------------------------------------------------------------
NVIDIA_SMI = """\
+-----------------------------------------------------------------------------------------+
| NVIDIA-SMI 580.95.05              Driver Version: 580.95.05      CUDA Version: 13.0     |
|-----------------------------------------+------------------------+----------------------+
|   0  NVIDIA GB10                    On  |   0000000F:01:00.0 Off |                  N/A |
"""


def test_parse_nvidia_smi_and_proc_version():
    assert pi.parse_nvidia_smi(NVIDIA_SMI) == ("580.95.05", "13.0")
    assert pi.parse_nvidia_smi("") == (None, None)
    proc = "NVRM version: NVIDIA UNIX Open Kernel Module for aarch64  580.95.05  Release Build  (dvs-builder@U22)\n"
    assert pi.parse_proc_version(proc) == "580.95.05"


def test_detect_sees_a_driver_through_proc(tmp_path, monkeypatch):
    monkeypatch.setattr(pi.shutil, "which", lambda name: None)
    (tmp_path / "driver" / "nvidia").mkdir(parents=True)
    (tmp_path / "driver" / "nvidia" / "version").write_text(
        "NVRM version: NVIDIA UNIX Open Kernel Module for aarch64  575.57.08  Release Build\n"
    )
    facts = pi.detect(proc_root=tmp_path)
    assert facts.nvidia_driver and facts.driver_version == "575.57.08" and facts.supported_cuda() == (12, 9)
    assert not pi.detect(proc_root=tmp_path / "none").nvidia_driver


# -- running a plan (uv faked: it records what it was asked) ----------------------------------
def fake_uv(tmp_path: Path, check_output: str = "", check_rc: int = 0) -> tuple[list[str], Path]:
    log = tmp_path / "uv.log"
    script = tmp_path / "uv"
    script.write_text(
        "#!/usr/bin/env python3\nimport sys\nargs = sys.argv[1:]\n"
        f"open({str(log)!r}, 'a').write(' '.join(args) + '\\n')\n"
        "for i, a in enumerate(args):\n"
        "    if a == '-r' and args[i + 1].startswith('/'):\n"
        f"        open({str(log)!r}, 'a').write(open(args[i + 1]).read())\n"
        f"if args[:2] == ['pip', 'check']:\n    print({check_output!r})\n    sys.exit({check_rc})\n"
    )
    script.chmod(0o755)
    return [str(script)], log


def test_install_runs_both_steps_then_checks(tmp_path):
    uv, log = fake_uv(tmp_path, "The package `pyannote-audio` requires `torchcodec>=0.7.0`, but it's not installed", 1)
    assert pi.install(pi.decide(GB10), uv, ".venv/bin/python") == 0  # torchcodec is missing on purpose
    text = log.read_text()
    assert "pip install -q --python .venv/bin/python --compile-bytecode --no-deps -r" in text
    assert "--index-url https://download.pytorch.org/whl/cu129 -r" in text
    assert "torch==2.8.0+cu129" in text and "pyannote-audio==" in text and "pip check" in text


def test_install_fails_when_the_check_finds_something_else_missing(tmp_path, capsys):
    uv, _ = fake_uv(tmp_path, "The package `torch` requires `nvidia-cudnn-cu12==9.10.2.21`, but it's not installed", 1)
    assert pi.install(pi.decide(GB10), uv, ".venv/bin/python") == 1
    assert "nvidia-cudnn-cu12" in capsys.readouterr().err


def test_install_on_x86_64_is_the_one_locked_install(tmp_path):
    uv, log = fake_uv(tmp_path)
    assert pi.install(pi.decide(pi.PlatformFacts("Linux", "x86_64", True)), uv, ".venv/bin/python") == 0
    assert log.read_text() == "pip install -q --python .venv/bin/python --compile-bytecode -r requirements.lock\n"


def test_setup_sh_keeps_the_x86_64_line_and_sends_aarch64_to_platform_install():
    text = (REPO / "scripts" / "setup.sh").read_text()
    assert '"${uv[@]}" pip install -q --compile-bytecode --python .venv/bin/python -r requirements.lock' in text
    assert re.search(
        r"Linux-aarch64 \]; then.*?python3 scripts/platform_install\.py install --python \.venv/bin/python "
        r'-- "\$\{uv\[@\]\}".*?else\n"\$\{uv\[@\]\}" pip install .*? -r requirements\.lock\nfi',
        text,
        re.S,
    )


# -- the aarch64 lock ---------------------------------------------------------------------------
def test_aarch64_lock_is_derived_from_requirements_lock():
    """Same pins as requirements.lock wherever linux-aarch64 has them; regenerate with
    `python3 scripts/platform_install.py derive-lock` after changing requirements.lock."""
    derived = pi.derive_aarch64_lock((REPO / "requirements.lock").read_text())
    assert (REPO / "requirements-aarch64-cuda.lock").read_text() == derived, (
        "requirements-aarch64-cuda.lock is out of date: python3 scripts/platform_install.py derive-lock"
    )
    main = {pi.requirement_name(p): p for p in pi.pins((REPO / "requirements.lock").read_text())}
    arm = {pi.requirement_name(p): p for p in pi.pins(derived)}
    for name, line in arm.items():
        if name not in ("torch", "torchaudio", "torchvision"):
            assert main[name] == line
    dropped = set(main) - set(arm)
    assert dropped == {n for n in main if n.startswith("nvidia-") and n.endswith("-cu12")} | {
        "triton",
        "torchcodec",
        "colorama",
        "pyreadline3",
    }
    assert "nvidia-ml-py" in arm  # NVML's binding is not a CUDA library: the governor needs it everywhere


def _uv() -> list[str] | None:
    if shutil.which("uv"):
        return ["uv"]
    for python in (sys.executable, shutil.which("python3")):
        if python and subprocess.run([python, "-m", "uv", "--version"], capture_output=True).returncode == 0:
            return [python, "-m", "uv"]
    return None


def _index_unreachable() -> str | None:
    index = os.environ.get("UV_INDEX_URL") or os.environ.get("PIP_INDEX_URL") or "https://pypi.org/simple"
    try:
        urllib.request.urlopen(index.rstrip("/") + "/pip/", timeout=10).close()
    except Exception as exc:  # noqa: BLE001 - any failure to reach it is the skip reason
        return f"package index {index} unreachable ({type(exc).__name__}: {exc})"
    return None


@pytest.mark.timeout(120)
@pytest.mark.parametrize("python_version", ["3.11", "3.12"])  # 3.12: NVIDIA's PyTorch container
def test_aarch64_lock_resolves_for_aarch64_linux_against_pypi(tmp_path, python_version):
    """Every pin but the CUDA torch/torchaudio/torchvision (those come from PyTorch's index,
    unreachable from here) has a linux-aarch64 distribution on PyPI, and the only ones built
    from source are the known ones."""
    uv = _uv()
    if uv is None:
        pytest.skip("uv is not installed (scripts/setup.sh installs it)")
    unreachable = _index_unreachable()
    if unreachable:
        pytest.skip(unreachable)
    plan = pi.decide(GB10)
    cpu_torch = pi.decide(pi.PlatformFacts("Linux", "aarch64", False)).steps[1].requirements
    req = tmp_path / "aarch64-no-torch.txt"
    # the CPU torch/torchaudio/torchvision an aarch64 box without a driver gets from PyPI resolve too
    req.write_text("\n".join(plan.steps[0].requirements + cpu_torch) + "\n")
    proc = subprocess.run(
        uv
        + [
            "pip",
            "compile",
            str(req),
            "--python-platform",
            "aarch64-unknown-linux-gnu",
            "--python-version",
            python_version,
            "--no-deps",
            "--no-header",
            "-v",
            "-o",
            str(tmp_path / "resolved.txt"),
        ],
        capture_output=True,
        text=True,
        timeout=110,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    resolved = {pi.requirement_name(p) for p in pi.pins((tmp_path / "resolved.txt").read_text())}
    wanted = plan.steps[0].requirements + cpu_torch
    assert resolved <= {pi.requirement_name(p) for p in wanted}
    # only lines whose marker excludes this Python (librosa 0.11 / audioread below 3.12) may drop out
    assert {pi.requirement_name(p) for p in wanted if ";" not in p} <= resolved
    sdists = set(
        re.findall(r"Selecting: ([A-Za-z0-9_.-]+)==\S+ \[compatible\] \(\S+\.(?:tar\.gz|zip|tar\.bz2)\)", proc.stderr)
    )
    assert sdists <= set(pi.SOURCE_BUILDS_AARCH64), (
        f"new packages without a linux-aarch64 wheel: {sorted(sdists - set(pi.SOURCE_BUILDS_AARCH64))}"
    )
