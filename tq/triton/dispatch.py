"""Host side of the Triton backend: weight preparation, path and tile choice, launches.

One call is two or three launches: rotate x (rotate.py), then the decode kernel
(B <= DECODE_MAX_BATCH) or the prefill kernel, then, only for split-K decode, the
finalize kernel that sums the fp32 partials.  Tile shapes come from a small per-shape
tuner on the GPU (each candidate timed once on the real inputs by CUDA-graph replay, the
winner cached per (path, N, K_pad, batch bucket, quantization config, dtype)); under
TRITON_INTERPRET=1, or with TQ_TRITON_TUNE=0, the first candidate that runs is used.
"""
from __future__ import annotations

import dataclasses
import functools
import math
import os
import warnings
import weakref

import numpy as np
import torch
import triton
import triton.language as tl
import triton.runtime.errors
import triton.testing

try:  # host-side TMA descriptors (Triton 3.4+); without them lutmma.py keeps its register ring
    from triton.tools.tensor_descriptor import TensorDescriptor
except ImportError:  # pragma: no cover
    TensorDescriptor = None

from .. import chunked, packing
from ..chunked import chunk_rows_for
from ..codebook import poly_basis
from ..experiments.timing import l2_bytes
from ..format import QuantizedWeight
from . import decode, launch, lut4, lutmm, lutmma, prefill, rotate, unrotate
from .dequant import MAX_POLY_TERMS

SUPPORTED_BITS = (2, 3, 4, 8)
DECODE_MAX_BATCH = 16
# A polynomial evaluated in w = 2u reaches (2^bits - 1)^(2*terms - 1); past this its top
# coefficient times a small group scale would fall into fp32 subnormals, so such a
# codebook is read through its (always stored) levels table instead.
POLY_RANGE_LIMIT = 1e28
_TL_DTYPES = {torch.bfloat16: tl.bfloat16, torch.float16: tl.float16, torch.float32: tl.float32}


def interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def tuning_enabled() -> bool:
    return not interpreting() and os.environ.get("TQ_TRITON_TUNE", "1") != "0"


# ---------------------------------------------------------------------------
# Weight preparation (cached per QuantizedWeight object)
# ---------------------------------------------------------------------------
@dataclasses.dataclass
class PreparedPass:
    bits: int
    widths: tuple        # plane widths (W0, W1), W1 = 0 when the pass has one plane
    planes: tuple        # two tensors (the first repeated when there is one plane)
    norms: torch.Tensor
    levels: torch.Tensor
    coefficients: torch.Tensor  # fp32 [MAX_POLY_TERMS] Horner coefficients in w = 2u (zeros for lookup)
    n_terms: int                # 0 = lookup
    prefill_coefficients: torch.Tensor  # what the prefill kernel evaluates (see interpolating_coefficients)
    prefill_terms: int


@dataclasses.dataclass
class PreparedWeight:
    passes: list
    driver_width: int
    inv_sqrt_g: float
    args: tuple = ()        # kernel pointer/stride arguments of both passes (built once)
    consts: dict = dataclasses.field(default_factory=dict)  # their compile-time constants
    prefill_args: tuple = ()
    prefill_consts: dict = dataclasses.field(default_factory=dict)
    key: tuple = ()         # the quantization part of the tuning key
    lut4_args: dict = dataclasses.field(default_factory=dict)  # operand dtype -> lut4 kernel arguments
    lut4_ok: dict = dataclasses.field(default_factory=dict)    # operand dtype -> lut4 path taken
    mma_sym: dict = dataclasses.field(default_factory=dict)    # operand dtype -> per pass: symmetric levels
    tma_descs: dict = dataclasses.field(default_factory=dict)  # (BN, asm) -> the planes' TMA descriptors
    tma_why: dict = dataclasses.field(default_factory=dict)    # (device, TMA switch) -> tma_reason


def horner_coefficients(codebook) -> np.ndarray | None:
    """d_j = c_j / (2^bits - 1)^(2j+1): the polynomial in w = 2u = 2*idx - (2^bits - 1)."""
    if not codebook.is_polynomial:
        return None
    c = np.asarray(codebook.poly_coefficients, dtype=np.float64)
    span = float((1 << codebook.bits) - 1)
    if len(c) > MAX_POLY_TERMS or span ** (2 * len(c) - 1) > POLY_RANGE_LIMIT:
        return None
    return c / span ** (2 * np.arange(len(c)) + 1)


def interpolating_coefficients(levels: np.ndarray, bits: int) -> np.ndarray | None:
    """Horner coefficients (in w = 2u) of the odd polynomial through all levels, or None.

    A symmetric codebook of 2^bits levels is reproduced exactly by 2^(bits-1) odd terms.
    The prefill kernel evaluates a lookup codebook this way for bits <= 4: a per-weight
    gather in the tensor-core kernel cost 5x its time on the H100, 8 FMAs do not.  Kept
    only when the fp32 Horner chain reproduces every level to 1e-6 of the largest.
    """
    if bits > 4:
        return None
    levels = np.asarray(levels, dtype=np.float64)
    scale = np.abs(levels).max()
    if np.abs(levels + levels[::-1]).max() > 1e-7 * scale:
        return None
    terms = 1 << (bits - 1)
    c = np.linalg.lstsq(poly_basis(bits, terms), levels, rcond=None)[0]
    span = float((1 << bits) - 1)
    d = c / span ** (2 * np.arange(terms) + 1)
    d32 = d.astype(np.float32)
    w = (2 * np.arange(1 << bits) - span).astype(np.float32)
    acc = d32[-1]
    for j in range(terms - 2, -1, -1):
        acc = (acc * w * w + d32[j]).astype(np.float32)
    if np.abs(acc * w - levels).max() > 1e-6 * scale:
        return None
    return d


def _padded(d, device) -> torch.Tensor:
    coef = np.zeros(MAX_POLY_TERMS)
    if d is not None:
        coef[:len(d)] = d
    return torch.as_tensor(coef, dtype=torch.float32, device=device)


def _prepare_pass(p) -> PreparedPass:
    widths = packing.plane_widths(p.bits)
    planes = [pl.contiguous() for pl in p.planes]
    d = horner_coefficients(p.codebook)
    dev = p.norms.device
    coef = _padded(d, dev)
    exact = None if d is not None else interpolating_coefficients(p.levels.double().cpu().numpy(), p.bits)
    return PreparedPass(
        bits=p.bits, widths=(widths[0], widths[1] if len(widths) > 1 else 0),
        planes=(planes[0], planes[1] if len(planes) > 1 else planes[0]),
        norms=p.norms.contiguous(), levels=p.levels.to(torch.float32).contiguous(),
        coefficients=coef, n_terms=0 if d is None else len(d),
        prefill_coefficients=coef if exact is None else _padded(exact, dev),
        prefill_terms=len(exact) if exact is not None else (0 if d is None else len(d)))


_prepared: dict[int, tuple] = {}


def prepare_weight(qw: QuantizedWeight) -> PreparedWeight:
    hit = _prepared.get(id(qw))
    if hit is not None and hit[0]() is qw and hit[2] is qw.passes[0].planes[0]:
        return hit[1]
    passes = [_prepare_pass(p) for p in qw.passes]
    prepared = PreparedWeight(passes=passes, driver_width=max(max(p.widths) for p in passes),
                              inv_sqrt_g=1.0 / math.sqrt(qw.group_size))
    prepared.args, prepared.consts = _pass_args(prepared, prefill=False)
    prepared.prefill_args, prepared.prefill_consts = _pass_args(prepared, prefill=True)
    prepared.key = tuple((p.bits, p.n_terms, p.prefill_terms) for p in passes) + (qw.group_size,)
    key = id(qw)
    _prepared[key] = (weakref.ref(qw, lambda _, k=key: _prepared.pop(k, None)), prepared,
                      qw.passes[0].planes[0])
    return prepared


def unsupported_reason(qw: QuantizedWeight) -> str | None:
    for i, p in enumerate(qw.passes):
        if p.bits not in SUPPORTED_BITS:
            return (f"pass {i} has {p.bits}-bit indices; the triton backend supports bits "
                    f"{SUPPORTED_BITS} (use the reference backend for others)")
    if len(qw.passes) > 2:
        return "the triton backend supports at most one residual pass"
    return None


# ---------------------------------------------------------------------------
# Tile choice
# ---------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class DecodeConfig:
    tn: int
    tk: int
    split: int
    num_warps: int
    num_stages: int = 3


@dataclasses.dataclass(frozen=True)
class PrefillConfig:
    bn: int
    bm: int
    tk: int
    group_m: int
    num_warps: int
    num_stages: int = 3


def fit_tk(tk: int, k_padded: int, driver_width: int, dot: bool) -> int:
    """Clamp a tile width: >= 32 columns, >= 16 driver bytes for tl.dot, no wider than K_pad needs."""
    tk = min(tk, max(32, triton.next_power_of_2(k_padded)))
    if dot:
        tk = max(tk, 128 // driver_width)
    return max(tk, 32)


def split_candidates(programs: int, n_tiles: int, sms: int) -> list[int]:
    """Split-K factors a decode tuner tries: none, and those that make about 2 and 4 programs
    per SM from `programs` row blocks (each keeping at least one of the n_tiles K tiles)."""
    return sorted({1} | {max(1, min(n_tiles, target // programs)) for target in (2 * sms, 4 * sms)})


def uneven_splits(programs: int, n_tiles: int, sms: int) -> list[int]:
    """K tiles of the first of two uneven split-K pieces (Lut4Config.per_split) a decode tuner
    tries where `programs` row blocks leave CTA slots idle (fewer than 2 per SM); [] otherwise.

    Why: at 28672x8192 the 224 blocks of 128 rows (2 CTAs per SM) put two blocks on 92 of the
    132 SMs and one on the rest, and the busiest SMs set the time.  Long first pieces start on
    every slot and the short second pieces (grid order: every block's first piece, then the
    second ones) fill the slots left over, with today's loop unchanged.  Measured on the H200
    (experiments/h200-2026-12-03-session14/, B = 1): pieces of 50-52 of 64 tiles 59.6-59.9 us
    against 62.7 whole; at B = 16 (TMA, 256 rows) 40 of 64 76.7 against 79.7 in two halves.
    An even stream-K schedule cost more instructions than it saved (thirteenth session).
    """
    if programs >= 2 * sms or n_tiles < 8:
        return []
    return sorted({round(n_tiles * r) for r in (0.8, 0.625)} - {n_tiles}, reverse=True)


def decode_candidates(n: int, k_padded: int, batch: int, driver_width: int, device) -> list[DecodeConfig]:
    sms = launch.sm_count(device)
    if interpreting():
        return [DecodeConfig(tn=32, tk=fit_tk(128, k_padded, driver_width, batch > 1), split=1, num_warps=4)]
    out = []
    shapes = [(32, 128, 4), (64, 128, 4), (32, 256, 4), (16, 256, 4), (64, 256, 8), (128, 128, 8)] if batch == 1 \
        else [(32, 128, 4), (64, 128, 4), (64, 256, 4), (128, 128, 8), (32, 256, 4)]
    for tn, tk, warps in shapes:
        tk = fit_tk(tk, k_padded, driver_width, batch > 1)
        n_tiles = triton.cdiv(k_padded, tk)
        programs = triton.cdiv(n, tn)
        for s in split_candidates(programs, n_tiles, sms):
            cfg = DecodeConfig(tn=tn, tk=tk, split=s, num_warps=warps)
            if cfg not in out:
                out.append(cfg)
    return out


def prefill_candidates(n: int, k_padded: int, batch: int, driver_width: int) -> list[PrefillConfig]:
    if interpreting():
        return [PrefillConfig(bn=32, bm=32, tk=fit_tk(128, k_padded, driver_width, True), group_m=4,
                              num_warps=4)]
    shapes = [(128, 128, 128, 8, 3), (128, 256, 128, 8, 3), (256, 128, 128, 8, 3), (128, 128, 256, 8, 3),
              (64, 128, 128, 4, 4)] if batch > 256 else \
        [(64, 64, 128, 4, 3), (128, 64, 128, 4, 3), (64, 32, 256, 4, 3)]
    return [PrefillConfig(bn=bn, bm=bm, tk=fit_tk(tk, k_padded, driver_width, True), group_m=8,
                          num_warps=w, num_stages=st) for bn, bm, tk, w, st in shapes]


_tuned: dict = {}


def _time_candidate(fn) -> float:
    """GPU time of fn in ms with its weight cold in L2, from CUDA-graph replays where capture works.

    At batch 1 the host's launch cost (tens of microseconds for these many-argument
    kernels) exceeds the kernels' GPU time, so plain back-to-back timing (do_bench)
    measures the host and picks configs nearly at random (seen on the H100: the
    8192x8192 B=1 pick moved between 0.055 and 0.076 ms runs).  Graph replay removes that.
    Replaying fn alone would keep a weight that fits in L2 (8192x8192 at 4 bits: 34 MB of
    the H100's 50 MB) resident, and rank configs by L2 speed, not by the HBM streaming a
    model's layers see (seen: the 8192x8192 B = 1 pick ran 31 us in one process and 41 us
    in another).  So each replay first overwrites twice the L2, and that flush's own time
    (replayed alone) is subtracted.
    """
    # (allocated per tuning call, not kept: the caching allocator hands the block back)
    dev = torch.device("cuda", torch.cuda.current_device())
    flush = torch.empty(2 * l2_bytes(dev), dtype=torch.uint8, device=dev)

    def flushed():
        flush.zero_()
        fn()

    try:
        both = triton.testing.do_bench_cudagraph(flushed, rep=30, return_mode="median")
        alone = triton.testing.do_bench_cudagraph(flush.zero_, rep=30, return_mode="median")
        return both - alone
    except Exception:  # capture unsupported here: fall back to event timing of eager launches
        torch.cuda.synchronize()
        return triton.testing.do_bench(fn, warmup=5, rep=25, return_mode="median")  # (flushes L2 itself)


def _choose(key, make_candidates, launch):
    """The fastest candidate for this key (timed once per key on the GPU), else the first that runs."""
    cfg = _tuned.get(key)
    if cfg is not None:
        return cfg
    candidates = make_candidates()
    # No timing inside a CUDA-graph capture (it would break it): the first candidate that
    # runs serves, uncached, until a call outside capture tunes this key.
    capturing = torch.cuda.is_available() and torch.cuda.is_current_stream_capturing()
    tune = len(candidates) > 1 and tuning_enabled() and not capturing
    best, best_t, errors = None, float("inf"), []
    for cfg in candidates:
        try:
            launch(cfg)
            if not tune:
                best = cfg
                break
            t = _time_candidate(lambda: launch(cfg))
        except triton.runtime.errors.OutOfResources as e:  # too much shared memory: try the next
            errors.append(str(e))
            continue
        except Exception as e:  # while tuning, a candidate the compiler rejects is skipped, not fatal
            if not tune:
                raise
            warnings.warn(f"triton config {cfg} failed for {key}: {type(e).__name__}: {e}")
            errors.append(str(e))
            continue
        if t < best_t:
            best, best_t = cfg, t
    if best is None:
        raise RuntimeError(f"no triton config could run for {key}: {errors}")
    if not capturing:
        _tuned[key] = best
    return best


def tuned_configs() -> dict:
    """What the tuner chose so far (for benchmark reports)."""
    return {str(k): dataclasses.asdict(v) for k, v in _tuned.items()}


# ---------------------------------------------------------------------------
# The 4-bit register-table path (lut4.py, lutmm.py)
# ---------------------------------------------------------------------------
LUT4_DTYPES = (torch.bfloat16, torch.float16)
LUT4_TILE_WIDTHS = (128, 64, 32)  # K tile: must divide the group size (one scale per tile)


def lut4_enabled() -> bool:
    """TQ_TRITON_LUT4=0 sends 4-bit weights through the general kernels (for comparisons)."""
    return os.environ.get("TQ_TRITON_LUT4", "1") != "0"


def lut4_reason(qw: QuantizedWeight, dtype: torch.dtype) -> str | None:
    """None when the lut4 kernel serves this weight and activation dtype, else why not."""
    if not lut4_enabled():
        return "disabled by TQ_TRITON_LUT4=0"
    if dtype not in LUT4_DTYPES:
        return f"activation dtype {dtype} (the lut4 path multiplies in bf16/fp16; fp32 keeps exact fp32 math)"
    if any(p.bits != 4 for p in qw.passes) or len(qw.passes) > 2:
        return "not an all-4-bit weight (4 or 4+4)"
    if any(not lut4.finite_in(p.levels.cpu().numpy(), d) for p in qw.passes for d in (dtype, torch.float16)):
        # (the chunked prefill's dequant tables are fp16 for either activation dtype)
        return f"a codebook level overflows {dtype} or float16"
    return None


def lut4_tile_width(group_size: int) -> int:
    return next(tk for tk in LUT4_TILE_WIDTHS if group_size % tk == 0)


def _lut4_args(prep: PreparedWeight, qw: QuantizedWeight, dtype: torch.dtype) -> tuple:
    hit = prep.lut4_args.get(dtype)
    if hit is not None:
        return hit
    per_pass = []
    for p in qw.passes:
        levels = p.levels.cpu().numpy()
        # Under the interpreter the gather stand-in reads these rounded levels.
        per_pass.append((p.planes[0].contiguous(), p.norms.contiguous(),
                         lut4.rounded_levels(levels, dtype, p.levels.device)) + lut4.tables(levels, dtype))
    args = per_pass[0] + (per_pass[1] if len(per_pass) > 1 else per_pass[0])
    hit = prep.lut4_args[dtype] = (args, launch.signature_key(args))
    return hit


@dataclasses.dataclass(frozen=True)
class Lut4Config:
    bn: int
    bm: int
    split: int
    group_m: int
    num_warps: int
    num_stages: int
    scale_w: bool
    unroll: int = 1
    chunk_rows: int = 0   # > 0: chunked dequant + cuBLAS instead of the fused kernel (prefill)
    mma: bool = False     # decode by lutmma.py (mma.sync on the lookup's registers); bm: 8 or 16
    depth: int = 1        # lutmma.py: weight tiles prefetched ahead (1-3)
    maxnreg: int = 0      # > 0: register cap per thread (more resident warps)
    tma_stages: int = 0   # > 0: lutmma.py's TMA kernel, weight tiles pipelined through this many stages
    per_split: int = 0    # > 0: K tiles (of the kernel's width) per split-K piece, overriding split


MMA_TILE = 128  # lutmma.py's K tile: 4 lanes x 32 columns


def mma_enabled() -> bool:
    """TQ_TRITON_MMA=0 keeps batch 1-16 on lutmm.py's kernels (for comparisons)."""
    return os.environ.get("TQ_TRITON_MMA", "1") != "0"


def mma_reason(tk: int, device) -> str | None:
    """None when lutmma.py can serve a 4-bit weight of K tile tk at decode on device, else why not."""
    if not mma_enabled():
        return "disabled by TQ_TRITON_MMA=0"
    if tk != MMA_TILE:
        return f"group size not a multiple of {MMA_TILE} (K tile {tk})"
    device = torch.device(device)
    if device.type == "cuda" and torch.cuda.get_device_capability(device) < (8, 0):
        return "mma.sync.m16n8k16 with bf16 needs compute capability 8.0"
    return None


def mma_tilings(batch_tile: int, tma: bool) -> list[tuple]:
    """(rows, warps, ring depth, register cap, TMA stages) the decode tuner tries for batch tile 8 or 16
    (each with the split-K factors of split_candidates); probes replace it to force one tiling."""
    # Measured on the H100 (experiments/h100-2026-11-25-session5/probes/probe_mma*.log), kernel
    # alone, 4-bit g128 on the three benchmark shapes:
    #   B <= 8: 128 rows x 8 warps, 2 tiles prefetched, a 128-register cap (2 CTAs per SM)
    #           led (22.3 / 59.0 / 57.0 us), 64 x 4 warps within 1-4%;
    #   B <= 16: 256 rows x 4 warps (each thread 4 row pairs sharing one load of x: x is 4x
    #           the weight's bytes per warp and tile here) led (30.1 / 83.2 / 81.3 us) over
    #           64-128 rows (32.4 / 87.9-90 us); a deeper prefetch did not help there.
    #   B <= 16 with TMA (Hopper): the weight by TMA, 3 stages, 128 or 256 rows x 4 warps led
    #           (27.0 / 77.9 / 67.4 us; probes/probe_tma.log of the sixth session); 5 stages
    #           were slower.  At B = 1 the ring stayed ahead (22.6 / 58.7 / 57.4 against
    #           23.6 / 66.6 / 63.2), so B <= 8 keeps it.
    #   Thirteenth session (H200, experiments/h200-2026-12-03-session13/): more resident warps did
    #           not help at B <= 8: 64 x 4 warps at 80-96 registers (20-24 warps per SM, no spills
    #           with the asm's lookups interleaved with its mmas) ran 4-9% slower than 128 x 8 at 128.
    if batch_tile == 8:
        return [(128, 8, 2, 128, 0), (64, 4, 2, 128, 0)]
    tilings = [(256, 4, 1, 0, 0), (128, 8, 1, 0, 0), (64, 4, 1, 0, 0)]
    if tma:
        tilings = [(128, 4, 1, 0, 3), (256, 4, 1, 0, 3)] + tilings
    return tilings


def _mma_candidates(n: int, k_padded: int, batch: int, device, tma: bool = False) -> list[Lut4Config]:
    """tma: whether the weight's planes can be read by TMA (tma_reason) on device."""
    bb = 8 if batch <= 8 else 16
    if interpreting():
        return [Lut4Config(bn=16, bm=bb, split=1, group_m=1, num_warps=1, num_stages=1, scale_w=False, mma=True)]
    sms = launch.sm_count(torch.device(device))
    n_tiles = k_padded // MMA_TILE
    tilings = mma_tilings(bb, tma)
    out = []
    for bn, warps, depth, maxnreg, stages in tilings:
        programs = triton.cdiv(n, bn)
        pieces = [(split, 0) for split in split_candidates(programs, n_tiles, sms)]
        pieces += [(2, per) for per in uneven_splits(programs, n_tiles, sms)]
        for split, per in pieces:
            out.append(Lut4Config(bn=bn, bm=bb, split=split, group_m=1, num_warps=warps, num_stages=1,
                                  scale_w=False, unroll=2, mma=True, depth=depth, maxnreg=maxnreg,
                                  tma_stages=stages, per_split=per))
    return out


def lut4_candidates(n: int, k_padded: int, batch: int, tk: int, device, tma: bool = False) -> list[Lut4Config]:
    decode_path = batch <= DECODE_MAX_BATCH
    if decode_path and mma_reason(tk, device) is None:
        return _mma_candidates(n, k_padded, batch, device, tma)
    if interpreting():
        return [Lut4Config(bn=32, bm=(1 if batch == 1 else 16) if decode_path else 32, split=1, group_m=4,
                           num_warps=4, num_stages=1, scale_w=not decode_path)]
    if not decode_path:
        # (measured on the H100 at B = 2048: 256x128 and 128x128 with 8 warps lead; BM = 256
        # needs 2 stages to fit in shared memory)
        shapes = [(256, 128, 8, 3), (128, 128, 8, 3), (128, 256, 8, 2), (128, 128, 8, 4)] \
            if batch > 256 else [(128, 64, 4, 4), (64, 64, 4, 4), (128, 32, 4, 4)]
        out = [Lut4Config(bn=bn, bm=bm, split=1, group_m=8, num_warps=w, num_stages=st, scale_w=True)
               for bn, bm, w, st in shapes]
        # (B = 17-256 too: on the H200 the fused kernel took 195 us at 8192x8192, B = 256, 3.8x
        # cuBLAS's time, so the tuner times the chunked form there as well)
        if torch.device(device).type == "cuda":
            chunked = Lut4Config(bn=0, bm=0, split=1, group_m=0, num_warps=4, num_stages=3, scale_w=True,
                                 chunk_rows=chunk_rows_for(k_padded, n))
            if batch >= 1024:
                # Measured 1.9-2.3x faster than every fused config at B = 2048 on the three
                # benchmark shapes (docs/triton.md); not timed again, which also keeps the
                # tuner's multi-stream graph timing out of the choice.
                return [chunked]
            out.append(chunked)  # 16 < B < 1024: the tuner times it against the fused kernel
        return out
    sms = launch.sm_count(device)
    n_tiles = k_padded // tk
    # Batch 1: the FMA GEMV (BM = 1) beat the tuned tensor-core form on the H100
    # (kernel time, 8192x8192: 27.6 vs 30.5 us; 28672x8192: 83.6 vs 102.9 us; see
    # experiments/h100-2026-11-24-lut4/probes/).  Unrolling the K loop
    # (more loads in flight) gained 2-3% at B = 1 and up to 7% at B = 16 on some shapes.
    if batch == 1:
        shapes = [(1, 128, 8, 3, 4), (1, 64, 4, 3, 4), (1, 128, 8, 3, 1), (1, 64, 4, 3, 1), (16, 64, 4, 3, 1)]
    else:
        shapes = [(16, 64, 4, 3, 1), (16, 64, 4, 3, 2), (16, 64, 4, 4, 1), (16, 128, 8, 3, 1)]
    out = []
    for bm, bn, warps, stages, unroll in shapes:
        programs = triton.cdiv(n, bn)
        for split in split_candidates(programs, n_tiles, sms):
            cfg = Lut4Config(bn=bn, bm=bm, split=split, group_m=1, num_warps=warps, num_stages=stages,
                             scale_w=False, unroll=unroll)
            if cfg not in out:
                out.append(cfg)
    return out


_locks: dict = {}


def _lock_buffer(device, size: int) -> torch.Tensor:
    """Zeroed int32 split-K counters, one buffer per (device, stream); the kernel leaves them zero.

    While a CUDA graph is being captured every call gets its own buffer (zeroed by a node of
    that graph): graphs share the capture stream, and one cached buffer would be shared by
    graphs that may replay concurrently.
    """
    if chunked.capturing(device):
        return torch.zeros(max(size, 1), dtype=torch.int32, device=device)
    key = (device, launch.current_raw_stream(device) if device.type == "cuda" else 0)
    buf = _locks.get(key)
    if buf is None or buf.numel() < size:
        buf = torch.zeros(max(size, 1024), dtype=torch.int32, device=device)
        _locks[key] = buf
    return buf


def _lut4_kernel_args(qw, prep, x_rot, y, bias, batch, tk, split, blocks, per_split: int = 0) -> tuple:
    """The runtime arguments lutmm.py's and lutmma.py's kernels share (same order), the part of
    the launcher key they determine, the effective split and the weight's arguments.

    Split-K over n_tiles K tiles of width tk; ws and the `blocks` counters only when split > 1.
    per_split > 0 sets the tiles per piece instead of `split` (uneven pieces: see uneven_splits).
    What Triton specializes on (launch.py): the weight's arguments and the per-call values;
    x_rot, y, ws and the counters are fresh allocations (aligned; x_rot's row stride is K_pad).
    """
    n, k_pad = qw.out_features, qw.k_padded
    n_tiles = k_pad // tk
    per_split = min(per_split, n_tiles) if per_split > 0 else triton.cdiv(n_tiles, split)
    split = triton.cdiv(n_tiles, per_split)
    ws = torch.empty((split, batch, n), dtype=torch.float32, device=y.device) if split > 1 else y
    locks = _lock_buffer(y.device, blocks) if split > 1 else y
    weight_args, weight_key = _lut4_args(prep, qw, y.dtype)
    args = (x_rot, y, ws, locks, bias if bias is not None else y) + weight_args + (
        batch, n, qw.n_groups, prep.inv_sqrt_g, qw.group_size // tk, per_split, n_tiles, split,
        weight_args[0].stride(0), x_rot.stride(0), y.stride(0))  # (the planes' contiguous copies)
    key = (weight_key, y.dtype, y.device, n, k_pad, qw.n_groups, qw.group_size, launch.spec(batch),
           launch.spec(per_split), launch.spec(split), None if bias is None else bias.dtype, launch.ptr_spec(bias),
           launch.ptr_spec(x_rot), launch.spec(x_rot.stride(0)))
    return args, key, split, weight_args


_lut4_launcher = launch.Launcher(lutmm.lut4_matmul_kernel)


def _launch_lut4(cfg: Lut4Config, qw, prep, x_rot, y, bias, batch, x=None):
    """One launch of cfg (x: the unrotated activation, which the chunked form takes in the
    weight basis)."""
    if cfg.mma:
        _launch_mma(cfg, qw, prep, x_rot, y, bias, batch)
        return
    if cfg.chunk_rows:
        if weight_basis(qw):
            if x is None:
                raise ValueError("the weight-basis chunked prefill multiplies the unrotated x: pass x")
            _launch_chunked(qw, prep, x, y, bias, cfg.chunk_rows)
        else:
            _launch_chunked(qw, prep, x_rot, y, bias, cfg.chunk_rows)
        return
    tk = lut4_tile_width(qw.group_size)
    blocks = triton.cdiv(batch, cfg.bm) * triton.cdiv(qw.out_features, cfg.bn)
    args, key, split, _ = _lut4_kernel_args(qw, prep, x_rot, y, bias, batch, tk, cfg.split, blocks, cfg.per_split)
    consts = dict(BN=cfg.bn, BM=cfg.bm, TK=tk, GROUP_M=cfg.group_m, RESIDUAL=len(qw.passes) > 1,
                  PARTIAL=split > 1, HAS_BIAS=bias is not None, SCALE_W=cfg.scale_w,
                  OUT=tl.float32 if interpreting() else _TL_DTYPES[y.dtype], USE_ASM=not interpreting(),
                  UNROLL=cfg.unroll)
    _lut4_launcher((key, cfg), (blocks, split), args, consts, cfg.num_warps, cfg.num_stages)


_mma_launcher = launch.Launcher(lutmma.lut4_mma_kernel)
_mma_tma_launcher = launch.Launcher(lutmma.lut4_mma_tma_kernel)


def mma_symmetric_enabled() -> bool:
    """TQ_TRITON_MMA_SYMMETRIC=0 keeps the general 16-entry lookup for symmetric codebooks too."""
    return os.environ.get("TQ_TRITON_MMA_SYMMETRIC", "1") != "0"


def _mma_asm(qw, prep, dtype: torch.dtype, batch_tile: int) -> tuple[str, str]:
    """The asm of each pass: the symmetric lookup where the pass's levels are sign-mirrored."""
    name = "bf16" if dtype == torch.bfloat16 else "f16"
    sym = prep.mma_sym.get(dtype)
    if sym is None:  # (once per weight and dtype: it reads the levels back from the device)
        sym = prep.mma_sym[dtype] = [lutmma.symmetric(lut4.level_bits(p.levels.cpu().numpy(), dtype))
                                     for p in qw.passes]
    on = mma_symmetric_enabled()
    asm = [lutmma.ptx_for(name, batch_tile, s and on) for s in sym]
    return asm[0], asm[-1]


_mma_layouts: dict = {}  # compiled variant -> whether its TTGIR has the layout lutmma.py assumes


def tma_enabled() -> bool:
    """TQ_TRITON_TMA=0 keeps batch 9-16 on lutmma.py's register ring (for comparisons)."""
    return os.environ.get("TQ_TRITON_TMA", "1") != "0"


def tma_reason(qw, device) -> str | None:
    """None when lutmma.py's TMA kernel can read qw's planes on device, else why not."""
    if TensorDescriptor is None:
        return "this Triton has no host tensor descriptors (triton.tools.tensor_descriptor)"
    if not tma_enabled():
        return "disabled by TQ_TRITON_TMA=0"
    device = torch.device(device)
    if device.type == "cuda" and torch.cuda.get_device_capability(device) < (9, 0):
        return "TMA needs compute capability 9.0 (Hopper) or later"
    for p in qw.passes:
        plane = p.planes[0]
        if plane.stride(-1) != 1 or plane.stride(0) % 16 or plane.data_ptr() % 16:
            return "a packed plane's rows are not 16-byte aligned (TMA's rule for row strides and bases)"
    return None


def _tma_reason_cached(qw, prep, device) -> str | None:
    key = (device, tma_enabled())
    if key not in prep.tma_why:
        prep.tma_why[key] = tma_reason(qw, device)
    return prep.tma_why[key]


def _tma_descs(prep, weight_args, bn: int, use_asm: bool) -> tuple:
    """TMA descriptors of both passes' planes: [N, K_pad / 8] int32 in [bn, 16] boxes for the
    asm, [N, K_pad / 2] bytes in [bn, 64] boxes for the interpreter (built once per weight)."""
    hit = prep.tma_descs.get((bn, use_asm))
    if hit is None:
        descs = []
        for plane in (weight_args[0], weight_args[7]):
            p = plane.view(torch.int32) if use_asm else plane
            descs.append(TensorDescriptor(p, list(p.shape), list(p.stride()), [bn, 16 if use_asm else 64]))
        hit = prep.tma_descs[(bn, use_asm)] = tuple(descs)
    return hit


def _launch_mma(cfg: Lut4Config, qw, prep, x_rot, y, bias, batch):
    if cfg.tma_stages and _tma_reason_cached(qw, prep, y.device) is not None:
        # (a tuned choice applied to a weight whose planes TMA cannot read: the ring instead)
        cfg = dataclasses.replace(cfg, tma_stages=0, depth=1)
    blocks = triton.cdiv(qw.out_features, cfg.bn)
    args, key, split, weight_args = _lut4_kernel_args(qw, prep, x_rot, y, bias, batch, MMA_TILE, cfg.split, blocks,
                                                      cfg.per_split)
    key = (key, cfg)
    use_asm = not interpreting()
    asm_a, asm_r = _mma_asm(qw, prep, y.dtype, cfg.bm)
    consts = dict(BN=cfg.bn, BB=cfg.bm, WARPS=cfg.num_warps, RESIDUAL=len(qw.passes) > 1, PARTIAL=split > 1,
                  HAS_BIAS=bias is not None, USE_ASM=use_asm, UNROLL=cfg.unroll, DEPTH=cfg.depth,
                  ASM_A=asm_a if use_asm else "", ASM_R=asm_r if use_asm else "")
    kernel, launcher = lutmma.lut4_mma_kernel, _mma_launcher
    if cfg.tma_stages:
        # (same arguments with the planes as descriptors and without the planes' row stride)
        a_desc, r_desc = _tma_descs(prep, weight_args, cfg.bn, use_asm)
        args = args[:5] + (a_desc,) + args[6:12] + (r_desc,) + args[13:-3] + args[-2:]
        consts = {k: v for k, v in consts.items() if k not in ("UNROLL", "DEPTH")}
        consts["STAGES"] = cfg.tma_stages
        kernel, launcher = lutmma.lut4_mma_tma_kernel, _mma_tma_launcher
    options = {"maxnreg": cfg.maxnreg} if cfg.maxnreg and use_asm else {}
    if use_asm:
        # The asm's fragments assume Triton's layout of the [BN, 16] tiles (lutmma.py): check
        # each compiled variant (the launcher's own key) before its first launch, and keep
        # lutmm.py's kernel otherwise.  The asm reads the planes as 32-bit words: a plane
        # viewed at an odd byte offset also takes lutmm.py.
        layout_key = (key, tuple(consts.items()), cfg.num_warps, cfg.num_stages, tuple(sorted(options.items())))
        ok = _mma_layouts.get(layout_key)
        if ok is None:
            compiled = kernel.warmup(*args, grid=(blocks, split), **consts, num_warps=cfg.num_warps,
                                     num_stages=cfg.num_stages, **options)
            ok = _mma_layouts[layout_key] = lutmma.layout_ok(compiled.asm["ttgir"], cfg.num_warps)
            if not ok:
                warnings.warn("lutmma: Triton chose another register layout than the mma fragments assume; "
                              "batch 1-16 falls back to lutmm.py's kernel")
        if not ok or any(t.data_ptr() % 4 for t in (weight_args[0], weight_args[7])):
            fallback = Lut4Config(bn=64, bm=1 if batch == 1 else 16, split=cfg.split, group_m=1, num_warps=4,
                                  num_stages=3, scale_w=False)
            _launch_lut4(fallback, qw, prep, x_rot, y, bias, batch)
            return
    launcher(key, (blocks, split), args, consts, cfg.num_warps, cfg.num_stages, **options)


def _run_lut4(x2, qw, prep, y, bias, batch):
    # Under the interpreter bf16 stays fp32 (its tl.dot mishandles bf16); the levels are
    # still the bf16-rounded ones, so only the activation rounding differs from the GPU.
    rot_dtype = torch.float32 if interpreting() else x2.dtype
    path = "lut4-decode" if batch <= DECODE_MAX_BATCH else "lut4-prefill"
    key = (path, qw.out_features, qw.k_padded, _batch_bucket(batch), prep.key, x2.dtype,
           (chunked.prefill_workspace_mb(), weight_basis(qw)) if batch > DECODE_MAX_BATCH
           else (mma_enabled(), _tma_reason_cached(qw, prep, x2.device) is None))
    # (the chunk rows follow the workspace budget; the basis changes what the chunked form costs;
    # whether TMA can read this weight changes the decode candidates)
    tk = lut4_tile_width(qw.group_size)
    cfg = _tuned.get(key)
    if cfg is None:  # tune first (its trial launches must not be recorded for replay)
        x_rot = rotate.rotate(x2, qw.rotation_block, qw.seed, qw.k_padded, rot_dtype)
        cfg = _choose(key, lambda: lut4_candidates(qw.out_features, qw.k_padded, batch, tk, x2.device,
                                                   _tma_reason_cached(qw, prep, x2.device) is None),
                      lambda c: _launch_lut4(c, qw, prep, x_rot, y, bias, batch, x2))

    def call():
        if cfg.chunk_rows:
            if weight_basis(qw):  # no rotation: the chunks are rotated back instead
                _launch_chunked(qw, prep, x2, y, bias, cfg.chunk_rows)
                return
            # the rotation runs inside, overlapping the first chunk's dequant
            _launch_chunked(qw, prep, lambda: rotate.rotate(x2, qw.rotation_block, qw.seed, qw.k_padded,
                                                            rot_dtype), y, bias, cfg.chunk_rows)
            return
        x_rot = rotate.rotate(x2, qw.rotation_block, qw.seed, qw.k_padded, rot_dtype)
        _launch_lut4(cfg, qw, prep, x_rot, y, bias, batch)

    # Replays only at decode batch sizes (host bound; a prefill call is not) and for a
    # unit-stride x (rotate would otherwise copy it, and a copy is not x).
    if (interpreting() or launch.hooks_installed() or batch > DECODE_MAX_BATCH or x2.stride(1) != 1
            or chunked.capturing(x2.device)):
        call()
        return
    # Record this call's launches; later calls with the same key replay them (_replays).
    static = [t for t in _lut4_args(prep, qw, y.dtype)[0] if isinstance(t, torch.Tensor)]
    static += [rotate._signs(qw.k_padded, int(qw.seed), x2.device), _lock_buffer(y.device, 1)]
    replay = launch.record_replay(call, static, {"x": x2, "y": y, "bias": bias})
    if replay is not None:
        key = _replay_key(x2, qw, bias)
        owner = id(qw)
        if owner not in _replay_keys:
            # A replay holds the weight's tensors: drop it with the weight.
            _replay_keys[owner] = (weakref.ref(qw, lambda _, o=owner: _drop_replays(o)), [])
        _replay_keys[owner][1].append(key)
        _replays[key] = (_replay_keys[owner][0], qw.passes[0].planes[0], replay)


def _drop_replays(owner: int) -> None:
    for key in _replay_keys.pop(owner, (None, []))[1]:
        _replays.pop(key, None)


# ---------------------------------------------------------------------------
# Chunked prefill (tq/chunked.py): lut4_dequant_kernel fills the row chunks
# ---------------------------------------------------------------------------
# At large batch the fused kernel cannot overlap its dequant with the tensor cores (no warp
# specialization; docs/triton.md), so a side stream dequantizes row chunks (memory bound)
# while cuBLAS multiplies the previous one.  The tuner takes it only where it is faster
# than the fused kernel.
_dequant_launcher = launch.Launcher(lutmm.lut4_dequant_kernel)


def _launch_dequant(qw, prep, out, row0, rows, br: int = 32):
    tk = lut4_tile_width(qw.group_size)
    weight_args, weight_key = _lut4_args(prep, qw, torch.float16)
    args = (out,) + weight_args + (row0, rows, qw.n_groups, prep.inv_sqrt_g, qw.group_size // tk,
                                   weight_args[0].stride(0), out.stride(0))
    consts = dict(BR=br, TK=tk, RESIDUAL=len(qw.passes) > 1,
                  OUT=tl.float32 if interpreting() else tl.float16, USE_ASM=not interpreting())
    key = ("dequant", weight_key, out.dtype, out.device, qw.out_features, qw.k_padded, qw.n_groups,
           qw.group_size, launch.spec(rows), launch.spec(row0))
    _dequant_launcher(key, (triton.cdiv(rows, br), qw.k_padded // tk), args, consts, 4, 3)


def weight_basis(qw) -> bool:
    """Whether the chunked prefill rotates the weight chunks back (unrotate.py) instead of
    rotating x: when TQ_PREFILL_UNROTATE=1 and a K tile is one rotation block (group sizes
    32, 64, 128)."""
    return chunked.unrotate_enabled() and qw.rotation_block == lut4_tile_width(qw.group_size)


_unrotate_launcher = launch.Launcher(unrotate.lut4_unrotate_kernel)
UNROTATE_ROWS = 128           # BR (measured on the H100 with 4 warps, 4 programs per SM: 26 us for
UNROTATE_PROGRAMS_PER_SM = 4  # 2048 x 8192, against 20.7 us for the plain dequant; 32-64 rows: 32-50 us)
UNROTATE_WARPS = 4


def _launch_unrotate(qw, prep, out, row0, rows):
    tk = lut4_tile_width(qw.group_size)
    interp = interpreting()
    weight_args, weight_key = _lut4_args(prep, qw, torch.float16)
    h = unrotate.hadamard_halves(tk, torch.float32 if interp else torch.float16, out.device)
    n_tiles = qw.k_padded // tk
    row_blocks = triton.cdiv(rows, UNROTATE_ROWS)
    # (interpreted: two programs along K, so the tile loop is exercised in CI)
    k_programs = min(n_tiles, 2 if interp else max(1, UNROTATE_PROGRAMS_PER_SM * launch.sm_count(out.device) // row_blocks))
    args = (out, rotate._signs(qw.k_padded, int(qw.seed), out.device), h) + weight_args + (
        row0, rows, qw.n_groups, prep.inv_sqrt_g, 1.0 / math.sqrt(tk), qw.group_size // tk, n_tiles,
        weight_args[0].stride(0), out.stride(0))
    consts = dict(BR=UNROTATE_ROWS, TK=tk, RESIDUAL=len(qw.passes) > 1,
                  OUT=tl.float32 if interp else tl.float16, USE_ASM=not interp, PREC="ieee" if interp else "tf32")
    key = ("unrotate", weight_key, out.dtype, out.device, qw.out_features, qw.k_padded, qw.n_groups,
           qw.group_size, launch.spec(rows), launch.spec(row0), launch.spec(n_tiles))
    _unrotate_launcher(key, (row_blocks, k_programs), args, consts, UNROTATE_WARPS, 3)


def _launch_chunked(qw, prep, x, y, bias, chunk_rows: int):
    """x: the rotated activation (or a callable making it), or x itself in the weight basis."""
    fill = _launch_unrotate if weight_basis(qw) else _launch_dequant
    chunked.run_chunked(lambda buf, r0, rows: fill(qw, prep, buf, r0, rows), x, y, bias,
                        qw.out_features, qw.k_padded, chunk_rows)


# ---------------------------------------------------------------------------
# Replays: the lut4 path's launches re-issued without Python dispatch (launch.Replay).
# At batch 1 on the lent H100's host, dispatch + two Triton launches cost ~120 us, twice
# the kernels' GPU time; a replay costs the allocations and the two raw launches.
# ---------------------------------------------------------------------------
_replays: dict = {}
_replay_keys: dict = {}  # id(weight) -> (weakref, its replay keys)


def _replay_key(x2, qw, bias) -> tuple:
    # Everything that changes what Triton specializes on, or which kernels run.
    # (the exact row stride of x: the rotation kernel's recorded `ld` argument is replayed as is)
    return (id(qw), x2.shape[0], x2.dtype, x2.device, launch.ptr_spec(x2), x2.stride(0),
            None if bias is None else (bias.dtype, launch.ptr_spec(bias)),
            launch.current_raw_stream(x2.device), mma_enabled(), mma_symmetric_enabled(), tma_enabled())


def _try_replay(x2, qw, bias):
    """y from a recorded replay of this (weight, batch, dtype, bias, stream), or None."""
    hit = _replays.get(_replay_key(x2, qw, bias))
    if hit is None:
        return None
    ref, plane, replay = hit
    if ref() is not qw or plane is not qw.passes[0].planes[0] or not lut4_enabled() or launch.hooks_installed():
        return None
    if x2.stride(1) != 1:
        return None
    y = torch.empty((x2.shape[0], qw.out_features), dtype=x2.dtype, device=x2.device)
    replay({"x": x2, "y": y, "bias": bias}, launch.current_raw_stream(x2.device))
    return y


# ---------------------------------------------------------------------------
# Launches
# ---------------------------------------------------------------------------
def _pass_args(prep: PreparedWeight, prefill: bool):
    a = prep.passes[0]
    r = prep.passes[1] if len(prep.passes) > 1 else a
    ca, cr = (a.prefill_coefficients, r.prefill_coefficients) if prefill else (a.coefficients, r.coefficients)
    ta, tr = (a.prefill_terms, r.prefill_terms) if prefill else (a.n_terms, r.n_terms)
    args = (a.planes[0], a.planes[1], a.planes[0].stride(0), a.planes[1].stride(0), a.norms, a.levels, ca,
            r.planes[0], r.planes[1], r.planes[0].stride(0), r.planes[1].stride(0), r.norms, r.levels, cr)
    consts = dict(P=prep.driver_width, BITS0=a.bits, W00=a.widths[0], W01=a.widths[1], NT0=ta,
                  BITS1=r.bits if len(prep.passes) > 1 else 0, W10=r.widths[0], W11=r.widths[1],
                  NT1=tr)
    return args, consts


def _dot_types(dtype: torch.dtype) -> dict:
    return _dot_types_cached(dtype, interpreting())


@functools.lru_cache(maxsize=None)
def _dot_types_cached(dtype: torch.dtype, interpret: bool) -> dict:
    """Operand rounding dtype, dot dtype and precision of the tl.dot paths.

    The interpreter's tl.dot mishandles bf16 operands and its bf16 conversion truncates
    instead of rounding, so under it bf16 operands stay fp32 (the GPU tests cover the
    rounding); fp16 operands are rounded and multiplied in fp32 (exact products).
    """
    operand = _TL_DTYPES[dtype]
    if interpret:
        return dict(OPERAND_DTYPE=tl.float32 if dtype == torch.bfloat16 else operand,
                    DOT_DTYPE=tl.float32, PREC="ieee")
    dot = operand
    return dict(OPERAND_DTYPE=operand, DOT_DTYPE=dot, PREC="ieee" if dot == tl.float32 else "tf32")


def _launch_decode(cfg: DecodeConfig, qw, prep, x_rot, y, bias, batch):
    n, k_pad = qw.out_features, qw.k_padded
    n_tiles = triton.cdiv(k_pad, cfg.tk)
    per_split = triton.cdiv(n_tiles, cfg.split)
    split = triton.cdiv(n_tiles, per_split)
    # B = 1 reads lookup codebooks from their table (FMA path); the tl.dot path (B > 1)
    # takes the interpolating polynomial, like prefill.
    args, consts = (prep.args, prep.consts) if batch == 1 else (prep.prefill_args, prep.prefill_consts)
    ws = torch.empty((split, batch, n), dtype=torch.float32, device=y.device) if split > 1 else y
    bb = 1 if batch == 1 else max(16, triton.next_power_of_2(batch))
    grid = (triton.cdiv(n, cfg.tn), split)
    decode.decode_kernel[grid](
        x_rot, y, ws, bias if bias is not None else y, *args,
        batch, n, k_pad, qw.n_groups, qw.group_size, prep.inv_sqrt_g, per_split, n_tiles,
        x_rot.stride(0), y.stride(0), **consts,
        TN=cfg.tn, TK=cfg.tk, BB=bb, PARTIAL=split > 1, HAS_BIAS=bias is not None,
        SCALAR_SCALE=qw.group_size % cfg.tk == 0, EVEN=k_pad % cfg.tk == 0,
        **_dot_types(y.dtype), num_warps=cfg.num_warps, num_stages=cfg.num_stages)
    if split > 1:
        total = batch * n
        block = 1024
        decode.finalize_kernel[(triton.cdiv(total, block),)](
            ws, y, bias if bias is not None else y, total, n, SPLIT=split, HAS_BIAS=bias is not None,
            BLOCK=block, num_warps=4)


def _launch_prefill(cfg: PrefillConfig, qw, prep, x_rot, y, bias, batch):
    n, k_pad = qw.out_features, qw.k_padded
    args, consts = prep.prefill_args, prep.prefill_consts
    grid = (triton.cdiv(batch, cfg.bm) * triton.cdiv(n, cfg.bn),)
    prefill.prefill_kernel[grid](
        x_rot, y, bias if bias is not None else y, *args,
        batch, n, k_pad, qw.n_groups, qw.group_size, prep.inv_sqrt_g, triton.cdiv(k_pad, cfg.tk),
        x_rot.stride(0), y.stride(0), **consts,
        BN=cfg.bn, BM=cfg.bm, TK=cfg.tk, GROUP_M=cfg.group_m, HAS_BIAS=bias is not None,
        SCALAR_SCALE=qw.group_size % cfg.tk == 0, EVEN=k_pad % cfg.tk == 0,
        **_dot_types(y.dtype), num_warps=cfg.num_warps, num_stages=cfg.num_stages)


def _batch_bucket(batch: int) -> int:
    return batch if batch <= 2 else min(triton.next_power_of_2(batch), 4096)


def run(x2: torch.Tensor, qw: QuantizedWeight, bias: torch.Tensor | None) -> torch.Tensor:
    """x2 [B, K] -> y [B, N] in x2's dtype (inputs already validated)."""
    batch = x2.shape[0]
    n = qw.out_features
    if x2.is_cuda and x2.device.index != torch.cuda.current_device():
        # Triton launches on the current device: make it x's (multi-GPU callers).
        with torch.cuda.device(x2.device):
            return run(x2, qw, bias)
    if _replays and batch and (bias is None or bias.is_contiguous()) and not chunked.capturing(x2.device):
        y = _try_replay(x2, qw, bias)
        if y is not None:
            return y
    y = torch.empty((batch, n), dtype=x2.dtype, device=x2.device)
    if batch == 0:
        return y
    prep = prepare_weight(qw)
    if bias is not None:
        bias = bias.contiguous()
    if prep.lut4_ok.get(x2.dtype) is None:
        prep.lut4_ok[x2.dtype] = lut4_reason(qw, x2.dtype) is None
    if prep.lut4_ok[x2.dtype] and lut4_enabled():
        _run_lut4(x2, qw, prep, y, bias, batch)
    elif batch <= DECODE_MAX_BATCH:
        # The decode kernel reads x_rot as fp32: it is tiny and keeps the FMA path exact.
        x_rot = rotate.rotate(x2, qw.rotation_block, qw.seed, qw.k_padded, torch.float32)
        key = ("decode", n, qw.k_padded, _batch_bucket(batch), prep.key, x2.dtype)
        cfg = _choose(key, lambda: decode_candidates(n, qw.k_padded, batch, prep.driver_width, x2.device),
                      lambda c: _launch_decode(c, qw, prep, x_rot, y, bias, batch))
        _launch_decode(cfg, qw, prep, x_rot, y, bias, batch)
    else:
        rot_dtype = torch.float32 if interpreting() and x2.dtype == torch.bfloat16 else x2.dtype
        x_rot = rotate.rotate(x2, qw.rotation_block, qw.seed, qw.k_padded, rot_dtype)
        key = ("prefill", n, qw.k_padded, _batch_bucket(batch), prep.key, x2.dtype)
        cfg = _choose(key, lambda: prefill_candidates(n, qw.k_padded, batch, prep.driver_width),
                      lambda c: _launch_prefill(c, qw, prep, x_rot, y, bias, batch))
        _launch_prefill(cfg, qw, prep, x_rot, y, bias, batch)
    return y
