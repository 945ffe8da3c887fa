"""Timing helpers shared by the per-backend kernel benchmarks (bench_triton, bench_cutile).

The sweep (sweep.py, timing.py) is the full experiment; these two scripts are the kernel
authors' quick loop and keep their own simple CUDA-event timing, written once here.
"""
from __future__ import annotations

import argparse
import platform
import statistics
import subprocess
import sys

import torch

HBM_BYTES_PER_S = 3.35e12


def median_ms(fn, args_list, iters: int, warmup: int = 5) -> float:
    for i in range(warmup):
        fn(*args_list[i % len(args_list)])
    torch.cuda.synchronize()
    times = []
    for i in range(iters):
        a = args_list[i % len(args_list)]
        s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        s.record()
        fn(*a)
        e.record()
        e.synchronize()
        times.append(s.elapsed_time(e))
    return statistics.median(times)


def graph_median_ms(fn, args_list, iters: int) -> float | None:
    """Median time of CUDA-graph replays of fn (one graph per argument set, replayed in turn).

    Graph replay removes the host's launch cost, which at batch 1 is larger than the
    kernels themselves; it is how a decode loop is normally run.  None if capture fails.
    """
    try:
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for a in args_list:
                fn(*a)
        torch.cuda.current_stream().wait_stream(side)
        graphs = []
        for a in args_list:
            g = torch.cuda.CUDAGraph()
            with torch.cuda.graph(g):
                fn(*a)
            graphs.append(g)
        return median_ms(lambda g: g.replay(), [(g,) for g in graphs], iters)
    except Exception as e:  # report, do not fail the whole benchmark
        print(f"graph capture failed: {type(e).__name__}: {e}", file=sys.stderr)
        return None


def peak_bytes(fn, *a) -> int:
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    out = fn(*a)
    torch.cuda.synchronize()
    peak = torch.cuda.max_memory_allocated() - base
    del out
    return int(peak)


def versions() -> dict:
    """Versions of everything a kernel timing depends on (missing pieces are reported, not fatal)."""
    v = {"python": platform.python_version(), "torch": torch.__version__, "cuda_runtime": torch.version.cuda}
    try:
        import triton
        v["triton"] = triton.__version__
    except Exception as e:
        v["triton"] = f"missing ({e})"
    try:
        import importlib.metadata
        v["cuda_tile"] = importlib.metadata.version("cuda-tile")
        from tq.cutile import env
        facts = env.facts()
        v["tileiras"], v["driver_api"] = facts["tileiras_version"], facts["driver_api"]
    except Exception as e:
        v.setdefault("cuda_tile", f"missing ({e})")
    try:
        v["driver"] = subprocess.run(["nvidia-smi", "--query-gpu=driver_version,name", "--format=csv,noheader"],
                                     capture_output=True, text=True).stdout.strip()
    except Exception:
        pass
    if torch.cuda.is_available():
        v["gpu"] = torch.cuda.get_device_name()
    return v


def add_benchmark_arguments(ap: argparse.ArgumentParser) -> None:
    """The options both kernel benchmarks take (shapes, batches, quantization, iterations)."""
    ap.add_argument("--out", required=True)
    ap.add_argument("--shapes", default="8192x8192,28672x8192,8192x28672")
    ap.add_argument("--batches", default="1,16,2048")
    ap.add_argument("--codebooks", default="gaussian,gaussian-poly")
    ap.add_argument("--bits", type=int, default=4)
    ap.add_argument("--group", type=int, default=128)
    ap.add_argument("--iters", type=int, default=50)
    ap.add_argument("--weights", type=int, default=3, help="weights in rotation (>= 3 defeats L2)")


def parse_shapes_and_batches(args) -> tuple[list[tuple[int, int]], list[int]]:
    shapes = [tuple(int(v) for v in s.split("x")) for s in args.shapes.split(",")]
    return shapes, [int(b) for b in args.batches.split(",")]
