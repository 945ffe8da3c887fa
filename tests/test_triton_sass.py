"""tq/triton/aot.py and tq/triton/sass.py: the decode kernels compiled without a GPU, and the
registers, spills and K loop of their SASS (nvdisasm: PATH or the copy Triton ships)."""
from __future__ import annotations

import re

import pytest


def _tools():
    pytest.importorskip("triton")
    try:
        from triton.compiler import ASTSource  # noqa: F401
    except ImportError as e:
        pytest.skip(f"this triton has no AOT compile API: {e}")
    from tq import sass
    if sass.nvdisasm() is None:
        pytest.skip(sass.NO_NVDISASM)
    return sass


@pytest.mark.parametrize("rows,warps,bb,stages,pairs", [(64, 4, 8, 0, 1), (128, 4, 16, 3, 2)])
def test_decode_k_loop(compiled_triton_kernels, rows, warps, bb, stages, pairs):
    """The K loop holds exactly the mmas of its tiles (8 per batch tile of 8, per row pair of a
    warp and K tile: the ring's main loop covers 2 tiles, the TMA kernel's 1) and the symmetric
    lookup's 10 prmt per word (8 words per row pair and tile); no spills; the ring's loads are
    the 16-byte ones of aligned tiles (2 weight, 4 x, 2 norm loads per tile)."""
    sass = _tools()
    from tq.triton import aot

    v = aot.DecodeVariant(rows=rows, warps=warps, batch_tile=bb, maxnreg=0 if stages else 128,
                          tma_stages=stages, batch=1 if bb == 8 else 16)
    cubin = aot.compile_decode(v, 90).asm["cubin"]
    text = sass.disassemble(cubin)
    loop = sass.hot_loop(text, longest=True)
    tiles = 1 if stages else 2
    mix = loop.mix()
    assert mix["HMMA"] == tiles * pairs * 8 * (bb // 8)
    assert mix["PRMT"] == tiles * pairs * 8 * 10
    assert sass.spills(text) == 0
    if not stages:
        assert mix["LDG"] == tiles * 8  # (without the alignment hints: 40, most of them narrow)
        regs = sass.registers(cubin)
        assert regs is None or regs <= 128  # the cap
        # the remainder loop (one tile) is the shortest mma loop of the ring kernel
        assert sass.hot_loop(text).mix()["HMMA"] == pairs * 8


def test_decode_variant_names_and_cli(compiled_triton_kernels, capsys):
    _tools()
    from tq.triton import aot, dispatch, sass as tsass

    assert [(v.rows, v.warps, v.depth, v.maxnreg, v.tma_stages) for v in tsass.variants(1, 90)] == \
        dispatch.mma_tilings(8, tma=True)
    assert all(v.batch_tile == 16 for v in tsass.variants(12, 90))
    assert any(v.tma_stages for v in tsass.variants(16, 90)) and not any(v.tma_stages for v in tsass.variants(16, 80))
    # Triton's rule for integer arguments: 1 is a constant, others stay run-time values
    assert aot.specialized(aot.DecodeVariant(64, 4, 8, batch=1)) == {"B": 1, "tiles_per_group": 1}
    assert aot.specialized(aot.DecodeVariant(64, 4, 16, batch=16, tiles_per_group=2)) == {}
    assert "tma 3 stages" in aot.DecodeVariant(128, 4, 16, tma_stages=3).name
    assert tsass.main(["--batch", "1", "--match", "64 rows"]) == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and "64 rows x 4 warps" in out
    assert re.search(r"\d+ instructions, (\d+ registers, )?0 spills, K loop \d+ \(PRMT \d+", out), out
    assert tsass.main(["--batch", "17"]) == 2
    assert tsass.main(["--arch", "75"]) == 2
    assert tsass.main(["--batch", "1", "--match", "no such tiling"]) == 2
