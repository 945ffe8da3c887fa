"""Bit-packing of codebook indices: power-of-two planes in slice-planar 32-column blocks.

An index of ``bits`` bits is split into planes whose widths are the powers of two in
``bits`` (largest first): 8 -> [8], 4 -> [4], 3 -> [2, 1], 2 -> [2], 6 -> [4, 2].
Plane 0 holds the lowest bits; idx = sum_p plane_p << offset_p.

Each plane of width p (v = 8/p values per byte) is stored as uint8 [N, K_pad * p / 8],
in blocks of ``PACK_BLOCK = 32`` columns.  A block is cut into v contiguous slices of
32/v columns; slice s goes to bit field [s*p, (s+1)*p) of the block's 32/v bytes:

    byte j of block b holds columns 32*b + s*(32/v) + j,  s = 0 .. v-1, j < 32/v

4-bit: byte j holds column j in its low nibble and column j+16 in its high nibble.
Why: a kernel loads a contiguous [TN, TK*p/8] byte tile with wide loads and gets slice
s of every block by one shift and one mask, with no interleave; the matching activation
columns are a strided view x.view(B, K_pad/32, v, 32/v)[:, :, s, :].  The block is 32
columns so that every supported group size (>= 32) is whole blocks and padding never
extends past the last group.
"""
from __future__ import annotations

import torch

PACK_BLOCK = 32


def plane_widths(bits: int) -> tuple[int, ...]:
    """Power-of-two plane widths of a ``bits``-bit index, largest first."""
    if not 1 <= bits <= 8:
        raise ValueError(f"bits must be in 1..8, got {bits}")
    return tuple(w for w in (8, 4, 2, 1) if bits & w)


def plane_offsets(bits: int) -> tuple[int, ...]:
    offsets, acc = [], 0
    for w in plane_widths(bits):
        offsets.append(acc)
        acc += w
    return tuple(offsets)


def _check_columns(k_padded: int):
    if k_padded % PACK_BLOCK:
        raise ValueError(f"packed K must be a multiple of {PACK_BLOCK}, got {k_padded}")


def pack_plane(values: torch.Tensor, width: int) -> torch.Tensor:
    """values: integer tensor [N, K_pad] < 2^width -> uint8 [N, K_pad*width/8]."""
    n, k = values.shape
    _check_columns(k)
    v = 8 // width
    sliced = values.to(torch.int32).reshape(n, k // PACK_BLOCK, v, PACK_BLOCK // v)
    shifts = (torch.arange(v, device=values.device, dtype=torch.int32) * width).view(1, 1, v, 1)
    packed = (sliced << shifts).sum(dim=2)  # disjoint bit fields: sum == bitwise or
    return packed.to(torch.uint8).reshape(n, k * width // 8)


def unpack_plane(packed: torch.Tensor, width: int, k_padded: int) -> torch.Tensor:
    """Inverse of pack_plane: uint8 [N, K_pad*width/8] -> int32 [N, K_pad]."""
    n = packed.shape[0]
    _check_columns(k_padded)
    v = 8 // width
    if packed.shape[1] != k_padded * width // 8:
        raise ValueError(f"a {width}-bit plane of {k_padded} columns needs {k_padded * width // 8} bytes "
                         f"per row, got {packed.shape[1]}")
    blocks = packed.to(torch.int32).reshape(n, k_padded // PACK_BLOCK, 1, PACK_BLOCK // v)
    shifts = (torch.arange(v, device=packed.device, dtype=torch.int32) * width).view(1, 1, v, 1)
    values = (blocks >> shifts) & ((1 << width) - 1)
    return values.reshape(n, k_padded)


def pack_indices(indices: torch.Tensor, bits: int) -> list[torch.Tensor]:
    """[N, K_pad] indices -> one uint8 tensor per plane (see the module docstring)."""
    idx = indices.to(torch.int32)
    return [pack_plane((idx >> off) & ((1 << w) - 1), w)
            for w, off in zip(plane_widths(bits), plane_offsets(bits))]


def unpack_indices(planes, bits: int, k_padded: int) -> torch.Tensor:
    widths = plane_widths(bits)
    if len(planes) != len(widths):
        raise ValueError(f"{bits}-bit indices are stored in {len(widths)} planes, got {len(planes)}")
    out = None
    for plane, w, off in zip(planes, widths, plane_offsets(bits)):
        part = unpack_plane(plane, w, k_padded) << off
        out = part if out is None else out | part
    return out
