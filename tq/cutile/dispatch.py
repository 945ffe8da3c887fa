"""Host side of the cutile backend: per-weight device data, tiling choice, launches, compile stats.

One call is two or three launches on the caller's current CUDA stream:

1. rotate.py: x [B, K] -> slice-planar copies of rotate(x) (one per distinct slice count
   the passes need), in the matmul operand dtype;
2. fused.py: every pass of the weight in ONE launch, sharing those copies;
3. reduce.py: only with split-K (decode), sums the fp32 partials, adds bias, casts.

Extra memory: the activation copies (B * K_pad per distinct slice count, x's dtype) and,
with split-K, an fp32 workspace of SPLIT * B * N; W_hat is never formed.  For decode
batches (B <= 16) these are kept and reused per (stream, shape), so a call allocates
only its output; for larger batches they are allocated per call.  Per weight, the word
decode keeps a transposed copy of each pass's norms (2 bytes per row and group: TMA-loadable
norm tiles, words.py).

Batch 1-16 with bf16 x and 2-, 3- or 4-bit passes uses the word decode (words.py: fp16 levels from
32-bit words, fp16 activation copies with per-tile power-of-two scales); otherwise batch 1
uses fused_gemv_kernel (2-D FMA accumulator, norms folded into the Horner coefficients) and
batch 2-16 and prefill use fused_matmul_kernel (tensor cores).
"""
from __future__ import annotations

import dataclasses
import functools
import math
import os
import threading
import time
import weakref

import numpy as np
import torch

from .. import chunked
from ..format import QuantizedWeight
from ..rotation import hadamard_torch
from ..settings import choice_setting, int_setting, switch_setting
from . import wordlevels

# Plane layouts the fused kernel reads: widths of (first plane, second plane or 0).
SUPPORTED_BITS = {2: (2, 0), 3: (2, 1), 4: (4, 0), 8: (8, 0)}
# Plane layouts the word decode reads: one 2- or 4-bit plane, or 3-bit indices' 2 + 1 planes
WORD_LAYOUTS = ((2, 0), (4, 0), (2, 1))
DECODE_MAX_BATCH = 16
MAX_SPLIT = 8
CHUNKED_MIN_BATCH = 17    # batches from here take the chunked prefill (bf16/fp16 x)
DEQUANT_TN = 64           # rows per dequant_kernel program (TQ_CUTILE_DEQUANT_TN overrides, experiments)

# ---------------------------------------------------------------------------
# Per-weight device data (cached per QuantizedWeight object)
# ---------------------------------------------------------------------------
@dataclasses.dataclass
class WordData:
    """A pass's word-decode data: its level fits per bound (wordlevels.BOUNDS; absent where
    none exists), its plane as 32-bit words and its norms transposed."""
    fits: dict            # bound -> (terms, fp16-exact coefficients in u as an fp32 tensor)
    plane: torch.Tensor   # int32 words (3-bit: of the 2-bit plane)
    norms_t: torch.Tensor  # [K_pad/G, N]
    ones: torch.Tensor    # 3-bit: the 1-bit plane's int32 words; else `plane` again (never read)
    width: int            # index bits the kernel decodes (wordlevels.WORD_WIDTHS; its constant P)


@dataclasses.dataclass
class PassData:
    p0: int
    p1: int
    terms: int            # Horner terms (0: lookup codebook)
    plane0: torch.Tensor
    plane1: torch.Tensor  # plane0 again when the index has one plane (never read then)
    norms: torch.Tensor
    coef: torch.Tensor    # fp32 Horner coefficients in w = idx - u_max, scaled by 1/sqrt(G)
    table: torch.Tensor   # fp32 levels / sqrt(G) (lookup) or a 1-element dummy
    pairs: dict = dataclasses.field(default_factory=dict)  # dtype -> byte-pair table (4-bit lookup)
    fit: tuple | None = None  # (terms, Horner coefficients) of the fitted odd polynomial (lookup)
    fit16: tuple | None = None  # (terms, fp16-Horner coefficients) where fp16 evaluation is accurate
    words: "WordData | None" = None  # word decode (words.py)

    @property
    def slices(self) -> int:
        return 8 // self.p0


@dataclasses.dataclass
class WeightData:
    passes: list
    signs: torch.Tensor
    tk: int
    tiles_per_group: int
    k_tiles: int
    plans: dict = dataclasses.field(default_factory=dict)


def horner_coefficients(coefficients, bits: int, group_size: int) -> np.ndarray:
    """c_j multiplies v^(2j+1) with v = w / u_max; return c_j / u_max^(2j+1) / sqrt(G) (float64)."""
    u_max = ((1 << bits) - 1) / 2.0
    c = np.asarray(coefficients, dtype=np.float64)
    return c / u_max ** (2 * np.arange(len(c)) + 1) / math.sqrt(group_size)


def pair_table(scaled_levels: torch.Tensor, dtype: torch.dtype) -> torch.Tensor | None:
    """The 4-bit byte-pair table of levels.py: int32 [256], entry b = bits16(level[b & 15]) |
    bits16(level[b >> 4]) << 16 in `dtype` (bf16 or fp16); None where a level does not fit
    `dtype` to 2^-8 relative (overflow, or an fp16 subnormal)."""
    lv = scaled_levels.double().cpu()
    if lv.numel() != 16:
        raise ValueError(f"a byte-pair table needs 16 levels, got {lv.numel()}")
    cast = lv.to(dtype)
    back = cast.double()
    if not torch.isfinite(back).all() or ((back - lv).abs() > lv.abs() * 2.0 ** -8).any():
        return None
    bits = cast.view(torch.int16).to(torch.int64) & 0xFFFF
    b = torch.arange(256)
    t = bits[b & 15] | (bits[b >> 4] << 16)
    return torch.where(t >= 1 << 31, t - (1 << 32), t).to(torch.int32)


FIT_TOL = 2.0 ** -11   # below fp16's (and bf16's) half-ulp: a fitted level rounds as the table's would
FIT_MAX_TERMS = 6


def fit_odd_polynomial(levels, max_terms: int = FIT_MAX_TERMS, tol: float = FIT_TOL):
    """(coefficients in v = (idx - u_max) / u_max, max relative error) of the shortest odd
    polynomial sum_j c_j v^(2j+1) that reproduces a symmetric codebook to `tol` relative
    error at every level, or None (asymmetric, a zero level, or no fit with <= max_terms).

    Why: cuTile has no register-table lookup, and a memory gather per weight (or per byte)
    is what limits its decode kernels; a short Horner chain in registers is not.  The
    4-bit Lloyd-Max Gaussian codebook needs 5 terms for 3.5e-4 (2^-11 = 4.9e-4)."""
    lv = np.asarray(levels, dtype=np.float64)
    n = lv.size
    if n < 2 or np.any(lv == 0) or not np.allclose(lv, -lv[::-1], rtol=1e-12, atol=0.0):
        return None
    u_max = (n - 1) / 2.0
    v = (np.arange(n) - u_max) / u_max
    for terms in range(1, min(max_terms, n // 2) + 1):
        a = np.stack([v ** (2 * j + 1) for j in range(terms)], 1)
        wgt = 1.0 / np.abs(lv)  # least squares in relative error
        c = np.linalg.lstsq(a * wgt[:, None], lv * wgt, rcond=None)[0]
        err = float(np.max(np.abs(a @ c - lv) / np.abs(lv)))
        if err <= tol:
            return c, err
    return None


LEVEL_MODES = ("fit", "fit16", "pairs", "gather")
FP16_TERMS = 16   # levels.FP16_TERMS (kept here too: this module does not import cuda.tile)
FIT16_TOL = wordlevels.TOL   # fp16-evaluated levels: relative error bound 2^-9 (half a bf16 ulp; bf16 x only)


def fp16_coefficients(coef_w: np.ndarray, bits: int) -> np.ndarray:
    """levels.levels16's b_j = c'_j u_max^(2j) from the Horner coefficients c'_j of w^(2j+1)."""
    u_max = ((1 << bits) - 1) / 2.0
    c = np.asarray(coef_w, dtype=np.float64)
    return c * u_max ** (2 * np.arange(c.size))


def fp16_levels(coef_w: np.ndarray, bits: int) -> np.ndarray:
    """The levels levels.levels16 computes, op by op in fp16 (products of two fp16 values are
    exact in float64, so rounding each step once to fp16 matches HMUL2/HFMA2)."""
    f16 = wordlevels.fp16_round
    u_max = ((1 << bits) - 1) / 2.0
    u = f16(np.arange(1 << bits) - u_max)                                   # exact
    s = f16(f16(u * u) * f16(1.0 / (u_max * u_max)))                        # (u * u exact: <= 2^14 / 4)
    return wordlevels.horner16(u, f16(fp16_coefficients(coef_w, bits)), s)


def fit16_for(coef_w: np.ndarray, bits: int, exact: np.ndarray) -> tuple[np.ndarray, float] | None:
    """(fp16 coefficients, max relative level error) when fp16 evaluation stays within
    FIT16_TOL of the exact (scaled) levels at every index, else None."""
    if bits > 4:
        return None   # (8-bit codebooks have no short fit; wider u would also leave fp16's exact range)
    got = fp16_levels(coef_w, bits)
    ex = np.asarray(exact, dtype=np.float64)
    if not np.all(np.isfinite(got)) or np.any(ex == 0):
        return None
    err = float(np.max(np.abs(got - ex) / np.abs(ex)))
    return (fp16_coefficients(coef_w, bits), err) if err <= FIT16_TOL else None


def level_preference() -> str | None:
    """TQ_CUTILE_LEVELS: how codebook levels are evaluated for bf16/fp16 x; None (unset): the
    measured default of each path (level_mode)."""
    return choice_setting("TQ_CUTILE_LEVELS", None, LEVEL_MODES)


PAIR_MODES = {torch.bfloat16: -1, torch.float16: -2}


def level_mode(pd: PassData, dt: torch.dtype, fit16_default: bool = False) -> tuple[int, torch.Tensor, torch.Tensor]:
    """(T constant, Horner coefficients, level table) of a pass for operand dtype dt (levels.py).

    fp32 operands: polynomial codebooks their own Horner chain, lookup codebooks the exact
    fp32 gather.  bf16/fp16 operands, by TQ_CUTILE_LEVELS (fit, fit16, pairs, gather), each
    falling back to the next one available:
      fit16   the polynomial (fitted, for lookup codebooks) evaluated in packed fp16 (T >
              FP16_TERMS; levels within FIT16_TOL = 2^-9, a few bf16 levels one ulp off);
      fit     the polynomial in fp32 (fitted: levels within 2^-11 of the table);
      pairs   the 4-bit byte-pair table (levels rounded to dt);
      gather  one gather per weight.
    Unset: fit16 on the paths that measured it faster (fit16_default) with bf16 x: the batch 2-16
    tensor-core decode (on the H100 17-27% faster than fit at B = 4-16) and the chunked
    prefill's dequant into bf16 chunks (dequant_level_mode); its 2^-9 bound is below bf16's own
    rounding of the levels, not fp16's, so fp16 x keeps fit; fit elsewhere: at B = 1 the fp32 chain folds the norm into its
    coefficients, and fit16 measured 17-20% slower there (8-9% slower still with the norms
    folded into fp16 coefficients, an experiment not kept: probes/probe_gemv16.log)."""
    pref = level_preference()
    if dt in PAIR_MODES and pd.fit16 is not None and (
            pref == "fit16" or (pref is None and fit16_default and dt == torch.bfloat16)):
        return FP16_TERMS + pd.fit16[0], pd.fit16[1], pd.table
    if pd.terms > 0:
        return pd.terms, pd.coef, pd.table
    if dt in PAIR_MODES:
        if pref in (None, "fit", "fit16") and pd.fit is not None:
            return pd.fit[0], pd.fit[1], pd.table
        if pref != "gather" and dt in pd.pairs:
            return PAIR_MODES[dt], pd.coef, pd.pairs[dt]
    return 0, pd.coef, pd.table


def dequant_level_mode(pd: PassData, out_dtype: torch.dtype) -> tuple[int, torch.Tensor, torch.Tensor]:
    """level_mode of the chunked prefill's dequant (fp16 tables for either output dtype).

    Unset TQ_CUTILE_LEVELS with bf16 chunks: the packed-fp16 polynomial (fit16), as for the
    batch 2-16 decode.  The dequant is bound by its instructions, not by memory: on the H100 one
    chunk took 24.9 -> 19.5 us (2048 x 8192) and 41.6 -> 32.8 us (1024 x 28672) against the fp32
    fit (Triton's prmt lookup: 16.6 / 30.3), and the output error stayed 2.9e-3 (eleventh session,
    probes/probe_dequant.log).  fp16 chunks keep the fp32 fit: 2^-9 is not below fp16's rounding."""
    if out_dtype == torch.bfloat16 and level_preference() is None and pd.fit16 is not None:
        return level_mode(pd, torch.bfloat16, fit16_default=True)
    return level_mode(pd, torch.float16)


def k_tile(qw: QuantizedWeight) -> int:
    """Columns per K tile: a power of two <= 128 dividing G, so a tile never spans two groups."""
    return min(128, qw.group_size & -qw.group_size)


_weights: dict[int, tuple] = {}
_lock = threading.Lock()


def weight_data(qw: QuantizedWeight) -> WeightData:
    key = id(qw)
    hit = _weights.get(key)
    if hit is not None and hit[0]() is qw:
        return hit[1]
    dev = qw.device
    g = qw.group_size
    passes = []
    for p in qw.passes:
        p0, p1 = SUPPORTED_BITS[p.bits]
        planes = [pl.contiguous() for pl in p.planes]
        dummy = torch.zeros(1, dtype=torch.float32, device=dev)
        if p.codebook.is_polynomial:
            coef = torch.tensor(horner_coefficients(p.codebook.poly_coefficients, p.bits, g),
                                dtype=torch.float32, device=dev)
            terms, table = coef.numel(), dummy
        else:
            terms, coef = 0, dummy
            scaled = p.levels.double() / math.sqrt(g)
            table = scaled.float().to(dev).contiguous()
        pd = PassData(p0, p1, terms, planes[0], planes[1] if p1 else planes[0], p.norms.contiguous(), coef, table)
        if terms == 0 and (p0, p1) == (4, 0):
            for dt in PAIR_MODES:
                t = pair_table(scaled, dt)
                if t is not None:
                    pd.pairs[dt] = t.to(dev)
        if terms == 0:
            fit = fit_odd_polynomial(p.levels.double().cpu().numpy())
            if fit is not None:
                pd.fit = (len(fit[0]), torch.tensor(horner_coefficients(fit[0], p.bits, g), dtype=torch.float32,
                                                    device=dev))
        coef_w = pd.coef if terms > 0 else (pd.fit[1] if pd.fit is not None else None)
        if coef_w is not None:
            # (a polynomial codebook's stored levels are its polynomial's values too)
            cw = coef_w.double().cpu().numpy()
            f16 = fit16_for(cw, p.bits, p.levels.double().cpu().numpy() / math.sqrt(g))
            if f16 is not None:
                # (rounded to fp16 here, exactly as the host model did: the kernel's fp32 -> fp16
                # cast then changes nothing)
                pd.fit16 = (cw.size, torch.tensor(f16[0].astype(np.float16).astype(np.float32), device=dev))
        if (p0, p1) in WORD_LAYOUTS and all(pl.shape[1] % 4 == 0 and pl.data_ptr() % 16 == 0 for pl in planes):
            lv = p.levels.double().cpu().numpy() / math.sqrt(g)
            fits = {}
            for bound in wordlevels.BOUNDS:
                wf = wordlevels.fit(lv, p.bits, bound)
                if wf is not None:
                    fits[bound] = (wf[0].size, torch.tensor(wf[0], dtype=torch.float32, device=dev))
            if fits:
                # (the norms transposed, [K_pad/G, N]: a K tile's norm tile is then [NG, TN] with
                # 2*TN-byte rows, which TMA prefetches like the other tiles; [TN, NG] has 2- or
                # 4-byte rows, too narrow for TMA, and the compute warps fetched it by cp.async and
                # waited for it in every K tile: 4-5% of the call, fifteenth session)
                words = planes[0].view(torch.int32)
                pd.words = WordData(fits, words, p.norms.t().contiguous(),
                                    planes[1].view(torch.int32) if p1 else words, p.bits)
        passes.append(pd)
    from ..rotation import random_signs
    signs = torch.as_tensor(random_signs(qw.k_padded, qw.seed), dtype=torch.float32, device=dev)
    tk = k_tile(qw)
    data = WeightData(passes, signs, tk, g // tk, qw.k_padded // tk)
    with _lock:
        _weights[key] = (weakref.ref(qw), data)
        weakref.finalize(qw, _weights.pop, key, None)
    return data


# ---------------------------------------------------------------------------
# Tiling
# ---------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Tiling:
    tn: int
    tb: int
    split: int
    path: str  # "decode" or "prefill"


def _pow2_at_least(n: int) -> int:
    return 1 << max(0, (n - 1).bit_length())


def _env_override(name: str):
    # Experiment hook: TQ_CUTILE_DECODE="tn,tb,split" / TQ_CUTILE_PREFILL="tn,tb" force a tiling.
    v = os.environ.get(name)
    return tuple(int(t) for t in v.split(",")) if v else None


def _fill_sms(split: int, n_tiles: int, k_tiles: int, sms: int) -> int:
    # Small N (few row tiles): more K splits until the programs about cover the SMs once
    # (the measured split choices below are for N >= 8192, where they already do).
    while split < MAX_SPLIT and n_tiles * split < 0.9 * sms and k_tiles // (split * 2) >= 2:
        split *= 2
    return split


def choose_tiling(batch: int, n: int, k_tiles: int, sms: int, x_dtype: torch.dtype,
                  gather_bound: bool = False, fp16_levels: bool = False) -> Tiling:
    """Decode (B <= 16): TB = 16; split-K 2 with register levels (1 with fp16 levels where the
    row tiles alone give >= 1.5 programs per SM), else until there are >= 2 programs per SM.
    Prefill: TB = 64 or 128 (fp32: 64, to keep the fp32 tiles in registers), no split."""
    tn = 128
    if batch <= DECODE_MAX_BATCH and _env_override("TQ_CUTILE_DECODE"):
        tn, tb, split = _env_override("TQ_CUTILE_DECODE")
        return Tiling(tn, tb, split, "decode")
    if batch > DECODE_MAX_BATCH and _env_override("TQ_CUTILE_PREFILL"):
        tn, tb = _env_override("TQ_CUTILE_PREFILL")
        return Tiling(tn, tb, 1, "prefill")
    if batch == 1:
        # GEMV path (fused_gemv_kernel), TN = 128.  Measured on the H100 (graph replay, 4-bit
        # g128, 8192x8192 / 28672x8192 / 8192x28672): with register levels (polynomial or
        # fitted) split 2 beat split 4 (52 / 175 / 155 us against 54 / 211 / 204); with the
        # byte-pair gather split 4 beat split 2 (66 / 212 / 197 against 64 / 304 / 218).
        # TN 64 and split 1 were slower in both.
        want = 4 if gather_bound else 2
        split = 1
        while split < want and k_tiles // (split * 2) >= 4:
            split *= 2
        return Tiling(tn, 1, _fill_sms(split, -(-n // tn), k_tiles, sms), "decode")
    if batch <= DECODE_MAX_BATCH:
        tb = 16
        if not gather_bound:
            # Register levels: split 2 measured best or tied at B = 8 and 16 on the H100 (graph,
            # 8192x8192 / 28672x8192 / 8192x28672: 68.7 / 223.1 / 199.2 us against 81.8 / 223.7 /
            # 211.3 with the rule below; splits 4 and 8 and TN 64 / 256 no better).  With the fp16
            # levels (fit16), split 1 where the row tiles alone give >= 1.5 programs per SM:
            # 28672x8192 B = 16 179.5 us against 195.5 (split 2); at 64 row tiles split 1 is
            # 1.6-1.8x slower (experiments/h100-2026-11-25-session4/probes/probe_dec16b.log).
            # (Measured with fit16 only, so the fp32 chain keeps split 2.)
            n_tiles = -(-n // tn)
            split = 1 if ((fp16_levels and n_tiles * 2 >= 3 * sms) or k_tiles < 4) else 2
            return Tiling(tn, tb, _fill_sms(split, n_tiles, k_tiles, sms), "decode")
        n_tiles = -(-n // tn)
        split = 1
        while split < MAX_SPLIT and n_tiles * split < 2 * sms and k_tiles // (split * 2) >= 2:
            split *= 2
        return Tiling(tn, tb, split, "decode")
    tb = 64 if (x_dtype == torch.float32 or batch <= 64) else 128
    if x_dtype == torch.float32:
        tn = 64
    return Tiling(tn, tb, 1, "prefill")


WORDS_MAX_BLOCK = 256   # rotate_words_kernel holds [TB, max(R, TK)] fp32 in registers
WORDS_SPLIT = 4


def words_enabled() -> bool:
    """TQ_CUTILE_WORDS=0 turns the word decode off (experiments, comparisons)."""
    return switch_setting("TQ_CUTILE_WORDS", True, "whether B <= 16 takes the word decode")


def words_bound() -> str:
    """TQ_CUTILE_WORDS_BOUND: how close the word decode's fp16-evaluated levels must be to the
    codebook's (wordlevels.BOUNDS).  "bf16" (default): within bf16's rounding of them (2^-8 max,
    1.66e-3 rms relative): 4 Horner terms for 4-bit Lloyd-Max codebooks.  "strict": within
    2^-9 (half a bf16 ulp): 5 terms."""
    return choice_setting("TQ_CUTILE_WORDS_BOUND", "bf16", wordlevels.BOUNDS)


def pdl_enabled() -> bool:
    """Whether the word decode's matmul is a programmatic dependent launch of its rotation, and its
    split-K reduction one of the matmul (TQ_CUTILE_PDL=0 turns both off: experiments, or a driver
    that refuses the attribute)."""
    return switch_setting("TQ_CUTILE_PDL", True, "programmatic dependent launch of the word decode")


def words_reason(qw: QuantizedWeight, wd: WeightData, bsz: int, dt: torch.dtype) -> str | None:
    """None where a call takes the word decode (words.py), else why not."""
    if not words_enabled():
        return "TQ_CUTILE_WORDS=0"
    if level_preference() is not None:
        return "TQ_CUTILE_LEVELS asks for one of fused.py's level modes"
    if bsz > DECODE_MAX_BATCH:
        return f"batch {bsz} > {DECODE_MAX_BATCH}"
    if dt != torch.bfloat16:
        # (its levels are as close to the table as bf16 rounding puts them at best: not fp16's or fp32's)
        return f"x is {dt}; the word decode serves bf16 x"
    for i, pd in enumerate(wd.passes):
        if (pd.p0, pd.p1) not in WORD_LAYOUTS:
            return (f"pass {i} has a {pd.p0}+{pd.p1}-bit plane layout; the word decode reads one 2- or 4-bit "
                    f"plane or a 2+1-bit pair (3-bit indices)")
        if pd.words is None:
            return (f"pass {i}: no odd polynomial of <= {wordlevels.MAX_TERMS} terms reproduces its codebook "
                    f"in fp16 within any bound of {wordlevels.BOUNDS}, or its plane is not 16-byte aligned")
        bound = words_bound()
        if bound not in pd.words.fits:
            return (f"pass {i}: no odd polynomial of <= {wordlevels.MAX_TERMS} terms reproduces its codebook "
                    f"in fp16 within the {bound!r} bound (TQ_CUTILE_WORDS_BOUND)")
        if wd.tk * wordlevels.x_width(pd.words.width) < 256:
            return (f"pass {i}: K tile {wd.tk} x {wordlevels.x_width(pd.words.width)} bits < 256 "
                    f"(each slice's mma needs K >= 16)")
    if max(qw.rotation_block, wd.tk) > WORDS_MAX_BLOCK:
        return f"rotation block {qw.rotation_block} > {WORDS_MAX_BLOCK}"
    return None


WORDS_WIDE_TK = 256


def words_k_tile(qw: QuantizedWeight, wd: WeightData) -> tuple[int, int]:
    """(K tile, norm groups per K tile) of the word decode.  256 columns where K_pad allows it and
    a tile covers one or two whole groups (G = 128: two norms per tile, two partials; G >= 256:
    one), else the common K tile (k_tile).  Offline SASS of the 4-bit g128 kernel (sm_90, B <= 8):
    703 instructions per 128 columns in the K loop against 846 with 128-column tiles: the fixed
    cost of a tile (warpgroup fences, pipeline barriers, address arithmetic) is paid once for 256
    columns.  TQ_CUTILE_WORDS_TK=128 keeps the common tile (experiments)."""
    forced = os.environ.get("TQ_CUTILE_WORDS_TK")
    if forced not in (None, "128", "256"):
        raise ValueError(f"TQ_CUTILE_WORDS_TK must be 128 or 256 (the word decode's K tile), got {forced!r}")
    g = qw.group_size
    wide = (forced != "128" and qw.k_padded % WORDS_WIDE_TK == 0 and (g == 128 or g % WORDS_WIDE_TK == 0)
            and qw.rotation_block <= WORDS_MAX_BLOCK)
    if not wide:
        return wd.tk, 1
    return WORDS_WIDE_TK, 2 if g == 128 else 1


def words_split(n: int, k_tiles: int, sms: int) -> int:
    """Split-K of the word decode.  Measured on the H100 (graph, 4-bit g128, kernel alone; B = 1, 8,
    16 on 8192x8192 / 28672x8192 / 8192x28672): split 4 best or within 5% of best everywhere
    (2 and 8 tried; experiments/h100-2026-11-25-session7/probes/probe_tune.log).  Fewer where
    a share would have under 4 K tiles; then more for small N until the programs cover the SMs
    (which may leave the last share empty: it writes zeros).  TQ_CUTILE_DECODE="tn,tb,split"
    sets the split only (the word decode's TN and TB are fixed)."""
    override = _env_override("TQ_CUTILE_DECODE")
    if override:
        if override[2] not in (1, 2, 4, 8):
            raise ValueError(f"TQ_CUTILE_DECODE's split must be 1, 2, 4 or 8 (the reduction loads all splits as "
                             f"one power-of-two tile), got {override[2]}")
        return override[2]
    split = WORDS_SPLIT
    while split > 1 and k_tiles // split < 4:
        split //= 2
    return _fill_sms(split, -(-n // 128), k_tiles, sms)


# ---------------------------------------------------------------------------
# Launching, with first-call (compile) times recorded per kernel variant
# ---------------------------------------------------------------------------
_compile_log: list[dict] = []
_seen: set = set()


def compile_stats() -> dict:
    """First-call wall time (JIT compile + one run) per kernel variant, separate from run time."""
    return {"variants": len(_compile_log),
            "total_first_call_s": round(sum(e["first_call_s"] for e in _compile_log), 3),
            "entries": list(_compile_log)}


def _launch(kernel, grid, args, key, pdl: bool = False):
    import cuda.tile as ct
    stream = torch.cuda.current_stream()
    if key in _seen or torch.cuda.is_current_stream_capturing():
        # (no timing inside a CUDA-graph capture: synchronizing would break it)
        ct.launch(stream, grid, kernel, args, programmatic_dependent_launch=pdl)
        return
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    ct.launch(stream, grid, kernel, args, programmatic_dependent_launch=pdl)
    torch.cuda.synchronize()
    _seen.add(key)
    _compile_log.append({"kernel": key[0], "constants": key[1:], "first_call_s": round(time.perf_counter() - t0, 4)})


@functools.lru_cache(maxsize=None)
def _sm_count_idx(index: int) -> int:
    return torch.cuda.get_device_properties(index).multi_processor_count


def _sm_count(dev) -> int:
    return _sm_count_idx(dev.index if dev.index is not None else torch.cuda.current_device())


def rotate_tb(block: int) -> int:
    return max(1, min(16, 4096 // block))


ROTATE_MMA_BLOCKS = (32, 64, 128)  # H_R as an mma operand: R x R in shared memory
ROTATE_PROGRAMS_PER_SM = 2
UNROTATE_PROGRAMS_PER_SM = 4


def rotate_form(block: int, dt: torch.dtype) -> str:
    """'mma' (rotate_mma_kernel: bf16/fp16 x, R <= 128) or 'butterfly' (rotate_kernel: fp32 x,
    larger blocks).  TQ_CUTILE_ROTATE=butterfly forces the butterfly (experiments, tests)."""
    forced = os.environ.get("TQ_CUTILE_ROTATE")
    if forced not in (None, "mma", "butterfly"):
        raise ValueError(f"TQ_CUTILE_ROTATE must be 'mma' or 'butterfly' (the rotation kernel), got {forced!r}")
    if forced != "butterfly" and dt in (torch.bfloat16, torch.float16) and block in ROTATE_MMA_BLOCKS:
        return "mma"
    return "butterfly"


def rotate_tb_mma(block: int) -> int:
    # 8192 elements a tile (the 64 x 128 fp32 accumulator of one warpgroup mma at R = 128)
    return min(256, 8192 // block)


def rotate_launch(block: int, k_padded: int, bsz: int, dt: torch.dtype, sms: int, v0: int, v1: int):
    """(form, grid, constants) of the rotation of a [bsz, k_padded] activation."""
    form = rotate_form(block, dt)
    cols = k_padded // block
    if form == "mma":
        tb = rotate_tb_mma(block)
        row_tiles = -(-bsz // tb)
        # persistent along rows: about ROTATE_PROGRAMS_PER_SM programs per SM in all
        g0 = max(1, min(row_tiles, -(-ROTATE_PROGRAMS_PER_SM * sms // cols)))
        return form, (g0, cols, 1), (block, tb, v0, v1)
    tb = rotate_tb(block)
    return form, (-(-bsz // tb), cols, 1), (block, tb, v0, v1)




@dataclasses.dataclass
class Plan:
    """Everything about a call that depends only on (weight, batch, dtype, bias?, stream)."""
    tiling: Tiling
    vs: tuple
    rotate_grid: tuple
    rotate_consts: tuple
    fused_kernel: object
    fused_grid: tuple
    fused_consts: tuple
    reduce_grid: tuple | None
    reduce_consts: tuple | None
    scratch: dict | None   # decode: activation copies + workspace reused call after call on one stream
    levels: tuple = ()     # per pass: [Horner coefficients, level table] arguments (level_mode); word decode: its fit's coefficients
    chunk_rows: int = 0    # > 0: chunked prefill (fused_kernel is then dequant_kernel)
    rotate_form: str = "butterfly"  # rotate_form(): which rotation kernel
    rotate_h: torch.Tensor | None = None  # H_R for the mma form
    pdl: bool = False      # every launch after the first (matmul, reduction) a programmatic dependent of the one before
    words_tiles: tuple = ()  # word decode: (K tiles, K tiles per group) of its own K tile
    seen: bool = False


_scratch_pool: dict = {}


def dequant_tn() -> int:
    """Rows per dequant_kernel program: TQ_CUTILE_DEQUANT_TN (16, 32, 64 or 128; default 64).
    It must divide the chunk rows (multiples of 128) so that tiles never leave a chunk buffer."""
    raw = os.environ.get("TQ_CUTILE_DEQUANT_TN")
    if raw is None:
        return DEQUANT_TN
    if raw not in ("16", "32", "64", "128"):
        raise ValueError(f"TQ_CUTILE_DEQUANT_TN must be 16, 32, 64 or 128 (rows per dequant program; they must "
                         f"divide the 128-row chunk granularity), got {raw!r}")
    return int(raw)


def chunked_min_batch() -> int:
    """Smallest batch that takes the chunked prefill (TQ_CUTILE_CHUNKED_MIN_BATCH, default 17).

    On the H100 at 8192x8192 (graph replay) the chunked path beat the fused tensor-core
    kernel at every batch measured, 17 to 2048: 130 vs 237 us at B = 17, 289 vs 1679 us at
    B = 1024."""
    return int_setting("TQ_CUTILE_CHUNKED_MIN_BATCH", CHUNKED_MIN_BATCH, lambda v: True, "an integer batch size")


def uses_chunked(bsz: int, dt: torch.dtype) -> bool:
    # bf16/fp16 only: cuBLAS in fp32 would run at a fraction of the tensor-core rate, and the
    # fused fp32 kernel keeps exact fp32 math.
    return bsz > DECODE_MAX_BATCH and dt in PAIR_MODES and bsz >= chunked_min_batch()


def _pass_consts(pa: PassData, pb: PassData | None, ta: int, tb: int) -> tuple:
    # the kernels' (A0, A1, AT, B0, B1, BT); B0 = 0: no residual pass
    return (pa.p0, pa.p1, ta, pb.p0 if pb else 0, pb.p1 if pb else 0, tb if pb else 0)


def _plan(qw, wd: WeightData, bsz: int, dt, has_bias: bool, dev, stream_id: int) -> Plan:
    from .dequant import dequant_kernel, unrotate_kernel
    from .fused import fused_gemv_kernel, fused_matmul_kernel
    # (everything read from the environment while planning is in the key, so a change applies)
    chunk = chunked.chunk_rows_for(qw.k_padded, qw.out_features) if uses_chunked(bsz, dt) else 0
    key = (bsz, dt, has_bias, stream_id, level_preference(), chunk, dequant_tn() if chunk else 0,
           os.environ.get("TQ_CUTILE_DECODE"), os.environ.get("TQ_CUTILE_PREFILL"), os.environ.get("TQ_CUTILE_NO_GEMV"),
           os.environ.get("TQ_CUTILE_ROTATE"), chunk > 0 and chunked.unrotate_enabled(),
           os.environ.get("TQ_CUTILE_WORDS"), os.environ.get("TQ_CUTILE_PDL"),
           os.environ.get("TQ_CUTILE_WORDS_TK"), os.environ.get("TQ_CUTILE_WORDS_BOUND"))
    plan = wd.plans.get(key)
    if plan is not None:
        return plan
    n, kp, r = qw.out_features, qw.k_padded, qw.rotation_block
    sms = _sm_count(dev)
    pa = wd.passes[0]
    pb = wd.passes[1] if len(wd.passes) > 1 else None
    if chunk:
        # fp16 levels (fit16 or fp16 pair tables, for either output dtype; dequant_level_mode),
        # then one rounding of level * norm to the output dtype.
        (ta, *la), (tb, *lb) = dequant_level_mode(pa, dt), dequant_level_mode(pb or pa, dt)
        dtn = dequant_tn()
        consts = _pass_consts(pa, pb, ta, tb) + (dtn, wd.tk, n % dtn != 0)
        form, rgrid, rconsts = rotate_launch(r, kp, bsz, dt, sms, 1, 0)
        if weight_basis(qw, wd):
            # no rotation: unrotate_kernel rotates the chunks back (H_R in fp16 for its mma)
            form, rgrid, rconsts = "weight", None, ()
        plan = Plan(Tiling(dtn, bsz, 1, "chunked"), (1,), rgrid, rconsts,
                    unrotate_kernel if form == "weight" else dequant_kernel, None, consts, None, None, None,
                    (la, lb), chunk, form,
                    hadamard_torch(r, torch.float16 if form == "weight" else dt, str(dev)) if form != "butterfly" else None)
        wd.plans[key] = plan
        return plan
    if words_reason(qw, wd, bsz, dt) is None:
        plan = _words_plan(qw, wd, bsz, dt, has_bias, dev, stream_id, n, kp, r, sms, pa, pb)
        wd.plans[key] = plan
        return plan
    vs = tuple(sorted({p.slices for p in wd.passes}))
    form, rgrid, rot_consts = rotate_launch(r, kp, bsz, dt, sms, vs[0], vs[1] if len(vs) > 1 else 0)
    (ta, *la), (tb, *lb) = level_mode(pa, dt), level_mode(pb or pa, dt)
    mma_modes = level_mode(pa, dt, fit16_default=True), level_mode(pb or pa, dt, fit16_default=True)
    t = choose_tiling(bsz, n, wd.k_tiles, sms, dt, gather_bound=ta <= 0 or (pb is not None and tb <= 0),
                      fp16_levels=bsz > 1 and mma_modes[0][0] > FP16_TERMS)
    if t.path == "decode" and bsz > 1:   # (fit16 or fit: both register levels, same tiling rule)
        (ta, *la), (tb, *lb) = mma_modes
    pcon = _pass_consts(pa, pb, ta, tb)
    if bsz == 1 and t.path == "decode" and not _env_override("TQ_CUTILE_NO_GEMV"):
        # (bounds checks only where a tile can leave the array: they turn wide loads into byte loads)
        kern, consts = fused_gemv_kernel, pcon + (t.tn, wd.tk, t.split, has_bias, n % t.tn != 0)
        t = dataclasses.replace(t, path="gemv")
    else:
        kern, consts = fused_matmul_kernel, pcon + (t.tn, wd.tk, t.tb, t.split, has_bias, n % t.tn != 0,
                                                     bsz % t.tb != 0)
    red_tb = 16
    plan = Plan(t, vs, rgrid, rot_consts, kern, (-(-n // t.tn), t.split, -(-bsz // t.tb)),
                consts, (-(-bsz // red_tb), -(-n // 128), 1) if t.split > 1 else None,
                (t.split, red_tb, 128, has_bias) if t.split > 1 else None, None, (la, lb), rotate_form=form,
                rotate_h=hadamard_torch(r, dt, str(dev)) if form == "mma" else None)
    if bsz <= DECODE_MAX_BATCH:
        # Decode scratch (activation copies + split-K workspace) is shared by every weight of the
        # same shape on this stream: kernels on one stream run in order, so reuse is safe, and
        # the memory kept is bounded by the number of distinct shapes, not of layers.
        skey = (str(dev), stream_id, dt, bsz, n, kp, vs, t.split)
        if skey not in _scratch_pool:
            _scratch_pool[skey] = _scratch(plan, bsz, n, kp, dt, dev)
        plan.scratch = _scratch_pool[skey]
    wd.plans[key] = plan
    return plan


def _words_plan(qw, wd, bsz, dt, has_bias, dev, stream_id, n, kp, r, sms, pa, pb) -> Plan:
    from .words import words_matmul_kernel
    tb = 8 if bsz <= 8 else 16
    tk, ng = words_k_tile(qw, wd)
    k_tiles = kp // tk
    split = words_split(n, k_tiles, sms)
    widths = tuple(sorted({wordlevels.x_width(p.words.width) for p in wd.passes}))   # activation orders
    c = max(r, tk)
    rconsts = (r, c, tk, tb, widths[0], widths[1] if len(widths) > 1 else 0)
    n_tiles = -(-n // 128)
    bound = words_bound()
    fa, fb = pa.words.fits[bound], (pb.words.fits[bound] if pb else None)
    consts = (pa.words.width, fa[0], pb.words.width if pb else 0, fb[0] if pb else 0,
              128, tk, tb, ng, split, has_bias, n % 128 != 0)
    plan = Plan(Tiling(128, tb, split, "words"), widths, (kp // c, 1, 1), rconsts, words_matmul_kernel,
                (n_tiles, split, 1), consts, (1, n_tiles, 1) if split > 1 else None,
                (split, 16, 128, has_bias) if split > 1 else None, None, rotate_form="words",
                pdl=pdl_enabled(), words_tiles=(k_tiles, max(1, qw.group_size // tk)),
                levels=(fa[1], (fb or fa)[1]))
    # (the K tile sizes the scales: weights of one shape with other group sizes must not share them)
    skey = ("words", str(dev), stream_id, bsz, tb, n, kp, tk, widths, split)
    if skey not in _scratch_pool:
        sc = {("w", p): torch.empty((16 // p, tb, kp * p // 16), dtype=torch.float16, device=dev) for p in widths}
        sc["xinv"] = torch.empty((k_tiles, tb), dtype=torch.float32, device=dev)
        if split > 1:
            sc["ws"] = torch.empty((split, tb, n), dtype=torch.float32, device=dev)
        _scratch_pool[skey] = sc
    plan.scratch = _scratch_pool[skey]
    return plan


def weight_basis(qw, wd: WeightData) -> bool:
    """Whether the chunked prefill rotates the weight chunks back (unrotate_kernel) instead of
    rotating x: TQ_PREFILL_UNROTATE=1 and a K tile is one rotation block (TK == R <= 128)."""
    return chunked.unrotate_enabled() and qw.rotation_block == wd.tk and wd.tk in ROTATE_MMA_BLOCKS


def _rotation(plan: Plan, x2, wd: WeightData, out0, out1) -> tuple:
    """(kernel, grid, args) of the plan's rotation launch."""
    from .rotate import rotate_kernel, rotate_mma_kernel
    if plan.rotate_form == "words":
        from .words import rotate_words_kernel
        p0, p1 = plan.rotate_consts[4], plan.rotate_consts[5]
        sc = plan.scratch
        return rotate_words_kernel, plan.rotate_grid, (x2, wd.signs, sc["xinv"], sc[("w", p0)],
                                                       sc[("w", p1 or p0)], *plan.rotate_consts)
    if plan.rotate_form == "mma":
        return rotate_mma_kernel, plan.rotate_grid, (x2, wd.signs, plan.rotate_h, out0, out1, *plan.rotate_consts)
    return rotate_kernel, plan.rotate_grid, (x2, wd.signs, out0, out1, *plan.rotate_consts)


def _scratch(plan: Plan, bsz, n, kp, dt, dev) -> dict:
    sc = {v: torch.empty((v, bsz, kp // v), dtype=dt, device=dev) for v in plan.vs}
    if plan.tiling.split > 1:
        sc["ws"] = torch.empty((plan.tiling.split, bsz, n), dtype=torch.float32, device=dev)
    return sc


def run(x2: torch.Tensor, qw: QuantizedWeight, bias: torch.Tensor | None) -> torch.Tensor:
    """x2: contiguous [B, K] cuda tensor (bf16/fp16/fp32).  Returns [B, N] in x2's dtype."""
    # x's GPU made current: every launch goes to that GPU's current stream (and the first-call
    # timing synchronizes that GPU), whichever device the caller had current.
    with torch.cuda.device(x2.device):
        return _run(x2, qw, bias)


def _run(x2: torch.Tensor, qw: QuantizedWeight, bias: torch.Tensor | None) -> torch.Tensor:
    from .reduce import splitk_reduce_kernel
    wd = weight_data(qw)
    bsz, n, kp = x2.shape[0], qw.out_features, qw.k_padded
    dt, dev = x2.dtype, x2.device
    if bsz == 0:
        return torch.empty((0, n), dtype=dt, device=dev)
    stream = torch.cuda.current_stream(dev)
    has_bias = bias is not None
    plan = _plan(qw, wd, bsz, dt, has_bias, dev, stream.cuda_stream)
    if plan.chunk_rows:
        return _run_chunked(x2, qw, wd, plan, bias)
    sc = plan.scratch or _scratch(plan, bsz, n, kp, dt, dev)
    y = torch.empty((bsz, n), dtype=dt, device=dev)
    bias2 = bias.reshape(1, n) if has_bias else wd.signs.view(1, -1)
    if has_bias and not bias2.is_contiguous():
        bias2 = bias2.contiguous()
    if plan.rotate_form == "words":
        return _run_words(x2, wd, plan, y, bias2, stream)
    c0 = sc[plan.vs[0]]
    c1 = sc[plan.vs[1]] if len(plan.vs) > 1 else c0
    pa = wd.passes[0]
    pb = wd.passes[1] if len(wd.passes) > 1 else pa
    target = sc["ws"] if plan.tiling.split > 1 else y
    launches = [
        _rotation(plan, x2, wd, c0, c1),
        (plan.fused_kernel, plan.fused_grid,
         (target, bias2, sc[pa.slices], pa.plane0, pa.plane1, pa.norms, *plan.levels[0],
          sc[pb.slices], pb.plane0, pb.plane1, pb.norms, *plan.levels[1],
          wd.k_tiles, wd.tiles_per_group, *plan.fused_consts)),
    ]
    if plan.reduce_grid:
        launches.append((splitk_reduce_kernel, plan.reduce_grid, (target, bias2, y, *plan.reduce_consts)))
    names = ("rotate-" + plan.rotate_form, "gemv" if plan.tiling.path == "gemv" else "fused", "reduce")
    _issue(plan, launches, names, stream, (str(dt),), (str(pa.norms.dtype), str(bias2.dtype)))
    return y


def _issue(plan: Plan, launches, names, stream, head: tuple, tail: tuple):
    """Launch a call's kernels; on the plan's first call, through _launch, which records the
    first-launch (JIT compile) time of each new variant."""
    import cuda.tile as ct
    if plan.seen:
        for i, (kern, grid, args) in enumerate(launches):
            ct.launch(stream, grid, kern, args, programmatic_dependent_launch=plan.pdl and i >= 1)
        return
    consts = (plan.rotate_consts, plan.fused_consts, plan.reduce_consts)
    for i, ((kern, grid, args), name, c) in enumerate(zip(launches, names, consts)):
        _launch(kern, grid, args, (name,) + head + (str(args[0].dtype),) + tail + c, pdl=plan.pdl and i >= 1)
    plan.seen = True


def _run_words(x2, wd: WeightData, plan: Plan, y, bias2, stream) -> torch.Tensor:
    from .reduce import splitk_reduce_kernel
    sc = plan.scratch
    pa = wd.passes[0]
    pb = wd.passes[1] if len(wd.passes) > 1 else pa
    target = sc["ws"] if plan.tiling.split > 1 else y
    launches = [
        _rotation(plan, x2, wd, None, None),
        (plan.fused_kernel, plan.fused_grid,
         (target, bias2, sc["xinv"], sc[("w", wordlevels.x_width(pa.words.width))], pa.words.plane, pa.words.ones,
          pa.words.norms_t, plan.levels[0], sc[("w", wordlevels.x_width(pb.words.width))], pb.words.plane,
          pb.words.ones, pb.words.norms_t, plan.levels[1], *plan.words_tiles,
          *plan.fused_consts)),
    ]
    if plan.reduce_grid:
        launches.append((splitk_reduce_kernel, plan.reduce_grid, (target, bias2, y, *plan.reduce_consts)))
    _issue(plan, launches, ("rotate-words", "words", "reduce"), stream, (str(x2.dtype),),
           (str(pa.norms.dtype), str(bias2.dtype)))
    return y


def chunk_filler(qw: QuantizedWeight, wd: WeightData, plan: Plan, dt: torch.dtype):
    """The chunked prefill's fill(buf, row0, rows) for this weight and plan: writes rows
    [row0, row0 + rows) of W_rot (or, in the weight basis, of W_hat) into buf (dtype dt) on the
    current stream (tq/chunked.py calls it; probes time it alone)."""
    pa = wd.passes[0]
    pb = wd.passes[1] if len(wd.passes) > 1 else pa
    tn = plan.tiling.tn
    sms = _sm_count(qw.device)
    wkey = ("dequant", str(dt), str(pa.norms.dtype)) + plan.fused_consts

    def fill(buf, r0, rows):
        args = (buf, pa.plane0, pa.plane1, pa.norms, *plan.levels[0],
                pb.plane0, pb.plane1, pb.norms, *plan.levels[1], r0 // tn, wd.tiles_per_group,
                *plan.fused_consts)
        row_tiles = -(-rows // tn)
        if plan.rotate_form == "weight":
            # programs along K: about UNROTATE_PROGRAMS_PER_SM per SM in all, each looping over K tiles
            grid = (row_tiles, max(1, min(wd.k_tiles, UNROTATE_PROGRAMS_PER_SM * sms // row_tiles)), 1)
            _launch(plan.fused_kernel, grid, (buf, wd.signs, plan.rotate_h) + args[1:], ("unrotate",) + wkey[1:])
        else:
            _launch(plan.fused_kernel, (row_tiles, wd.k_tiles, 1), args, wkey)

    return fill


def _run_chunked(x2: torch.Tensor, qw: QuantizedWeight, wd: WeightData, plan: Plan, bias) -> torch.Tensor:
    """Prefill through tq/chunked.py: dequant_kernel fills row chunks of W_rot on a side stream
    while cuBLAS multiplies the previous chunk; the rotation (natural column order) overlaps
    the first dequant."""
    bsz, n, kp, dt, dev = x2.shape[0], qw.out_features, qw.k_padded, x2.dtype, x2.device
    y = torch.empty((bsz, n), dtype=dt, device=dev)
    unrotating = plan.rotate_form == "weight"
    xr = None if unrotating else torch.empty((1, bsz, kp), dtype=dt, device=dev)

    def rotate():
        kern, grid, args = _rotation(plan, x2, wd, xr, xr)
        _launch(kern, grid, args, ("rotate-" + plan.rotate_form, str(dt), str(dt)) + plan.rotate_consts)
        return xr[0]

    dequant = chunk_filler(qw, wd, plan, dt)
    # weight basis: x itself (its K columns; the chunks' padded columns would multiply zeros)
    chunked.run_chunked(dequant, x2 if unrotating else rotate, y, bias, n, kp, plan.chunk_rows)
    return y
