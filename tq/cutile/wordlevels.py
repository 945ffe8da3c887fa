"""Host side of the word decode (words.py): field constants, the activation order, the
fp16 polynomial and an op-by-op NumPy model of the kernel's level evaluation.

No cuda.tile import: dispatch.py and the CPU tests use this module on any machine.

The kernel reads a packed plane of width p (2 or 4) as int32 words (3-bit indices: their two
planes combined into 4-bit-spaced fields first, combine3).  Each 16-bit half of a
word holds 16/p fields; field i sits at bits [i*p, (i+1)*p).  After one shift of the whole
word (left by 1 for the low byte's fields, arithmetic right by 7 for the high byte's) field
i lies at mantissa bits [m, m+p) of both halves at once, with m >= 1.  Giving it the fp16
exponent e (the shifted word carries the OR of all its fields' exponents, `exponents`; one AND
keeps field i's mantissa bits and its own exponent) makes each half the fp16 number
2^e + lambda * idx, lambda = 2^(1-p), exactly;
one subtraction of 2^e + lambda * u_max gives u = lambda * (idx - u_max) in [-1, 1), exact.
m >= 1 is what makes that constant representable (it needs 12 - m significant bits).  The
level is then an odd polynomial of u, u * sum_j d_j (u^2)^j, in packed fp16 (HMUL2 / HFMA2):
two weights per instruction, no table, no conversion.
"""
from __future__ import annotations

import math

import numpy as np

WORD_WIDTHS = (2, 3, 4)       # index widths the word decode reads (one pass: one plane, or 2 + 1 planes)
PLANE_WIDTHS = (2, 4)         # widths it reads as one plane; 3 = a 2-bit plane and a 1-bit plane (combine3)
MAX_TERMS = 6
TOL = 2.0 ** -9               # "strict": largest relative level error (also fused.py's fit16 bound)

# "bf16" (the default): levels no farther from the exact ones than rounding them to bf16 would
# put them, which every other tensor-core path (fused.py, the chunked prefill, Triton's lookup)
# does.  Both of bf16's numbers, relative: the worst case is its unit roundoff 2^-8; the rms is
# that of rounding values spread log-uniformly over a binade, x = 2^e * m: the error is uniform in
# +-2^(e-8), so E[(err/x)^2] = 2^-16 / 3 * E[1/m^2], and E[1/m^2] = 3 / (8 ln 2) for m
# log-uniform in [1, 2): 2^-8 / sqrt(8 ln 2) = 1.66e-3.  The word decode keeps its levels in fp16 (no second
# rounding) and its activation in fp16 (3 bits more than bf16), so this bound leaves it no less
# accurate than a bf16 dequant; 4-bit Lloyd-Max codebooks then need 4 terms instead of 5.
BOUNDS = ("bf16", "strict")
BF16_MAX = 2.0 ** -8
BF16_RMS = 2.0 ** -8 / math.sqrt(8.0 * math.log(2.0))


def log2_lambda(p: int) -> int:
    return 1 - p


def spacing(p: int) -> int:
    """Bits between a word's fields: p, except for 3-bit indices, which combine3 puts in nibbles
    (bits 0-2 of each nibble; bit 3 is left over and no field mask keeps it)."""
    return 4 if p == 3 else p


def x_width(p: int) -> int:
    """Plane width whose activation order (word_columns) the word decode's x copy takes for a
    p-bit pass: the 3-bit decode's slices are the 2-bit plane's, permuted (THREE_BIT_SLICES)."""
    return 2 if p == 3 else p


def field(i: int, p: int) -> tuple[bool, int, int, int, float]:
    """(from the left-shifted word?, m, OR constant, AND mask, centre) of field i of a width-p
    plane (p = 3: of a combine3 word); words.py computes the same numbers inline (a kernel
    cannot call this)."""
    o = i * spacing(p)
    low = o + spacing(p) <= 8
    m = o + 1 if low else o - 7
    e = 10 - m + log2_lambda(p)
    magic = ((e + 15) << 10) * 0x00010001
    mask = (((1 << p) - 1) << m) * 0x00010001
    centre = 2.0 ** e + 2.0 ** log2_lambda(p) * ((1 << p) - 1) / 2
    return low, m, magic, mask, centre


def exponents(p: int) -> int:
    """OR of the fp16 exponent constants of every field one shifted word serves (m = 1, 1 + p,
    ..., 9 - p): the kernel ORs it into the shifted word once, after which field i is a single
    AND with (mask | magic), one constant (words.py: a LOP3 with two constants costs a MOV)."""
    u = 0
    for i in range(8 // spacing(p)):
        u |= field(i, p)[2]
    return u


# 3-bit indices.  Their planes (tq/packing.py) are a 2-bit plane (bits 0-1 of the index) and a
# 1-bit plane (bit 2).  Column 32*b + r of the 2-bit plane is field f2 = r // 8 of byte r % 8,
# so with r = 8*f2 + 2*e + q its field sits at bit 8q + 2*f2 of 16-bit half e % 2 of word
# 2b + e // 2 (W0 = even word: e = 0, 1; W1 = odd word: e = 2, 3).  In the 1-bit plane the same
# column is bit r // 4 = 2*f2 + e // 2 of byte r % 4 = 2*(e % 2) + q, i.e. bit 8q + 2*f2 + e // 2
# of half e % 2 of word b: the same half, and the same bit as the low field's for W0, one above
# for W1.  So with V the 1-bit word of block b and N = 0x33333333 (bits 0-1 of every nibble):
#     even fields (f2 = 0, 2: nibble bits 0-1)  Z_e = (W & N) | ((V << 2 or V << 1) & ~N)
#     odd fields  (f2 = 1, 3: nibble bits 2-3)  Z_o = ((W >> 2) & N) | ((V or V >> 1) & ~N)
# (W0 with the first shift, W1 with the second) puts every 3-bit index in bits 0-2 of a nibble:
# one LOP3 each after the shifts.  Bit 3 of a nibble carries a stray bit of V, which no field
# mask keeps.  Field i of a combined word is nibble i of each half: byte q = i // 2 of the half,
# f2 = 2 * (i % 2) (+ 1 in Z_o), i.e. slice q * 4 + f2 of the 2-bit plane's activation order.
NIBBLE_LOW = 0x33333333
THREE_BIT_SLICES = tuple((i // 2) * 4 + 2 * (i % 2) + z for z in (0, 1) for i in range(4))  # (Z_e 0-3, Z_o 0-3)


def combine3(w2: np.ndarray, w1: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(Z_e, Z_o) [N, W] as uint32 values in int64: the 3-bit indices of a row tile from its 2-bit
    plane words w2 [N, W] and 1-bit plane words w1 [N, W / 2] (int32), as the kernel makes them,
    except bit 31 of Z_o: the kernel's int32 shifts are arithmetic, these logical.  That bit is
    a nibble's bit 3, which no field mask keeps, so the levels are the same."""
    u32 = 0xFFFFFFFF
    w = w2.astype(np.int64) & u32
    v = np.repeat(w1.astype(np.int64) & u32, 2, axis=1)
    odd = np.arange(w.shape[1]) % 2 == 1
    ve = np.where(odd, v << 1, v << 2) & u32
    vo = np.where(odd, v >> 1, v)
    n = NIBBLE_LOW
    return (w & n) | (ve & ~n & u32), ((w >> 2) & n) | (vo & ~n & u32)


def word_columns(k_padded: int, p: int) -> np.ndarray:
    """[16/p, K_pad*p/16]: the K column of element e of slice i, where element e is the 16-bit
    half e of the plane's row (half 2j + h = half h of word j).  The packing (tq/packing.py)
    puts column 32*b + s*(32/v) + j in field s of byte j of block b (v = 8/p); half e of a block
    holds bytes 2e and 2e + 1, so field i of the half is byte 2e + i // v, field i % v."""
    v, s_count = 8 // p, 16 // p
    e = np.arange(k_padded * p // 16)
    cols = np.empty((s_count, e.size), dtype=np.int64)
    for i in range(s_count):
        byte = 2 * e + i // v
        cols[i] = 32 * (byte // (4 * p)) + (i % v) * 4 * p + byte % (4 * p)
    return cols


def fp16_round(z):
    """z rounded once to fp16, back in float64."""
    return np.asarray(z, dtype=np.float64).astype(np.float16).astype(np.float64)


def levels_fp16(coef: np.ndarray, p: int) -> np.ndarray:
    """The 2^p levels as the kernel computes them: every step rounded once to fp16 (products
    of two fp16 values are exact in float64, so this reproduces HMUL2 / HFMA2)."""
    n = 1 << p
    u = fp16_round(2.0 ** log2_lambda(p) * (np.arange(n) - (n - 1) / 2))   # exact
    return horner16(u, fp16_round(coef))


def horner16(u: np.ndarray, d: np.ndarray, t: np.ndarray | None = None) -> np.ndarray:
    """u * sum_j d_j t^j as packed-fp16 code computes it (t = u^2 unless given): one rounding per
    HMUL2 / HFMA2 (products of two fp16 values are exact in float64).  fp16 operands."""
    t = fp16_round(u * u) if t is None else t
    h = np.full_like(u, d[-1])
    for j in range(d.size - 2, -1, -1):
        h = fp16_round(h * t + d[j])
    return fp16_round(h * u)


def level_errors(coef: np.ndarray, scaled_levels, p: int) -> tuple[float, float]:
    """(max, rms) relative error of the kernel's fp16-evaluated levels against the exact ones
    (inf where the fp16 evaluation overflows)."""
    lv = np.asarray(scaled_levels, dtype=np.float64)
    with np.errstate(over="ignore", invalid="ignore"):
        rel = np.abs(levels_fp16(coef, p) - lv) / np.abs(lv)
    if not np.all(np.isfinite(rel)):
        return math.inf, math.inf
    return float(rel.max()), float(np.sqrt(np.mean(rel ** 2)))


def within(errors: tuple[float, float], bound: str) -> bool:
    """Whether (max, rms) relative level errors meet a bound of BOUNDS."""
    if bound == "strict":
        return errors[0] <= TOL
    if bound == "bf16":
        return errors[0] <= BF16_MAX and errors[1] <= BF16_RMS
    raise ValueError(f"the word decode's level bound must be one of {BOUNDS}, got {bound!r}")


def fit(scaled_levels, p: int, bound: str = "bf16") -> tuple[np.ndarray, float] | None:
    """(fp16-rounded coefficients d_j, max relative level error) of the shortest odd polynomial
    in u whose fp16 evaluation reproduces the (symmetric, non-zero) levels within `bound`
    (BOUNDS); None where there is none with <= MAX_TERMS terms.  Least squares in relative error."""
    within((0.0, 0.0), bound)   # (an unknown bound is an error even for levels that cannot fit)
    lv = np.asarray(scaled_levels, dtype=np.float64)
    n = 1 << p
    if lv.size != n or np.any(lv == 0) or not np.allclose(lv, -lv[::-1], rtol=1e-12, atol=0.0):
        return None
    u = 2.0 ** log2_lambda(p) * (np.arange(n) - (n - 1) / 2)
    wgt = 1.0 / np.abs(lv)
    for terms in range(1, min(MAX_TERMS, n // 2) + 1):
        a = np.stack([u ** (2 * j + 1) for j in range(terms)], 1)
        with np.errstate(over="ignore", invalid="ignore"):   # (fp16 overflow: refused below)
            d = fp16_round(np.linalg.lstsq(a * wgt[:, None], lv * wgt, rcond=None)[0])
        errors = level_errors(d, lv, p)
        if within(errors, bound):
            return d, errors[0]
    return None


def decode_words(words: np.ndarray, p: int, coef: np.ndarray, ones: np.ndarray | None = None) -> np.ndarray:
    """The kernel's level tiles from int32 words [N, W]: [16/x_width(p), N, 2W] float64 in the
    activation's slice order (word_columns(k, x_width(p))), by its bit operations (shifts, AND,
    OR, reinterpretation as two fp16 halves) and its fp16 chain.  p = 3: `words` is the 2-bit
    plane, `ones` the 1-bit plane's words [N, W / 2]."""
    if p == 3:
        out = [None] * 8
        for z, zw in enumerate(combine3(words, ones)):
            lev = _decode(zw - ((zw >> 31) << 32), 3, coef)     # (back to signed int32 values)
            for i in range(4):
                out[THREE_BIT_SLICES[4 * z + i]] = lev[i]
        return np.stack(out)
    return _decode(words, p, coef)


def _decode(words: np.ndarray, p: int, coef: np.ndarray) -> np.ndarray:
    w = words.astype(np.int64)
    u32 = 0xFFFFFFFF
    ex = exponents(p)
    shifted = {True: ((w << 1) & u32) | ex, False: ((w >> 7) & u32) | ex}   # (int64 >> is arithmetic, as in int32)
    d = fp16_round(coef)
    out = []
    for i in range(16 // spacing(p)):
        low, _, magic, mask, centre = field(i, p)
        q = shifted[low] & (mask | magic)
        halves = np.stack([q & 0xFFFF, q >> 16], -1).reshape(q.shape[0], -1).astype(np.uint16)
        u = fp16_round(halves.view(np.float16).astype(np.float64) - centre)
        out.append(horner16(u, d))
    return np.stack(out)
