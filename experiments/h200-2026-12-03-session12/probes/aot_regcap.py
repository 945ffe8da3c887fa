# Offline (no GPU): Triton's batch <= 8 ring kernel (lutmma.lut4_mma_kernel, 4-bit, symmetric
# lookup, bf16) compiled for sm_90 under register caps, to see what a cap costs in spills and
# how many CTAs (warps) per SM it would allow.  Triton here is the CI's (3.9), not the GPU
# image's 3.6: register allocation may differ there.
import re
import subprocess
import sys
import tempfile

import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

import tq.triton.lutmma as lutmma

kernel = lutmma.lut4_mma_kernel
types = {"x_ptr": "*bf16", "y_ptr": "*bf16", "ws_ptr": "*fp32", "lock_ptr": "*i32", "bias_ptr": "*bf16",
         "inv_sqrt_g": "fp32"}
for p in ("a", "r"):
    types.update({f"{p}_pl": "*u8", f"{p}_norm": "*fp16", f"{p}_lv": "*fp32"})
    types.update({f"{p}_{t}": "i64" for t in ("lp", "ln", "hp", "hn")})
cuobjdump = next(iter(__import__("glob").glob(triton.__path__[0] + "/backends/nvidia/bin/cuobjdump")))
print(f"triton {triton.__version__}; sm_90; 65536 registers and 64 warps per SM")
print(" BN warps depth maxnreg | regs stack(B) | CTAs/SM warps/SM | SASS instructions")
for bn, warps, depth in [(64, 4, 2), (128, 8, 2), (64, 4, 3)]:
    for cap in (0, 128, 96, 80, 64):
        consts = dict(BN=bn, BB=8, WARPS=warps, RESIDUAL=False, PARTIAL=True, HAS_BIAS=False, USE_ASM=True,
                      UNROLL=2, DEPTH=depth, ASM_A=lutmma.ptx_for("bf16", 8, True),
                      ASM_R=lutmma.ptx_for("bf16", 8, True))
        names = kernel.arg_names
        attrs = {(i,): [["tt.divisibility", 16]] for i, n in enumerate(names)
                 if n not in consts and (types.get(n, "i32").startswith("*") or n in ("ld_pl", "ld_x", "ld_y", "N"))}
        sig = {n: "constexpr" if n in consts else types.get(n, "i32") for n in names}
        opts = {"num_warps": warps, "num_stages": 1}
        if cap:
            opts["maxnreg"] = cap
        c = triton.compile(ASTSource(kernel, sig, consts, attrs), target=GPUTarget("cuda", 90, 32), options=opts)
        with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
            f.write(c.asm["cubin"]); f.flush()
            res = subprocess.run([cuobjdump, "-res-usage", f.name], capture_output=True, text=True).stdout
            sass = subprocess.run([cuobjdump, "-sass", f.name], capture_output=True, text=True).stdout
        regs = int(re.search(r"REG:(\d+)", res).group(1))
        stack = int(re.search(r"STACK:(\d+)", res).group(1))
        n_instr = len(re.findall(r"^\s+/\*[0-9a-f]{4,}\*/\s+\S", sass, flags=re.M))
        regs_alloc = -(-regs // 8) * 8  # allocation granularity: 8 registers per thread
        ctas = min(65536 // (regs_alloc * 32 * warps), 64 // warps)
        print(f"{bn:4d} {warps:4d} {depth:5d} {cap or '-':>7} | {regs:4d} {stack:6d} | {ctas:5d} {ctas * warps:8d} | {n_instr}")
        sys.stdout.flush()
