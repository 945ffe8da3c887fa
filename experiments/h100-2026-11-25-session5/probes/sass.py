"""Offline SASS of lut4_matmul_kernel configs: instruction mix of the hot loop."""
import sys, re, subprocess, collections, os
import triton, triton.language as tl
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource
import importlib

def compile_kernel(kernel, consts, types, warps=4, stages=3, arch=90, values=None):
    """values: runtime ints as at the real launch (1 -> constant, multiples of 16 -> divisible);
    every pointer is taken as 16-byte aligned (fresh torch allocations)."""
    values = values or {}
    consts = dict(consts)
    attrs = {}
    for i, n in enumerate(kernel.arg_names):
        if n in consts:
            continue
        t = types.get(n, "i32")
        if t.startswith("*"):
            attrs[(i,)] = [["tt.divisibility", 16]]
        elif n in values and values[n] == 1:
            consts[n] = 1
        elif n in values and values[n] % 16 == 0:
            attrs[(i,)] = [["tt.divisibility", 16]]
    sig = {n: "constexpr" if n in consts else types.get(n, "i32") for n in kernel.arg_names}
    src = ASTSource(kernel, sig, consts, attrs)
    return triton.compile(src, target=GPUTarget("cuda", arch, 32), options={"num_warps": warps, "num_stages": stages})

def sass_of(compiled, name):
    d = "/work/main/scratch/sass"
    p = f"{d}/{name}.cubin"
    open(p, "wb").write(compiled.asm["cubin"])
    nv = os.path.join(os.path.dirname(triton.__file__), "backends/nvidia/bin/nvdisasm")
    out = subprocess.run([nv, "-c", "-g", p], capture_output=True, text=True).stdout
    open(f"{d}/{name}.sass", "w").write(out)
    open(f"{d}/{name}.ptx", "w").write(compiled.asm["ptx"])
    open(f"{d}/{name}.ttgir", "w").write(compiled.asm["ttgir"])
    return out

def loop_mix(sass):
    labels, addr = {}, []
    pending = []
    for l in sass.splitlines():
        m = re.match(r"^(\.L_x_\d+):", l.strip())
        if m: pending.append(m.group(1)); continue
        m = re.search(r"/\*([0-9a-f]{4})\*/\s+(.*?);", l)
        if m:
            a = int(m.group(1), 16)
            for p in pending: labels[p] = a
            pending = []
            addr.append((a, m.group(2).strip()))
    best = None
    for a, ins in addr:
        m = re.search(r"BRA\s.*?\((\.L_x_\d+)\)", ins)
        if m and m.group(1) in labels:
            t = labels[m.group(1)]
            if t < a and (best is None or a - t > best[1] - best[0]):
                best = (t, a)
    body = [ins for a, ins in addr if best and best[0] <= a <= best[1]]
    mix = collections.Counter()
    for ins in body:
        op = re.sub(r"^@!?U?P\w+\s+", "", ins).split()[0]
        mix[op.split(".")[0]] += 1
    return len(body), mix, best

if __name__ == "__main__":
    from tq.triton import lutmm
    types = {"x_ptr": "*bf16", "y_ptr": "*bf16", "ws_ptr": "*fp32", "lock_ptr": "*i32", "bias_ptr": "*bf16",
             "inv_sqrt_g": "fp32"}
    for p in ("a", "r"):
        types.update({f"{p}_pl": "*u8", f"{p}_norm": "*fp16", f"{p}_lv": "*fp32"})
        types.update({f"{p}_{t}": "i64" for t in ("lp", "ln", "hp", "hn")})
    for name, (bm, bn, w, st, un) in {"b1": (1, 128, 8, 3, 4), "b1u1": (1, 128, 8, 3, 1), "b16": (16, 64, 4, 3, 1)}.items():
        consts = dict(BN=bn, BM=bm, TK=128, GROUP_M=1, RESIDUAL=False, PARTIAL=True, HAS_BIAS=False,
                      SCALE_W=False, OUT=tl.bfloat16, USE_ASM=True, UNROLL=un)
        vals = dict(B=bm, N=8192, n_groups=64, tiles_per_group=1, tiles_per_split=16, n_tiles=64, split=4, ld_pl=4096, ld_x=8192, ld_y=8192)
        c = compile_kernel(lutmm.lut4_matmul_kernel, consts, types, w, st, values=vals)
        s = sass_of(c, name)
        n, mix, rng = loop_mix(s)
        weights = bn * 128 * un  # per loop iteration, whole CTA
        threads = 32 * w
        print(name, "regs", c.metadata.__dict__.get("n_regs", "?") if hasattr(c.metadata,"__dict__") else "?", "spills", "?", "loop instrs", n, "per weight/thread", round(n * threads / weights, 2))
        print("  ", dict(mix.most_common(25)))

def mma_variant(name, bn=64, bb=8, warps=4, stages=1, un=1, residual=False, arch=90, depth=1, sym=True):
    from tq.triton import lutmma
    types = {"x_ptr": "*bf16", "y_ptr": "*bf16", "ws_ptr": "*fp32", "lock_ptr": "*i32", "bias_ptr": "*bf16",
             "inv_sqrt_g": "fp32", "xin_ptr": "*bf16", "sign_ptr": "*fp32", "h_ptr": "*bf16", "rot_scale": "fp32"}
    for p in ("a", "r"):
        types.update({f"{p}_pl": "*u8", f"{p}_norm": "*fp16", f"{p}_lv": "*fp32"})
        types.update({f"{p}_{t}": "i64" for t in ("lp", "ln", "hp", "hn")})
    consts = dict(BN=bn, BB=bb, WARPS=warps, RESIDUAL=residual, PARTIAL=True, HAS_BIAS=False,
                  USE_ASM=True, UNROLL=un, DEPTH=depth, ASM_A=lutmma.ptx_for("bf16", bb, sym),
                  ASM_R=lutmma.ptx_for("bf16", bb, sym))
    vals = dict(B=1 if bb == 8 else 16, N=8192, n_groups=64, tiles_per_group=1, tiles_per_split=16, n_tiles=64, split=4,
                ld_pl=4096, ld_x=8192, ld_y=8192)
    c = compile_kernel(lutmma.lut4_mma_kernel, consts, types, warps, stages, arch=arch, values=vals)
    s = sass_of(c, name)
    n, mix, rng = loop_mix(s)
    weights = bn * 128 * un
    print(name, "layout_ok", lutmma.layout_ok(c.asm["ttgir"], warps), "loop instrs", n,
          "per weight/thread", round(n * 32 * warps / weights, 2), "regs", getattr(c, "n_regs", None))
    print("  ", dict(mix.most_common(25)))
    return c
