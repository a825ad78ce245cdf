"""CUDA-graph SER (O1, PR-008): fixed-length buckets, one graph per (bucket, batch size), eager fallback.

A wav2vec2 SER forward launches hundreds of small kernels; at small batches the GPU waits
on the CPU launching them. A CUDA graph records the launches once and replays them with
one call, but only for fixed shapes and fixed memory addresses. So:

- segments are sorted into length buckets (``graph_buckets_s``, seconds; a segment goes to
  the smallest bucket it fits) and padded with zeros to the bucket's length; a batch is
  padded to the next captured batch size (``graph_batch_sizes``) with dummy rows whose
  results are dropped;
- the model's forward on such a batch is ``forward(waves (B, L), lengths (B,)) -> (B, K)``,
  tensor operations only (``wav2vec2_encoding.encode_padded``): padded frames are masked in
  attention and pooling, so each segment's result equals its eager result (tests: 1e-3);
- at warm-up, on CUDA, one ``torch.cuda.CUDAGraph`` is captured per (bucket, batch size),
  largest first, all sharing one memory pool (graphs never run concurrently and their
  outputs are copied out at once), after warm-up iterations on a side stream, as the
  PyTorch CUDA-graph documentation describes;
- a replay copies the padded batch into the graph's static input buffers, replays, and
  copies the output rows out.

Anything without a graph runs the model's eager path and is counted with its reason: no
CUDA, ``cuda_graphs: off``, a failed capture (then no graph is used at all), a segment
longer than the largest bucket, or a model the bucketed forward does not support.

Memory: every captured graph keeps its intermediate buffers; with the shared pool that is
about one forward at the largest (bucket x batch size), plus the static inputs/outputs.
The defaults (buckets 2/4/8/16 s x batch sizes 1/2/4/8: 16 graphs) keep the largest at
8 x 16 s; ``stats()["graph_memory_mb"]`` reports what the capture really took.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

log = logging.getLogger(__name__)

MODES = ("auto", "off")
DEFAULT_BUCKETS_S = (2.0, 4.0, 8.0, 16.0)
DEFAULT_BATCH_SIZES = (1, 2, 4, 8)
WARMUP_ITERATIONS = 3

# forward(waves (B, L) float, lengths (B,) long) -> (B, K) float; the same device as the model.
PaddedForward = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
# The model's own eager path: 1-D float tensors (CPU) -> (N, K).
EagerForward = Callable[[list[torch.Tensor]], torch.Tensor]


@dataclass(frozen=True)
class GraphSettings:
    """The `models.ser_*` options `cuda_graphs`, `graph_buckets_s`, `graph_batch_sizes`."""

    mode: str = "auto"
    buckets_s: tuple[float, ...] = DEFAULT_BUCKETS_S
    batch_sizes: tuple[int, ...] = DEFAULT_BATCH_SIZES

    @classmethod
    def from_options(cls, mode: Any = None, buckets_s: Any = None, batch_sizes: Any = None) -> GraphSettings:
        if mode is False:  # YAML 1.1 reads an unquoted `off` as false
            mode = "off"
        mode = "auto" if mode is None or mode is True else str(mode).strip().lower()
        if mode not in MODES:
            raise ValueError(f"cuda_graphs must be one of {', '.join(MODES)}, not {mode!r}")
        buckets = DEFAULT_BUCKETS_S if buckets_s is None else tuple(float(b) for b in buckets_s)
        sizes = DEFAULT_BATCH_SIZES if batch_sizes is None else tuple(int(b) for b in batch_sizes)
        if not buckets or any(b <= 0 for b in buckets):
            raise ValueError(f"graph_buckets_s must be positive seconds, got {list(buckets)}")
        if not sizes or any(b < 1 for b in sizes):
            raise ValueError(f"graph_batch_sizes must be integers >= 1, got {list(sizes)}")
        return cls(mode, tuple(sorted(set(buckets))), tuple(sorted(set(sizes))))

    def to_dict(self) -> dict[str, Any]:
        return {"mode": self.mode, "buckets_s": list(self.buckets_s), "batch_sizes": list(self.batch_sizes)}


def bucket_samples(buckets_s: Iterable[float], sample_rate: int) -> tuple[int, ...]:
    """Bucket lengths in samples, ascending."""
    return tuple(sorted({int(round(float(b) * sample_rate)) for b in buckets_s}))


def choose_bucket(n_samples: int, buckets: Sequence[int]) -> int | None:
    """The smallest bucket that holds ``n_samples``, or None when it is longer than all."""
    for bucket in sorted(buckets):
        if n_samples <= bucket:
            return bucket
    return None


def choose_batch_size(n_items: int, batch_sizes: Sequence[int]) -> int | None:
    """The smallest captured batch size that holds ``n_items``, or None."""
    for size in sorted(batch_sizes):
        if n_items <= size:
            return size
    return None


@dataclass(frozen=True)
class PlannedBatch:
    indices: tuple[int, ...]  # positions in the caller's list
    bucket: int  # samples per row
    batch_size: int  # rows (>= len(indices); the rest are dummy rows)

    @property
    def padding_rows(self) -> int:
        return self.batch_size - len(self.indices)


def plan_batches(
    lengths: Sequence[int], buckets: Sequence[int], batch_sizes: Sequence[int]
) -> tuple[list[PlannedBatch], list[int]]:
    """Group segments by bucket and cut each group into batches of at most the largest
    captured batch size, each padded to the next captured size. Returns (planned batches,
    indices that fit no bucket and so run eagerly). Order inside a bucket is the caller's."""
    largest = max(batch_sizes)
    by_bucket: dict[int, list[int]] = {}
    eager: list[int] = []
    for index, n in enumerate(lengths):
        bucket = choose_bucket(int(n), buckets)
        if bucket is None:
            eager.append(index)
        else:
            by_bucket.setdefault(bucket, []).append(index)
    planned = []
    for bucket in sorted(by_bucket, reverse=True):
        members = by_bucket[bucket]
        for start in range(0, len(members), largest):
            chunk = tuple(members[start : start + largest])
            planned.append(PlannedBatch(chunk, bucket, choose_batch_size(len(chunk), batch_sizes)))
    return planned, eager


def pad_into_bucket(tensors: Sequence[torch.Tensor], bucket: int, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(batch_size, bucket) float32 zero-padded waves and (batch_size,) int64 true lengths.

    Dummy rows (beyond len(tensors)) are silence of the full bucket length, so every row has
    valid frames; their results are dropped.
    """
    if len(tensors) > batch_size:
        raise ValueError(f"{len(tensors)} segments do not fit a batch of {batch_size}")
    waves = torch.zeros(batch_size, bucket, dtype=torch.float32)
    lengths = torch.full((batch_size,), bucket, dtype=torch.long)
    for row, tensor in enumerate(tensors):
        n = int(tensor.shape[0])
        if n > bucket:
            raise ValueError(f"segment of {n} samples is longer than its bucket of {bucket}")
        if n < 1:
            raise ValueError("empty segment")
        waves[row, :n] = tensor
        lengths[row] = n
    return waves, lengths


@dataclass
class _Graph:
    graph: Any  # torch.cuda.CUDAGraph
    waves: torch.Tensor
    lengths: torch.Tensor
    output: torch.Tensor


@dataclass
class GraphCounters:
    graph_batches: int = 0
    graph_segments: int = 0
    padded_batches: int = 0  # bucketed forward without a graph (capture=False: the CPU test path)
    padded_segments: int = 0
    eager_batches: int = 0
    eager_segments: int = 0
    dummy_rows: int = 0
    samples: int = 0  # true samples of the bucketed segments
    bucket_samples: int = 0  # what their padded batches hold (buckets x rows, dummy rows included)
    eager_reasons: Counter = field(default_factory=Counter)


class GraphRunner:
    """Runs a model's segments through captured graphs where it can, eagerly otherwise.

    ``unsupported``: why the model has no bucketed forward (None when it has one).
    ``capture=False`` runs the bucketed forward without graphs (on any device): that is how
    the padding is tested against the eager path on a CPU.
    """

    def __init__(
        self,
        name: str,
        device: str,
        settings: GraphSettings,
        sample_rate: int,
        padded_forward: PaddedForward | None,
        eager_forward: EagerForward,
        *,
        unsupported: str | None = None,
        capture: bool = True,
    ):
        self.name = name
        self.device = str(device)
        self.settings = settings
        self.sample_rate = int(sample_rate)
        self.buckets = bucket_samples(settings.buckets_s, sample_rate)
        self.batch_sizes = tuple(settings.batch_sizes)
        self._padded_forward = padded_forward
        self._eager_forward = eager_forward
        self._capture = capture
        self._graphs: dict[tuple[int, int], _Graph] = {}
        self._lock = threading.Lock()
        self.counters = GraphCounters()
        self.capture_s: float | None = None
        self.graph_memory_mb: float | None = None
        self.active, self.reason = self._decide(unsupported)

    # -- state --------------------------------------------------------------------------
    def _decide(self, unsupported: str | None) -> tuple[bool, str]:
        if self.settings.mode == "off":
            return False, "eager: cuda_graphs is off in the configuration"
        if unsupported is not None or self._padded_forward is None:
            return False, f"eager: {unsupported or 'no bucketed forward for this model'}"
        if not self._capture:
            return True, "bucketed forward without graphs (capture disabled)"
        if not self.device.startswith("cuda"):
            return False, f"eager: the model runs on {self.device}, CUDA graphs need CUDA"
        if not torch.cuda.is_available():
            return False, "eager: torch sees no CUDA device"
        return True, "CUDA graphs pending warm-up"

    @property
    def graphs_captured(self) -> int:
        return len(self._graphs)

    def stats(self) -> dict[str, Any]:
        c = self.counters
        return {
            "active": self.active,
            "reason": self.reason,
            "settings": self.settings.to_dict(),
            "graphs": sorted([bucket / self.sample_rate, size] for bucket, size in self._graphs),
            "capture_s": None if self.capture_s is None else round(self.capture_s, 3),
            "graph_memory_mb": self.graph_memory_mb,
            "graph_batches": c.graph_batches,
            "graph_segments": c.graph_segments,
            "padded_batches": c.padded_batches,
            "padded_segments": c.padded_segments,
            "eager_batches": c.eager_batches,
            "eager_segments": c.eager_segments,
            "dummy_rows": c.dummy_rows,
            "eager_reasons": dict(c.eager_reasons),
            "bucket_padding_fraction": round(1 - c.samples / c.bucket_samples, 4) if c.bucket_samples else None,
        }

    def release(self) -> None:
        with self._lock:
            self._graphs.clear()

    # -- capture ------------------------------------------------------------------------
    def warm_up(self) -> None:
        """Capture every (bucket, batch size) graph; on any failure use none (eager, reason)."""
        if not self.active or not self._capture or self._graphs:
            return
        started = time.perf_counter()
        pool = None
        keys = sorted(
            ((b, s) for b in self.buckets for s in self.batch_sizes),
            key=lambda key: (key[0] * key[1], key[0]),
            reverse=True,
        )  # largest first: one pool
        try:
            device = torch.device(self.device)
            reserved_before = torch.cuda.memory_reserved(device)
            with torch.inference_mode(), torch.cuda.device(device):
                for bucket, size in keys:
                    waves = torch.zeros(size, bucket, dtype=torch.float32, device=device)
                    lengths = torch.full((size,), bucket, dtype=torch.long, device=device)
                    side = torch.cuda.Stream()
                    side.wait_stream(torch.cuda.current_stream())
                    with torch.cuda.stream(side):
                        for _ in range(WARMUP_ITERATIONS):
                            self._padded_forward(waves, lengths)
                    torch.cuda.current_stream().wait_stream(side)
                    graph = torch.cuda.CUDAGraph()
                    # thread_local: the daemon's other threads (governor sampler, I/O pool) may
                    # call CUDA while the inference thread captures.
                    with torch.cuda.graph(graph, pool=pool, capture_error_mode="thread_local"):
                        output = self._padded_forward(waves, lengths)
                    if pool is None:
                        pool = graph.pool()
                    self._graphs[(bucket, size)] = _Graph(graph, waves, lengths, output)
                torch.cuda.synchronize(device)
        except Exception as exc:  # noqa: BLE001 - any capture failure means: run eagerly, say why
            self._graphs.clear()
            self.active = False
            self.reason = f"eager: graph capture failed ({type(exc).__name__}: {exc})"
            log.warning("%s: %s", self.name, self.reason)
            return
        self.capture_s = time.perf_counter() - started
        self.graph_memory_mb = round((torch.cuda.memory_reserved(device) - reserved_before) / 2**20, 1)
        self.reason = (
            f"CUDA graphs: {len(self._graphs)} captured ({len(self.buckets)} buckets x "
            f"{len(self.batch_sizes)} batch sizes) in {self.capture_s:.1f} s"
        )
        log.info("%s: %s, %.0f MB", self.name, self.reason, self.graph_memory_mb)

    # -- running ------------------------------------------------------------------------
    def run(self, tensors: list[torch.Tensor], *, force_eager: bool = False) -> torch.Tensor:
        """(N, K) float32 CPU outputs for 1-D float32 CPU segments, in the given order."""
        if not tensors:
            raise ValueError("no segments")
        with self._lock, torch.inference_mode():
            if force_eager or not self.active:
                why = "forced eager" if force_eager else self.reason
                return self._eager(tensors, list(range(len(tensors))), why)[1]
            planned, too_long = plan_batches([t.shape[0] for t in tensors], self.buckets, self.batch_sizes)
            rows: dict[int, torch.Tensor] = {}
            for batch in planned:
                out = self._run_planned(batch, [tensors[i] for i in batch.indices])
                rows.update(zip(batch.indices, out))
            if too_long:
                longest = self.buckets[-1] / self.sample_rate
                indices, out = self._eager(tensors, too_long, f"longer than the largest bucket ({longest:g} s)")
                rows.update(zip(indices, out))
            return torch.stack([rows[i] for i in range(len(tensors))])

    def _eager(self, tensors: list[torch.Tensor], indices: list[int], why: str) -> tuple[list[int], torch.Tensor]:
        out = self._eager_forward([tensors[i] for i in indices]).float().cpu()
        self.counters.eager_batches += 1
        self.counters.eager_segments += len(indices)
        self.counters.eager_reasons[why] += len(indices)
        return indices, out

    def _run_planned(self, batch: PlannedBatch, tensors: list[torch.Tensor]) -> torch.Tensor:
        waves, lengths = pad_into_bucket(tensors, batch.bucket, batch.batch_size)
        n = len(tensors)
        self.counters.dummy_rows += batch.padding_rows
        self.counters.samples += int(lengths[:n].sum())
        self.counters.bucket_samples += batch.bucket * batch.batch_size
        if not self._capture:
            out = self._padded_forward(waves.to(self.device), lengths.to(self.device))
            self.counters.padded_batches += 1
            self.counters.padded_segments += n
            return out[:n].float().cpu()
        graph = self._graphs.get((batch.bucket, batch.batch_size))
        if graph is None:  # not captured (warm-up not run): the eager path, counted
            return self._eager(tensors, list(range(n)), "no graph for this bucket and batch size")[1]
        graph.waves.copy_(waves, non_blocking=False)
        graph.lengths.copy_(lengths, non_blocking=False)
        graph.graph.replay()
        self.counters.graph_batches += 1
        self.counters.graph_segments += n
        return graph.output[:n].float().cpu()  # .cpu() waits for the replay
