"""Ahead-of-time compile of the Triton decode kernels (lutmma.py) to cubin, with no GPU.

Triton compiles to PTX and the ptxas it ships assembles the cubin, so a decode variant's
registers, spills and SASS can be read on any machine (tq.triton.sass, the AOT tests, the
session probes).  A variant is compiled the way a launch specializes it (dispatch.py, Triton's
rule for integer arguments): pointers 16-byte aligned, the row strides and N multiples of 16,
and, where given, the batch and the K tiles per norm group as a launch passes them: a value of
1 becomes a constant, a multiple of 16 a run-time integer known to divide by 16, any other a
plain run-time integer.
"""
from __future__ import annotations

import dataclasses

import triton

from . import lutmma

# integer arguments a launch passes as multiples of 16 (the planes', x's and y's row strides, N)
ALIGNED_INTS = ("ld_pl", "ld_x", "ld_y", "N")


def kernel_types(tma_rows: int = 0) -> dict:
    """Types of the runtime arguments the lut4 / lutmma kernels share (the others are int32):
    bf16 x, y and bias, fp16 norms; tma_rows > 0: the planes as TMA descriptors of
    [tma_rows, 16] int32 boxes (lutmma's TMA kernel) instead of byte pointers."""
    types = {"x_ptr": "*bf16", "y_ptr": "*bf16", "ws_ptr": "*fp32", "lock_ptr": "*i32", "bias_ptr": "*bf16",
             "inv_sqrt_g": "fp32"}
    for p in ("a", "r"):
        types.update({f"{p}_norm": "*fp16", f"{p}_lv": "*fp32"})
        types.update({f"{p}_{t}": "i64" for t in ("lp", "ln", "hp", "hn")})
        if tma_rows:
            types[f"{p}_desc"] = f"tensordesc<i32[{tma_rows}, 16]>"
        else:
            types[f"{p}_pl"] = "*u8"
    return types


def signature(kernel, consts: dict, types: dict, aligned: tuple = ALIGNED_INTS) -> tuple[dict, dict]:
    """(signature, attributes) for ASTSource: consts' names are constants, pointers and the
    integers named in `aligned` 16-divisible, as at a real launch."""
    names = kernel.arg_names
    attrs = {(i,): [["tt.divisibility", 16]] for i, n in enumerate(names)
             if n not in consts and (types.get(n, "i32").startswith("*") or n in aligned)}
    sig = {n: "constexpr" if n in consts else types.get(n, "i32") for n in names}
    return sig, attrs


@dataclasses.dataclass(frozen=True)
class DecodeVariant:
    """One lutmma.py kernel as the decode tuner would launch it (see dispatch.mma_tilings)."""

    rows: int                 # BN
    warps: int
    batch_tile: int           # 8 or 16
    depth: int = 2            # register ring depth (ring kernel)
    maxnreg: int = 0          # register cap, 0 = none
    tma_stages: int = 0       # > 0: the TMA kernel with this many stages
    batch: int = 0            # > 0: the batch a launch passes (see the module docstring); 0: unknown
    tiles_per_group: int = 1  # K tiles of 128 per norm group (g128: 1); 0: unknown
    residual: bool = False
    partial: bool = False     # split-K (the epilogue's partial sums)
    symmetric: bool = True    # the symmetric codebook lookup (Lloyd-Max)
    dtype: str = "bf16"       # operand dtype of the asm: "bf16" or "f16"

    @property
    def name(self) -> str:
        kind = f"tma {self.tma_stages} stages" if self.tma_stages else f"ring depth {self.depth}"
        cap = f", cap {self.maxnreg}" if self.maxnreg else ""
        batch = f", B = {self.batch}" if self.batch else ""
        return f"{self.rows} rows x {self.warps} warps, batch tile {self.batch_tile}, {kind}{cap}{batch}"


def _launch_ints(v: DecodeVariant) -> tuple:
    return ("B", v.batch), ("tiles_per_group", v.tiles_per_group)


def specialized(v: DecodeVariant) -> dict:
    """The integer arguments a launch of v turns into constants: those equal to 1."""
    return {n: 1 for n, value in _launch_ints(v) if value == 1}


def compile_decode(v: DecodeVariant, arch: int = 90, asm: str | None = None):
    """The compiled kernel of v for sm_<arch> (asm: another asm for both passes, e.g. a probe's)."""
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    kernel = lutmma.lut4_mma_tma_kernel if v.tma_stages else lutmma.lut4_mma_kernel
    code = asm if asm is not None else lutmma.ptx_for(v.dtype, v.batch_tile, v.symmetric)
    consts = dict(BN=v.rows, BB=v.batch_tile, WARPS=v.warps, RESIDUAL=v.residual, PARTIAL=v.partial,
                  HAS_BIAS=False, USE_ASM=True, ASM_A=code, ASM_R=code)
    consts.update(STAGES=v.tma_stages) if v.tma_stages else consts.update(UNROLL=2, DEPTH=v.depth)
    consts.update(specialized(v))
    aligned = ALIGNED_INTS + tuple(n for n, value in _launch_ints(v) if value > 1 and value % 16 == 0)
    sig, attrs = signature(kernel, consts, kernel_types(v.rows if v.tma_stages else 0), aligned)
    options = {"num_warps": v.warps, "num_stages": 1}
    if v.maxnreg:
        options["maxnreg"] = v.maxnreg
    return triton.compile(ASTSource(kernel, sig, consts, attrs), target=GPUTarget("cuda", arch, 32), options=options)
