"""Time the cutile backend against cuBLAS bf16 (and the triton backend when it is available).

    python -m tq.experiments.bench_cutile --out DIR [--shapes 8192x8192,28672x8192,8192x28672]
        [--batches 1,16,2048] [--codebooks gaussian,gaussian-poly] [--bits 4] [--group 128] [--iters 50]

Method: 4-bit g128 weights quantized from N(0,1) matrices, three different weights (and
activations) in rotation so that no call finds the previous call's weight in L2; bf16
activations; CUDA events around each call after a warm-up; the median of ``--iters``
calls is reported.  GB/s counts the bytes one call must move at least (packed weight +
norms, x, y); "vs HBM" divides by the H100 SXM datasheet 3.35 TB/s.  Peak memory is
torch's allocator peak during one call above the level before it.  Compile (first call)
time comes from ``tq.cutile.compile_stats()``.  Writes bench_cutile.md and
bench_cutile.json to --out.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import torch

from .bench_common import (HBM_BYTES_PER_S, add_benchmark_arguments, median_ms, parse_shapes_and_batches,
                           peak_bytes, versions)


def _breakdown(tqc, xs, qws, iters) -> dict:
    """GPU time without host launch gaps (graph replay) and per-kernel device time."""
    out = {}
    try:
        graphs = []
        for x, q in zip(xs, qws):
            tqc.matmul(x, q)
            torch.cuda.synchronize()
            gr = torch.cuda.CUDAGraph()
            with torch.cuda.graph(gr):
                tqc.matmul(x, q)
            graphs.append((gr,))
        out["graph_ms"] = round(median_ms(lambda gr: gr.replay(), graphs, iters), 4)
    except Exception as e:
        out["graph_ms"] = f"failed: {type(e).__name__}: {e}"[:200]
    try:
        from torch.profiler import ProfilerActivity, profile
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            for i in range(10):
                tqc.matmul(xs[i % len(xs)], qws[i % len(qws)])
            torch.cuda.synchronize()
        per = {}
        for ev in prof.key_averages():
            t = getattr(ev, "device_time_total", None) or getattr(ev, "cuda_time_total", 0)
            if t and ev.count:
                per[ev.key[:40]] = round(t / ev.count / 1000.0, 4)
        out["kernels_ms"] = per
    except Exception as e:
        out["kernels_ms"] = f"failed: {type(e).__name__}: {e}"[:200]
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_benchmark_arguments(ap)
    ap.add_argument("--breakdown", action="store_true",
                    help="also time CUDA-graph replay of the call and each kernel (torch.profiler)")
    args = ap.parse_args(argv)
    if not torch.cuda.is_available():
        print("no CUDA device", file=sys.stderr)
        return 2
    import tq
    import tq.cutile as tqc
    from tq.backends import get_backend
    ok, reason = tqc.availability()
    if not ok:
        print(f"cutile unavailable: {reason}", file=sys.stderr)
        return 2
    triton_b = get_backend("triton", require_available=False)
    dev = "cuda"
    shapes, batches = parse_shapes_and_batches(args)
    rows = []
    for n, k in shapes:
        gen = torch.Generator(device=dev).manual_seed(n * 7 + k)
        dense = [torch.randn(n, k, device=dev, generator=gen).to(torch.bfloat16) for _ in range(args.weights)]
        for cbk in args.codebooks.split(","):
            qws = [tq.quantize(w, bits=args.bits, group_size=args.group, codebook=cbk) for w in dense]
            for b in batches:
                xs = [torch.randn(b, k, device=dev, generator=gen).to(torch.bfloat16) for _ in range(args.weights)]
                # correctness spot check against the torch reference backend on this exact input
                y = tqc.matmul(xs[0], qws[0])
                ref = get_backend("reference").matmul(xs[0].float(), qws[0])
                rel = float((y.float() - ref).norm() / ref.norm())
                t_cut = median_ms(lambda x, q: tqc.matmul(x, q), list(zip(xs, qws)), args.iters)
                t_blas = median_ms(lambda x, w: torch.nn.functional.linear(x, w), list(zip(xs, dense)), args.iters)
                t_tri = None
                if triton_b.available and triton_b.supports(xs[0], qws[0]) is None:
                    t_tri = median_ms(lambda x, q: triton_b.matmul(x, q), list(zip(xs, qws)), args.iters)
                peak = peak_bytes(tqc.matmul, xs[0], qws[0])
                extra = _breakdown(tqc, xs, qws, args.iters) if args.breakdown else {}
                moved = qws[0].nbytes + xs[0].numel() * 2 + b * n * 2
                row = {"shape": f"{n}x{k}", "batch": b, "codebook": cbk, "cutile_ms": round(t_cut, 4),
                       "cublas_bf16_ms": round(t_blas, 4), "triton_ms": None if t_tri is None else round(t_tri, 4),
                       "speedup_vs_cublas": round(t_blas / t_cut, 3),
                       "cutile_GBps": round(moved / (t_cut * 1e-3) / 1e9, 1),
                       "frac_hbm": round(moved / (t_cut * 1e-3) / HBM_BYTES_PER_S, 3),
                       "peak_bytes": peak, "out_plus_rot_bytes": b * n * 2 + b * qws[0].k_padded * 2,
                       "rel_err_vs_reference": rel, **extra}
                rows.append(row)
                print(json.dumps(row), flush=True)
                del xs
            del qws
        del dense
        torch.cuda.empty_cache()
    result = {"command": "python -m tq.experiments.bench_cutile " + " ".join(argv or sys.argv[1:]),
              "versions": versions(), "rows": rows, "compile_stats": tqc.compile_stats(),
              "triton": triton_b.reason if not triton_b.available else "available",
              "date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())}
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "bench_cutile.json"), "w") as f:
        json.dump(result, f, indent=1)
    lines = [f"# cutile benchmark ({result['date']})", "", f"command: `{result['command']}`", "",
             f"versions: `{json.dumps(result['versions'])}`", "",
             "| shape | B | codebook | cutile ms | cuBLAS bf16 ms | speedup | triton ms | GB/s | of HBM | peak MiB | rel err |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['shape']} | {r['batch']} | {r['codebook']} | {r['cutile_ms']:.4f} | {r['cublas_bf16_ms']:.4f} | "
                     f"{r['speedup_vs_cublas']:.2f}x | {r['triton_ms'] if r['triton_ms'] is not None else '-'} | "
                     f"{r['cutile_GBps']:.0f} | {r['frac_hbm']:.2f} | {r['peak_bytes'] / 2**20:.1f} | {r['rel_err_vs_reference']:.1e} |")
    cs = result["compile_stats"]
    lines += ["", f"first-call (compile) time: {cs['total_first_call_s']} s over {cs['variants']} kernel variants",
              f"triton backend: {result['triton']}"]
    with open(os.path.join(args.out, "bench_cutile.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
