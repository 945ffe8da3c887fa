# The asm of lutmma.py before the thirteenth session (every word looked up, then all mmas):
# kept so the probes can time and compile it against the interleaved order that replaced it.
import re

from tq.triton.lut4 import _BODY
from tq.triton.lutmma import _SYM_WORD


def ptx_grouped(dtype_name: str, batch_tile: int, symmetric: bool) -> str:
    return _ptx(dtype_name, batch_tile // 8, symmetric)


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
