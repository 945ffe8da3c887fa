"""Ahead-of-time compilation of the cutile kernels to cubin, without a GPU.

    python -m tq.cutile.compile [--arch sm_80,sm_90,sm_100,sm_120] [--set default|ci|full] [--out DIR] [--jobs N]

Each kernel variant (one set of constant arguments and argument dtypes) is compiled with
``cuda.tile.compilation.export_kernel`` for each architecture; one line per variant and
arch gives the cubin size; the exit status is non-zero if any compile fails.  CI runs it
on a CPU machine with ``cuda-tile[tileiras]`` installed, so a kernel that stops
compiling for Ampere, Hopper or Blackwell fails CI.

Variant sets (constants the dispatcher in dispatch.py can choose):
- ``default``: every pass configuration the backend supports (bits 2, 3, 4, 8 alone;
  4+4, 3+2, 4+2, 2+2, 8+4, 3+3 residual) x {lookup, polynomial} codebook x {decode
  split-K, prefill} tiling, with the activation dtype, K tile (128/64/32) and bias
  cycled across them so that each of those also appears with every path; plus the
  decode tiling without split, the rotation kernel for block sizes 32..8192 and both
  slice-count pairs, the tensor-core rotation for bf16/fp16 and blocks 32..128, and the
  split-K reduction for each dtype.
  The batch-1 GEMV kernel is compiled for every pass configuration as well, the 4-bit
  byte-pair lookup (4, 4+4, 4+2 with bf16/fp16 x) on every path, the chunked prefill's
  dequant kernel for every pass configuration (its weight-basis form for three), and the
  fp16-level decode for every 2/3/4-bit pass configuration.
- ``ci``: one variant of each kernel and path (fast; what the CPU test compiles).
- ``full``: the product of all of the above axes (slow: thousands of compiles).
"""
from __future__ import annotations

import argparse
import concurrent.futures as cf
import dataclasses
import functools
import io
import itertools
import os
import sys
import time

from .wordlevels import x_width

ARCHS = ("sm_80", "sm_90", "sm_100", "sm_120")
DTYPES = ("bfloat16", "float16", "float32")
PASS_CONFIGS = ((2, None), (3, None), (4, None), (8, None),
                (4, 4), (3, 2), (4, 2), (2, 2), (8, 4), (3, 3))
POLY_TERMS = {2: 2, 3: 3, 4: 3, 8: 3}  # Horner terms of the default degree-5 polynomial codebooks


@dataclasses.dataclass(frozen=True)
class Variant:
    kernel: str        # "rotate", "rotate_mma", "rotate_words", "fused", "gemv", "words", "reduce", "dequant", "unrotate"
    name: str          # human-readable constants
    params: tuple      # (dtype name, constants...) interpreted by _signature


@dataclasses.dataclass
class Result:
    variant: Variant
    arch: str
    ok: bool
    size: int = 0
    seconds: float = 0.0
    error: str = ""

    @property
    def kernel(self) -> str:
        return self.variant.kernel


FIT16_TERMS = {2: 2, 3: 4, 4: 5}  # fitted Lloyd-Max terms, evaluated in fp16 (levels.levels16)


def _terms(bits, poly, dtype, pairs=False):
    # the T constant of levels.py: Horner terms, FP16_TERMS + terms (poly == "fp16"), 0 (fp32
    # gather) or the byte-pair modes (4-bit)
    if poly == "fp16":
        from .dispatch import FP16_TERMS
        return FP16_TERMS + FIT16_TERMS[bits]
    if poly:
        return POLY_TERMS[bits]
    if pairs and bits == 4:
        return -2 if dtype == "float16" else -1
    return 0


def _pass_constants(bits, residual, poly, table_dtype, pairs):
    """The kernels' pass constants (A0, A1, AT, B0, B1, BT) and a label like '4+4-bit pairs'."""
    from .dispatch import SUPPORTED_BITS
    a0, a1 = SUPPORTED_BITS[bits]
    b0, b1 = SUPPORTED_BITS[residual] if residual else (0, 0)
    at = _terms(bits, poly, table_dtype, pairs)
    bt = _terms(residual, poly, table_dtype, pairs) if residual else 0
    kind = "fit16" if poly == "fp16" else ("poly" if poly else ("pairs" if pairs else "lookup"))
    return (a0, a1, at, b0, b1, bt), f"{bits}" + (f"+{residual}" if residual else "") + f"-bit {kind}"


def _fused_variant(bits, residual, poly, dtype, path, tk, bias, split=None, pairs=False, exact=True):
    # exact: N and B are multiples of the row and batch tiles (no bounds checks); otherwise
    # both checks are on (ragged)
    passes, label = _pass_constants(bits, residual, poly, dtype, pairs)
    if path == "gemv":
        tn, tb, sp = 128, 1, (4 if split is None else split)
    elif path == "decode":
        tn, tb, sp = 128, 16, (4 if split is None else split)
    else:
        tn, tb, sp = (64, 64, 1) if dtype == "float32" else (128, 128, 1)
    name = (f"fused {label} {dtype} {path} TN={tn} TK={tk} TB={tb} "
            f"SPLIT={sp}{' bias' if bias else ''}")
    cn = not exact
    name += "" if exact else " ragged"
    if path == "gemv":
        return Variant("gemv", name.replace("fused", "gemv"), (dtype, *passes, tn, tk, sp, bias, cn))
    return Variant("fused", name, (dtype, *passes, tn, tk, tb, sp, bias, cn, cn))


def _dequant_variant(bits, residual, poly, dtype, tk, pairs=False, exact=True, unrotate=False):
    # the chunked prefill's dequant (unrotate: its weight-basis form): byte-pair tables are
    # fp16 for either output dtype
    from .dispatch import DEQUANT_TN
    passes, label = _pass_constants(bits, residual, poly, "float16", pairs)
    kind = "unrotate" if unrotate else "dequant"
    return Variant(kind, f"{kind} {label} {dtype} TN={DEQUANT_TN} TK={tk}{'' if exact else ' ragged'}",
                   (dtype, *passes, DEQUANT_TN, tk, not exact))


def _rotate_variant(dtype, r, v0, v1):
    from .dispatch import rotate_tb
    tb = rotate_tb(r)
    return Variant("rotate", f"rotate {dtype} R={r} TB={tb} V={v0},{v1}", (dtype, r, tb, v0, v1))


def _rotate_mma_variant(dtype, r, v0, v1):
    from .dispatch import rotate_tb_mma
    tb = rotate_tb_mma(r)
    return Variant("rotate_mma", f"rotate_mma {dtype} R={r} TB={tb} V={v0},{v1}", (dtype, r, tb, v0, v1))


@functools.lru_cache(maxsize=None)
def words_terms(bits: int, bound: str) -> int:
    """Horner terms of the word decode's fit of the `bits`-bit Lloyd-Max Gaussian codebook under
    `bound` (wordlevels.BOUNDS): 2 for 2-bit; 4 (bf16) or 5 (strict) for 4-bit.  The Beta
    codebooks of every group size fit with the same or fewer."""
    import numpy as np
    from ..codebook import get_codebook
    from .wordlevels import fit
    return fit(np.asarray(get_codebook("gaussian", bits).levels, dtype=np.float64), bits, bound)[0].size


@functools.lru_cache(maxsize=None)
def residual_words_terms(bits: int, residual: int, bound: str) -> int:
    """Horner terms of the word decode's fit of the default residual codebook (`residual-poly`,
    tq/residual.py) after a `bits`-bit Lloyd-Max pass at G = 128: 3 for 4-bit, 1 for 2-bit
    (its levels are uniform there).  4-bit residuals take 3 at every group size; 2-bit ones take
    2 at G = 64 and, after a 2-bit pass, at G >= 1024 (those compile on first use)."""
    import math

    import numpy as np
    from ..codebook import get_codebook
    from ..residual import get_residual_codebook
    from .wordlevels import fit
    cb = get_residual_codebook(get_codebook("gaussian", bits), residual, 128, polynomial=True)
    return fit(np.asarray(cb.levels, dtype=np.float64) / math.sqrt(128), residual, bound)[0].size


def _words_variant(bits, residual, dtype, tk, tb, split, bias, exact=True, main_terms=None, ng=None, bound="bf16",
                   residual_terms=None):
    # the word decode (words.py): 2/3/4-bit passes, fp16 levels with the Lloyd-Max fit's
    # terms under `bound`; main_terms: the first pass's own (the 4-bit polynomial codebooks fit
    # with 3); residual_terms: the residual pass's (default: the default residual codebook's;
    # words_terms(residual, bound) for residual_codebook="gaussian")
    pa, ta = bits, main_terms or words_terms(bits, bound)
    pb, tbt = (residual, residual_terms or residual_words_terms(bits, residual, bound)) if residual else (0, 0)
    label = f"{bits}" + (f"+{residual}" if residual else "") + f"-bit T={ta}" + (f",{tbt}" if residual else "")
    ng = ng or 1
    name = (f"words {label} {dtype} TN=128 TK={tk} NG={ng} TB={tb} SPLIT={split}{' bias' if bias else ''}"
            f"{'' if exact else ' ragged'}")
    return Variant("words", name, (dtype, pa, ta, pb, tbt, 128, tk, tb, ng, split, bias, not exact))


def _rotate_words_variant(dtype, r, tk, tb, p0, p1):
    c = max(r, tk)
    return Variant("rotate_words", f"rotate_words {dtype} R={r} C={c} TK={tk} TB={tb} P={p0},{p1}",
                   (dtype, r, c, tk, tb, p0, p1))


def _reduce_variant(dtype, split, bias):
    return Variant("reduce", f"reduce {dtype} SPLIT={split} TB=16 TN=128{' bias' if bias else ''}",
                   (dtype, split, 16, 128, bias))


def variants(which: str = "default") -> list[Variant]:
    from .dispatch import ROTATE_MMA_BLOCKS
    out = []
    if which == "ci":
        out.append(_fused_variant(4, None, True, "bfloat16", "decode", 128, False))
        out.append(_fused_variant(4, 2, True, "bfloat16", "gemv", 128, True))
        out.append(_fused_variant(3, 2, False, "float16", "prefill", 64, True, exact=False))
        out.append(_rotate_variant("bfloat16", 128, 2, 4))
        out.append(_rotate_mma_variant("bfloat16", 128, 1, 0))
        out.append(_reduce_variant("bfloat16", 4, True))
        out.append(_fused_variant(4, None, False, "bfloat16", "gemv", 128, False, split=2, pairs=True))
        out.append(_fused_variant(4, 4, False, "float16", "decode", 128, True, pairs=True))
        out.append(_dequant_variant(4, None, False, "bfloat16", 128, pairs=True))
        out.append(_dequant_variant(3, 2, False, "float16", 64, exact=False))
        out.append(_dequant_variant(4, 4, False, "bfloat16", 128, pairs=True, unrotate=True))
        out.append(_dequant_variant(4, 4, "fp16", "bfloat16", 128))   # the bf16 chunks' default levels
        out.append(_fused_variant(4, None, "fp16", "bfloat16", "gemv", 128, False, split=2))
        out.append(_fused_variant(4, 2, "fp16", "float16", "decode", 128, True, split=2))
        out.append(_words_variant(4, None, "bfloat16", 256, 16, 4, False, ng=2))
        out.append(_words_variant(4, 2, "bfloat16", 128, 8, 1, True, exact=False))
        out.append(_words_variant(4, None, "bfloat16", 256, 16, 4, False, ng=2, bound="strict"))
        out.append(_words_variant(3, 2, "bfloat16", 256, 8, 4, False, ng=2))
        out.append(_rotate_words_variant("bfloat16", 128, 256, 16, 4, 2))
        return out
    if which == "full":
        for (bits, res), poly, dt, path, tk, bias in itertools.product(
                PASS_CONFIGS, (False, True), DTYPES, ("gemv", "decode", "prefill"), (128, 64, 32), (False, True)):
            out.append(_fused_variant(bits, res, poly, dt, path, tk, bias))
        for dt, r, vv in itertools.product(DTYPES, (32, 64, 128, 256, 512, 1024, 2048, 4096, 8192),
                                           ((1, 0), (2, 0), (4, 0), (1, 2), (2, 4), (1, 4))):
            out.append(_rotate_variant(dt, r, *vv))
        for dt, r, vv in itertools.product(("bfloat16", "float16"), ROTATE_MMA_BLOCKS,
                                           ((1, 0), (2, 0), (4, 0), (1, 2), (2, 4), (1, 4))):
            out.append(_rotate_mma_variant(dt, r, *vv))
        for dt, sp, bias in itertools.product(DTYPES, (2, 4, 8), (False, True)):
            out.append(_reduce_variant(dt, sp, bias))
        for (bits, res), dt, path, tk, bias in itertools.product(
                ((4, None), (4, 4), (4, 2)), ("bfloat16", "float16"), ("gemv", "decode", "prefill"),
                (128, 64, 32), (False, True)):
            out.append(_fused_variant(bits, res, False, dt, path, tk, bias, pairs=True))
        for (bits, res), kind, dt, tk in itertools.product(PASS_CONFIGS, ("lookup", "poly", "pairs"),
                                                          ("bfloat16", "float16"), (128, 64, 32)):
            out.append(_dequant_variant(bits, res, kind == "poly", dt, tk, pairs=kind == "pairs"))
            out.append(_dequant_variant(bits, res, kind == "poly", dt, tk, pairs=kind == "pairs", unrotate=True))
        seen = set()
        # (main terms, bound): the Lloyd-Max fits under each bound (strict differs only where a
        # pass is 4-bit) and the 4-bit polynomial codebooks' 3 terms; each residual configuration
        # with the default residual codebook's terms and with the Gaussian one's
        for (bits, res), (tk, ng), tb, sp, bias, (mt, bound), gauss in itertools.product(
                ((4, None), (2, None), (4, 4), (4, 2), (2, 2), (2, 4), (3, None), (3, 2), (3, 3), (4, 3),
                 (2, 3), (3, 4)),
                ((64, 1), (128, 1), (256, 1), (256, 2)),
                (8, 16), (1, 2, 4, 8), (False, True), ((None, "bf16"), (3, "bf16"), (None, "strict")),
                (False, True)):
            if tk * min(x_width(bits), x_width(res or bits)) >= 256 and (mt is None or bits == 4) \
                    and (bound == "bf16" or 4 in (bits, res)) and (res or not gauss):
                rt = words_terms(res, bound) if gauss else None
                v = _words_variant(bits, res, "bfloat16", tk, tb, sp, bias, main_terms=mt, ng=ng, bound=bound,
                                   residual_terms=rt)
                if v.name not in seen:   # (both bounds give some configurations the same terms)
                    seen.add(v.name)
                    out.append(v)
        for r, tk, tb, pp in itertools.product((64, 128, 256), (64, 128, 256), (8, 16), ((4, 0), (2, 0), (4, 2))):
            if tk >= min(128, r):
                out.append(_rotate_words_variant("bfloat16", r, tk, tb, *pp))
        return out
    if which != "default":
        raise ValueError(f"unknown variant set {which!r}; choose default, ci or full")
    cyc = itertools.count()
    for (bits, res), poly, path in itertools.product(PASS_CONFIGS, (False, True), ("decode", "prefill")):
        i = next(cyc)
        out.append(_fused_variant(bits, res, poly, DTYPES[i % 3], path, (128, 64, 32)[(i // 3) % 3], i % 2 == 1,
                                  exact=i % 4 != 3))
    for i, (bits, res) in enumerate(PASS_CONFIGS):
        out.append(_fused_variant(bits, res, i % 2 == 0, DTYPES[i % 3], "gemv", (128, 64, 32)[i % 3], i % 2 == 1,
                                  exact=i % 3 != 2))
    for dt in DTYPES:
        out.append(_fused_variant(4, None, True, dt, "decode", 128, True, split=1))
        out.append(_fused_variant(4, None, True, dt, "gemv", 128, True, split=1))
    for i, r in enumerate((32, 64, 128, 256, 1024, 4096, 8192)):
        vv = ((2, 0), (2, 4), (1, 2), (1, 0), (2, 4), (2, 0), (2, 0))[i]
        out.append(_rotate_variant(DTYPES[i % 3], r, *vv))
    for i, r in enumerate(ROTATE_MMA_BLOCKS):
        for dt in ("bfloat16", "float16"):
            out.append(_rotate_mma_variant(dt, r, *((2, 0), (2, 4), (1, 2))[i]))
    for dt in DTYPES:
        out.append(_reduce_variant(dt, 4, dt != "float32"))
    # 4-bit lookup codebooks with bf16/fp16 x take the byte-pair tables on every path
    for i, ((bits, res), dt, path) in enumerate(itertools.product(
            ((4, None), (4, 4), (4, 2)), ("bfloat16", "float16"), ("gemv", "decode", "prefill"))):
        out.append(_fused_variant(bits, res, False, dt, path, (128, 64, 32)[i % 3], i % 2 == 1, pairs=True))
    # fp16-evaluated polynomial levels: the B = 2-16 decode (their default, bf16) for every 2/3/4-bit
    # pass configuration; GEMV and prefill (only when TQ_CUTILE_LEVELS=fit16) for two of them
    for i, (bits, res) in enumerate(((2, None), (3, None), (4, None), (4, 4), (4, 2), (3, 2))):
        out.append(_fused_variant(bits, res, "fp16", "bfloat16", "decode", (128, 64, 32)[i % 3], i % 2 == 1,
                                  exact=i % 4 != 3))
    for i, ((bits, res), path) in enumerate(itertools.product(((4, None), (3, 2)), ("gemv", "prefill"))):
        out.append(_fused_variant(bits, res, "fp16", ("bfloat16", "float16")[i % 2], path, (128, 64)[i % 2],
                                  i % 2 == 1))
    for i, (bits, res) in enumerate(((4, None), (4, 4), (3, 2))):
        out.append(_dequant_variant(bits, res, "fp16", ("bfloat16", "float16")[i % 2], (128, 64, 32)[i]))
    # the chunked prefill's dequant for every pass configuration (and the pair tables)
    for i, (bits, res) in enumerate(PASS_CONFIGS):
        out.append(_dequant_variant(bits, res, i % 2 == 1, ("bfloat16", "float16")[i % 2], (128, 64, 32)[i % 3],
                                    exact=i % 4 != 1))
    for i, (bits, res) in enumerate(((4, None), (4, 4), (4, 2))):
        out.append(_dequant_variant(bits, res, False, ("bfloat16", "float16")[i % 2], (128, 64, 32)[i], pairs=True))
    # its opt-in weight-basis form (TQ_PREFILL_UNROTATE=1): one pass and two residual configurations
    for i, (bits, res) in enumerate(((4, None), (4, 4), (3, 2))):
        out.append(_dequant_variant(bits, res, i == 2, ("bfloat16", "float16")[i % 2], (128, 64, 32)[i],
                                    pairs=i < 2, exact=i != 1, unrotate=True))
    # the word decode (bf16 x, B = 1-16): every pass configuration it takes, both batch tiles,
    # split-K and the no-split epilogue (bias, ragged N), 4-bit polynomial codebooks (3 terms), and
    # its rotation for the blocks and K tiles it takes (R = 64..256, TK = 64..256)
    # K tiles (dispatch.words_k_tile): 256 columns with two norm groups (g128) or one (g >= 256),
    # 128 (g128 with K_pad not a multiple of 256, TQ_CUTILE_WORDS_TK=128), 64 (4-bit g64)
    tiles = ((256, 2), (128, 1), (64, 1), (256, 1), (256, 2), (128, 1))
    for i, (bits, res) in enumerate(((4, None), (2, None), (4, 4), (4, 2), (2, 2), (2, 4))):
        tk, ng = tiles[i]
        out.append(_words_variant(bits, res, "bfloat16", tk, (8, 16)[i % 2], (4, 1)[i % 2], i % 2 == 1,
                                  exact=i % 3 != 2, ng=ng))
    out.append(_words_variant(4, None, "bfloat16", 256, 16, 2, False, main_terms=3, ng=2))
    out.append(_words_variant(4, 4, "bfloat16", 128, 8, 1, True, exact=False, main_terms=3))
    out.append(_words_variant(4, None, "bfloat16", 128, 16, 4, False))   # TQ_CUTILE_WORDS_TK=128
    # TQ_CUTILE_WORDS_BOUND=strict: 5 terms for the 4-bit Lloyd-Max levels
    out.append(_words_variant(4, None, "bfloat16", 256, 16, 4, False, ng=2, bound="strict"))
    out.append(_words_variant(4, 4, "bfloat16", 128, 8, 1, True, exact=False, bound="strict"))
    # residual_codebook="gaussian": the Gaussian residual's own terms (4 at 4-bit, 2 at 2-bit)
    out.append(_words_variant(4, 4, "bfloat16", 256, 16, 4, False, ng=2, residual_terms=words_terms(4, "bf16")))
    out.append(_words_variant(4, 2, "bfloat16", 256, 8, 1, True, ng=2, residual_terms=words_terms(2, "bf16")))
    # 3-bit passes (a 2-bit and a 1-bit plane, combined in the kernel): alone, with a 2- or 3-bit
    # residual and as the residual of a 4-bit pass; 256- and 128-column K tiles
    for i, (bits, res) in enumerate(((3, None), (3, None), (3, 2), (3, 3), (4, 3))):
        tk, ng = ((256, 2), (128, 1), (256, 2), (256, 1), (256, 2))[i]
        out.append(_words_variant(bits, res, "bfloat16", tk, (8, 16)[i % 2], (4, 1)[i % 2], i % 2 == 1,
                                  exact=i != 1, ng=ng))
    for i, (r, tk, pp) in enumerate(((64, 64, (4, 0)), (128, 256, (4, 2)), (128, 256, (4, 0)), (128, 128, (4, 0)),
                                     (256, 256, (2, 0)), (256, 256, (4, 2)))):
        out.append(_rotate_words_variant("bfloat16", r, tk, (8, 16)[i % 2], *pp))
    return out


def _signature(v: Variant):
    import cuda.tile as ct
    from cuda.tile.compilation import ArrayConstraint, CallingConvention, KernelSignature, ScalarConstraint

    def arr(dtype, ndim):
        # A C-contiguous array argument that aliases nothing, with a 16-aligned base and row
        # strides divisible by 16 elements: what the JIT derives for the weights and buffers
        # of real layer shapes (torch allocations), and what lets the compiler use wide and
        # TMA loads; without it every tile load compiles to byte loads and spills.
        return ArrayConstraint(dtype, ndim, index_dtype=ct.int32, stride_lower_bound_incl=0, alias_groups=(),
                               may_alias_internally=False, stride_constant=(None,) * (ndim - 1) + (1,),
                               stride_divisible_by=(16,) * (ndim - 1) + (1,), base_addr_divisible_by=16)

    dt = getattr(ct, v.params[0])
    c = v.params[1:]
    if v.kernel == "rotate":
        from .rotate import rotate_kernel as k
        params = [arr(dt, 2), arr(ct.float32, 1), arr(dt, 3), arr(dt, 3), *c]
    elif v.kernel == "rotate_mma":
        from .rotate import rotate_mma_kernel as k
        params = [arr(dt, 2), arr(ct.float32, 1), arr(dt, 2), arr(dt, 3), arr(dt, 3), *c]
    elif v.kernel == "rotate_words":
        from .words import rotate_words_kernel as k
        params = [arr(dt, 2), arr(ct.float32, 1), arr(ct.float32, 2), arr(ct.float16, 3), arr(ct.float16, 3), *c]
    elif v.kernel == "words":
        from .words import words_matmul_kernel as k
        split = c[8]
        out = arr(ct.float32, 3) if split > 1 else arr(dt, 2)
        one = [arr(ct.float16, 3), arr(ct.int32, 2), arr(ct.int32, 2), arr(ct.float16, 2), arr(ct.float32, 1)]
        params = [out, arr(dt, 2), arr(ct.float32, 2), *one, *one, ScalarConstraint(ct.int32),
                  ScalarConstraint(ct.int32), *c]
    elif v.kernel == "reduce":
        from .reduce import splitk_reduce_kernel as k
        params = [arr(ct.float32, 3), arr(dt, 2), arr(dt, 2), *c]
    elif v.kernel == "dequant":
        from .dequant import dequant_kernel as k
        params = [arr(dt, 2), *_pass_params(arr, c[2], None), *_pass_params(arr, c[5], None),
                  ScalarConstraint(ct.int32), ScalarConstraint(ct.int32), *c]
    elif v.kernel == "unrotate":
        from .dequant import unrotate_kernel as k
        params = [arr(dt, 2), arr(ct.float32, 1), arr(ct.float16, 2), *_pass_params(arr, c[2], None),
                  *_pass_params(arr, c[5], None), ScalarConstraint(ct.int32), ScalarConstraint(ct.int32), *c]
    else:
        if v.kernel == "gemv":
            from .fused import fused_gemv_kernel as k
            split = c[8]
        else:
            from .fused import fused_matmul_kernel as k
            split = c[9]
        out = arr(ct.float32, 3) if split > 1 else arr(dt, 2)
        params = [out, arr(dt, 2), *_pass_params(arr, c[2], arr(dt, 3)), *_pass_params(arr, c[5], arr(dt, 3)),
                  ScalarConstraint(ct.int32), ScalarConstraint(ct.int32), *c]
    return k, KernelSignature(params, calling_convention=CallingConvention.cutile_python_v1())


def _pass_params(arr, terms, x):
    # one pass's arguments: (x copy,) planes, fp16 norms, Horner coefficients, level table
    # (int32 byte pairs for terms < 0, else fp32 levels)
    import cuda.tile as ct
    table = arr(ct.int32, 1) if terms < 0 else arr(ct.float32, 1)
    head = [x] if x is not None else []
    return head + [arr(ct.uint8, 2), arr(ct.uint8, 2), arr(ct.float16, 2), arr(ct.float32, 1), table]


def cubin(v: Variant, arch: str) -> bytes:
    """The cubin of one variant for one architecture (raises what the compiler raises)."""
    from cuda.tile.compilation import export_kernel
    kernel, sig = _signature(v)
    buf = io.BytesIO()
    export_kernel(kernel, [sig], buf, gpu_code=arch, output_format="cubin")
    return buf.getvalue()


def compile_one(v: Variant, arch: str, out_dir: str | None = None) -> Result:
    t0 = time.perf_counter()
    try:
        data = cubin(v, arch)
        if out_dir:
            safe = "".join(ch if ch.isalnum() or ch in "+-=." else "_" for ch in v.name)
            with open(os.path.join(out_dir, f"{safe}.{arch}.cubin"), "wb") as f:
                f.write(data)
        return Result(v, arch, True, len(data), time.perf_counter() - t0)
    except Exception as e:  # report, keep going, fail at the end
        return Result(v, arch, False, 0, time.perf_counter() - t0, f"{type(e).__name__}: {e}"[:2000])


def _compile_args(a):
    return compile_one(*a)


def compile_all(archs, vs, out_dir=None, jobs: int | None = None, echo=None) -> list[Result]:
    """Compile every variant for every arch (in ``jobs`` processes); results in input order."""
    if out_dir:
        os.makedirs(out_dir, exist_ok=True)
        out_dir = os.fspath(out_dir)
    work = [(v, a, out_dir) for v in vs for a in archs]
    jobs = jobs or min(8, os.cpu_count() or 1)
    results = []
    if jobs <= 1:
        for w in work:
            r = compile_one(*w)
            results.append(r)
            if echo:
                echo(r)
        return results
    with cf.ProcessPoolExecutor(jobs) as ex:
        for r in ex.map(_compile_args, work):
            results.append(r)
            if echo:
                echo(r)
    return results


def _line(r: Result) -> str:
    if r.ok:
        return f"ok    {r.arch:7s} {r.size:9d} B  {r.seconds:5.1f} s  {r.variant.name}"
    return f"FAIL  {r.arch:7s} {'-':>9s}    {r.seconds:5.1f} s  {r.variant.name}: {r.error}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tq.cutile.compile", description=__doc__.split("\n\n")[0])
    ap.add_argument("--arch", default=",".join(ARCHS), help="comma-separated targets (default: all four)")
    ap.add_argument("--set", default="default", choices=("default", "ci", "full"), help="variant set")
    ap.add_argument("--out", default=None, help="directory to write the cubins to (default: keep in memory)")
    ap.add_argument("--jobs", type=int, default=None, help="parallel compiler processes (default: CPUs, max 8)")
    args = ap.parse_args(argv)
    archs = [a.strip() for a in args.arch.split(",") if a.strip()]
    bad = [a for a in archs if not (a.startswith("sm_") and a[3:].isdigit())]
    if bad or not archs:
        ap.error(f"--arch: expected names like sm_90, got {bad or args.arch!r}")
    from . import env
    ok, reason = env.compiler_ready()
    if not ok:
        print(f"cannot compile: {reason}", file=sys.stderr)
        return 2
    vs = variants(args.set)
    t0 = time.perf_counter()
    results = compile_all(archs, vs, args.out, args.jobs, echo=lambda r: print(_line(r), flush=True))
    failed = [r for r in results if not r.ok]
    print(f"{len(results) - len(failed)}/{len(results)} compiled ({len(vs)} variants x {len(archs)} archs) "
          f"in {time.perf_counter() - t0:.0f} s")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
