"""How the sweep and the benchmarks time a kernel.

- The op is called on one of several copies of the weight in turn ("rotation"), so the
  copies together exceed the GPU's L2 cache (50 MB on an H100) and every call streams
  its weight from HBM, as in a real model where each layer's weight is touched once per
  token.  ``rotation_count`` sizes the rotation (at least 3 copies).
- Warm-up calls first (every copy at least once; Triton autotunes there), then timed calls.
- On CUDA each call is bracketed by its own pair of CUDA events (per-call latency as an
  eager model sees it, host launch overhead included when the GPU would otherwise wait),
  or, with ``graph=True``, the calls over the whole rotation are captured once in a CUDA
  graph and the graph is replayed between events (launch overhead removed; per-call time
  = replay time / copies).  On the CPU, ``time.perf_counter`` around each call.
- The reported latency is a median.  Every configuration is measured twice (two separate
  runs of the timed loop); ``Timing.spread`` is the relative difference of the two
  medians, and ``Timing.stable`` says whether they agree within ``STABLE_SPREAD``.
"""
from __future__ import annotations

import dataclasses
import math
import statistics
import time

import torch

# Two measurements of the same configuration must agree to within this fraction.
STABLE_SPREAD = 0.05
# An H100's L2; used when torch cannot tell the device's L2 size.
DEFAULT_L2_BYTES = 50 << 20
# The rotation's weights together span at least this many L2 sizes.
ROTATION_L2_MULTIPLE = 2
MIN_ROTATION, MAX_ROTATION = 3, 512
# One timed loop aims to take about this long; it never does fewer than MIN_CALLS calls.
TARGET_LOOP_SECONDS = 0.5
MIN_CALLS = 5


@dataclasses.dataclass
class Timing:
    median_s: float              # median per-call seconds over both measurements
    first_s: float               # median of the first measurement
    second_s: float              # median of the second measurement
    calls: int                   # timed calls per measurement
    method: str                  # "cuda-events", "cuda-graph" or "perf_counter"
    note: str = ""

    @property
    def spread(self) -> float:
        return abs(self.first_s - self.second_s) / max(min(self.first_s, self.second_s), 1e-12)

    @property
    def stable(self) -> bool:
        return self.spread <= STABLE_SPREAD


def is_cuda(device) -> bool:
    return torch.device(device).type == "cuda"


def l2_bytes(device) -> int:
    if not is_cuda(device):
        return DEFAULT_L2_BYTES
    props = torch.cuda.get_device_properties(torch.device(device))
    return int(getattr(props, "L2_cache_size", 0) or DEFAULT_L2_BYTES)


def rotation_count(bytes_per_copy: int, device) -> int:
    """How many weight copies to rotate through so that they do not fit in L2."""
    need = math.ceil(ROTATION_L2_MULTIPLE * l2_bytes(device) / max(1, bytes_per_copy))
    return max(MIN_ROTATION, min(MAX_ROTATION, need))


def _sync(device):
    if is_cuda(device):
        torch.cuda.synchronize(torch.device(device))


def _event_loop(call, n_rot: int, calls: int, start: int = 0) -> list[float]:
    starts = [torch.cuda.Event(enable_timing=True) for _ in range(calls)]
    ends = [torch.cuda.Event(enable_timing=True) for _ in range(calls)]
    for i in range(calls):
        starts[i].record()
        call((start + i) % n_rot)
        ends[i].record()
    torch.cuda.synchronize()
    return [s.elapsed_time(e) * 1e-3 for s, e in zip(starts, ends)]


def _cpu_loop(call, n_rot: int, calls: int, start: int = 0) -> list[float]:
    out = []
    for i in range(calls):
        t0 = time.perf_counter()
        call((start + i) % n_rot)
        out.append(time.perf_counter() - t0)
    return out


def _capture_graph(call, n_rot: int):
    """A CUDA graph of one call per weight copy (warmed up on a side stream, as capture requires)."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for i in range(n_rot):
            call(i)
    torch.cuda.current_stream().wait_stream(side)
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for i in range(n_rot):
            call(i)
    torch.cuda.synchronize()
    return graph


def _graph_loop(graph, n_rot: int, calls: int) -> list[float]:
    replays = max(MIN_CALLS, math.ceil(calls / n_rot))
    starts = [torch.cuda.Event(enable_timing=True) for _ in range(replays)]
    ends = [torch.cuda.Event(enable_timing=True) for _ in range(replays)]
    for i in range(replays):
        starts[i].record()
        graph.replay()
        ends[i].record()
    torch.cuda.synchronize()
    return [s.elapsed_time(e) * 1e-3 / n_rot for s, e in zip(starts, ends)]


def time_op(call, n_rot: int, device, *, warmup: int = 10, repeats: int = 100, graph: bool = False,
            target_seconds: float = TARGET_LOOP_SECONDS, min_calls: int = MIN_CALLS) -> Timing:
    """Median per-call time of ``call(i)`` (i = weight copy), measured twice.

    ``repeats`` caps the timed calls per measurement.  On CUDA fewer are made when one call
    is so slow that ``repeats`` calls would take longer than ``target_seconds`` (never fewer
    than ``min_calls``); on the CPU exactly ``repeats`` are made (CPU runs are smoke runs).
    """
    cuda = is_cuda(device)
    loop = _event_loop if cuda else _cpu_loop
    # Warm-up: every copy at least once (Triton autotunes here).
    for i in range(max(warmup, n_rot if cuda else 0, 1)):
        call(i % n_rot)
    _sync(device)
    calls = max(1, repeats)
    if cuda:
        # Size the loop from a short probe, after the warm-up so compilation is not in it.
        per_call = max(statistics.median(loop(call, n_rot, min(3, calls))), 1e-7)
        calls = int(max(min(min_calls, repeats), min(repeats, target_seconds / per_call)))
    note = ""
    if graph and cuda:
        try:
            g = _capture_graph(call, n_rot)
        except Exception as e:  # not every library can be captured; say so and time eagerly
            g = None
            note = f"graph capture failed ({type(e).__name__}: {str(e)[:120]}); timed eagerly"
        if g is not None:
            first = _graph_loop(g, n_rot, calls)
            second = _graph_loop(g, n_rot, calls)
            del g
            return Timing(statistics.median(first + second), statistics.median(first),
                          statistics.median(second), calls, "cuda-graph")
    elif graph:
        note = "no CUDA: graph replay not possible; timed eagerly"
    first = loop(call, n_rot, calls)
    second = loop(call, n_rot, calls, start=calls)
    return Timing(statistics.median(first + second), statistics.median(first), statistics.median(second),
                  calls, "cuda-events" if cuda else "perf_counter", note)


def copy_bandwidth(device, nbytes: int | None = None, repeats: int = 10) -> tuple[float, int]:
    """(bytes/s, buffer bytes) of a large device-to-device copy; bytes read + written count."""
    cuda = is_cuda(device)
    if nbytes is None:
        # Large against L2 so that the copy streams from and to HBM (DRAM on the CPU).
        nbytes = max(8 * l2_bytes(device), 1 << 30) if cuda else 64 << 20
    src = torch.empty(nbytes, dtype=torch.uint8, device=device).fill_(1)
    dst = torch.empty_like(src)
    for _ in range(3):
        dst.copy_(src)
    _sync(device)
    if cuda:
        times = _event_loop(lambda i: dst.copy_(src), 1, repeats)
    else:
        times = _cpu_loop(lambda i: dst.copy_(src), 1, repeats)
    del src, dst
    return 2 * nbytes / statistics.median(times), nbytes
