"""The one place the governor talks to NVML.

Every NVML call goes through `NvmlQuery._call`, so the three ways a reading can be
absent are handled once:
- the library is missing (no driver, CPU machine): "no sensor" mode, logged once;
- the device does not support the query (the GB10 answers NotSupported for memory,
  because its memory is the system's unified memory): the reading is None;
- any other NVML error on one query: the reading is None, logged once per query.
Units are converted here: temperature in degrees C, memory in GB (GiB), utilisation in %.
The nvml module is injectable so tests can hand in a fake one.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from types import ModuleType
from typing import Any

log = logging.getLogger(__name__)

BYTES_PER_GB = float(2**30)


class NvmlQuery:
    def __init__(self, nvml: ModuleType | Any | None = None, device_index: int = 0) -> None:
        self._nvml = nvml
        self._device_index = device_index
        self._handle: Any = None
        self._initialised = False
        self.available = False
        # Why the sensor is unavailable ("" while available or before init()).
        self.unavailable_reason = ""
        self._logged_failures: set[str] = set()

    # -- lifecycle -------------------------------------------------------------------
    def init(self) -> bool:
        """Initialise NVML and open the device; False (logged once) when there is no sensor."""
        if self._initialised:
            return self.available
        self._initialised = True
        if self._nvml is None:
            try:
                import pynvml  # nvidia-ml-py; imported lazily so the module loads without it
            except ImportError as exc:
                return self._no_sensor(f"pynvml is not installed ({exc})")
            self._nvml = pynvml
        base_error = getattr(self._nvml, "NVMLError", Exception)
        try:
            self._nvml.nvmlInit()
        except base_error as exc:
            return self._no_sensor(f"nvmlInit failed: {type(exc).__name__}: {exc}")
        try:
            self._handle = self._nvml.nvmlDeviceGetHandleByIndex(self._device_index)
        except base_error as exc:
            return self._no_sensor(f"no NVML device {self._device_index}: {type(exc).__name__}: {exc}")
        self.available = True
        log.info("governor: NVML sensor on device %d", self._device_index)
        return True

    def close(self) -> None:
        if self.available:
            self._call("nvmlShutdown")
        self.available = False
        self._handle = None

    def _no_sensor(self, reason: str) -> bool:
        self.available = False
        self.unavailable_reason = reason
        log.warning("governor: no GPU sensor, carrying on without temperature readings (%s)", reason)
        return False

    # -- readings ----------------------------------------------------------------------
    def device_name(self) -> str | None:
        name = self._call("nvmlDeviceGetName", self._handle)
        if isinstance(name, bytes):
            name = name.decode("utf-8", "replace")
        return name

    def temperature_c(self) -> float | None:
        sensor = getattr(self._nvml, "NVML_TEMPERATURE_GPU", 0)
        value = self._call("nvmlDeviceGetTemperature", self._handle, sensor)
        return None if value is None else float(value)

    def memory_gb(self) -> tuple[float | None, float | None]:
        """(used, total) in GB, or (None, None) when NVML cannot say (GB10: NotSupported)."""
        info = self._call("nvmlDeviceGetMemoryInfo", self._handle)
        used = getattr(info, "used", None)
        total = getattr(info, "total", None)
        if used is None or total is None or total <= 0:
            return None, None
        return used / BYTES_PER_GB, total / BYTES_PER_GB

    def utilization_pct(self) -> float | None:
        rates = self._call("nvmlDeviceGetUtilizationRates", self._handle)
        gpu = getattr(rates, "gpu", None)
        return None if gpu is None else float(gpu)

    def _call(self, function_name: str, *args: Any) -> Any:
        """Run one NVML function; any NVML error or missing function -> None."""
        if not self.available:
            return None
        function: Callable[..., Any] | None = getattr(self._nvml, function_name, None)
        if function is None:
            self._log_failure_once(function_name, "function missing from the NVML binding")
            return None
        not_supported = getattr(self._nvml, "NVMLError_NotSupported", None)
        base_error = getattr(self._nvml, "NVMLError", Exception)
        try:
            return function(*args)
        except base_error as exc:
            if not_supported is not None and isinstance(exc, not_supported):
                self._log_failure_once(function_name, "not supported on this device", logging.INFO)
            else:
                self._log_failure_once(function_name, f"{type(exc).__name__}: {exc}")
            return None

    def _log_failure_once(self, function_name: str, why: str, level: int = logging.WARNING) -> None:
        if function_name in self._logged_failures:
            return
        self._logged_failures.add(function_name)
        log.log(level, "governor: NVML %s gave no value (%s); reading treated as missing", function_name, why)
