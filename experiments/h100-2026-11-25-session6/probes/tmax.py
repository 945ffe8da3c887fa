# Probe: the TMA decode kernel with x also by TMA (4-D view of x_rot so that one box holds a tile's
# x fragments), broadcast over the rows in registers.
import torch, triton, triton.language as tl
from triton.tools.tensor_descriptor import TensorDescriptor
from tq.triton import lutmma, tiles
from tq.triton import dispatch as td


@triton.jit
def _x_frag(x_desc, t, b0, BN: tl.constexpr, WARPS: tl.constexpr, Q0: tl.constexpr):
    # box [8 batch rows, 4 lane blocks j, 2 q, 4 i] of x_rot viewed as [B, K/32, 4, 4] int32
    v = x_desc.load([b0, 4 * t, Q0, 0])                       # [8, 4, 2, 4]
    v = tl.permute(v, (2, 0, 1, 3))                          # [2 (rep), 8 (g), 4 (j), 4 (i)]
    v = tl.reshape(v, (1, 2, 1, 8, 16))
    v = tl.broadcast_to(v, (BN // (16 * WARPS), 2, WARPS, 8, 16))
    return tl.reshape(v, (BN, 16))


@triton.jit
def tmax_kernel(y_ptr, ws_ptr, lock_ptr, bias_ptr, a_desc, x_desc, a_norm, a_lp, a_ln, a_hp, a_hn,
                B, N, n_groups, inv_sqrt_g, tiles_per_group, tiles_per_split, n_tiles, split, ld_x, ld_y,
                BN: tl.constexpr, BB: tl.constexpr, WARPS: tl.constexpr, PARTIAL: tl.constexpr,
                STAGES: tl.constexpr, ASM: tl.constexpr):
    pid, pid_k, rows_raw, rows, batch_of_c, x_off0, x_off1, xr0, xr1, t_begin, t_end, last_t = lutmma._program(
        B, N, ld_x, tiles_per_split, n_tiles, BN, WARPS, True)
    acc = tl.full([BN, 16], 0.0, tl.float32)
    for t in tl.range(t_begin, t_end, num_stages=STAGES):
        w = a_desc.load([pid * BN, t * 16])
        xa = _x_frag(x_desc, t, 0, BN, WARPS, 0)
        xb = _x_frag(x_desc, t, 0, BN, WARPS, 2)
        if BB == 16:
            xc = _x_frag(x_desc, t, 8, BN, WARPS, 0)
            xd = _x_frag(x_desc, t, 8, BN, WARPS, 2)
        else:
            xc = xa
            xd = xb
        sc = tl.load(a_norm + rows * n_groups + t // tiles_per_group).to(tl.float32) * inv_sqrt_g
        acc += lutmma._partial(w, xa, xb, xc, xd, a_lp, a_ln, a_hp, a_hn, a_lp, ASM, BB, True) * sc[:, None]
    tiles.store_split_k(acc, y_ptr, ws_ptr, lock_ptr, bias_ptr, rows_raw, rows, batch_of_c, B, N, ld_y, pid, pid_k,
                        split, PARTIAL, False)


def launch(qw, prep, x_rot, y, batch, bn, warps, split, stages, cache={}):
    n = qw.out_features
    bb = 8 if batch <= 8 else 16
    blocks = triton.cdiv(n, bn)
    args, key, split, wa = td._lut4_kernel_args(qw, prep, x_rot, y, None, batch, 128, split, blocks)
    a_desc = td._tma_descs(prep, wa, bn, True)[0]
    xk = (x_rot.data_ptr(), x_rot.shape)
    x_desc = cache.get(xk)
    if x_desc is None:
        x4 = x_rot.view(torch.int32).view(x_rot.shape[0], x_rot.shape[1] // 32, 4, 4)
        x_desc = cache[xk] = TensorDescriptor(x4, list(x4.shape), list(x4.stride()), [8, 4, 2, 4])
    (batch_, n_, n_groups, inv_sqrt_g, tpg, per_split, n_tiles, split_, ld_pl, ld_x, ld_y) = args[19:]
    asm = td._mma_asm(qw, prep, y.dtype, bb)[0]
    tmax_kernel[(blocks, split)](args[1], args[2], args[3], args[1], a_desc, x_desc, wa[1], wa[3], wa[4], wa[5], wa[6],
                                 batch_, n_, n_groups, inv_sqrt_g, tpg, per_split, n_tiles, split_, ld_x, ld_y,
                                 BN=bn, BB=bb, WARPS=warps, PARTIAL=split > 1, STAGES=stages, ASM=asm,
                                 num_warps=warps, num_stages=1)
