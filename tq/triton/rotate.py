# Activation rotation on the GPU: x_rot = rotate(x) (tq/rotation.py, rotate_torch / rotate_np).
#
# Math.  Per block of R = 2^r columns of the zero-padded row, rotate(x) = H_R (s * x) / sqrt(R)
# with s the seeded +-1 signs and H_R[i, j] = (-1)^popcount(i & j) (Sylvester).  H_R is a
# Kronecker product H_a (x) H_b whenever R = a * b, a and b powers of two, so a large block
# is done as a few passes, each a dense product of every "line" (a column of a at stride b,
# or b contiguous columns) with a small H_n, n <= MAX_DENSE.
#
# Tiling.  A tile is TM lines of n elements ([TM, n]; the lines of all batch rows are one
# flat list, so tiny rows still fill a tile), computed as tile @ H_n with tl.dot.  H_n is
# built in registers from its index formula (a parity of i & j, about ten integer ops on
# each of n*n elements) instead of being loaded.  Programs are persistent (at most
# PROGRAMS_PER_SM per SM, each looping over tiles of TILE_ELEMENTS): at n = 128 building H_n
# costs more than a whole 32-line tile, so it is built once per program.  Measured on the H100
# at B = 2048 (bf16, graph replay): 40 us at K = 8192 and 122 us at K = 28672 with 4096-element
# tiles and 2 programs per SM (a copy of the same bytes: 25 / 80 us; third session, one
# program per 8192-element tile: 49 us at K = 8192); larger tiles were slower, and loading
# H_n instead of building it gained nothing at decode sizes
# (experiments/h100-2026-11-25-session4/probes/probe_rot4.log, probe_decode_pdl.log).
# Batches of >= BLOCK_TILE_ROWS rows with one pass (R <= 128) take _rotate_blocks_kernel
# instead: a tile is 64 rows of one block, so its lines share the block's R signs (a line-flat
# tile loads an fp32 sign per element: more bytes than x) and M = 64 makes tl.dot a wgmma
# (at TM = 32 it was mma.sync, re-reading H from shared memory per 16 rows).  H200, B = 2048:
# 22.0 us at K = 8192, 63.9 us at K = 28672 (1.20 / 1.10x a copy), against 40.4 / 122.4 us
# for the line-flat tiles (experiments/h200-2026-12-02-session10/probes/probe_rotblocks.log).
#
# Why a matrix product: for bf16/fp16 activations the first pass multiplies values that
# are exactly representable (x * +-1) by exact +-1 entries with fp32 accumulation, so
# the tensor cores compute it with no rounding beyond the final store; a butterfly would
# need log2(n) register shuffles per element.  fp32 activations use input_precision
# "ieee" (exact fp32 FMA) so the fp32 path stays below 1e-4 relative error.
# Passes after the first (R > MAX_DENSE, mostly full-row groups) work on an fp32
# scratch buffer; the last pass applies 1/sqrt(R) and stores in the requested dtype.
from __future__ import annotations

import functools
import math
import os

import torch
import triton
import triton.language as tl

from ..rotation import is_power_of_two, random_signs
from ..settings import int_setting, switch_setting
from . import launch

MAX_DENSE = 128  # largest H_n built in registers: n*n/num_threads stays small
MIN_DENSE = 16   # tl.dot needs every dimension >= 16
TILE_ELEMENTS = 4096  # TM * n per tile
MIN_PROGRAMS = 8
ROTATE_STAGES = 3
PROGRAMS_PER_SM = 2       # persistent programs per SM on a GPU
INTERPRETER_PROGRAMS = 0  # under the interpreter: 0 = one program per tile (tests lower it to loop)
# Single-pass rotations (R <= MAX_DENSE) of batches >= BLOCK_TILE_ROWS: [TM, R] tiles of one block
# (_rotate_blocks_kernel), persistent programs.
BLOCK_TILE_ROWS = 64
BLOCK_WARPS = 4
BLOCK_PROGRAMS_PER_SM = 2
BLOCK_STAGES = 3


@triton.jit
def _hadamard(N: tl.constexpr, DOT_DTYPE: tl.constexpr):
    # H_N[i, j] = (-1)^popcount(i & j) from the index bits (N <= 128: seven bits, three folds)
    i = tl.arange(0, N)
    par = i[:, None] & i[None, :]
    par = par ^ (par >> 4)
    par = par ^ (par >> 2)
    par = par ^ (par >> 1)
    return (1 - 2 * (par & 1)).to(DOT_DTYPE)


@triton.jit
def _rotate_pass_kernel(in_ptr, out_ptr, sign_ptr, n_lines, n_valid, ld_in, k_padded, scale, n_tiles,
                        N: tl.constexpr, STRIDE: tl.constexpr, TM: tl.constexpr,
                        FIRST: tl.constexpr, PREC: tl.constexpr, DOT_DTYPE: tl.constexpr, PADDED: tl.constexpr):
    h = _hadamard(N, DOT_DTYPE)
    for tile in range(tl.program_id(0), n_tiles, tl.num_programs(0)):
        _rotate_tile(in_ptr, out_ptr, sign_ptr, h, tile, n_lines, n_valid, ld_in, k_padded, scale,
                     N, STRIDE, TM, FIRST, PREC, DOT_DTYPE, PADDED)


@triton.jit
def _rotate_tile(in_ptr, out_ptr, sign_ptr, h, tile, n_lines, n_valid, ld_in, k_padded, scale,
                 N: tl.constexpr, STRIDE: tl.constexpr, TM: tl.constexpr,
                 FIRST: tl.constexpr, PREC: tl.constexpr, DOT_DTYPE: tl.constexpr, PADDED: tl.constexpr):
    line = tile * TM + tl.arange(0, TM)
    i = tl.arange(0, N)
    # Line L covers positions (L // STRIDE) * N * STRIDE + L % STRIDE + i * STRIDE of the
    # flat [B * K_pad] array; STRIDE = 1 means N contiguous columns.
    base = (line // STRIDE).to(tl.int64) * (N * STRIDE) + line % STRIDE
    pos = base[:, None] + (i * STRIDE)[None, :]
    live = (line < n_lines)[:, None]
    if FIRST:
        if STRIDE == 1:
            # A line of N contiguous columns never crosses a row (N divides K_pad): its row
            # and first column are per-line values, not a 64-bit division per element.
            row1 = (line.to(tl.int64) * N) // k_padded
            col1 = (line.to(tl.int64) * N - row1 * k_padded).to(tl.int32)
            row = row1[:, None]
            col = col1[:, None] + i[None, :]
        else:
            row = pos // k_padded
            col = pos - row * k_padded
        if PADDED:
            ok = live & (col < n_valid)
        else:
            ok = live  # constant along each line: the loads stay vectorized
        v = tl.load(in_ptr + row * ld_in + col, mask=ok, other=0.0)
        sgn = tl.load(sign_ptr + col, mask=ok, other=0.0)
        v = v.to(DOT_DTYPE) * sgn.to(DOT_DTYPE)
    else:
        v = tl.load(in_ptr + pos, mask=live, other=0.0).to(DOT_DTYPE)
    r = tl.dot(v, h, input_precision=PREC) * scale
    tl.store(out_ptr + pos, r.to(out_ptr.dtype.element_ty), mask=live)


@triton.jit
def _rotate_blocks_kernel(in_ptr, out_ptr, sign_ptr, rows, n_valid, ld_in, scale, n_blocks, n_tiles,
                          N: tl.constexpr, TM: tl.constexpr, PREC: tl.constexpr, DOT_DTYPE: tl.constexpr,
                          PADDED: tl.constexpr):
    """Single-pass rotation (R = N <= MAX_DENSE) of a batch of >= TM rows: a tile is TM rows of
    one rotation block, [TM, N] at (row tile, block), so every line of the tile shares the
    block's N signs (one [N] load instead of a [TM, N] one; the line-flat tiles of
    _rotate_pass_kernel load a sign per element, more bytes than x itself)."""
    h = _hadamard(N, DOT_DTYPE)
    i = tl.arange(0, N)
    for tile in range(tl.program_id(0), n_tiles, tl.num_programs(0)):
        # row-tile major: concurrent programs read neighbouring blocks of the same rows
        blk = tile % n_blocks
        r = (tile // n_blocks) * TM + tl.arange(0, TM)
        col = blk * N + i
        live = r < rows
        if PADDED:
            ok = live[:, None] & (col < n_valid)[None, :]
            sgn = tl.load(sign_ptr + col, mask=col < n_valid, other=0.0)
        else:
            ok = live[:, None]
            sgn = tl.load(sign_ptr + col)
        v = tl.load(in_ptr + r[:, None].to(tl.int64) * ld_in + col[None, :], mask=ok, other=0.0)
        v = v.to(DOT_DTYPE) * sgn.to(DOT_DTYPE)[None, :]
        y = tl.dot(v, h, input_precision=PREC) * scale
        tl.store(out_ptr + r[:, None].to(tl.int64) * (n_blocks * N) + col[None, :], y.to(out_ptr.dtype.element_ty),
                 mask=live[:, None])


_launcher = launch.Launcher(_rotate_pass_kernel)
_blocks_launcher = launch.Launcher(_rotate_blocks_kernel)


def factor_block(block: int) -> list[int]:
    """Split a rotation block into Kronecker factors in [MIN_DENSE, MAX_DENSE], largest first."""
    if not is_power_of_two(block) or block < MIN_DENSE:
        raise ValueError(f"rotation block must be a power of two >= {MIN_DENSE}, got {block}")
    factors = []
    rest = block
    while rest > MAX_DENSE:
        f = MAX_DENSE if rest // MAX_DENSE >= MIN_DENSE else rest // MIN_DENSE
        factors.append(f)
        rest //= f
    factors.append(rest)
    return factors


def tile_elements() -> int:
    """TQ_TRITON_ROTATE_TILE: elements per tile, a power of two from 1024 to 65536 (default
    4096; 8192-32768 measured slower on the H100)."""
    return int_setting("TQ_TRITON_ROTATE_TILE", TILE_ELEMENTS, lambda v: 1024 <= v <= 65536 and is_power_of_two(v),
                       f"a power of two from 1024 to 65536 (elements per rotation program, default {TILE_ELEMENTS})")


@functools.lru_cache(maxsize=64)
def _signs(k_padded: int, seed: int, device: torch.device) -> torch.Tensor:
    return torch.as_tensor(random_signs(k_padded, seed), dtype=torch.float32, device=device)


@functools.lru_cache(maxsize=256)
def _plan(rows: int, k: int, block: int, k_padded: int, in_dtype: torch.dtype, out_dtype: torch.dtype,
          interpreting: bool, tile: int = TILE_ELEMENTS, max_programs: int = 0) -> tuple:
    """Launch parameters of every pass (computed once per shape: the host path is hot at B=1)."""
    factors = factor_block(block)
    exact_input = in_dtype in (torch.float16, torch.bfloat16)
    total = rows * k_padded
    # Inner (contiguous) factor first so the pass that reads x reads whole runs of it.
    strides, acc = [], 1
    for f in reversed(factors):
        strides.append((f, acc))
        acc *= f
    passes = []
    for p, (n, stride) in enumerate(strides):
        first, last = p == 0, p == len(strides) - 1
        # (The interpreter's tl.dot mishandles bf16 operands: it takes the fp32 route there.)
        if first and exact_input and not interpreting:
            dot_dtype, prec = (tl.bfloat16 if in_dtype == torch.bfloat16 else tl.float16), "tf32"
        elif in_dtype == torch.float32 or out_dtype == torch.float32 or interpreting:
            # exact fp32 when the caller keeps fp32 (the fp32 decode path; tests at 1e-5);
            # tf32 only where the output is rounded to bf16/fp16 anyway
            dot_dtype, prec = tl.float32, "ieee"
        else:
            dot_dtype, prec = tl.float32, "tf32"
        n_lines = total // n
        # Small batches: at least MIN_PROGRAMS programs, so one CTA does not rotate a whole row alone.
        tm = max(MIN_DENSE, min(tile // n, triton.next_power_of_2(triton.cdiv(n_lines, MIN_PROGRAMS))))
        consts = dict(N=n, STRIDE=stride, TM=tm, FIRST=first, PREC=prec, DOT_DTYPE=dot_dtype, PADDED=k < k_padded)
        warps = 8 if tm * n >= 16384 else 4
        # (the persistent loop is software-pipelined: 3 stages of a 16384-element tile need
        # 256 KiB of shared memory, over the H100's 227 KiB; larger tiles run unpipelined)
        stages = ROTATE_STAGES if tm * n <= 8192 else 1
        # (key: the specialization classes of this pass's integer arguments; the launcher
        # adds the constexprs and rotate() the per-call pointer and stride classes)
        n_tiles = triton.cdiv(n_lines, tm)
        grid = min(n_tiles, max_programs) if max_programs > 0 else n_tiles
        passes.append(dict(grid=(grid,), n_lines=n_lines, n_tiles=n_tiles,
                           key=(launch.spec(n_lines), launch.spec(k_padded), launch.spec(n_tiles)),
                           scale=1.0 / math.sqrt(block) if last else 1.0, first=first, last=last,
                           consts=consts, warps=warps, stages=stages))
    needs_scratch = len(passes) > 1 and out_dtype != torch.float32
    return tuple(passes), needs_scratch


def rotate(x2: torch.Tensor, block: int, seed: int, k_padded: int, out_dtype: torch.dtype) -> torch.Tensor:
    """x2 [B, K] (unit stride along K) -> rotate(x2) zero-padded to [B, K_pad], in out_dtype."""
    b, k = x2.shape
    if x2.stride(1) != 1:
        x2 = x2.contiguous()
    out = torch.empty((b, k_padded), dtype=out_dtype, device=x2.device)
    if b == 0:
        return out
    signs = _signs(k_padded, int(seed), x2.device)
    interpreting = os.environ.get("TRITON_INTERPRET", "0") == "1"
    passes, needs_scratch = _plan(b, k, block, k_padded, x2.dtype, out_dtype, interpreting, tile_elements(),
                                  INTERPRETER_PROGRAMS if interpreting else PROGRAMS_PER_SM * launch.sm_count(x2.device))
    if len(passes) == 1 and b >= BLOCK_TILE_ROWS and blocks_enabled():
        _rotate_blocks(x2, out, signs, block, k, k_padded, passes[0], interpreting)
        return out
    scratch = torch.empty((b, k_padded), dtype=torch.float32, device=x2.device) if needs_scratch else out
    src, ld = x2, x2.stride(0)
    for i, p in enumerate(passes):
        dst = out if p["last"] else scratch
        # (launch.py: the key holds what Triton specializes on; signs, scratch and out are fresh.)
        key = (i, p["key"], src.dtype, dst.dtype, src.device, launch.ptr_spec(src), launch.spec(ld), launch.spec(k))
        _launcher(key, p["grid"], (src, dst, signs, p["n_lines"], k, ld, k_padded, p["scale"], p["n_tiles"]), p["consts"],
                  p["warps"], p["stages"])
        src, ld = dst, k_padded
    return out


def blocks_enabled() -> bool:
    """TQ_TRITON_ROTATE_BLOCKS=0 keeps the line-flat tiles at every batch (comparisons)."""
    return switch_setting("TQ_TRITON_ROTATE_BLOCKS", True, "0: line-flat rotation tiles at every batch")


def _rotate_blocks(x2, out, signs, block: int, k: int, k_padded: int, p: dict, interpreting: bool) -> None:
    b = x2.shape[0]
    n_blocks = k_padded // block
    n_tiles = triton.cdiv(b, BLOCK_TILE_ROWS) * n_blocks
    max_programs = INTERPRETER_PROGRAMS if interpreting else BLOCK_PROGRAMS_PER_SM * launch.sm_count(x2.device)
    programs = min(n_tiles, max_programs) if max_programs > 0 else n_tiles
    c = p["consts"]
    consts = dict(N=block, TM=BLOCK_TILE_ROWS, PREC=c["PREC"], DOT_DTYPE=c["DOT_DTYPE"], PADDED=k < k_padded)
    key = ("blocks", launch.spec(b), launch.spec(k_padded), launch.spec(n_tiles), x2.dtype, out.dtype, x2.device,
           launch.ptr_spec(x2), launch.spec(x2.stride(0)), launch.spec(k))
    _blocks_launcher(key, (programs,), (x2, out, signs, b, k, x2.stride(0), p["scale"], n_blocks, n_tiles), consts,
                     BLOCK_WARPS, BLOCK_STAGES)
