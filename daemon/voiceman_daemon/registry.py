"""The daemon's model registry: each model kind is loaded once and kept until an explicit
``unload`` (U1, N1).  A request naming another id/revision than the one held makes the
registry reload that kind once (S3); every load is counted so ``stats`` can prove it.

A reload loads the new model first and swaps it in only when that succeeded: a failed load
never drops the model that is held.  A configured model may pin ``sha256`` over every file of
its directory (confinement.sha256_tree); a directory that no longer matches is refused before
its loader (which may run code from it) is called.  Which ids a request may name at all is
:class:`ModelTrust`'s decision, made before a request is accepted.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from .confinement import ModelRefused, real_roots, sha256_tree, within

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelSpec:
    """What a request asks for.  Only ``id`` and ``revision`` decide identity; load options
    (device, compute type) come from the daemon's own configuration."""

    kind: str
    id: str
    revision: str | None = None
    options: tuple[tuple[str, Any], ...] = ()

    @classmethod
    def from_dict(cls, kind: str, d: dict[str, Any]) -> ModelSpec:
        if not d or not d.get("id"):
            raise ValueError(f"no model id configured for '{kind}'")
        options = tuple(
            sorted((k, _frozen(v)) for k, v in d.items() if k not in ("id", "revision") and _hashable(_frozen(v)))
        )
        return cls(kind=kind, id=str(d["id"]), revision=d.get("revision"), options=options)

    def identity(self) -> tuple[str, str | None]:
        return (self.id, self.revision)

    def option(self, name: str, default: Any = None) -> Any:
        return dict(self.options).get(name, default)


def _frozen(value: Any) -> Any:
    """Lists of scalars (e.g. ser graph_buckets_s) as tuples, so they can be load options."""
    return tuple(_frozen(v) for v in value) if isinstance(value, list) else value


def _hashable(value: Any) -> bool:
    try:
        hash(value)
        return True
    except TypeError:
        return False


class LoadedModel(Protocol):
    spec: ModelSpec

    def custody(self) -> dict[str, Any]:
        """id, revision/path, sha256 of weights, device: what a report must record."""


@dataclass
class ModelStats:
    kind: str
    loads: int = 0
    load_failures: int = 0
    unloads: int = 0
    requests: int = 0
    failed_requests: int = 0
    busy_s: float = 0.0
    load_s: float = 0.0
    loaded: bool = False
    last_error: str | None = None
    custody: dict[str, Any] = field(default_factory=dict)
    loaded_utc: str | None = None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["busy_s"] = round(self.busy_s, 3)
        d["load_s"] = round(self.load_s, 3)
        return d


class ModelLoadError(RuntimeError):
    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


WEIGHT_SUFFIXES = (".bin", ".safetensors", ".ckpt", ".pt", ".pth", ".onnx", ".h5", ".msgpack")


class MemoryBudgetExceeded(RuntimeError):
    """Loading this model would take the held models past the governor's memory budget."""


def model_size_gb(model_id: str) -> float:
    """What a model will hold in memory, estimated from its weight files (0 for a hub id:
    unknown until loaded).  Weights load at their stored precision, so the file size is the
    closest estimate available before loading."""
    root = Path(model_id)
    if not root.is_dir():
        return 0.0
    total = sum(p.stat().st_size for p in root.rglob("*") if p.is_file() and p.suffix in WEIGHT_SUFFIXES)
    return total / 1e9


class ModelRegistry:
    """Thread-safe: each inference lane gets and loads its own kinds.  Loads are serialised
    (``_load_lock``: the memory budget is checked against what is held), while a lane whose
    model is already held gets it without waiting for another lane's load.  ``trust`` decides
    which model ids requests may name (default: only each kind's configured id)."""

    def __init__(
        self,
        loaders: dict[str, Callable[[ModelSpec], LoadedModel]],
        trust: ModelTrust | None = None,
        admits: Callable[[float, float], bool] | None = None,
        budget_gb: Callable[[], float] | None = None,
    ):
        self._loaders = loaders
        self.trust = trust or ModelTrust()
        # S1/N3: the governor's memory budget, enforced at load (None = no budget).
        self._admits = admits
        self._budget_gb = budget_gb
        self._sizes_gb: dict[str, float] = {}  # weight size of each held model
        self._models: dict[str, LoadedModel] = {}
        self._stats: dict[str, ModelStats] = {kind: ModelStats(kind) for kind in loaders}
        self._lock = threading.Lock()  # the dicts above
        self._load_lock = threading.Lock()  # one load at a time

    def get(self, spec: ModelSpec) -> LoadedModel:
        if spec.kind not in self._loaders:
            raise ModelLoadError(spec.kind, f"this daemon has no loader for model kind '{spec.kind}'")
        with self._lock:
            held = self._models.get(spec.kind)
            if held is not None and held.spec.identity() == spec.identity():
                return held
        with self._load_lock:
            return self._load(spec)

    def _load(self, spec: ModelSpec) -> LoadedModel:
        """Under the load lock: load ``spec`` (unless another lane just did), then swap it in."""
        with self._lock:
            held = self._models.get(spec.kind)
            stats = self._stats[spec.kind]
        if held is not None and held.spec.identity() == spec.identity():
            return held  # loaded by another lane while this one waited
        if held is not None:
            log.info(
                "%s: request names %s, holding %s: reloading once", spec.kind, spec.identity(), held.spec.identity()
            )
        started = time.perf_counter()
        try:
            _check_pin(spec)
            with self._lock:
                size_gb = self._admit(spec)
            # Loading may import code from the model directory (SpeechBrain's custom
            # interface): never write byte code there, so a pin stays valid after a load.
            sys.dont_write_bytecode = True
            model = self._loaders[spec.kind](spec)
        except Exception as exc:  # the held model (if any) stays loaded and in use
            with self._lock:
                stats.load_failures += 1
                stats.last_error = f"{type(exc).__name__}: {exc}"
            raise ModelLoadError(spec.kind, f"{spec.kind} model failed to load from '{spec.id}': {exc}") from exc
        custody = model.custody()
        with self._lock:
            if spec.kind in self._models:
                self._drop(spec.kind)
            self._sizes_gb[spec.kind] = size_gb
            stats.loads += 1
            stats.load_s += time.perf_counter() - started
            stats.loaded = True
            stats.custody = custody
            stats.loaded_utc = datetime.now(UTC).isoformat(timespec="seconds")
            self._models[spec.kind] = model
        log.info("%s model loaded: %s (%.1f s)", spec.kind, spec.id, time.perf_counter() - started)
        return model

    def _admit(self, spec: ModelSpec) -> float:
        """The model's weight size (GB, from its files); refuses a load that would take the
        held models past the memory budget (a replaced model of the same kind does not count)."""
        size_gb = model_size_gb(spec.id)
        if self._admits is None:
            return size_gb
        held_gb = sum(gb for kind, gb in self._sizes_gb.items() if kind != spec.kind and kind in self._models)
        if not self._admits(size_gb, held_gb):
            budget = f" of {self._budget_gb():g} GB" if self._budget_gb is not None else ""
            raise MemoryBudgetExceeded(
                f"refused: {size_gb:.2f} GB of weights next to {held_gb:.2f} GB already loaded would exceed "
                f"the memory budget{budget} (S1; governor memory.budget_gb)"
            )
        return size_gb

    def is_loaded(self, kind: str) -> bool:
        with self._lock:
            return kind in self._models

    def record_request(self, kind: str, busy_s: float, ok: bool) -> None:
        with self._lock:
            stats = self._stats[kind]
            stats.requests += 1
            stats.busy_s += busy_s
            if not ok:
                stats.failed_requests += 1

    def unload(self, kind: str | None = None) -> list[str]:
        """The only way a model leaves memory (N1)."""
        with self._lock:
            kinds = [kind] if kind else list(self._models)
            dropped = [k for k in kinds if k in self._models]
            for k in dropped:
                self._drop(k)
            return dropped

    def _drop(self, kind: str) -> None:
        model = self._models.pop(kind)
        self._sizes_gb.pop(kind, None)
        release = getattr(model, "release", None)
        if callable(release):
            release()
        self._stats[kind].unloads += 1
        self._stats[kind].loaded = False

    def stats(self) -> dict[str, dict[str, Any]]:
        with self._lock:
            out = {kind: s.to_dict() for kind, s in self._stats.items()}
            for kind, model in self._models.items():  # e.g. SER: CUDA-graph vs eager batches
                runtime = getattr(model, "runtime_stats", None)
                if callable(runtime):
                    out[kind]["runtime"] = runtime()
            return out


class ModelPinMismatch(RuntimeError):
    """A pinned model directory whose files changed: refused before anything in it runs."""


def _check_pin(spec: ModelSpec) -> None:
    pin = spec.option("sha256")
    if not pin:
        return
    try:
        actual = sha256_tree(spec.id)
    except OSError as exc:
        raise ModelPinMismatch(f"cannot hash the pinned directory: {exc.strerror or exc}") from None
    if actual != str(pin).strip().lower():
        raise ModelPinMismatch(
            f"the directory's files do not match the configured pin "
            f"(models.{spec.kind}.sha256 {pin}, found {actual}); nothing in it was run"
        )


class ModelTrust:
    """Which models a request may name: a kind's configured id (any revision, so S3's reload on
    a revision change still works), or a directory whose real path lies inside the model roots
    (``daemon.model_roots``).  Anything else -- another path, a hub id -- is refused with
    ModelRefused before anything is loaded.  Directories inside the roots are trusted code."""

    def __init__(self, model_roots: Iterable[str | Path] = (), base: str | Path | None = None):
        self.roots = real_roots(model_roots, base)

    def spec_for(self, kind: str, model_id: str, revision: str | None, configured: ModelSpec | None) -> ModelSpec:
        if configured is not None and _same_model(model_id, configured.id):
            return ModelSpec(kind=kind, id=configured.id, revision=revision, options=configured.options)
        if os.path.isabs(model_id):
            real = Path(os.path.realpath(model_id))
            if within(real, self.roots) and real.is_dir():
                # The daemon's load options for the kind, but not its pin: that is another directory's.
                options = tuple((k, v) for k, v in (configured.options if configured else ()) if k != "sha256")
                return ModelSpec(kind=kind, id=str(real), revision=revision, options=options)
        raise ModelRefused(
            f"{kind} model '{model_id}' is neither the daemon's configured {kind} model nor a "
            f"directory inside its model roots (daemon.model_roots); nothing was loaded"
        )


def _same_model(requested: str, configured: str) -> bool:
    if requested == configured:
        return True
    if os.path.isabs(requested) and os.path.isabs(configured):
        return os.path.realpath(requested) == os.path.realpath(configured)
    return False
