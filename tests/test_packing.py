import pytest
import torch

from tq.packing import pack_indices, pack_plane, plane_widths, unpack_indices


@pytest.mark.parametrize("bits", range(1, 9))
def test_roundtrip(bits, gen):
    idx = torch.randint(0, 1 << bits, (7, 96), generator=gen)
    planes = pack_indices(idx, bits)
    assert [p.shape[1] for p in planes] == [96 * w // 8 for w in plane_widths(bits)]
    assert sum(p.numel() for p in planes) * 8 == idx.numel() * bits  # exactly `bits` bits per index
    assert torch.equal(unpack_indices(planes, bits, 96), idx.to(torch.int32))


def test_documented_4bit_layout():
    # byte j of a 32-column block: column j in the low nibble, column j+16 in the high nibble
    idx = torch.arange(64).remainder(16).view(1, 64)
    packed = pack_plane(idx, 4)
    assert packed.shape == (1, 32)
    for block in range(2):
        for j in range(16):
            byte = int(packed[0, block * 16 + j])
            assert byte & 15 == idx[0, block * 32 + j]
            assert byte >> 4 == idx[0, block * 32 + j + 16]


def test_documented_1bit_layout():
    idx = torch.zeros(1, 32, dtype=torch.int32)
    idx[0, 4 * 5 + 2] = 1  # slice s = 5, j = 2 -> byte 2, bit 5
    assert pack_plane(idx, 1).tolist() == [[0, 0, 1 << 5, 0]]


def test_plane_split():
    assert plane_widths(3) == (2, 1) and plane_widths(8) == (8,) and plane_widths(7) == (4, 2, 1)
    with pytest.raises(ValueError):
        plane_widths(9)
    with pytest.raises(ValueError, match="multiple of 32"):
        pack_plane(torch.zeros(1, 48, dtype=torch.int32), 4)
