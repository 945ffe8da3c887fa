"""Time the triton backend against cuBLAS bf16 (and torch's int4 kernel where it runs).

    python -m tq.experiments.bench_triton --out DIR [--shapes 8192x8192,28672x8192,8192x28672]
        [--batches 1,16,2048] [--codebooks gaussian,gaussian-poly] [--bits 4] [--group 128]
        [--iters 50] [--weights 3]

Method: weights quantized from N(0,1) matrices, ``--weights`` different weights (and
activations) in rotation so that no call finds the previous call's weight in L2; bf16
activations; CUDA events around each call after a warm-up (the first call also runs the
tile tuner, see tq/triton/dispatch.py); the median of ``--iters`` calls, both eager (one
Python call per timed call, host launch cost included) and as CUDA-graph replays (GPU
time).  The triton time includes the activation rotation (a separate launch), also timed
alone.  GB/s counts the bytes one call must move at least (packed weight + norms, x, y)
over the graph time; "of HBM" divides by the H100 SXM datasheet 3.35 TB/s and "of copy"
by a measured device-to-device copy (bytes read + written).  Peak memory is torch's allocator peak
during one call above the level before it.  Writes bench_triton.md and bench_triton.json.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import torch

from .bench_common import (HBM_BYTES_PER_S, add_benchmark_arguments, graph_median_ms, median_ms,
                           parse_shapes_and_batches, peak_bytes, versions)


def copy_bandwidth() -> float:
    """Bytes read + written per second by a 1 GiB device-to-device copy (median of 20)."""
    a = torch.empty(1 << 30, dtype=torch.uint8, device="cuda")
    b = torch.empty_like(a)
    t = median_ms(lambda: b.copy_(a), [()], 20)
    del a, b
    return 2 * (1 << 30) / (t * 1e-3)


def torch_int4(n: int, k: int, group: int):
    """torch's int4 weight-only kernel (tinygemm) on an n x k weight, or the reason it cannot run."""
    try:
        w = torch.randint(0, 16, (n, k), dtype=torch.int32, device="cuda")
        packed = ((w[:, ::2] << 4) | w[:, 1::2]).to(torch.uint8)
        wp = torch.ops.aten._convert_weight_to_int4pack(packed, 8)
        sz = torch.randn(k // group, n, 2, dtype=torch.bfloat16, device="cuda")

        def fn(x):
            return torch.ops.aten._weight_int4pack_mm(x, wp, group, sz)
        fn(torch.randn(1, k, dtype=torch.bfloat16, device="cuda"))
        return fn, None
    except Exception as e:  # API differs across torch versions; report instead of failing
        return None, f"{type(e).__name__}: {str(e)[:200]}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_benchmark_arguments(ap)
    ap.add_argument("--residual-bits", type=int, default=None)
    args = ap.parse_args(argv)
    if not torch.cuda.is_available():
        print("no CUDA device: the triton benchmark needs one", file=sys.stderr)
        return 2
    import tq
    import tq.triton as tqt
    from tq.backends import get_backend
    from tq.triton import dispatch, rotate

    ok, reason = tqt.availability()
    if not ok:
        print(f"triton backend unavailable: {reason}", file=sys.stderr)
        return 2
    dev = "cuda"
    copy_bps = copy_bandwidth()
    print(f"device-to-device copy: {copy_bps / 1e9:.0f} GB/s", flush=True)
    shapes, batches = parse_shapes_and_batches(args)
    rows = []
    for n, k in shapes:
        gen = torch.Generator(device=dev).manual_seed(n * 7 + k)
        dense = [torch.randn(n, k, device=dev, generator=gen).to(torch.bfloat16) for _ in range(args.weights)]
        int4_fn, int4_err = torch_int4(n, k, args.group)
        for b in batches:
            xs = [torch.randn(b, k, device=dev, generator=gen).to(torch.bfloat16) for _ in range(args.weights)]
            t_blas = median_ms(lambda x, w: torch.nn.functional.linear(x, w), list(zip(xs, dense)), args.iters)
            t_int4 = median_ms(int4_fn, [(x,) for x in xs], args.iters) if int4_fn is not None else None
            g_int4 = graph_median_ms(int4_fn, [(x,) for x in xs], args.iters) if int4_fn is not None else None
            g_blas = graph_median_ms(lambda x, w: torch.nn.functional.linear(x, w), list(zip(xs, dense)), args.iters)
            for cbk in args.codebooks.split(","):
                qws = [tq.quantize(w, bits=args.bits, group_size=args.group, codebook=cbk,
                                   residual_bits=args.residual_bits) for w in dense]
                t0 = time.time()
                y = tqt.matmul(xs[0], qws[0])  # first call: compile + tune
                torch.cuda.synchronize()
                first_s = time.time() - t0
                ref = get_backend("reference").matmul(xs[0].float(), qws[0])
                rel = float((y.float() - ref).norm() / ref.norm())
                t_tri = median_ms(lambda x, q: tqt.matmul(x, q), list(zip(xs, qws)), args.iters)
                q = qws[0]
                rot_dtype = torch.float32 if b <= dispatch.DECODE_MAX_BATCH else torch.bfloat16
                g_tri = graph_median_ms(lambda x, q: tqt.matmul(x, q), list(zip(xs, qws)), args.iters)
                g_rot = graph_median_ms(lambda x: rotate.rotate(x, q.rotation_block, q.seed, q.k_padded, rot_dtype),
                                        [(x,) for x in xs], args.iters)
                peak = peak_bytes(tqt.matmul, xs[0], qws[0])
                moved = q.nbytes + xs[0].numel() * 2 + b * n * 2
                rnd = (lambda v: None if v is None else round(v, 4))
                best = g_tri if g_tri is not None else t_tri
                row = {"shape": f"{n}x{k}", "batch": b, "codebook": cbk, "triton_ms": round(t_tri, 4),
                       "triton_graph_ms": rnd(g_tri), "rotation_graph_ms": rnd(g_rot),
                       "cublas_bf16_ms": round(t_blas, 4), "cublas_graph_ms": rnd(g_blas),
                       "torch_int4_ms": None if t_int4 is None else round(t_int4, 4), "torch_int4_graph_ms": rnd(g_int4),
                       "speedup_vs_cublas": round(t_blas / t_tri, 3),
                       "graph_speedup_vs_cublas": None if g_tri is None or g_blas is None else round(g_blas / g_tri, 3),
                       "graph_GBps": None if g_tri is None else round(moved / (g_tri * 1e-3) / 1e9, 1),
                       "graph_frac_copy": None if g_tri is None else round(moved / (g_tri * 1e-3) / copy_bps, 3),
                       "triton_GBps": round(moved / (t_tri * 1e-3) / 1e9, 1),
                       "frac_hbm": round(moved / (best * 1e-3) / HBM_BYTES_PER_S, 3),
                       "frac_copy": round(moved / (t_tri * 1e-3) / copy_bps, 3),
                       "peak_bytes": peak, "out_plus_rot_bytes": b * n * 2 + b * q.k_padded * rot_dtype.itemsize,
                       "first_call_s": round(first_s, 2), "rel_err_vs_reference": rel}
                rows.append(row)
                print(json.dumps(row), flush=True)
                del qws
            del xs
        del dense
        torch.cuda.empty_cache()
    result = {"command": "python -m tq.experiments.bench_triton " + " ".join(argv if argv is not None else sys.argv[1:]),
              "versions": versions(), "copy_GBps": round(copy_bps / 1e9, 1), "rows": rows,
              "torch_int4": "ok" if int4_err is None else int4_err,
              "tuned_configs": dispatch.tuned_configs(),
              "date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())}
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "bench_triton.json"), "w") as f:
        json.dump(result, f, indent=1)
    lines = [f"# triton benchmark ({result['date']})", "", f"command: `{result['command']}`", "",
             f"versions: `{json.dumps(result['versions'])}`; measured copy bandwidth {result['copy_GBps']} GB/s", "",
             "Eager = one Python call per timed call (host launch cost included); graph = CUDA-graph replay "
             "(GPU time). GB/s and fractions use the graph time.", "",
             "| shape | B | codebook | triton eager ms | cuBLAS eager ms | eager speedup | triton graph ms | "
             "rotation graph ms | cuBLAS graph ms | graph speedup | torch int4 graph ms | GB/s | of HBM | of copy | "
             "peak MiB | rel err |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    f4 = (lambda v: "-" if v is None else f"{v:.4f}")
    for r in rows:
        gs = "-" if r["graph_speedup_vs_cublas"] is None else f"{r['graph_speedup_vs_cublas']:.2f}x"
        lines.append(f"| {r['shape']} | {r['batch']} | {r['codebook']} | {r['triton_ms']:.4f} | "
                     f"{r['cublas_bf16_ms']:.4f} | {r['speedup_vs_cublas']:.2f}x | {f4(r['triton_graph_ms'])} | "
                     f"{f4(r['rotation_graph_ms'])} | {f4(r['cublas_graph_ms'])} | {gs} | {f4(r['torch_int4_graph_ms'])} | "
                     f"{r['graph_GBps'] or r['triton_GBps']:.0f} | {r['frac_hbm']:.2f} | "
                     f"{r['graph_frac_copy'] or r['frac_copy']:.2f} | {r['peak_bytes'] / 2**20:.1f} | "
                     f"{r['rel_err_vs_reference']:.1e} |")
    md = "\n".join(lines) + "\n"
    with open(os.path.join(args.out, "bench_triton.md"), "w") as f:
        f.write(md)
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
