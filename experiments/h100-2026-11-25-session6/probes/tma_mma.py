# Probe: lutmma with the weight tiles brought in by TMA (host descriptor), pipelined by the compiler.
import torch, triton, triton.language as tl
from triton.tools.tensor_descriptor import TensorDescriptor
from tq.triton import lutmma, tiles
from tq.triton import dispatch as td


@triton.jit
def tma_mma_kernel(x_ptr, y_ptr, ws_ptr, lock_ptr, bias_ptr, a_desc, a_norm, a_lp, a_ln, a_hp, a_hn,
                   B, N, n_groups, inv_sqrt_g, tiles_per_group, tiles_per_split, n_tiles, split, ld_x, ld_y,
                   BN: tl.constexpr, BB: tl.constexpr, WARPS: tl.constexpr, PARTIAL: tl.constexpr,
                   STAGES: tl.constexpr, ASM: tl.constexpr, XPRE: tl.constexpr):
    pid = tl.program_id(0)
    pid_k = tl.program_id(1)
    r_idx = tl.arange(0, BN)
    rows_raw = pid * BN + r_idx
    rows = tl.minimum(rows_raw, N - 1).to(tl.int64)
    c = tl.arange(0, 16)
    batch_of_c = 2 * (c // 4) + c % 2 + 8 * ((c % 4) // 2)
    rep = (r_idx // (8 * WARPS)) % 2
    x_off0 = 16 * (c[None, :] // 4) + c[None, :] % 4 + 4 * rep[:, None]
    x_off1 = x_off0 + 8
    xr0 = (tl.minimum(r_idx % 8, B - 1).to(tl.int64) * (ld_x // 2))[:, None]
    xr1 = (tl.minimum(r_idx % 8 + 8, B - 1).to(tl.int64) * (ld_x // 2))[:, None]
    acc = tl.full([BN, 16], 0.0, tl.float32)
    t_begin = pid_k * tiles_per_split
    t_end = tl.minimum(t_begin + tiles_per_split, n_tiles)
    last_t = tl.maximum(t_end - 1, 0)
    if XPRE:
        xa, xb, xc, xd = lutmma._load_x(x_ptr, tl.minimum(t_begin, last_t), x_off0, x_off1, xr0, xr1, ld_x, batch_of_c,
                                        B, BB, True, True)
    for t in tl.range(t_begin, t_end, num_stages=STAGES):
        w = a_desc.load([pid * BN, t * 16])
        g = t // tiles_per_group
        sc = tl.load(a_norm + rows * n_groups + g).to(tl.float32) * inv_sqrt_g
        if XPRE:
            xa_n, xb_n, xc_n, xd_n = lutmma._load_x(x_ptr, tl.minimum(t + 1, last_t), x_off0, x_off1, xr0, xr1, ld_x,
                                                    batch_of_c, B, BB, True, True)
        else:
            xa, xb, xc, xd = lutmma._load_x(x_ptr, t, x_off0, x_off1, xr0, xr1, ld_x, batch_of_c, B, BB, True, True)
        acc += lutmma._partial(w, xa, xb, xc, xd, a_lp, a_ln, a_hp, a_hn, a_lp, ASM, BB, True) * sc[:, None]
        if XPRE:
            xa, xb, xc, xd = xa_n, xb_n, xc_n, xd_n
    tiles.store_split_k(acc, y_ptr, ws_ptr, lock_ptr, bias_ptr, rows_raw, rows, batch_of_c, B, N, ld_y, pid, pid_k,
                        split, PARTIAL, False)


def launch(qw, prep, x_rot, y, batch, bn, warps, split, stages, xpre=True, maxnreg=0, cache={}):
    n, k_pad = qw.out_features, qw.k_padded
    bb = 8 if batch <= 8 else 16
    blocks = triton.cdiv(n, bn)
    args, key, split, wa = td._lut4_kernel_args(qw, prep, x_rot, y, None, batch, 128, split, blocks)
    pl = wa[0]
    dk = (pl.data_ptr(), bn)
    desc = cache.get(dk)
    if desc is None:
        p32 = pl.view(torch.int32)
        desc = cache[dk] = TensorDescriptor(p32, list(p32.shape), list(p32.stride()), [bn, 16])
    x_rot_, y_, ws, locks = args[0], args[1], args[2], args[3]
    (batch_, n_, n_groups, inv_sqrt_g, tpg, per_split, n_tiles, split_, ld_pl, ld_x, ld_y) = args[19:]
    asm = td._mma_asm(qw, prep, y.dtype, bb)[0]
    opts = {"maxnreg": maxnreg} if maxnreg else {}
    tma_mma_kernel[(blocks, split)](x_rot_, y_, ws, locks, y_, desc, wa[1], wa[3], wa[4], wa[5], wa[6],
                                    batch_, n_, n_groups, inv_sqrt_g, tpg, per_split, n_tiles, split_, ld_x, ld_y,
                                    BN=bn, BB=bb, WARPS=warps, PARTIAL=split > 1, STAGES=stages, ASM=asm, XPRE=xpre,
                                    num_warps=warps, num_stages=1, **opts)
