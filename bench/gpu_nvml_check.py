"""Print real GPU readings through the governor's sensor path, as one JSON object.

Run on a lent GPU machine (or the GB10) to check what NVML really answers there:
    python bench/gpu_nvml_check.py [--samples 3] [--interval 1.0]
It reads through the same `NvmlQuery` / `NvmlSensor` the daemon uses (so NotSupported
memory falls back to torch.cuda.mem_get_info, then /proc/meminfo), and separately reports
torch.cuda.mem_get_info and the governor's first decision. On a machine without NVML it
prints the "no sensor" result and exits 0.
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import sys
import time
from pathlib import Path

try:
    import voiceman_daemon  # noqa: F401  (editable install)
except ImportError:  # run from a bare checkout
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "daemon"))

from voiceman_daemon.governor import GovernorConfig, GovernorPolicy, NvmlQuery, NvmlSensor, read_meminfo_gb
from voiceman_daemon.governor.nvml_query import BYTES_PER_GB


def _torch_report() -> dict:
    try:
        import torch
    except ImportError as exc:
        return {"available": False, "reason": f"torch not importable: {exc}"}
    report = {"torch_version": torch.__version__, "cuda_available": torch.cuda.is_available()}
    if torch.cuda.is_available():
        free, total = torch.cuda.mem_get_info()
        report.update(
            device_name=torch.cuda.get_device_name(0),
            mem_free_gb=free / BYTES_PER_GB,
            mem_total_gb=total / BYTES_PER_GB,
            mem_used_gb=(total - free) / BYTES_PER_GB,
        )
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=3)
    parser.add_argument("--interval", type=float, default=1.0)
    args = parser.parse_args(argv)
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(levelname)s %(message)s")

    query = NvmlQuery()
    sensor = NvmlSensor(query)
    # Raw NVML answers, without fallbacks, to see which readings the device supports.
    raw = {
        "temp_c": query.temperature_c(),
        "util_pct": query.utilization_pct(),
        "memory_gb_used_total": list(query.memory_gb()),
        "device_name": query.device_name(),
    }
    snapshots = []
    for index in range(max(1, args.samples)):
        if index:
            time.sleep(args.interval)
        snapshots.append(sensor.read().to_dict())
    policy = GovernorPolicy(GovernorConfig())
    decision = policy.observe(sensor.read())
    meminfo = read_meminfo_gb("/proc/meminfo")
    report = {
        "host": platform.node(),
        "machine": platform.machine(),
        "sensor": sensor.name,
        "no_sensor_reason": query.unavailable_reason or None,
        "nvml_raw": raw,
        "snapshots": snapshots,
        "torch": _torch_report(),
        "proc_meminfo_gb": None if meminfo is None else {"used": meminfo[0], "total": meminfo[1]},
        "first_decision": decision.to_dict(),
        "memory_budget": policy.budget.to_dict(),
    }
    query.close()
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
