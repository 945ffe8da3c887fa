# Device probe (ninth session): the chunked prefill (B = 2048) with cuBLAS's SM count target lowered
# during the chunk GEMMs (TQ_PREFILL_SM_CARVEOUT), so the side stream's dequant runs beside them.
# Graph replay, CUDA events, medians; 4-bit g128 Lloyd-Max; shapes 8192x8192 / 28672x8192 / 8192x28672.
#   A: cuBLAS bf16 on the whole weight, and one chunk GEMM, at each carveout (does torch 2.11 honour it?)
#   B: tq triton / cutile prefill at each carveout; each output checked against float64 (on the GPU)
#   C: kernel timeline of one eager call (torch.profiler) at carveout 0 and the best one, 8192x28672
# Needs carveout.patch (beside this file) applied to tq/chunked.py: the setting was dropped after this
# probe, because no carveout made either backend faster (probe_carveout.log).
import json, os, sys, time
import torch
import tq, tq.cutile as tqc, tq.triton as tqt
from tq.experiments.timing import time_op
from tq.quantize import dequantize_rotated
from tq.rotation import rotate_torch
from tq import chunked

OUT = os.environ.get("OUT", "/tmp")
dev = torch.device("cuda")
CARVES = [int(c) for c in os.environ.get("CARVES", "0,8,16,24,32,48").split(",")]
SHAPES = [(8192, 8192), (28672, 8192), (8192, 28672)]
B = 2048
t = lambda fn, n=2: time_op(fn, n, dev, graph=True, warmup=3, repeats=30).median_s * 1e6
print("torch", torch.__version__, "carveout hook:", chunked.carveout_reason() or "present", flush=True)
rows, t0 = [], time.time()
for n, k in SHAPES:
    g = torch.Generator(device=dev).manual_seed(n + 7 * k)
    wf = [torch.randn(n, k, device=dev, generator=g) * 0.02 for _ in range(2)]
    wb = [w.to(torch.bfloat16) for w in wf]
    qs = [tq.quantize(w, bits=4, group_size=128, codebook="gaussian", seed=5 + i) for i, w in enumerate(wf)]
    del wf
    x = torch.randn(B, k, device=dev, generator=g).to(torch.bfloat16)
    wr = dequantize_rotated(qs[0], dtype=torch.float64)
    ref = rotate_torch(x.double(), qs[0].rotation_block, qs[0].seed, qs[0].k_padded) @ wr.T
    del wr
    rows_c = chunked.chunk_rows_for(qs[0].k_padded, n)
    wc = wb[0][:rows_c]
    yc = torch.empty(B, n, device=dev, dtype=torch.bfloat16)
    for c in CARVES:
        row = {"shape": f"{n}x{k}", "carve": c}
        with chunked.cublas_sm_carveout(c):
            row["cublas"] = t(lambda i: x @ wb[i].T)
            row["chunk_gemm"] = t(lambda i: torch.mm(x, wc.T, out=yc[:, :rows_c]), 1)
        os.environ["TQ_PREFILL_SM_CARVEOUT"] = str(c)
        for name, mod in (("triton", tqt), ("cutile", tqc)):
            fn = lambda i: mod.matmul(x, qs[i])
            y = fn(0).double()
            err = float(torch.linalg.norm(y - ref) / torch.linalg.norm(ref))
            assert err < 5e-3, (n, k, c, name, err)
            row[name] = t(fn)
            row["err " + name] = err
        rows.append(row)
        print({kk: (round(v, 1) if isinstance(v, float) and v > 1 else v) for kk, v in row.items()}, flush=True)
    del qs, wb, ref, x, wc, yc
    torch.cuda.empty_cache()
os.environ["TQ_PREFILL_SM_CARVEOUT"] = "0"
print(f"part A+B took {time.time() - t0:.0f} s", flush=True)
json.dump(rows, open(os.path.join(OUT, "probe_carveout.json"), "w"), indent=1)

# C: timeline (eager) at 8192x28672, triton, carveout 0 and the best
best = {}
for r in rows:
    if r["shape"] == "8192x28672":
        best[r["carve"]] = r["triton"]
cbest = min(best, key=best.get)
n, k = SHAPES[2]
w = torch.randn(n, k, device=dev) * 0.02
q = tq.quantize(w, bits=4, group_size=128, codebook="gaussian", seed=1)
del w
x = torch.randn(B, k, device=dev).to(torch.bfloat16)
from torch.profiler import profile, ProfilerActivity
for c in sorted({0, cbest}):
    os.environ["TQ_PREFILL_SM_CARVEOUT"] = str(c)
    for _ in range(3):
        tqt.matmul(x, q)
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        tqt.matmul(x, q)
        torch.cuda.synchronize()
    path = os.path.join(OUT, f"trace_carve{c}.json")
    prof.export_chrome_trace(path)
    ev = [e for e in json.load(open(path))["traceEvents"] if e.get("cat") == "kernel"]
    t00 = min(e["ts"] for e in ev)
    print(f"\ntimeline carve={c} (us from first kernel; stream: name start dur)")
    for e in sorted(ev, key=lambda e: e["ts"]):
        print(f"  s{e['args'].get('stream')}: {e['name'][:48]:48s} {e['ts'] - t00:8.1f} {e['dur']:7.1f}")
    print(f"  span {max(e['ts'] + e['dur'] for e in ev) - t00:.1f} us")
os.environ["TQ_PREFILL_SM_CARVEOUT"] = "0"

print(f"\nB = {B}, GPU us (graph replay, medians, 2 weights rotated); tq x = its time / cuBLAS (carve 0)")
print("| shape | carve | cuBLAS | chunk GEMM | triton | cutile |")
print("|---|---|---|---|---|---|")
base = {r["shape"]: r["cublas"] for r in rows if r["carve"] == 0}
for r in rows:
    b0 = base[r["shape"]]
    print(f"| {r['shape']} | {r['carve']} | {r['cublas']:.0f} | {r['chunk_gemm']:.0f} | "
          f"{r['triton']:.0f} ({r['triton'] / b0:.3f}x) | {r['cutile']:.0f} ({r['cutile'] / b0:.3f}x) |")
