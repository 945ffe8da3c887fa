"""tq/cutile/sass.py: offline SASS of the cutile kernels (K-loop instruction counts, no GPU).

The parser runs on a small hand-written listing shaped like nvdisasm's output (a K loop, a
shorter FFMA-only loop, an out-of-line barrier retry stub after the last EXIT); the whole path
(AOT compile, nvdisasm, K loop) runs on a real word-decode variant where the compiler and
nvdisasm are installed, and is skipped with the reason otherwise.
"""
from __future__ import annotations

import pytest

from tq.cutile import env, sass

LISTING = """
        /*0000*/                   MOV R1, c[0x0][0x28] ;
.L_x_1:
        /*0010*/                   FFMA R2, R3, R4, R2 ;
        /*0020*/               @P1 BRA `(.L_x_1) ;
.L_x_2:
        /*0030*/                   LDG.E.128 R8, desc[UR4][R6.64] ;
        /*0040*/                   HFMA2 R9, R9, R10, R11 ;
.L_x_3:
        /*0050*/                   HGMMA.64x16x16.F32 R48, R36, gdesc[UR36], R48 ;
        /*0060*/              @!P0 LDL R12, [R1+0x8] ;
        /*0070*/                   STL [R1+0x8], R12 ;
        /*0080*/               @P0 BRA `(.L_x_2) ;
        /*0090*/               @P2 EXIT ;
        /*00a0*/                   EXIT ;
.L_x_4:
        /*00b0*/                   SYNCS.PHASECHK.TRANS64 P0, [R98+URZ+0x8c50], R27 ;
        /*00c0*/              @!P0 BRA `(.L_x_4) ;
        /*00d0*/                   BRA `(.L_x_3) ;
"""


def test_parse_listing():
    found, labels = sass.instructions(LISTING)
    assert [a for a, _ in found] == list(range(0, 0xe0, 0x10))
    assert labels == {".L_x_1": 0x10, ".L_x_2": 0x30, ".L_x_3": 0x50, ".L_x_4": 0xb0}
    assert sass.opcode("@!P0 LDL R12, [R1+0x8]") == "LDL" and sass.opcode("LDG.E.128 R8, [R6]") == "LDG"
    # the retry stub (after the last unpredicated EXIT) is not a loop of the body
    assert [(lp.start, lp.end) for lp in sass.loops(LISTING)] == [(0x10, 0x20), (0x30, 0x80)]
    loop = sass.hot_loop(LISTING)
    assert (loop.start, loop.end, len(loop.instructions)) == (0x30, 0x80, 6)
    assert loop.mix() == {"LDG": 1, "HFMA2": 1, "HGMMA": 1, "LDL": 1, "STL": 1, "BRA": 1}
    assert sass.hot_loop(LISTING, hot=("FFMA",)).start == 0x10
    assert sass.hot_loop("        /*0000*/                   EXIT ;") is None
    assert sass.spills(LISTING) == 2
    assert "K loop 6 (" in sass.report("x", LISTING) and "2 spills" in sass.report("x", LISTING)


COMPILER_OK, COMPILER_REASON = env.compiler_ready()
TOOLS_OK = COMPILER_OK and sass.nvdisasm() is not None
TOOLS_REASON = COMPILER_REASON if not COMPILER_OK else sass.NO_NVDISASM


@pytest.mark.skipif(not TOOLS_OK, reason=f"cannot disassemble cuTile kernels here: {TOOLS_REASON}")
def test_word_decode_k_loop_on_a_real_cubin(capsys):
    from tq.cutile import compile as aot
    v = next(v for v in aot.variants("ci") if v.kernel == "words" and "NG=2" in v.name)
    text = sass.disassemble(aot.cubin(v, "sm_90"))
    loop = sass.hot_loop(text)
    mix = loop.mix()
    # the tensor-core K loop (not a producer's or a retry loop): two partials of 4 slices per
    # 256-column tile, the packed-fp16 level polynomial, no spills
    assert mix["HGMMA"] > 0 and mix["HFMA2"] > 0 and mix["HMUL2"] > 0
    assert sum(mix.values()) == len(loop.instructions) < len(sass.instructions(text)[0])
    assert sass.spills(text) == 0
    assert sass.main(["--match", v.name]) == 0
    assert "K loop" in capsys.readouterr().out
    assert sass.main(["--match", "no such variant"]) == 2
