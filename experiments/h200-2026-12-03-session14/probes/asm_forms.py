# Candidate word lookups for the symmetric 4-bit mma decode (lutmma._SYM_WORD is "today", 17
# instructions per 8 weights with the 4 interleaving prmts).  The two new forms assume a packed
# layout that does not exist yet; here they only measure instruction cost (their outputs are
# wrong on today's layout).
#   relabel (15): codes relabelled so bits 0-2 ARE the magnitude's table position and bit 3 the
#       sign (today negative codes hold the mirrored position 7 - i: and + mul.hi + lop3 undo it).
#   relocate (13): relabelled, and the sign of nibble k stored at a byte's top bit (nibbles 0-3:
#       bits 7, 15, 23, 31; nibbles 4-7: bits 3, 11, 19, 27), so one lop3 per 4 weights ORs it
#       into the looked-up high bytes (no sign-replicating prmts).
import tq.triton.lutmma as lutmma

SYM_RELABEL = """
and.b32 j, $W, 0x77777777;
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

SYM_RELOCATE = """
and.b32 j, $W, 0x77777777;
mul.hi.u32 jh, j, 0x10000;
mul.lo.u32 q4, $W, 16;
prmt.b32 l0, a0, a1, j;
prmt.b32 h0, d0, d1, j;
lop3.b32 h0, h0, $W, 0x80808080, 0x78;
prmt.b32 l1, a0, a1, jh;
prmt.b32 h1, d0, d1, jh;
lop3.b32 h1, h1, q4, 0x80808080, 0x78;
"""

WORDS = {"today": lutmma._SYM_WORD, "relabel": SYM_RELABEL, "relocate": SYM_RELOCATE}


def ptx_form(form: str):
    """A ptx_for replacement that builds the symmetric asm with the given word lookup."""
    def ptx_for(dtype_name: str, batch_tile: int, symmetric: bool) -> str:
        saved = lutmma._SYM_WORD
        lutmma._SYM_WORD = WORDS[form]
        try:
            return lutmma._ptx(dtype_name, batch_tile // 8, symmetric)
        finally:
            lutmma._SYM_WORD = saved
    return ptx_for
