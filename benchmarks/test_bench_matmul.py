"""pytest-benchmark suite for the matmul kernels, for regression tracking.

Run (opt-in; ``pytest -q`` collects tests/ only and skips benchmarks):

    pytest benchmarks --benchmark-only                       # all; GPU ones skip without CUDA
    pytest benchmarks --benchmark-only -k cpu                # the CPU reference benchmark only
    pytest benchmarks --benchmark-only --benchmark-json=out/bench.json   # save, then compare later
    pytest benchmarks --benchmark-only --benchmark-compare   # against the last saved run

On the GPU every method of the sweep is benchmarked on the shapes of the kernel issues'
performance goals (8192x8192, 28672x8192, 8192x28672), batches 1, 16 and 2048:
each registered tq backend (unavailable ones skip with their reason), cuBLAS bf16 and
the peers (torch int4, bitsandbytes NF4).  One benchmark round calls the op once on each
weight copy of the rotation (timing.rotation_count, so L2 does not serve the weights) and
synchronizes; pytest-benchmark's time per round is divided by the copies in
``extra_info["copies"]``.  ``extra_info`` also holds the per-call median from CUDA events
(tq.experiments.timing.time_op, the sweep's measurement) and its GB/s.  Each method's
output is checked against its own float64 answer before it is timed.
"""
from __future__ import annotations

import pytest
import torch

from tq.backends import all_backends, get_backend
from tq.experiments import peers, sweep, timing

GPU_SHAPES = [(8192, 8192), (28672, 8192), (8192, 28672)]
GPU_BATCHES = [1, 16, 2048]
METHODS = [f"tq-{b.name}" for b in all_backends()] + ["cublas-bf16", *peers.PEERS]
QUANTIZATION = {"bits": 4, "group_size": 128}

_weights: dict = {}


def _weight(n, k, device):
    """One weight held at a time: the GPU shapes are hundreds of MB each in bf16."""
    key = (n, k, str(device))
    if key not in _weights:
        _weights.clear()
        _weights[key] = sweep.make_weight(n, k, 0, device)
    return _weights[key]


def _method(name):
    if name.startswith("tq-"):
        backend = get_backend(name[3:], require_available=False)
        if not backend.available:
            pytest.skip(f"backend {backend.name!r} unavailable: {backend.reason}")
        return peers.TqMethod(backend, QUANTIZATION)
    if name == "cublas-bf16":
        return peers.CublasBf16()
    return peers.PEERS[name]()


def _prepare_checked(method, weight, batch, device):
    try:
        method.prepare(weight, 1)
        copies = timing.rotation_count(method.stored_bytes, device) if timing.is_cuda(device) else 1
        if copies > 1:
            method.prepare(weight, copies)
    except peers.MethodUnavailable as e:
        pytest.skip(str(e))
    x = sweep.make_activation(batch, weight.shape[1], 1, device)
    if method.kind == "tq":
        reason = method.supports(x)
        if reason:
            pytest.skip(f"{method.name} does not support these inputs: {reason}")
    check = sweep.check_output(method, x, method.run(x, 0), weight)
    assert check["check_ok"], f"{method.name} output is wrong (rel err {check['rel_err']:.3g}); not timed"
    return x, copies


@pytest.mark.gpu
@pytest.mark.parametrize("batch", GPU_BATCHES)
@pytest.mark.parametrize("shape", GPU_SHAPES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("name", METHODS)
def test_gpu_matmul(benchmark, name, shape, batch):
    device = torch.device("cuda")
    method = _method(name)
    weight = _weight(*shape, device)
    x, copies = _prepare_checked(method, weight, batch, device)

    def one_round():
        for i in range(copies):
            method.run(x, i)
        torch.cuda.synchronize()

    t = timing.time_op(lambda i: method.run(x, i), copies, device)
    moved = method.stored_bytes + x.numel() * x.element_size() + batch * shape[0] * 2
    benchmark.extra_info.update({
        "copies": copies, "event_median_us": t.median_s * 1e6, "event_spread": t.spread,
        "gbps": moved / t.median_s / 1e9, "bits_per_weight": method.bits_per_weight,
    })
    benchmark.pedantic(one_round, rounds=20, warmup_rounds=3)
    method.release()


def test_cpu_reference_matmul(benchmark):
    """Runs anywhere: the reference backend on a small layer (tracks the specification's speed)."""
    method = peers.TqMethod(get_backend("reference"), QUANTIZATION)
    weight = _weight(512, 1024, "cpu")
    x, _ = _prepare_checked(method, weight, 4, torch.device("cpu"))
    benchmark.extra_info["bits_per_weight"] = method.bits_per_weight
    benchmark(method.run, x, 0)
