# Device probe (eighth session): the cuTile word decode's K tile, split-K epilogue and PDL, graph replay.
#   tk128 / tk256: 128-column K tiles (seventh session) or 256 (two norm groups a tile at g128)
#   launch: reduce.py sums the shares (second launch; seventh session's form)
#   ticket: the share that finishes last sums them in the matmul kernel (no reduce launch)
#   pdl:    the matmul is a programmatic dependent launch of the rotation
# Also: the same with the 3-term polynomial codebook (gaussian-poly) and Triton for reference.
# Every timed output is first checked against the float64 reference of its weight.
import os, sys, time
import numpy as np, torch
import tq, tq.cutile as tqc, tq.triton as tqt
from tq.experiments.timing import time_op
from tq.reference import matmul_float64

dev = torch.device("cuda")
FORMS = [("128", "launch", "0"), ("256", "launch", "0"), ("256", "launch", "1"), ("256", "ticket", "0"),
         ("256", "ticket", "1"), ("128", "ticket", "1")]
rows = []
t0 = time.time()
for n, k in [(8192, 8192), (28672, 8192), (8192, 28672)]:
    g = torch.Generator(device=dev).manual_seed(n + k)
    wf = [torch.randn(n, k, device=dev, generator=g) * 0.02 for _ in range(3)]
    wb = [w.to(torch.bfloat16) for w in wf]
    books = {cb: [tq.quantize(w, bits=4, group_size=128, codebook=cb, seed=3 + i) for i, w in enumerate(wf)]
             for cb in ("gaussian", "gaussian-poly")}
    del wf
    for b in (1, 16):
        x = torch.randn(b, k, device=dev).to(torch.bfloat16)
        t = lambda fn: time_op(fn, 3, dev, graph=True, warmup=5, repeats=50).median_s * 1e6
        ref = {cb: matmul_float64(x, qs[0]) for cb, qs in books.items()}

        def check(fn, cb):
            y = fn(0).double().cpu().numpy()
            return float(np.linalg.norm(y - ref[cb]) / np.linalg.norm(ref[cb]))
        row = {"shape": f"{n}x{k}", "B": b, "cublas": t(lambda i: x @ wb[i].T)}
        for cb, qs in books.items():
            for tk, sk, pdl in FORMS if cb == "gaussian" else [("256", "ticket", "1")]:
                os.environ["TQ_CUTILE_WORDS_TK"], os.environ["TQ_CUTILE_SPLITK"], os.environ["TQ_CUTILE_PDL"] = tk, sk, pdl
                fn = lambda i: tqc.matmul(x, qs[i])
                err = check(fn, cb)
                assert err < 4e-3, (n, k, b, cb, tk, sk, pdl, err)
                row[f"cutile {cb} tk{tk} {sk} pdl={pdl}"] = t(fn)
                row[f"err cutile {cb} tk{tk} {sk} pdl={pdl}"] = err
            fn = lambda i: tqt.matmul(x, qs[i])
            err = check(fn, cb)
            assert err < 1e-2, (n, k, b, cb, "triton", err)
            row[f"triton {cb}"] = t(fn)
        rows.append(row)
        print({kk: (round(v, 2) if isinstance(v, float) and v > 1e-2 else v) for kk, v in row.items()}, flush=True)
    del books, wb
    torch.cuda.empty_cache()
print(f"probe took {time.time() - t0:.0f} s")
cols = ["cublas"] + [f"cutile gaussian tk{tk} {sk} pdl={p}" for tk, sk, p in FORMS] + \
       ["cutile gaussian-poly tk256 ticket pdl=1", "triton gaussian", "triton gaussian-poly"]
print("\nGPU us per call (CUDA-graph replay, medians, 3 weights rotated); x = cuBLAS bf16 / that")
print("| N x K | B | " + " | ".join(cols) + " |")
print("|---|---|" + "---|" * len(cols))
for r in rows:
    print(f"| {r['shape']} | {r['B']} | " + " | ".join(
        f"{r[c]:.1f}" + ("" if c == "cublas" else f" ({r['cublas'] / r[c]:.2f}x)") for c in cols) + " |")
