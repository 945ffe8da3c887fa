"""Host side of the cutile backend: per-weight device data, tiling choice, launches, compile stats.

One call is two or three launches on the caller's current CUDA stream:

1. rotate.py: x [B, K] -> slice-planar copies of rotate(x) (one per distinct slice count
   the passes need), in the matmul operand dtype;
2. fused.py: every pass of the weight in ONE launch, sharing those copies;
3. reduce.py: only with split-K (decode), sums the fp32 partials, adds bias, casts.

Extra memory: the activation copies (B * K_pad per distinct slice count, x's dtype) and,
with split-K, an fp32 workspace of SPLIT * B * N; W_hat is never formed.  For decode
batches (B <= 16) these are kept and reused per (stream, shape), so a call allocates
only its output; for larger batches they are allocated per call.

Batch 1 uses fused_gemv_kernel (2-D FMA accumulator, norms folded into the Horner
coefficients); batch 2-16 and prefill use fused_matmul_kernel (tensor cores).
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

from ..format import QuantizedWeight

# Plane layouts the fused kernel reads: widths of (first plane, second plane or 0).
SUPPORTED_BITS = {2: (2, 0), 3: (2, 1), 4: (4, 0), 8: (8, 0)}
DECODE_MAX_BATCH = 16
MAX_SPLIT = 8

# ---------------------------------------------------------------------------
# Per-weight device data (cached per QuantizedWeight object)
# ---------------------------------------------------------------------------
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
            table = (p.levels.double() / math.sqrt(g)).float().to(dev).contiguous()
        passes.append(PassData(p0, p1, terms, planes[0], planes[1] if p1 else planes[0],
                               p.norms.contiguous(), coef, table))
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


def choose_tiling(batch: int, n: int, k_tiles: int, sms: int, x_dtype: torch.dtype) -> Tiling:
    """Decode (B <= 16): TB = 16, split-K until there are >= 2 programs per SM.
    Prefill: TB = 64 or 128 (fp32: 64, to keep the fp32 tiles in registers), no split."""
    tn = 128
    if batch <= DECODE_MAX_BATCH and _env_override("TQ_CUTILE_DECODE"):
        tn, tb, split = _env_override("TQ_CUTILE_DECODE")
        return Tiling(tn, tb, split, "decode")
    if batch > DECODE_MAX_BATCH and _env_override("TQ_CUTILE_PREFILL"):
        tn, tb = _env_override("TQ_CUTILE_PREFILL")
        return Tiling(tn, tb, 1, "prefill")
    if batch == 1:
        # GEMV path (fused_gemv_kernel): measured on the H100 (8192x8192 and 8192x28672,
        # TN = 128), split 2 beat splits 4 and 8 and TN 64 / 256; so split only until the
        # programs about cover the SMs once (at least 2 when K allows: 28672x8192 ran with 2).
        n_tiles = -(-n // tn)
        split = 2 if k_tiles >= 8 else 1
        while split < MAX_SPLIT and n_tiles * split < 0.9 * sms and k_tiles // (split * 2) >= 2:
            split *= 2
        return Tiling(tn, 1, split, "decode")
    if batch <= DECODE_MAX_BATCH:
        tb = 16
        n_tiles = -(-n // tn)
        split = 1
        while split < MAX_SPLIT and n_tiles * split < 2 * sms and k_tiles // (split * 2) >= 2:
            split *= 2
        return Tiling(tn, tb, split, "decode")
    tb = 64 if (x_dtype == torch.float32 or batch <= 64) else 128
    if x_dtype == torch.float32:
        tn = 64
    return Tiling(tn, tb, 1, "prefill")


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


def _launch(kernel, grid, args, key):
    import cuda.tile as ct
    stream = torch.cuda.current_stream()
    if key in _seen:
        ct.launch(stream, grid, kernel, args)
        return
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    ct.launch(stream, grid, kernel, args)
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
    seen: bool = False


_scratch_pool: dict = {}


def _plan(qw, wd: WeightData, bsz: int, dt, has_bias: bool, dev, stream_id: int) -> Plan:
    from .fused import fused_gemv_kernel, fused_matmul_kernel
    key = (bsz, dt, has_bias, stream_id)
    plan = wd.plans.get(key)
    if plan is not None:
        return plan
    n, kp, r = qw.out_features, qw.k_padded, qw.rotation_block
    vs = tuple(sorted({p.slices for p in wd.passes}))
    tbr = rotate_tb(r)
    rot_consts = (r, tbr, vs[0], vs[1] if len(vs) > 1 else 0)
    t = choose_tiling(bsz, n, wd.k_tiles, _sm_count(dev), dt)
    pa = wd.passes[0]
    pb = wd.passes[1] if len(wd.passes) > 1 else None
    pcon = (pa.p0, pa.p1, pa.terms, pb.p0 if pb else 0, pb.p1 if pb else 0, pb.terms if pb else 0)
    if bsz == 1 and t.path == "decode" and not _env_override("TQ_CUTILE_NO_GEMV"):
        kern, consts = fused_gemv_kernel, pcon + (t.tn, wd.tk, t.split, has_bias)
        t = dataclasses.replace(t, path="gemv")
    else:
        kern, consts = fused_matmul_kernel, pcon + (t.tn, wd.tk, t.tb, t.split, has_bias)
    red_tb = 16
    plan = Plan(t, vs, (-(-bsz // tbr), kp // r, 1), rot_consts, kern, (-(-n // t.tn), t.split, -(-bsz // t.tb)),
                consts, (-(-bsz // red_tb), -(-n // 128), 1) if t.split > 1 else None,
                (t.split, red_tb, 128, has_bias) if t.split > 1 else None, None)
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


def _scratch(plan: Plan, bsz, n, kp, dt, dev) -> dict:
    sc = {v: torch.empty((v, bsz, kp // v), dtype=dt, device=dev) for v in plan.vs}
    if plan.tiling.split > 1:
        sc["ws"] = torch.empty((plan.tiling.split, bsz, n), dtype=torch.float32, device=dev)
    return sc


def run(x2: torch.Tensor, qw: QuantizedWeight, bias: torch.Tensor | None) -> torch.Tensor:
    """x2: contiguous [B, K] cuda tensor (bf16/fp16/fp32).  Returns [B, N] in x2's dtype."""
    import cuda.tile as ct
    from .reduce import splitk_reduce_kernel
    from .rotate import rotate_kernel

    wd = weight_data(qw)
    bsz, n, kp = x2.shape[0], qw.out_features, qw.k_padded
    dt, dev = x2.dtype, x2.device
    if bsz == 0:
        return torch.empty((0, n), dtype=dt, device=dev)
    stream = torch.cuda.current_stream(dev)
    has_bias = bias is not None
    plan = _plan(qw, wd, bsz, dt, has_bias, dev, stream.cuda_stream)
    sc = plan.scratch or _scratch(plan, bsz, n, kp, dt, dev)
    y = torch.empty((bsz, n), dtype=dt, device=dev)
    bias2 = bias.reshape(1, n) if has_bias else wd.signs.view(1, -1)
    if has_bias and not bias2.is_contiguous():
        bias2 = bias2.contiguous()
    c0 = sc[plan.vs[0]]
    c1 = sc[plan.vs[1]] if len(plan.vs) > 1 else c0
    pa = wd.passes[0]
    pb = wd.passes[1] if len(wd.passes) > 1 else pa
    target = sc["ws"] if plan.tiling.split > 1 else y
    launches = [
        (rotate_kernel, plan.rotate_grid, (x2, wd.signs, c0, c1, *plan.rotate_consts)),
        (plan.fused_kernel, plan.fused_grid,
         (target, bias2, sc[pa.slices], pa.plane0, pa.plane1, pa.norms, pa.coef, pa.table,
          sc[pb.slices], pb.plane0, pb.plane1, pb.norms, pb.coef, pb.table,
          wd.k_tiles, wd.tiles_per_group, *plan.fused_consts)),
    ]
    if plan.reduce_grid:
        launches.append((splitk_reduce_kernel, plan.reduce_grid, (target, bias2, y, *plan.reduce_consts)))
    if plan.seen:
        for kern, grid, args in launches:
            ct.launch(stream, grid, kern, args)
        return y
    names = ("rotate", "gemv" if plan.tiling.path == "gemv" else "fused", "reduce")
    consts = (plan.rotate_consts, plan.fused_consts, plan.reduce_consts)
    for (kern, grid, args), name, c in zip(launches, names, consts):
        # first call of this plan: record the first-launch (JIT compile) time of each new variant
        _launch(kern, grid, args, (name, str(dt), str(args[0].dtype), str(pa.norms.dtype), str(bias2.dtype)) + c)
    plan.seen = True
    return y
