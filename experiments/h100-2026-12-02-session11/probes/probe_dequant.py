# Device probe (eleventh session): the chunked prefill's cuTile dequant (34-36 us per 1024 x 28672
# chunk on the H200 against Triton's 21-23, tenth session).  Part A times one chunk fill alone
# (graph replay, CUDA events, medians, 2 weights rotated) for the tile write form
# (TQ_CUTILE_DEQUANT = cat | slices), the level evaluation (TQ_CUTILE_LEVELS unset = fp32 fitted
# polynomial, fit16 = packed fp16 polynomial, pairs = byte-pair table) and rows per program
# (TQ_CUTILE_DEQUANT_TN = 64 | 128), beside Triton's lut4_dequant_kernel and a bf16 copy of the
# chunk's bytes; each chunk is checked against dequantize_rotated.  Part B: both backends end to
# end at B = 2048 (graph), two interleaved rounds, with the forms that part A keeps.
import os
import torch
import tq, tq.chunked as chunked, tq.cutile as tqc, tq.triton as tqt
from tq.cutile import dispatch as cd
from tq.triton import dispatch as td
from tq.experiments.timing import time_op
from tq.quantize import dequantize_rotated
from tq.rotation import rotate_torch

dev = torch.device("cuda")
t = lambda fn, n=2: time_op(fn, n, dev, graph=True, warmup=3, repeats=50).median_s * 1e6
stream = torch.cuda.current_stream().cuda_stream
ENV = ("TQ_CUTILE_DEQUANT", "TQ_CUTILE_LEVELS", "TQ_CUTILE_DEQUANT_TN")


def setenv(form, levels, tn):
    for name, v in zip(ENV, (form, levels, tn)):
        if v is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = v


res = []
shapes = ((8192, 8192), (8192, 28672))
variants = [(f, lv, tn) for f in ("cat", "slices") for lv in (None, "fit16", "pairs") for tn in ("64", "128")]
for n, k in shapes:
    g = torch.Generator(device=dev).manual_seed(23)
    wf = [torch.randn(n, k, device=dev, generator=g) * 0.02 for _ in range(2)]
    qs = [tq.quantize(w, bits=4, group_size=128, codebook="gaussian", seed=3 + i) for i, w in enumerate(wf)]
    del wf
    kp = qs[0].k_padded
    rows = chunked.chunk_rows_for(kp, n)
    buf = torch.empty(rows, kp, dtype=torch.bfloat16, device=dev)
    ref = dequantize_rotated(qs[0], dtype=torch.float32)[:rows].to(torch.bfloat16).float()
    err = lambda: float((buf.float() - ref).abs().max() / ref.abs().max())
    gb = rows * kp * (0.5 + 2) / 1e3   # packed reads + bf16 writes, kB -> GB/s at us
    src = torch.empty_like(buf)
    us = t(lambda i: buf.copy_(src))
    res.append((f"{rows}x{k} copy (bf16 read+write)", us, 2 * rows * kp * 2 / 1e3 / us, 0.0))
    preps = [td.prepare_weight(q) for q in qs]
    fn = lambda i: td._launch_dequant(qs[i], preps[i], buf, 0, rows)
    fn(0); torch.cuda.synchronize(); e = err()
    us = t(fn)
    res.append((f"{rows}x{k} triton lut4_dequant", us, gb / us, e))
    print(res[-1], flush=True)
    for form, lv, tn in variants:
        setenv(form, lv, tn)
        fills = []
        for q in qs:
            wd = cd.weight_data(q)
            plan = cd._plan(q, wd, 2048, torch.bfloat16, False, dev, stream)
            # (the dtype argument came after the recorded run, in the review; the fill is the same)
            fills.append(cd.chunk_filler(q, wd, plan, torch.bfloat16))
        name = plan.fused_kernel.__name__ if hasattr(plan.fused_kernel, "__name__") else str(plan.fused_kernel)
        fn = lambda i: fills[i](buf, 0, rows)
        buf.zero_(); fn(0); torch.cuda.synchronize(); e = err()
        us = t(fn)
        res.append((f"{rows}x{k} cutile form={form} levels={lv or 'fit'} TN={tn} ({name[:24]}, T={plan.fused_consts[2]})",
                    us, gb / us, e))
        print(res[-1], flush=True)
    setenv(None, None, None)
    del qs, preps, buf, src, ref
    torch.cuda.empty_cache()

print("\n| part A: one chunk fill | us | GB/s (packed read + bf16 write; copy: read + write) | max err / max |")
print("|---|---|---|---|")
for name, us, bw, e in res:
    print(f"| {name} | {us:.1f} | {bw:.0f} | {e:.1e} |")

# Part B: end to end, B = 2048
keep = [("cat", None, None), ("slices", None, None), ("slices", "fit16", None), ("cat", "pairs", None),
        ("slices", None, "128")]
resb = []
for n, k in ((8192, 8192), (28672, 8192), (8192, 28672)):
    g = torch.Generator(device=dev).manual_seed(17)
    wf = [torch.randn(n, k, device=dev, generator=g) * 0.02 for _ in range(2)]
    wb = [w.to(torch.bfloat16) for w in wf]
    qs = [tq.quantize(w, bits=4, group_size=128, codebook="gaussian", seed=5 + i) for i, w in enumerate(wf)]
    del wf
    x = torch.randn(2048, k, device=dev, generator=g).to(torch.bfloat16)
    ref = rotate_torch(x.double(), 128, qs[0].seed, qs[0].k_padded) @ dequantize_rotated(qs[0], dtype=torch.float64).T
    rel = lambda y: float(torch.linalg.norm(y.double() - ref) / torch.linalg.norm(ref))
    for rnd in range(2):
        cub = t(lambda i: x @ wb[i].T)
        resb.append((f"{n}x{k} cuBLAS (round {rnd})", cub, 1.0, 0.0))
        us = t(lambda i: tqt.matmul(x, qs[i]))
        resb.append((f"{n}x{k} triton (round {rnd})", us, us / cub, rel(tqt.matmul(x, qs[0]))))
        for form, lv, tn in keep:
            setenv(form, lv, tn)
            us = t(lambda i: tqc.matmul(x, qs[i]))
            resb.append((f"{n}x{k} cutile {form} {lv or 'fit'} TN={tn or 64} (round {rnd})", us, us / cub,
                         rel(tqc.matmul(x, qs[0]))))
            print(resb[-1], flush=True)
        setenv(None, None, None)
    del qs, wb, ref, x
    chunked.release_prefill_workspace()
    torch.cuda.empty_cache()

print("\n| part B: B = 2048, graph | us | x cuBLAS's time | rel. err |\n|---|---|---|---|")
for name, us, r, e in resb:
    print(f"| {name} | {us:.1f} | {r:.3f} | {e:.2e} |")
