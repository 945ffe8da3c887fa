# Offline (no GPU): registers, spills and resident warps of Triton's decode kernels (lutmma.py,
# 4-bit, symmetric lookup, bf16, one pass) with the asm in its two orders: "grouped" (every
# word looked up, then all 8 or 16 mmas: the form before the thirteenth session, ptx_grouped.py)
# and "interleaved" (lutmma._ptx now: two words, then their mmas), under register caps,
# compiled for sm_90 by the local Triton (the CI's 3.9; the GPU image has 3.6).
# Run from the repository root: PYTHONPATH=$PWD python experiments/h200-2026-12-03-session13/probes/aot_order.py
import glob
import os
import re
import subprocess
import sys
import tempfile

import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

import tq.triton.lutmma as lutmma

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ptx_grouped import ptx_grouped  # noqa: E402

CUOBJDUMP = glob.glob(triton.__path__[0] + "/backends/nvidia/bin/cuobjdump")[0]
FORMS = {"grouped": ptx_grouped, "interleaved": lutmma.ptx_for}


def compile_one(tma: bool, form: str, bb: int, bn: int, warps: int, depth: int, cap: int):
    kernel = lutmma.lut4_mma_tma_kernel if tma else lutmma.lut4_mma_kernel
    types = {"x_ptr": "*bf16", "y_ptr": "*bf16", "ws_ptr": "*fp32", "lock_ptr": "*i32", "bias_ptr": "*bf16",
             "inv_sqrt_g": "fp32"}
    for p in ("a", "r"):
        types.update({f"{p}_pl": "*u8", f"{p}_desc": f"tensordesc<i32[{bn}, 16]>", f"{p}_norm": "*fp16",
                      f"{p}_lv": "*fp32"})
        types.update({f"{p}_{t}": "i64" for t in ("lp", "ln", "hp", "hn")})
    asm = FORMS[form]("bf16", bb, True)
    consts = dict(BN=bn, BB=bb, WARPS=warps, RESIDUAL=False, PARTIAL=True, HAS_BIAS=False, USE_ASM=True,
                  ASM_A=asm, ASM_R=asm)
    consts.update(STAGES=3) if tma else consts.update(UNROLL=2, DEPTH=depth)
    names = kernel.arg_names
    attrs = {(i,): [["tt.divisibility", 16]] for i, n in enumerate(names)
             if n not in consts and (types.get(n, "i32").startswith("*") or n in ("ld_pl", "ld_x", "ld_y", "N"))}
    sig = {n: "constexpr" if n in consts else types.get(n, "i32") for n in names}
    opts = {"num_warps": warps, "num_stages": 1}
    if cap:
        opts["maxnreg"] = cap
    c = triton.compile(ASTSource(kernel, sig, consts, attrs), target=GPUTarget("cuda", 90, 32), options=opts)
    with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
        f.write(c.asm["cubin"])
        f.flush()
        res = subprocess.run([CUOBJDUMP, "-res-usage", f.name], capture_output=True, text=True).stdout
        sass = subprocess.run([CUOBJDUMP, "-sass", f.name], capture_output=True, text=True).stdout
    regs = int(re.search(r"REG:(\d+)", res).group(1))
    stack = int(re.search(r"STACK:(\d+)", res).group(1))
    n_instr = len(re.findall(r"^\s+/\*[0-9a-f]{4,}\*/\s+\S", sass, flags=re.M))
    alloc = -(-regs // 8) * 8  # registers are allocated 8 per thread at a time
    ctas = min(65536 // (alloc * 32 * warps), 64 // warps)
    return regs, stack, ctas, n_instr


print(f"triton {triton.__version__}; sm_90; 65536 registers and 64 warps per SM "
      "(the TMA kernel's shared memory is not counted)")
print(f"{'kernel':5s} {'order':12s} BB  BN warps depth cap | regs stack(B) | CTAs/SM warps/SM | SASS")
rows = [(False, bb, bn, w, d) for bb in (8, 16) for bn, w, d in [(64, 4, 2), (128, 8, 2), (64, 4, 3)]]
rows += [(True, 16, bn, 4, 0) for bn in (128, 256)]
for tma, bb, bn, warps, depth in rows:
    for form in FORMS:
        for cap in (0, 96, 80, 72, 64):
            regs, stack, ctas, n = compile_one(tma, form, bb, bn, warps, depth, cap)
            print(f"{'tma' if tma else 'ring':5s} {form:12s} {bb:2d} {bn:4d} {warps:4d} {depth or '-':>5} {cap or '-':>3} | "
                  f"{regs:4d} {stack:6d} | {ctas:5d} {ctas * warps:8d} | {n}", flush=True)
