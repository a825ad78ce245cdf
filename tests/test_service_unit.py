"""daemon/voiceman.service: the sandbox is measured by systemd's own analyzer, and the settings
the security model depends on (private runtime dir, private files, restart) are present."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

UNIT = Path(__file__).resolve().parents[1] / "daemon" / "voiceman.service"
MAX_EXPOSURE = 3.0


def unit_settings(text: str) -> dict[str, list[str]]:
    """``Key=value`` lines of the [Service] section (a key may repeat, as in systemd)."""
    settings: dict[str, list[str]] = {}
    section = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
            continue
        if section == "Service" and "=" in line:
            key, value = line.split("=", 1)
            settings.setdefault(key.strip(), []).append(value.strip())
    return settings


def overall_exposure(output: str) -> float:
    """``→ Overall exposure level for voiceman.service: 0.7 SAFE 😀`` -> 0.7"""
    match = re.search(r"Overall exposure level for \S+:\s*([0-9]+(?:\.[0-9]+)?)", output)
    if not match:
        raise AssertionError(f"no 'Overall exposure level' line in systemd-analyze output:\n{output[-3000:]}")
    return float(match.group(1))


@pytest.fixture(scope="module")
def settings() -> dict[str, list[str]]:
    return unit_settings(UNIT.read_text())


def test_overall_exposure_parser():
    assert (
        overall_exposure("✗ UMask= ...  0.1\n\n→ Overall exposure level for voiceman.service: 9.2 UNSAFE 😨\n") == 9.2
    )
    with pytest.raises(AssertionError):
        overall_exposure("Failed to load unit")


def test_systemd_analyze_security_exposure_is_low():
    analyzer = shutil.which("systemd-analyze")
    if analyzer is None:
        pytest.skip("systemd-analyze is not installed (Debian package 'systemd'; scripts/setup.sh installs it)")
    proc = subprocess.run(
        [analyzer, "security", "--offline=true", "--no-pager", str(UNIT)], capture_output=True, text=True, timeout=120
    )
    exposure = overall_exposure(proc.stdout + proc.stderr)
    assert exposure <= MAX_EXPOSURE, f"{UNIT.name}: exposure {exposure} > {MAX_EXPOSURE}\n{proc.stdout[-6000:]}"


def test_restarts_on_failure(settings):
    assert settings.get("Restart") == ["on-failure"]


def test_files_it_creates_are_private(settings):
    assert settings.get("UMask") == ["0077"]


def test_runtime_dir_is_private_to_the_service_user(settings):
    assert settings.get("RuntimeDirectory") == ["voiceman"]
    modes = settings.get("RuntimeDirectoryMode")
    assert modes == ["0700"], f"runtime dir must be 0700 (owner only), got {modes}"
    # The daemon finds its socket dir through VOICEMAN_RUNTIME_DIR: it must be the one above.
    assert "VOICEMAN_RUNTIME_DIR=/run/voiceman" in settings.get("Environment", [])
    # No group sharing of the runtime dir: voiceman refuses a dir that is not 0700.
    assert "Group" not in settings and "SupplementaryGroups" not in settings
    # ... and the install notes must not suggest one (an earlier version did).
    notes = UNIT.read_text().lower()
    for advice in ("the analysts' group owns", "a directory the group owns", "chmod 0770", "chmod 0750"):
        assert advice not in notes, f"install notes suggest a group-shared runtime dir: {advice!r}"


def test_sandbox_essentials(settings):
    """The settings the security model names, checked even where the analyzer is missing."""
    expect = {
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "read-only",
        "PrivateTmp": "yes",
        "CapabilityBoundingSet": "",
        "AmbientCapabilities": "",
        "SystemCallArchitectures": "native",
        "RestrictAddressFamilies": "AF_UNIX",
        "DevicePolicy": "closed",
        "RestrictNamespaces": "yes",
        "RestrictSUIDSGID": "yes",
        "LockPersonality": "yes",
        "RestrictRealtime": "yes",
    }
    for key, value in expect.items():
        assert settings.get(key) == [value], f"{key}={settings.get(key)}, expected {value!r}"
    assert "@system-service" in settings["SystemCallFilter"]
    assert any("/dev/nvidiactl" in allow for allow in settings["DeviceAllow"]), "the GPU must stay reachable"
    assert "MemoryDenyWriteExecute" not in settings, "breaks the JIT of torch/CTranslate2/CUDA"
    assert settings.get("ReadOnlyPaths") and settings.get("ReadWritePaths")
    assert any("voiceman_daemon" in cmd for cmd in settings["ExecStart"])
