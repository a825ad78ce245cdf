"""device_probe: a GPU that NVML sees but the model libraries cannot use is a loud warning
(log, status, run report), and an explicit ``device: cuda`` they cannot meet stops the daemon
at start.  NVML is faked with the governor tests' FakeNvml; the library facts are handed in."""

from __future__ import annotations

import copy
import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest

from test_governor import FakeNvml
from voiceman import atomic, cli
from voiceman.config import load_config
from voiceman.observe.runreport import build_run_report
from voiceman.observe.runreport_html import render_run_report
from voiceman_daemon import device_probe as dp

REPO = Path(__file__).resolve().parents[1]

# The GB10 as set up from PyPI: torch +cpu, CTranslate2 without CUDA.
TORCH_CPU = dp.LibraryFacts("torch", "2.8.0+cpu", False, 0)
CT2_NO_CUDA = dp.LibraryFacts(
    "ctranslate2", "4.8.5", False, 0, error="This CTranslate2 package was not compiled with CUDA support"
)
# ... and as scripts/setup.sh installs it there: torch 2.8.0+cu129 (sm_120 kernels run on 12.1).
TORCH_CU129 = dp.LibraryFacts("torch", "2.8.0+cu129", True, 1, "12.9", (12, 1), ("sm_80", "sm_90", "sm_100", "sm_120"))
NO_NVML = FakeNvml(init_error=FakeNvml.NVMLError_LibraryNotFound)


def config(**models) -> dict:
    cfg = copy.deepcopy(load_config(None))
    for kind, section in models.items():
        cfg["models"][kind] = {**(cfg["models"].get(kind) or {}), **section}
    return cfg


def test_gpu_present_but_torch_cpu_build_is_a_warning_naming_the_cause():
    report = dp.probe(
        config(ser_dimensional={"id": "/models/ser-dim"}),
        nvml=FakeNvml(),
        torch=TORCH_CPU,
        ctranslate2=CT2_NO_CUDA,
        machine="aarch64",
    )
    assert report.gpu_present and report.gpu_name == "NVIDIA GB10"
    text = "\n".join(report.warnings)
    assert "torch 2.8.0+cpu has no CUDA" in text
    assert "ctranslate2 4.8.5 has no CUDA on this platform" in text
    assert any(
        w.startswith("GPU NVIDIA GB10 is present but SER (dimensional) runs on the CPU") for w in report.warnings
    )
    assert any(
        w.startswith("GPU NVIDIA GB10 is present but ASR (backend auto) runs on the CPU") for w in report.warnings
    )
    assert any("requirements-aarch64-cuda.lock" in w for w in report.warnings)  # how to fix it, on aarch64
    assert "torch 2.8.0+cpu has no CUDA" in report.cause
    assert report.models["ser_dimensional"] == {
        "device": "auto",
        "libraries": ["torch"],
        "library": "torch",
        "on_gpu": False,
    }
    json.dumps(report.to_dict())  # goes into stats / daemon_stats.json as it is


def test_warnings_are_logged_loudly(caplog):
    report = dp.probe(config(), nvml=FakeNvml(), torch=TORCH_CPU, ctranslate2=CT2_NO_CUDA, machine="aarch64")
    with caplog.at_level(logging.INFO, logger="voiceman_daemon.device_probe"):
        dp.log_report(report)
    loud = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert loud and all("DEVICE WARNING" in r.getMessage() for r in loud)
    assert any("torch 2.8.0+cpu has no CUDA" in r.getMessage() for r in loud)


def test_explicit_cuda_that_the_library_cannot_use_is_a_start_up_error():
    cfg = config(ser_categorical={"id": "/models/ser-cat", "device": "cuda"})
    report = dp.probe(cfg, nvml=FakeNvml(), torch=TORCH_CPU, ctranslate2=CT2_NO_CUDA, machine="aarch64")
    with pytest.raises(
        dp.DeviceError, match=r"models\.ser_categorical\.device is cuda, but torch 2\.8\.0\+cpu has no CUDA"
    ):
        dp.check_requested_device(report, cfg)
    # device: cpu is the user's choice: no warning for it, no error
    cfg = config(asr={"device": "cpu"})
    report = dp.probe(cfg, nvml=FakeNvml(), torch=TORCH_CPU, ctranslate2=CT2_NO_CUDA, machine="aarch64")
    assert not report.warnings
    dp.check_requested_device(report, cfg)


@pytest.mark.parametrize("backend, ok", [("ctranslate2", False), ("transformers", True), ("auto", True)])
def test_asr_cuda_depends_on_the_backend(backend, ok):
    """The GB10 after setup.sh: torch has CUDA, CTranslate2 does not."""
    cfg = config(asr={"device": "cuda", "backend": backend})
    report = dp.probe(cfg, nvml=FakeNvml(), torch=TORCH_CU129, ctranslate2=CT2_NO_CUDA, machine="aarch64")
    if ok:
        dp.check_requested_device(report, cfg)
        assert report.models["asr"]["library"] == "torch" and report.models["asr"]["on_gpu"]
        assert not report.warnings
    else:
        with pytest.raises(
            dp.DeviceError, match="ctranslate2 4.8.5 has no CUDA on this platform.*backend: transformers"
        ):
            dp.check_requested_device(report, cfg)
        assert "ASR (backend ctranslate2) runs on the CPU" in report.warnings[0]
        assert "backend: auto or transformers" in report.warnings[0]
        assert not any(w.startswith("fix:") for w in report.warnings)  # torch is fine: no reinstall advice


def test_explicit_cuda_without_any_gpu_is_an_error_too():
    cfg = config(asr={"device": "cuda"})
    report = dp.probe(cfg, nvml=NO_NVML, torch=TORCH_CPU, ctranslate2=CT2_NO_CUDA, machine="x86_64")
    with pytest.raises(dp.DeviceError, match="no GPU found"):
        dp.check_requested_device(report, cfg)


def test_no_nvml_is_no_gpu_and_no_warning():
    report = dp.probe(config(), nvml=NO_NVML, torch=TORCH_CPU, ctranslate2=CT2_NO_CUDA)
    assert not report.gpu_present and not report.warnings and report.cause is None
    assert report.summary.startswith("no GPU") and "NVMLError_LibraryNotFound" in report.nvml
    dp.check_requested_device(report, config())  # device: auto on a CPU machine is fine


def test_gb10_capability_12_1_runs_sm_120_kernels_but_a_missing_major_is_a_warning():
    assert TORCH_CU129.kernel_gap() is None
    thor = dp.LibraryFacts("torch", "2.9.1+cu128", True, 1, "12.8", (11, 0), ("sm_80", "sm_90", "sm_100", "sm_120"))
    assert "compute capability 11.0" in thor.kernel_gap()
    report = dp.probe(config(), nvml=FakeNvml(), torch=thor, ctranslate2=CT2_NO_CUDA, machine="aarch64")
    assert any("no kernel image" in w for w in report.warnings)
    ptx = dp.LibraryFacts("torch", "2.9.0+cu130", True, 1, "13.0", (12, 1), ("sm_90", "compute_120"))
    assert ptx.kernel_gap() is None


def test_the_real_libraries_on_this_machine():
    report = dp.probe(config())
    assert report.torch.version and report.ctranslate2.version
    json.dumps(report.to_dict())
    if not report.gpu_present:
        assert not report.warnings and report.summary.startswith("no GPU")


def test_run_report_shows_the_device_warning(tmp_path):
    report = dp.probe(config(), nvml=FakeNvml(), torch=TORCH_CPU, ctranslate2=CT2_NO_CUDA, machine="aarch64")
    atomic.write_json(tmp_path / "daemon_stats.json", {"device": report.to_dict(), "models": {}})
    run = build_run_report(tmp_path, status="success").to_dict()
    assert run["device_warnings"] == report.warnings and run["device"]["gpu_name"] == "NVIDIA GB10"
    html = render_run_report(run)
    banner = html.index('class="device-warning"')
    assert banner < html.index("<table")  # above everything else
    assert "torch 2.8.0+cpu has no CUDA" in html[banner:]


def test_run_report_without_warnings_states_the_devices(tmp_path):
    report = dp.probe(config(), nvml=NO_NVML, torch=TORCH_CPU, ctranslate2=CT2_NO_CUDA)
    atomic.write_json(tmp_path / "daemon_stats.json", {"device": report.to_dict(), "models": {}})
    run = build_run_report(tmp_path, status="success").to_dict()
    assert run["device_warnings"] == []
    html = render_run_report(run)
    assert "device-warning" not in html and "Devices: no GPU" in html


def test_daemon_status_prints_the_warning(monkeypatch, capsys):
    report = dp.probe(config(), nvml=FakeNvml(), torch=TORCH_CPU, ctranslate2=CT2_NO_CUDA, machine="aarch64")

    class Client:
        endpoint = "ipc:///tmp/fake"

        def is_alive(self):
            return True

        def stats(self):
            return {
                "pid": 1,
                "state": "ready",
                "uptime_s": 3.0,
                "queue_depth": 0,
                "in_flight": 0,
                "models": {},
                "device": report.to_dict(),
            }

    monkeypatch.setattr(cli.daemonctl, "client_for", lambda cfg: Client())
    assert cli.main(["daemon", "status"]) == 0
    out = capsys.readouterr().out
    assert "WARNING: GPU NVIDIA GB10 is present but ASR (backend auto) runs on the CPU" in out
    assert "torch 2.8.0+cpu has no CUDA" in out


def test_daemon_refuses_to_start_when_cuda_is_asked_for_and_unusable(runtime_dir):
    """The real start path (python -m voiceman_daemon) on a machine whose libraries cannot use
    CUDA: exit status 2, the reason on stderr, nothing bound."""
    facts = dp.torch_facts()
    if facts.can_use_cuda or dp.ctranslate2_facts().can_use_cuda:
        pytest.skip("this machine's libraries can use CUDA")
    overrides = json.dumps({"models": {"asr": {"device": "cuda"}}})
    proc = subprocess.run(
        [sys.executable, "-m", "voiceman_daemon", "--overrides", overrides],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "models.asr.device is cuda, but" in proc.stderr
    assert not (runtime_dir / "daemon.pid").exists()
