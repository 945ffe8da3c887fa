# tq/triton/lutmma.py without epilogue.patch (for probe_epilogue.py, which runs with the patch
# applied and needs the unpatched kernels beside the patched ones in one process).
# Decode (batch 1-16) on the tensor cores with no shared memory: mma.sync fed straight from
# the registers the 4-bit lookup (lut4.py) writes.  Reference: tq/reference/matmul.py.
#
# Why.  The FMA GEMV of lutmm.py spends about 7 instructions per weight (2.6 lookup, then
# bf16 -> fp32 conversion, multiply, add, scale) and issue-bound at 0.64 IPC it reached only
# 1.1-1.4 TB/s; its tl.dot form (B >= 2) routes the dequantized tile through shared memory
# (st.shared, ldmatrix, barriers, wgmma waits).  Here each thread's lookup output IS its A
# fragment of `mma.sync.m16n8k16`: one mma per 256 weights per warp, so beside the lookup a
# weight costs about 0.2 instructions, at any batch up to 16.
#
# Fragments.  For m16n8k16 lane (g, t) = (lane // 4, lane % 4) holds A rows {g, g+8} at k
# {2t, 2t+1, 2t+8, 2t+9}, B (= x^T) column n = g at the same k, and C rows {g, g+8} at
# n {2t, 2t+1}.  Only the pairing of A's and B's k matters, so the k order is chosen to fit
# the packed format (tq/packing.py: in a 32-column block, byte j holds column j in its low
# nibble and column j + 16 in its high nibble).  Lane t of a row holds the 16 bytes of
# block t of a 128-column tile, i.e. columns 32t..32t+31; its word w (bytes 4w..4w+3) gives,
# through the lookup, the bf16 pairs of columns 32t + 4w + 16h + {0,1} and + {2,3} (h = 0
# low nibbles, h = 1 high).  k-step s = (w, h) takes those two pairs as (k 2t,2t+1) and
# (k 2t+8,2t+9); B then needs exactly x[n, 32t + 2i .. 2i+1] for i = 0..15 in order, the
# lane's 32 contiguous activation columns: no permutation of x at all.
#
# Layout.  Every tensor the asm sees is [BN, 16] with 32-bit elements; element (r, c) is word
# c % 4 of lane t = c // 4 in row r.  Triton's natural layout for such a load is
# sizePerThread [1, 4], threadsPerWarp [8, 4], warpsPerCTA [W, 1]: lane (g, t) of warp w holds
# rows 8w + g + 8W*rep.  `pack = 8` hands one asm call two repetitions (rows ra, rb with
# rb = ra + 8W): those are the mma's rows g and g + 8 (any row pair works: only the C rows
# follow).  That layout is an assumption about Triton's choice, so the dispatcher checks the
# compiled TTGIR (`layout_ok`) before the first launch and otherwise keeps lutmm.py.
#
# TMA form.  lut4_mma_tma_kernel (Hopper and later) takes the weight tiles by TMA into a
# compiler-pipelined ring of shared-memory buffers instead of the register ring; at B = 9-16
# it is 8-17% faster (its docstring), at B <= 8 the register ring stays.
#
# Outputs.  The asm returns the tile's fp32 partials in C-fragment order: of the 8 elements
# of a call, the 4 of row ra are C(ra, n) for n = 2t, 2t+1, 8+2t, 9+2t and those of rb the
# same, so element (r, c) holds y[batch(c), row r] with batch(c) = 2(c // 4) + c % 2 +
# 8((c % 4) // 2).  The group scale multiplies the partial (one FFMA per element per tile).
import functools
import re

import triton
import triton.language as tl

from tq.triton.lut4 import _BODY, _lookup_gather
from tq.triton.tiles import group_scale, store_split_k

LAYOUT = "sizePerThread = [1, 4], threadsPerWarp = [8, 4]"


# The lookup of one word for a SYMMETRIC codebook (levels[15 - i] == -levels[i] bit for bit
# in the operand dtype, e.g. Lloyd-Max for the Gaussian): only the 8 positive levels are
# tabled (lut4's T_LP/T_HP).  Index i < 8 is -levels[15 - i], i.e. magnitude 7 - i; i >= 8 is
# magnitude i - 8.  So each nibble's table position is j' = (i ^ 7 ^ (bit3 ? 7 : 0)) & 7
# (t7 = 7 where bit 3 is set, then one lop3 ~(q ^ t7) & 0x7777..., LUT 0x82), one prmt per
# byte plane and 4 weights looks up the magnitude, and the sign bit is or-ed into the high
# bytes where bit 3 is clear (lop3 a | (~b & c), LUT 0xF2; m: lut4's sign-replicate masks,
# 0xFF where bit 3 is set).  The integer (ALU) pipe runs these at half rate and bounds the
# kernel, so the shifts are done as multiplies on the FMA pipe: t7 = (b8 * 7) >> 3 =
# mul.hi(b8, 7 << 29), jh = mul.hi(j, 2^16), q4 = q * 16.  17 instructions per 8 weights,
# 14 of them on the ALU pipe (lut4: 21, 20).
_SYM_WORD = """
and.b32 b8, $W, 0x88888888;
mul.hi.u32 t7, b8, 0xE0000000;
lop3.b32 j, $W, t7, 0x77777777, 0x82;
mul.hi.u32 jh, j, 0x10000;
mul.lo.u32 q4, $W, 16;
prmt.b32 m0, q4, $W, 0xD9C8;
prmt.b32 m1, q4, $W, 0xFBEA;
prmt.b32 l0, a0, a1, j;
prmt.b32 h0, d0, d1, j;
lop3.b32 h0, h0, m0, 0x80808080, 0xF2;
prmt.b32 l1, a0, a1, jh;
prmt.b32 h1, d0, d1, jh;
lop3.b32 h1, h1, m1, 0x80808080, 0xF2;
"""


def _ptx(mma_type: str, n_tiles: int, symmetric: bool = False) -> str:
    """PTX of one asm call: 8 packed words (rows ra, rb) -> 8 fp32 partials.

    Operands: $0-$7 partials; $8-$15 the words (ra's 4, then rb's); then per n tile two x
    tensors of 8 registers (X0-X7: pairs 0-7 of the lane's columns, X8-X15: pairs 8-15; the
    first 4 of each are row ra's elements, i.e. pairs i, the next 4 pairs i + 4); then the
    four 64-bit tables T_LP, T_LN, T_HP, T_HN, 8 copies each (the first is used).
    """
    x0 = 16
    tables = x0 + 16 * n_tiles
    lines = _BODY.strip().splitlines()
    head = [ln for ln in lines if ln.startswith(".reg") or ln.startswith("mov.b64")]
    word = [ln for ln in lines[1:] if ln not in head]
    if symmetric:
        head = [".reg .b32 a0, a1, d0, d1, b8, t7, j, jh, q4, m0, m1, l0, h0, l1, h1;",
                "mov.b64 {a0, a1}, $5;", "mov.b64 {d0, d1}, $13;"]
        word = _SYM_WORD.strip().replace("$W", "$4").splitlines()
    # lut4's operands: $4 the word, $5/$9/$13/$17 the tables T_LP/T_LN/T_HP/T_HN
    table_of = {5: tables, 9: tables + 8, 13: tables + 16, 17: tables + 24}
    out = ["{", ".reg .b32 A<32>;", ".reg .f32 z;"]
    out += [re.sub(r"\$(\d+)", lambda m: f"${table_of[int(m.group(1))]}", ln) for ln in head]
    out.append("mov.f32 z, 0f00000000;")
    for u in range(8):
        out += [ln.replace("$4", f"${8 + u}") for ln in word]
        # lut4's stores: low nibbles of bytes 0,1 | bytes 2,3 | high nibbles of bytes 0,1 | 2,3
        out += [f"prmt.b32 A{4 * u + 0}, l0, h0, 0x6240;", f"prmt.b32 A{4 * u + 1}, l1, h1, 0x6240;",
                f"prmt.b32 A{4 * u + 2}, l0, h0, 0x7351;", f"prmt.b32 A{4 * u + 3}, l1, h1, 0x7351;"]
    lines = out
    outs = [("$0", "$1", "$4", "$5"), ("$2", "$3", "$6", "$7")]
    for nt in range(2):
        d = "{" + ", ".join(outs[nt]) + "}"
        if nt >= n_tiles:
            lines += [f"mov.f32 {o}, z;" for o in outs[nt]]
            continue
        xb = x0 + 16 * nt

        def xreg(i):  # pair i of the lane's 32 columns: X0-X3 ra, X4-X7 rb of the first tensor, ...
            return f"${xb + 8 * (i // 8) + i % 8}"
        first = True
        for w in range(4):
            for h in range(2):
                a = (f"A{4 * w + 2 * h}", f"A{4 * (4 + w) + 2 * h}", f"A{4 * w + 2 * h + 1}", f"A{4 * (4 + w) + 2 * h + 1}")
                b = (xreg(2 * w + 8 * h), xreg(2 * w + 8 * h + 1))
                c = "{z, z, z, z}" if first else d
                lines.append(f"mma.sync.aligned.m16n8k16.row.col.f32.{mma_type}.{mma_type}.f32 {d}, "
                             f"{{{', '.join(a)}}}, {{{', '.join(b)}}}, {c};")
                first = False
    lines.append("}")
    return "\n".join(lines)


@functools.lru_cache(maxsize=None)
def ptx_for(dtype_name: str, batch_tile: int, symmetric: bool) -> str:
    """The asm of a launch: operand dtype "bf16"/"f16", batch tile 8 or 16, symmetric lookup."""
    return _ptx(dtype_name, batch_tile // 8, symmetric)


def symmetric(level_bits) -> bool:
    """Whether 16 levels (uint16 bit patterns in the operand dtype) are sign-mirrored, with
    non-negative levels 8-15: what the symmetric lookup assumes."""
    bits = [int(b) for b in level_bits]
    return len(bits) == 16 and all(bits[15 - i] == bits[i] ^ 0x8000 for i in range(8)) \
        and all(b >> 15 == 0 for b in bits[8:])


CONSTRAINTS_8 = tl.constexpr(",".join(["=r"] * 8 + ["r"] * 24 + ["l"] * 32))
CONSTRAINTS_16 = tl.constexpr(",".join(["=r"] * 8 + ["r"] * 40 + ["l"] * 32))


def layout_ok(ttgir: str, num_warps: int) -> bool:
    """Whether every tensor the asm reads and writes has the layout the fragments assume."""
    defs = dict(re.findall(r"^(#\w+) = #\w+\.blocked<\{(.*?)\}>", ttgir, flags=re.M))
    want = f"{LAYOUT}, warpsPerCTA = [{num_warps}, 1], order = [1, 0]"
    lines = [ln for ln in ttgir.splitlines() if "elementwise_inline_asm" in ln]
    asm_lines = [ln for ln in lines if "mma.sync" in ln]
    if not asm_lines:
        return False
    # (the TMA kernel's x loads read a thread's 4 consecutive words through its first pointer)
    for ln in asm_lines + [ln for ln in lines if "ld.global.nc.v4" in ln]:
        for name in set(re.findall(r"tensor<\d+x16x[^,]+, (#\w+)>", ln)) or {None}:
            if name is None or not defs.get(name, "").startswith(want):
                return False
    return True


@triton.jit
def _load_words(pl, norm_ptr, rows, t, g, n_groups, inv_sqrt_g, ld_pl, USE_ASM: tl.constexpr):
    """One pass's packed tile and its group scale: [BN, 16] int32 words (asm) or [BN, 64] bytes."""
    if USE_ASM:
        w = tl.load(pl.to(tl.pointer_type(tl.int32)) + rows[:, None] * (ld_pl // 4) + t * 16
                    + tl.arange(0, 16)[None, :])
    else:
        w = tl.load(pl + rows[:, None] * ld_pl + t * 64 + tl.arange(0, 64)[None, :])
    sc = group_scale(norm_ptr, rows, g, n_groups, inv_sqrt_g)
    return w, sc


@triton.jit
def _load_passes(a_pl, a_norm, r_pl, r_norm, rows, t, tiles_per_group, n_groups, inv_sqrt_g, ld_pl,
                 RESIDUAL: tl.constexpr, USE_ASM: tl.constexpr):
    g = t // tiles_per_group
    wa, sa = _load_words(a_pl, a_norm, rows, t, g, n_groups, inv_sqrt_g, ld_pl, USE_ASM)
    if RESIDUAL:
        wr, sr = _load_words(r_pl, r_norm, rows, t, g, n_groups, inv_sqrt_g, ld_pl, USE_ASM)
    else:
        wr = wa
        sr = sa
    return wa, sa, wr, sr


@triton.jit
def _ld4(ptrs, VIA_ASM: tl.constexpr):
    """int32s at [BN, 16] pointers.  VIA_ASM: one 16-byte ld.global.nc per thread and row, which
    the compiler's software pipeline leaves alone: x is the same for every row of a lane group,
    and pipelined like the weight it would be copied through shared memory once per row."""
    if VIA_ASM:
        return tl.inline_asm_elementwise("ld.global.nc.v4.b32 {$0, $1, $2, $3}, [$4];", "=r,=r,=r,=r,l,l,l,l",
                                         [ptrs], dtype=tl.int32, is_pure=True, pack=4)
    else:
        return tl.load(ptrs)


@triton.jit
def _load_x(x_ptr, t, x_off0, x_off1, xr0, xr1, ld_x, batch_of_c, B, BB: tl.constexpr, USE_ASM: tl.constexpr,
            VIA_ASM: tl.constexpr = False):
    """The tile's activation: 2 (B <= 8) or 4 [BN, 16] tensors of bf16/fp16 pairs (asm; see
    lut4_mma_kernel), or [64, 16] columns in the asm's batch order (interpreter)."""
    if USE_ASM:
        x32 = x_ptr.to(tl.pointer_type(tl.int32)) + t * 64
        xa = _ld4(x32 + xr0 + x_off0, VIA_ASM)
        xb = _ld4(x32 + xr0 + x_off1, VIA_ASM)
        if BB == 8:
            xc = xa
            xd = xb
        else:
            xc = _ld4(x32 + xr1 + x_off0, VIA_ASM)
            xd = _ld4(x32 + xr1 + x_off1, VIA_ASM)
    else:
        cb = tl.arange(0, 64)
        n = tl.minimum(batch_of_c, B - 1).to(tl.int64)
        xp = x_ptr + n[None, :] * ld_x + (t * 128 + 32 * (cb // 16) + cb % 16)[:, None]
        xa = tl.load(xp)
        xb = tl.load(xp + 16)
        xc = xa
        xd = xb
    return xa, xb, xc, xd


@triton.jit
def _partial(w, xa, xb, xc, xd, lp, ln, hp, hn, lv_ptr, ASM: tl.constexpr, BB: tl.constexpr,
             USE_ASM: tl.constexpr):
    """[BN, 16] fp32 partial of one 128-column tile (see the file comment for the element order)."""
    if USE_ASM:
        if BB == 8:
            part = tl.inline_asm_elementwise(ASM, CONSTRAINTS_8, [w, xa, xb, lp, ln, hp, hn],
                                             dtype=tl.float32, is_pure=True, pack=8)
        else:
            part = tl.inline_asm_elementwise(ASM, CONSTRAINTS_16, [w, xa, xb, xc, xd, lp, ln, hp, hn],
                                             dtype=tl.float32, is_pure=True, pack=8)
    else:
        # Interpreter: the same partial from the gathered levels and a plain dot.
        lo, hi = _lookup_gather(w, lv_ptr)
        part = tl.dot(lo, xa) + tl.dot(hi, xb)
    return part


@triton.jit
def _program(B, N, ld_x, tiles_per_split, n_tiles, BN: tl.constexpr, WARPS: tl.constexpr, USE_ASM: tl.constexpr):
    """What program (pid, pid_k) covers: its rows (raw and clamped into the weight), the batch
    index of each of the 16 output columns, the offsets of the x tensors (see the file
    comment) and its K tiles [t_begin, t_end) (last_t: the last, for clamped prefetches)."""
    pid = tl.program_id(0)
    pid_k = tl.program_id(1)
    t_begin = pid_k * tiles_per_split
    t_end = tl.minimum(t_begin + tiles_per_split, n_tiles)
    last_t = tl.maximum(t_end - 1, 0)
    r_idx = tl.arange(0, BN)
    rows_raw = pid * BN + r_idx
    rows = tl.minimum(rows_raw, N - 1).to(tl.int64)
    c = tl.arange(0, 16)
    batch_of_c = 2 * (c // 4) + c % 2 + 8 * ((c % 4) // 2)
    if USE_ASM:
        # x as bf16/fp16 pairs (int32): element (r, c) of the first x tensor is pair
        # c % 4 + 4*rep of lane c // 4, rep = which of the asm's two rows r is.
        rep = (r_idx // (8 * WARPS)) % 2
        x_off0 = 16 * (c[None, :] // 4) + c[None, :] % 4 + 4 * rep[:, None]
        x_off1 = x_off0 + 8
        xr0 = (tl.minimum(r_idx % 8, B - 1).to(tl.int64) * (ld_x // 2))[:, None]
        xr1 = (tl.minimum(r_idx % 8 + 8, B - 1).to(tl.int64) * (ld_x // 2))[:, None]
    else:
        x_off0 = 0
        x_off1 = 0
        xr0 = 0
        xr1 = 0
    return pid, pid_k, rows_raw, rows, batch_of_c, x_off0, x_off1, xr0, xr1, t_begin, t_end, last_t


@triton.jit
def lut4_mma_kernel(x_ptr, y_ptr, ws_ptr, lock_ptr, bias_ptr,
                    a_pl, a_norm, a_lv, a_lp, a_ln, a_hp, a_hn,
                    r_pl, r_norm, r_lv, r_lp, r_ln, r_hp, r_hn,
                    B, N, n_groups, inv_sqrt_g, tiles_per_group, tiles_per_split, n_tiles, split,
                    ld_pl, ld_x, ld_y,
                    BN: tl.constexpr, BB: tl.constexpr, WARPS: tl.constexpr, RESIDUAL: tl.constexpr,
                    PARTIAL: tl.constexpr, HAS_BIAS: tl.constexpr, USE_ASM: tl.constexpr,
                    UNROLL: tl.constexpr, DEPTH: tl.constexpr, ASM_A: tl.constexpr, ASM_R: tl.constexpr):
    """y[:B] = x_rot @ W_rot^T for B <= BB (8 or 16); program (i, s): rows [i*BN, (i+1)*BN), K range s.

    ASM_A / ASM_R: the asm of each pass (ptx_for: operand dtype, BB, symmetric lookup or not).

    The loads of tiles t + 1 .. t + DEPTH are issued before tile t is computed (a register
    ring): a warp that waits out the memory latency every tile leaves too few bytes in flight
    at the 20-25% occupancy these register counts allow (measured on the H100: ~1.3 TB/s
    without prefetch, 1.45-1.5 TB/s with one tile).
    """
    tl.static_assert(DEPTH >= 1 and DEPTH <= 3, "DEPTH: 1-3 weight tiles in flight (the register ring)")
    pid, pid_k, rows_raw, rows, batch_of_c, x_off0, x_off1, xr0, xr1, t_begin, t_end, last_t = _program(
        B, N, ld_x, tiles_per_split, n_tiles, BN, WARPS, USE_ASM)
    acc = tl.full([BN, 16], 0.0, tl.float32)
    # Weight tiles t+1 .. t+DEPTH are in flight while tile t is computed (a ring of
    # registers: 0 = now, 1, 2 = next); x, read from L2/L1 by every warp, one tile ahead.
    wa0, sa0, wr0, sr0 = _load_passes(a_pl, a_norm, r_pl, r_norm, rows, tl.minimum(t_begin, last_t),
                                      tiles_per_group, n_groups, inv_sqrt_g, ld_pl, RESIDUAL, USE_ASM)
    wa1, sa1, wr1, sr1 = wa0, sa0, wr0, sr0
    wa2, sa2, wr2, sr2 = wa0, sa0, wr0, sr0
    if DEPTH >= 2:
        wa1, sa1, wr1, sr1 = _load_passes(a_pl, a_norm, r_pl, r_norm, rows, tl.minimum(t_begin + 1, last_t),
                                          tiles_per_group, n_groups, inv_sqrt_g, ld_pl, RESIDUAL, USE_ASM)
    if DEPTH >= 3:
        wa2, sa2, wr2, sr2 = _load_passes(a_pl, a_norm, r_pl, r_norm, rows, tl.minimum(t_begin + 2, last_t),
                                          tiles_per_group, n_groups, inv_sqrt_g, ld_pl, RESIDUAL, USE_ASM)
    xa, xb, xc, xd = _load_x(x_ptr, tl.minimum(t_begin, last_t), x_off0, x_off1, xr0, xr1, ld_x, batch_of_c, B,
                             BB, USE_ASM)
    for t in tl.range(t_begin, t_end, loop_unroll_factor=UNROLL):
        wa_n, sa_n, wr_n, sr_n = _load_passes(a_pl, a_norm, r_pl, r_norm, rows, tl.minimum(t + DEPTH, last_t),
                                              tiles_per_group, n_groups, inv_sqrt_g, ld_pl, RESIDUAL, USE_ASM)
        xa_n, xb_n, xc_n, xd_n = _load_x(x_ptr, tl.minimum(t + 1, last_t), x_off0, x_off1, xr0, xr1, ld_x,
                                         batch_of_c, B, BB, USE_ASM)
        acc += _partial(wa0, xa, xb, xc, xd, a_lp, a_ln, a_hp, a_hn, a_lv, ASM_A, BB, USE_ASM) * sa0[:, None]
        if RESIDUAL:
            acc += _partial(wr0, xa, xb, xc, xd, r_lp, r_ln, r_hp, r_hn, r_lv, ASM_R, BB, USE_ASM) * sr0[:, None]
        if DEPTH == 1:
            wa0, sa0, wr0, sr0 = wa_n, sa_n, wr_n, sr_n
        elif DEPTH == 2:
            wa0, sa0, wr0, sr0 = wa1, sa1, wr1, sr1
            wa1, sa1, wr1, sr1 = wa_n, sa_n, wr_n, sr_n
        else:
            wa0, sa0, wr0, sr0 = wa1, sa1, wr1, sr1
            wa1, sa1, wr1, sr1 = wa2, sa2, wr2, sr2
            wa2, sa2, wr2, sr2 = wa_n, sa_n, wr_n, sr_n
        xa, xb, xc, xd = xa_n, xb_n, xc_n, xd_n
    # (split-K in one launch, as in lutmm.py)
    store_split_k(acc, y_ptr, ws_ptr, lock_ptr, bias_ptr, rows_raw, rows, batch_of_c, B, N, ld_y, pid, pid_k,
                  split, PARTIAL, HAS_BIAS)


@triton.jit
def lut4_mma_tma_kernel(x_ptr, y_ptr, ws_ptr, lock_ptr, bias_ptr,
                        a_desc, a_norm, a_lv, a_lp, a_ln, a_hp, a_hn,
                        r_desc, r_norm, r_lv, r_lp, r_ln, r_hp, r_hn,
                        B, N, n_groups, inv_sqrt_g, tiles_per_group, tiles_per_split, n_tiles, split, ld_x, ld_y,
                        BN: tl.constexpr, BB: tl.constexpr, WARPS: tl.constexpr, RESIDUAL: tl.constexpr,
                        PARTIAL: tl.constexpr, HAS_BIAS: tl.constexpr, USE_ASM: tl.constexpr, STAGES: tl.constexpr,
                        ASM_A: tl.constexpr, ASM_R: tl.constexpr):
    """lut4_mma_kernel with the weight tiles brought in by TMA (Hopper and later): a_desc / r_desc
    describe the planes as [N, K_pad / 8] int32 in [BN, 16] boxes (the interpreter: [N, K_pad / 2]
    bytes in [BN, 64] boxes), and the compiler pipelines them through STAGES - 1 shared-memory
    buffers instead of a register ring.  x is loaded one tile ahead into registers as before.

    Why: at B = 16 the register ring (plus 4 x tensors and a [BN, 16] accumulator per pass)
    holds 255 registers per thread, 2 CTAs of 4 warps per SM; the copy engine needs none, and
    its loads do not occupy the SM's own load path, which the activation's loads share.
    Measured on the H100, kernel alone at B = 16: 27.0 / 77.6 / 66.9 us against the ring's
    30.1 / 83.8 / 80.8 (8192x8192 / 28672x8192 / 8192x28672); at B = 8 the ring stays ahead
    (24.2 / 64.2 / 59.3 against 25.0 / 67.6 / 62.1) and at B = 1 too (22.3 / 61.4 / 57.7
    against 23.2 / 64.7 / 58.6), so only B = 9-16 times both (experiments/
    h100-2026-11-25-session6/probes).  Three stages led (two and four were slower); x two
    tiles ahead was slower, and x by plain loads (which the pipeline then routes through
    shared memory) too.
    """
    pid, pid_k, rows_raw, rows, batch_of_c, x_off0, x_off1, xr0, xr1, t_begin, t_end, last_t = _program(
        B, N, ld_x, tiles_per_split, n_tiles, BN, WARPS, USE_ASM)
    acc = tl.full([BN, 16], 0.0, tl.float32)
    box = 16 if USE_ASM else 64
    xa, xb, xc, xd = _load_x(x_ptr, tl.minimum(t_begin, last_t), x_off0, x_off1, xr0, xr1, ld_x, batch_of_c, B, BB,
                             USE_ASM, True)
    for t in tl.range(t_begin, t_end, num_stages=STAGES):
        g = t // tiles_per_group
        wa = a_desc.load([pid * BN, t * box])
        sa = group_scale(a_norm, rows, g, n_groups, inv_sqrt_g)
        xa_n, xb_n, xc_n, xd_n = _load_x(x_ptr, tl.minimum(t + 1, last_t), x_off0, x_off1, xr0, xr1, ld_x,
                                         batch_of_c, B, BB, USE_ASM, True)
        acc += _partial(wa, xa, xb, xc, xd, a_lp, a_ln, a_hp, a_hn, a_lv, ASM_A, BB, USE_ASM) * sa[:, None]
        if RESIDUAL:
            wr = r_desc.load([pid * BN, t * box])
            sr = group_scale(r_norm, rows, g, n_groups, inv_sqrt_g)
            acc += _partial(wr, xa, xb, xc, xd, r_lp, r_ln, r_hp, r_hn, r_lv, ASM_R, BB, USE_ASM) * sr[:, None]
        xa, xb, xc, xd = xa_n, xb_n, xc_n, xd_n
    store_split_k(acc, y_ptr, ws_ptr, lock_ptr, bias_ptr, rows_raw, rows, batch_of_c, B, N, ld_y, pid, pid_k,
                  split, PARTIAL, HAS_BIAS)
