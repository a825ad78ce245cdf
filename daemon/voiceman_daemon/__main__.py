"""``python -m voiceman_daemon``: run the inference daemon in the foreground.

systemd runs exactly this (daemon/voiceman.service); ``voiceman daemon start`` and the
workflow's auto-start run it detached with a log file.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
from pathlib import Path

from voiceman.config import ConfigError, load_config, model_options
from voiceman.daemonlink import runtime, transport

from .admission import SerBackpressure
from .asr import import_backend, load_asr
from .confinement import case_roots_from_config, model_roots_from_config
from .core import DaemonCore
from .device_probe import DeviceError, check_requested_device, log_report, probe
from .diarize import load_diarization
from .governor_setup import backpressure_thresholds, build_governor
from .handlers import DEFAULT_DECODE_TIMEOUT_S, Evidence, build_handlers
from .registry import ModelRegistry, ModelSpec, ModelTrust
from .ser_backend import load_ser_categorical, load_ser_dimensional
from .server import DEFAULT_MAX_MESSAGE_BYTES, DaemonServer

LOADERS = {
    "asr": load_asr,
    "ser_dimensional": load_ser_dimensional,
    "ser_categorical": load_ser_categorical,
    "diarization": load_diarization,
}


def build_core(config: dict) -> DaemonCore:
    """The socket-free core a config describes: what the service, the workflow's auto-started
    daemon and the in-process benchmark all run."""
    # What requests may reach (confinement.py): models configured here or inside the model
    # roots, evidence files under the case roots, decoded within a time limit.
    daemon = config.get("daemon") or {}
    governor = build_governor(config)
    # S1/N3: a load that would take the held models past the governor's budget is refused.
    registry = ModelRegistry(
        LOADERS,
        ModelTrust(model_roots_from_config(config)),
        admits=governor.admits_model if governor else None,
        budget_gb=(lambda: governor.memory_budget_gb) if governor else None,
    )
    evidence = Evidence(
        case_roots_from_config(config), float(daemon.get("decode_timeout_s") or DEFAULT_DECODE_TIMEOUT_S)
    )
    logging.getLogger(__name__).info(
        "case roots: %s; model roots: %s",
        [str(r) for r in evidence.case_roots.roots],
        [str(r) for r in registry.trust.roots],
    )
    specs = {}
    for kind in LOADERS:
        options = model_options(config, kind)
        if options:
            specs[kind] = ModelSpec.from_dict(kind, options)
    # E1: every configured model is loaded and warmed up at start, not on the first file.
    # A configured SER directory that does not exist is not preloaded: the SER rule reports
    # "not analysed: no model at <path>" for it instead of failing the whole run.  Diarization
    # (resemblyzer's bundled encoder, or a pyannote directory) is preloaded like ASR: a missing
    # pyannote directory is a load error the daemon reports, not a silent loss of speakers.
    preload = [k for k, spec in specs.items() if k in ("asr", "diarization") or Path(spec.id).is_dir()]
    # The daemon owns the GPU, so the governor (thermal/memory policy, per-stage batch sizes)
    # lives here; config errors raise ValueError naming the file and key.
    pause_at, resume_below = backpressure_thresholds(config)
    return DaemonCore(
        registry=registry,
        default_specs=specs,
        preload=preload,
        governor=governor,
        backpressure=SerBackpressure(pause_at, resume_below),
        handlers=build_handlers(evidence),
        # Cross-file batching: requests of one kind that arrive within the wait share a pass.
        batch_wait_s=float(config["daemon"]["batch_wait_ms"]) / 1000.0,
        batch_max_items=int(config["daemon"]["batch_max_items"]),
        lanes=str(config["daemon"]["lanes"]),
    )


def build_server(config: dict, endpoint: str) -> DaemonServer:
    # daemon.curve: a tcp endpoint off loopback needs CURVE keys; DaemonServer refuses it otherwise.
    return DaemonServer(
        endpoint,
        build_core(config),
        float(config["daemon"]["heartbeat_interval_s"]),
        curve=transport.CurveSettings.from_config(config),
        max_message_bytes=int(config["daemon"].get("max_message_bytes") or DEFAULT_MAX_MESSAGE_BYTES),
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="voiceman-daemon", description=__doc__)
    parser.add_argument("--config", help="config YAML (default: the repo's config/config.yaml)")
    parser.add_argument("--overrides", help="JSON object merged over the config (what a workflow run resolved)")
    parser.add_argument("--endpoint", help="ZeroMQ endpoint to bind (default: from config, 'auto' = per-user ipc)")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s [%(threadName)s] %(message)s")
    try:
        config = load_config(args.config, json.loads(args.overrides) if args.overrides else None)
    except (ConfigError, json.JSONDecodeError) as exc:
        print(f"voiceman-daemon: {exc}", file=sys.stderr)
        return 2
    endpoint = runtime.resolve_endpoint(args.endpoint or config["daemon"]["endpoint"])
    import_backend()
    # Never silently on the CPU: a GPU the model libraries cannot use is a loud warning (log,
    # status, run report); an explicit `device: cuda` they cannot meet stops the start here.
    devices = probe(config)
    log_report(devices)
    try:
        check_requested_device(devices, config)
    except DeviceError as exc:
        print(f"voiceman-daemon: {exc}", file=sys.stderr)
        return 2
    try:
        server = build_server(config, endpoint)
    except ValueError as exc:
        print(f"voiceman-daemon: {exc}", file=sys.stderr)
        return 2
    server.core.device_report = devices
    server.idle_exit_s = config["daemon"].get("idle_exit_s")  # null = no idle exit
    pid_file = runtime.pid_file()
    pid_file.write_text(f"{os.getpid()}\n")
    # SIGTERM (systemd stop, `voiceman daemon stop` fallback) = orderly shutdown.
    signal.signal(signal.SIGTERM, lambda *_: server.request_stop())
    try:
        server.serve_forever()
        if server.core.state() == "failed":  # a dead inference thread: let systemd restart us
            print(f"voiceman-daemon: {server.core.stats()['inference_error']}", file=sys.stderr)
            return 1
    finally:
        if pid_file.exists() and pid_file.read_text().strip() == str(os.getpid()):
            pid_file.unlink()
        if endpoint.startswith("ipc://"):
            Path(endpoint[len("ipc://") :]).unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
