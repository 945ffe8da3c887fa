# 4-bit codebook lookup in registers: eight weights in 21 integer instructions, exact levels.
#
# What it replaces.  The scalar dequant (dequant.py) spends about 11 instructions per
# weight (shift, mask, int->float, Horner chain, scale), which kept every decode kernel at
# 0.8-0.9 TB/s on the H100.  Here the 16 levels of a 4-bit codebook, already rounded to the
# tensor-core operand dtype (bf16 or fp16), live in eight 32-bit registers as byte tables,
# and PTX `prmt` (byte permute: four 3-bit byte selectors at once) looks up four levels per
# instruction.  It works for ANY 4-bit codebook (Lloyd-Max lookup or polynomial, symmetric
# or not): there is no arithmetic on the levels at all.
#
# Tables.  A 16-bit level splits into a low byte and a high byte.  For each of those, the
# levels of indices 0-7 ("neg") and 8-15 ("pos") make an 8-byte table (two registers), so
# four 64-bit kernel arguments hold everything:
#     T_LP = low bytes of levels[8..15],  T_LN = low bytes of levels[0..7],
#     T_HP = high bytes of levels[8..15], T_HN = high bytes of levels[0..7]
# (byte k of a table = entry k).
#
# One 32-bit word q = four packed bytes = eight indices (tq/packing.py: byte b holds the
# low-nibble column in bits 0-3 and the column 16 to its right in bits 4-7):
#   j  = q & 0x77777777             3-bit table positions (bit 3 cleared: prmt would read
#                                   it as "replicate sign" mode)
#   jh = j >> 16                    the positions of bytes 2 and 3 in the selector field
#   q4 = q << 4                     puts each low nibble's bit 3 at its byte's msb
#   m  = prmt(q4, q, 0xD9C8)        sign-replicate mode: byte i = 0xFF where index i >= 8,
#                                   for the indices in order (b0 lo, b0 hi, b1 lo, b1 hi)
#   lo = lop3(prmt(T_LP, j), prmt(T_LN, j), m, 0xE4)   low bytes of the four levels
#   hi = lop3(prmt(T_HP, j), prmt(T_HN, j), m, 0xE4)   high bytes   (0xE4: m ? pos : neg)
#   (the same with jh and prmt(q4, q, 0xFBEA) for bytes 2 and 3)
#   out_lo = prmt(lo, hi, 0x6240) -> 16-bit levels of the low nibbles of bytes 0, 1
#   out_hi = prmt(lo, hi, 0x7351) -> 16-bit levels of the high nibbles
# 3 + 2 + 8 + 4 + 4 = 21 instructions per 8 weights (2.6 per weight), all integer pipe.
# With SCALE the per-row group scale (norms/sqrt(G), rounded to the operand dtype) is
# applied with four packed 16x2 multiplies (fma with -0) (prefill, where it is cheaper than scaling the
# [BN, BM] accumulator every tile).
#
# tests/test_triton_lut4.py runs this instruction sequence through a NumPy model of prmt
# and lop3 against a plain table lookup; the interpreter (TRITON_INTERPRET=1, no PTX) uses
# the gather in `_lookup_gather`, which computes the same values.
import numpy as np
import torch
import triton
import triton.language as tl

_BODY = """
{
.reg .b32 a0, a1, c0, c1, d0, d1, e0, e1, j, jh, q4, m0, m1, p, n, l0, h0, l1, h1;
mov.b64 {a0, a1}, $5;
mov.b64 {c0, c1}, $9;
mov.b64 {d0, d1}, $13;
mov.b64 {e0, e1}, $17;
and.b32 j, $4, 0x77777777;
shr.u32 jh, j, 16;
shl.b32 q4, $4, 4;
prmt.b32 m0, q4, $4, 0xD9C8;
prmt.b32 m1, q4, $4, 0xFBEA;
prmt.b32 p, a0, a1, j;
prmt.b32 n, c0, c1, j;
lop3.b32 l0, p, n, m0, 0xE4;
prmt.b32 p, d0, d1, j;
prmt.b32 n, e0, e1, j;
lop3.b32 h0, p, n, m0, 0xE4;
prmt.b32 p, a0, a1, jh;
prmt.b32 n, c0, c1, jh;
lop3.b32 l1, p, n, m1, 0xE4;
prmt.b32 p, d0, d1, jh;
prmt.b32 n, e0, e1, jh;
lop3.b32 h1, p, n, m1, 0xE4;
"""
_STORE = """
prmt.b32 $0, l0, h0, 0x6240;
prmt.b32 $1, l1, h1, 0x6240;
prmt.b32 $2, l0, h0, 0x7351;
prmt.b32 $3, l1, h1, 0x7351;
}
"""
# (fma with -0 rather than mul: mul.bf16x2 needs sm_90, fma.bf16x2 runs from sm_80)
_STORE_SCALED = """
mov.b32 n, 0x80008000;
prmt.b32 p, l0, h0, 0x6240;
fma.rn.{t} $0, p, $21, n;
prmt.b32 p, l1, h1, 0x6240;
fma.rn.{t} $1, p, $22, n;
prmt.b32 p, l0, h0, 0x7351;
fma.rn.{t} $2, p, $21, n;
prmt.b32 p, l1, h1, 0x7351;
fma.rn.{t} $3, p, $22, n;
}}
"""
# (constexpr globals: the only module globals a jit function may read)
ASM = tl.constexpr(_BODY + _STORE)
ASM_SCALED_BF16 = tl.constexpr(_BODY + _STORE_SCALED.format(t="bf16x2"))
ASM_SCALED_F16 = tl.constexpr(_BODY + _STORE_SCALED.format(t="f16x2"))
CONSTRAINTS = tl.constexpr("=r,=r,=r,=r,r" + ",l" * 16)
CONSTRAINTS_SCALED = tl.constexpr("=r,=r,=r,=r,r" + ",l" * 16 + ",r,r")

# Selector and mask constants of the sequence above (also used by the NumPy model).
SIGN_SELECT = (0xD9C8, 0xFBEA)
MERGE_LUT = 0xE4
INTERLEAVE = (0x6240, 0x7351)


@triton.jit
def _lookup_gather(b, lv_ptr):
    """Interpreter stand-in: levels[idx] from the (operand-dtype-rounded) fp32 table."""
    i = b.to(tl.int32)
    return tl.load(lv_ptr + (i & 15)), tl.load(lv_ptr + (i >> 4))


@triton.jit
def lut4(b, t_lp, t_ln, t_hp, t_hn, lv_ptr, OUT: tl.constexpr, USE_ASM: tl.constexpr):
    """uint8 tile of packed 4-bit indices -> (levels of the low nibbles, of the high nibbles), OUT."""
    if USE_ASM:
        # (dtype spelled out: a tuple of constexpr dtypes does not lower)
        if OUT == tl.bfloat16:
            lo, hi = tl.inline_asm_elementwise(ASM, CONSTRAINTS, [b, t_lp, t_ln, t_hp, t_hn],
                                               dtype=(tl.bfloat16, tl.bfloat16), is_pure=True, pack=4)
        else:
            lo, hi = tl.inline_asm_elementwise(ASM, CONSTRAINTS, [b, t_lp, t_ln, t_hp, t_hn],
                                               dtype=(tl.float16, tl.float16), is_pure=True, pack=4)
    else:
        lo, hi = _lookup_gather(b, lv_ptr)
        lo = lo.to(OUT)
        hi = hi.to(OUT)
    return lo, hi


@triton.jit
def lut4_scaled(b, t_lp, t_ln, t_hp, t_hn, scale, lv_ptr, OUT: tl.constexpr, USE_ASM: tl.constexpr):
    """As lut4, each level multiplied by scale ([R, 1], OUT dtype) in OUT arithmetic."""
    if USE_ASM:
        if OUT == tl.bfloat16:
            lo, hi = tl.inline_asm_elementwise(
                ASM_SCALED_BF16, CONSTRAINTS_SCALED, [b, t_lp, t_ln, t_hp, t_hn, scale],
                dtype=(tl.bfloat16, tl.bfloat16), is_pure=True, pack=4)
        else:
            lo, hi = tl.inline_asm_elementwise(
                ASM_SCALED_F16, CONSTRAINTS_SCALED, [b, t_lp, t_ln, t_hp, t_hn, scale],
                dtype=(tl.float16, tl.float16), is_pure=True, pack=4)
    else:
        lo, hi = _lookup_gather(b, lv_ptr)
        s = scale.to(tl.float32)
        lo = (lo.to(OUT).to(tl.float32) * s).to(OUT)
        hi = (hi.to(OUT).to(tl.float32) * s).to(OUT)
    return lo, hi


# ---------------------------------------------------------------------------
# Host side
# ---------------------------------------------------------------------------
def level_bits(levels, dtype: torch.dtype) -> np.ndarray:
    """The 16 levels rounded to dtype (bf16/fp16), as uint16 bit patterns."""
    lv = torch.as_tensor(np.asarray(levels, dtype=np.float32)).to(dtype)
    return lv.view(torch.int16).numpy().astype(np.uint16)


def _as_i64(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


def tables(levels, dtype: torch.dtype) -> tuple[int, int, int, int]:
    """(T_LP, T_LN, T_HP, T_HN) for a 16-level codebook, as signed 64-bit kernel arguments."""
    bits = level_bits(levels, dtype)
    if bits.shape != (16,):
        raise ValueError(f"a 4-bit lookup table needs 16 levels, got {bits.shape}")
    low, high = bits & 0xFF, bits >> 8

    def pack(entries):
        return _as_i64(sum(int(v) << (8 * k) for k, v in enumerate(entries)))

    return pack(low[8:]), pack(low[:8]), pack(high[8:]), pack(high[:8])


def rounded_levels(levels, dtype: torch.dtype, device) -> torch.Tensor:
    """The levels rounded to dtype, stored as fp32 (the interpreter path's table)."""
    lv = torch.as_tensor(np.asarray(levels, dtype=np.float32)).to(dtype).to(torch.float32)
    return lv.to(device)


def finite_in(levels, dtype: torch.dtype) -> bool:
    lv = torch.as_tensor(np.asarray(levels, dtype=np.float32)).to(dtype)
    return bool(torch.isfinite(lv).all())
