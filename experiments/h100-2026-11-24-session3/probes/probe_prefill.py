# Session-3 probe: where the chunked prefill's time goes (B = 2048), Triton and cuTile.
import os, torch, tq
from tq import chunked
from tq.triton import dispatch as td, rotate as trot
from tq.experiments.timing import time_op
dev, bf = "cuda", torch.bfloat16
def t_us(fn, n_rot=2, graph=True):
    return time_op(fn, n_rot, dev, graph=graph, warmup=3, repeats=20).median_s * 1e6
B = 2048
for n, k in [(8192, 8192), (28672, 8192), (8192, 28672)]:
    w = torch.randn(n, k, device=dev) * 0.02
    q0 = tq.quantize(w, bits=4, group_size=128, seed=5)
    q2 = q0.to(dev)
    for pp in q2.passes: pp.planes = [pl.clone() for pl in pp.planes]
    qws = [q0, q2]
    preps = [td.prepare_weight(q) for q in qws]
    wb = w.to(bf)
    x = torch.randn(B, k, device=dev).to(bf)
    tc = t_us(lambda i: x @ wb.T, 1)
    trt = t_us(lambda i: trot.rotate(x, 128, 5, k, bf), 1)
    cr = chunked.chunk_rows_for(k, n)
    buf = torch.empty(cr, k, device=dev, dtype=bf)
    tdq = t_us(lambda i: td._launch_dequant(qws[i], preps[i], buf, 0, cr))
    tg = t_us(lambda i: x @ buf.T, 1)
    print(f"{n}x{k} B={B}: cuBLAS {tc:.0f} us | triton rotate {trt:.1f} us ({B*k*4/trt/1e3:.0f} GB/s) | "
          f"dequant {cr} rows {tdq:.1f} us ({cr*k*2.5/tdq/1e3:.0f} GB/s) x{-(-n//cr)} | chunk GEMM {tg:.1f} us x{-(-n//cr)} = {tg*(-(-n//cr)):.0f}", flush=True)
    try:
        from tq.cutile import dispatch as cd
        from tq.cutile.rotate import rotate_kernel
        import cuda.tile as ct
        wd = cd.weight_data(q0)
        xr = torch.empty((1, B, k), device=dev, dtype=bf)
        r = q0.rotation_block; tbr = cd.rotate_tb(r)
        def crot(i):
            ct.launch(torch.cuda.current_stream(), (-(-B // tbr), k // r, 1), rotate_kernel, (x, wd.signs, xr, xr, r, tbr, 1, 0))
        crot(0); torch.cuda.synchronize()
        print(f"   cutile rotate (natural) {t_us(crot, 1):.1f} us", flush=True)
    except Exception as e:
        print("   cutile rotate: error", type(e).__name__, str(e)[:200])
    for mb in ("128", "192", "256"):
        os.environ["TQ_PREFILL_WORKSPACE_MB"] = mb
        for backend in ("triton", "cutile"):
            try:
                tq.matmul(x, qws[0], backend=backend); torch.cuda.synchronize()
                tt = t_us(lambda i: tq.matmul(x, qws[i], backend=backend))
                te = t_us(lambda i: tq.matmul(x, qws[i], backend=backend), graph=False)
                print(f"   {backend:7s} ws={mb}MiB rows={chunked.chunk_rows_for(k, n)}: graph {tt:.0f} us ({tc/tt:.2f}x, {tt/tc:.2f}x time)  eager {te:.0f} us ({tc/te:.2f}x)", flush=True)
            except Exception as e:
                print(f"   {backend} error {type(e).__name__}: {str(e)[:200]}", flush=True)
        chunked.release_prefill_workspace()
    os.environ.pop("TQ_PREFILL_WORKSPACE_MB")
