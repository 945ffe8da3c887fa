"""The triton lut4 path: the register-table dequant (tq/triton/lut4.py) and its kernel (lutmm.py).

Two CPU-side checks, needing no GPU (test_triton_aot.py adds an ahead-of-time compile):
- the inline PTX itself, run instruction by instruction through a NumPy model of the few
  PTX instructions it uses (prmt, lop3, shifts, packed fma), against a plain table lookup;
- the kernel under TRITON_INTERPRET=1 (where the lookup is the equivalent gather) against
  the float64 reference, including the single-launch split-K reduction.
On a GPU the same kernel tests run the compiled PTX (through the cached direct launcher).
"""
from __future__ import annotations

import re

import numpy as np
import pytest
import torch

import tq
from tq.experiments.parity import relative_error
from tq.reference.matmul import matmul_float64

ON_GPU = torch.cuda.is_available()
DEVICE = "cuda" if ON_GPU else "cpu"
# ---------------------------------------------------------------------------
# The PTX, emulated
# ---------------------------------------------------------------------------
M32 = 0xFFFFFFFF


def _prmt(a: int, b: int, sel: int) -> int:
    src = (a & M32) | ((b & M32) << 32)
    out = 0
    for i in range(4):
        s = (sel >> (4 * i)) & 0xF
        byte = (src >> (8 * (s & 7))) & 0xFF
        if s & 8:  # sign-replicate mode
            byte = 0xFF if byte & 0x80 else 0
        out |= byte << (8 * i)
    return out


def _lop3(a: int, b: int, c: int, lut: int) -> int:
    out = 0
    for bit in range(32):
        idx = (((a >> bit) & 1) << 2) | (((b >> bit) & 1) << 1) | ((c >> bit) & 1)
        out |= ((lut >> idx) & 1) << bit
    return out


def _fma16x2(a: int, b: int, c: int, dtype) -> int:
    def halves(v):
        return torch.tensor([v & 0xFFFF, v >> 16], dtype=torch.int32).to(torch.int16).view(dtype).double()
    r = (halves(a) * halves(b) + halves(c)).to(dtype).view(torch.int16).to(torch.int32) & 0xFFFF
    return int(r[0]) | (int(r[1]) << 16)


def _value(tok: str, regs: dict) -> int:
    tok = tok.strip()
    if tok.startswith("0x"):
        return int(tok, 16)
    if re.fullmatch(r"-?\d+", tok):
        return int(tok) & M32
    return regs[tok]


def run_ptx(asm: str, operands: dict) -> dict:
    """Execute the instructions of lut4.ASM* on 32/64-bit integers; operands maps '$i' -> value."""
    regs = dict(operands)
    for line in asm.splitlines():
        line = line.strip().rstrip(";")
        if not line or line in "{}" or line.startswith(".reg"):
            continue
        op, rest = line.split(None, 1)
        if op == "mov.b64":
            m = re.fullmatch(r"\{(\w+), (\w+)\}, (\$\d+)", rest)
            v = regs[m.group(3)] & 0xFFFFFFFFFFFFFFFF
            regs[m.group(1)], regs[m.group(2)] = v & M32, v >> 32
            continue
        args = [t.strip() for t in rest.split(",")]
        d, src = args[0], [_value(t, regs) for t in args[1:]]
        if op == "mov.b32":
            r = src[0]
        elif op == "and.b32":
            r = src[0] & src[1]
        elif op == "shr.u32":
            r = src[0] >> src[1]
        elif op == "shl.b32":
            r = (src[0] << src[1]) & M32
        elif op == "mul.lo.u32":
            r = (src[0] * src[1]) & M32
        elif op == "mul.hi.u32":
            r = (src[0] * src[1]) >> 32
        elif op == "prmt.b32":
            r = _prmt(*src)
        elif op == "lop3.b32":
            r = _lop3(*src)
        elif op in ("fma.rn.bf16x2", "fma.rn.f16x2"):
            r = _fma16x2(*src, torch.bfloat16 if "bf16" in op else torch.float16)
        else:
            raise AssertionError(f"the NumPy model does not know {op!r}: extend it with the new instruction")
        regs[d] = r & M32
    return regs


def _halves(reg: int) -> tuple[int, int]:
    return reg & 0xFFFF, reg >> 16


CODEBOOKS = {
    "lloyd-max": lambda rng: tq.codebook.get_codebook("gaussian", 4).levels,
    "asymmetric": lambda rng: np.sort(rng.standard_normal(16)) * 3,
    "tiny-and-huge": lambda rng: np.sort(np.concatenate([rng.standard_normal(8) * 1e-3, rng.standard_normal(8) * 1e3])),
}


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("codebook", list(CODEBOOKS))
def test_ptx_lookup_matches_table(dtype, codebook):
    from tq.triton import lut4

    rng = np.random.default_rng(abs(hash((codebook, str(dtype)))) % 2**32)
    levels = np.asarray(CODEBOOKS[codebook](rng), dtype=np.float32)
    want = lut4.level_bits(levels, dtype)
    tables = [t & 0xFFFFFFFFFFFFFFFF for t in lut4.tables(levels, dtype)]
    base = {f"${5 + 4 * i + j}": tables[i] for i in range(4) for j in range(4)}
    words = list(rng.integers(0, 2**32, size=300, dtype=np.uint64)) + [0, M32, 0x88888888, 0x77777777, 0x0F0F0F0F]
    for q in words:
        q = int(q)
        regs = run_ptx(lut4.ASM.value, {**base, "$4": q})
        got_lo = _halves(regs["$0"]) + _halves(regs["$1"])
        got_hi = _halves(regs["$2"]) + _halves(regs["$3"])
        for i in range(4):
            byte = (q >> (8 * i)) & 0xFF
            assert got_lo[i] == want[byte & 15], (hex(q), i)
            assert got_hi[i] == want[byte >> 4], (hex(q), i)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_ptx_scaled_lookup(dtype):
    from tq.triton import lut4

    rng = np.random.default_rng(7)
    levels = np.asarray(tq.codebook.get_codebook("gaussian", 4).levels, dtype=np.float32)
    tables = [t & 0xFFFFFFFFFFFFFFFF for t in lut4.tables(levels, dtype)]
    base = {f"${5 + 4 * i + j}": tables[i] for i in range(4) for j in range(4)}
    asm = (lut4.ASM_SCALED_BF16 if dtype == torch.bfloat16 else lut4.ASM_SCALED_F16).value
    lv = torch.as_tensor(levels).to(dtype).double()
    for _ in range(50):
        q = int(rng.integers(0, 2**32))
        s = torch.tensor(rng.uniform(1e-3, 2.0, size=2)).to(dtype)
        sbits = s.view(torch.int16).to(torch.int32) & 0xFFFF
        s01 = int(sbits[0]) | (int(sbits[0]) << 16)  # elements 0, 1 of one row: the same scale
        s23 = int(sbits[1]) | (int(sbits[1]) << 16)
        regs = run_ptx(asm, {**base, "$4": q, "$21": s01, "$22": s23})
        got = [h for r in ("$0", "$1", "$2", "$3") for h in _halves(regs[r])]
        idx = [(q >> (8 * i)) & 15 for i in range(4)] + [(q >> (8 * i + 4)) & 15 for i in range(4)]
        scale = [s[0], s[0], s[1], s[1]] * 2
        want = [int((lv[i] * sc.double()).to(dtype).view(torch.int16)) & 0xFFFF for i, sc in zip(idx, scale)]
        assert got == want


def test_tables_reject_wrong_size():
    from tq.triton import lut4

    with pytest.raises(ValueError, match="16 levels"):
        lut4.tables(np.zeros(8, dtype=np.float32), torch.bfloat16)


# ---------------------------------------------------------------------------
# The kernel against the reference
# ---------------------------------------------------------------------------
def _rel(y, x, qw, bias=None) -> float:
    got = y.detach().cpu().double().numpy()
    assert np.isfinite(got).all()
    return relative_error(got, matmul_float64(x, qw, bias=bias))


TOL = {torch.bfloat16: 6e-3, torch.float16: 1.5e-3}


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("group,residual,codebook", [(32, None, "gaussian"), (64, 4, "gaussian-poly"),
                                                     (128, None, "beta"), (None, 4, "gaussian")])
def test_lut4_path_parity(triton_backend, gen, dtype, group, residual, codebook):
    from tq.triton import dispatch

    n, k = 37, 352  # odd N; K pads to a whole group for G = 64, 128 and full row
    qw = tq.quantize(torch.randn(n, k, generator=gen).to(DEVICE), bits=4, group_size=group,
                     residual_bits=residual, codebook=codebook, seed=int(torch.randint(0, 999, (1,), generator=gen)))
    assert dispatch.lut4_reason(qw, dtype) is None
    bias = torch.randn(n, generator=gen).to(DEVICE, dtype)
    for batch in (1, 6, 16, 23):
        x = torch.randn(batch, k, generator=gen).to(DEVICE, dtype)
        y = triton_backend.matmul(x, qw, bias=bias)
        assert y.dtype == dtype and y.shape == (batch, n)
        assert _rel(y, x, qw, bias) < TOL[dtype], (batch, group, residual)


def test_lut4_split_k_single_launch(triton_backend, gen):
    """Split-K partials summed by the last program of each block; counters left at zero."""
    from tq.triton import dispatch

    qw = tq.quantize(torch.randn(45, 640, generator=gen).to(DEVICE), bits=4, group_size=64, residual_bits=4)
    prep = dispatch.prepare_weight(qw)
    bias = torch.randn(45, generator=gen).to(DEVICE, torch.float16)
    # (split < 0: per_split = -split K tiles a piece, the last piece short: 7 + 3 and 4 + 4 + 2 of 10)
    for batch, split, bn, bm in [(1, 2, 32, 16), (1, 3, 16, 1), (5, 3, 16, 16), (16, 10, 32, 16), (5, -7, 16, 16),
                                 (1, -4, 32, 16)]:
        cfg = dispatch.Lut4Config(bn=bn, bm=bm, split=max(split, 1), group_m=1, num_warps=4, num_stages=1,
                                  scale_w=False, per_split=max(-split, 0))
        x = torch.randn(batch, 640, generator=gen).to(DEVICE, torch.float16)
        x_rot = dispatch.rotate.rotate(x, qw.rotation_block, qw.seed, qw.k_padded,
                                       torch.float32 if not ON_GPU else torch.float16)
        y = torch.full((batch, 45), float("nan"), device=DEVICE, dtype=torch.float16)
        dispatch._launch_lut4(cfg, qw, prep, x_rot, y, bias, batch)
        assert _rel(y, x, qw, bias) < TOL[torch.float16], (batch, split)
        tk = dispatch.lut4_tile_width(qw.group_size)
        pieces = dispatch._lut4_kernel_args(qw, prep, x_rot, y, bias, batch, tk, cfg.split, 1, cfg.per_split)[2]
        assert pieces == (split if split > 0 else -(-(qw.k_padded // tk) // -split)), (split, pieces)
        assert int(dispatch._lock_buffer(y.device, 1).abs().sum()) == 0


def test_lut4_scaled_weights_config(triton_backend, gen):
    """SCALE_W (the group scale applied to the levels, the prefill choice) at a decode batch."""
    from tq.triton import dispatch

    qw = tq.quantize(torch.randn(33, 256, generator=gen).to(DEVICE), bits=4, group_size=128)
    prep = dispatch.prepare_weight(qw)
    x = torch.randn(3, 256, generator=gen).to(DEVICE, torch.bfloat16)
    x_rot = dispatch.rotate.rotate(x, qw.rotation_block, qw.seed, qw.k_padded,
                                   torch.float32 if not ON_GPU else torch.bfloat16)
    y = torch.empty((3, 33), device=DEVICE, dtype=torch.bfloat16)
    cfg = dispatch.Lut4Config(bn=16, bm=16, split=1, group_m=1, num_warps=4, num_stages=1, scale_w=True)
    dispatch._launch_lut4(cfg, qw, prep, x_rot, y, None, 3)
    assert _rel(y, x, qw) < TOL[torch.bfloat16]


def test_lut4_reasons_and_switch(triton_backend, gen, monkeypatch):
    from tq.triton import dispatch

    q4 = tq.quantize(torch.randn(8, 64, generator=gen).to(DEVICE), bits=4, group_size=32)
    q3 = tq.quantize(torch.randn(8, 64, generator=gen).to(DEVICE), bits=3, group_size=32)
    assert dispatch.lut4_reason(q4, torch.bfloat16) is None
    assert "fp32" in dispatch.lut4_reason(q4, torch.float32)
    assert "4-bit" in dispatch.lut4_reason(q3, torch.float16)
    monkeypatch.setenv("TQ_TRITON_LUT4", "0")
    assert "TQ_TRITON_LUT4" in dispatch.lut4_reason(q4, torch.bfloat16)
    x = torch.randn(2, 64, generator=gen).to(DEVICE, torch.float16)
    assert _rel(triton_backend.matmul(x, q4), x, q4) < TOL[torch.float16]  # the general kernels still serve it


def test_lut4_tile_width():
    from tq.triton.dispatch import lut4_tile_width

    assert [lut4_tile_width(g) for g in (32, 64, 128, 256, 2880, 28672)] == [32, 64, 128, 128, 64, 128]


@pytest.mark.gpu
def test_gpu_replay_path(triton_backend, gen):
    """Repeated decode calls replay the recorded launches (launch.Replay): fresh inputs give fresh,
    correct outputs, and a weight's replays go away with the weight."""
    import gc

    from tq.triton import dispatch

    qw = tq.quantize(torch.randn(1000, 2880, generator=gen).to("cuda"), bits=4, group_size=128)
    bias = torch.randn(1000, generator=gen).to("cuda", torch.bfloat16)
    for batch in (1, 16, 1, 16):
        for use_bias in (None, bias):
            x = torch.randn(batch, 2880, generator=gen).to("cuda", torch.bfloat16)
            y = triton_backend.matmul(x, qw, bias=use_bias)
            assert _rel(y, x, qw, use_bias) < TOL[torch.bfloat16], (batch, use_bias is None)
    owner = id(qw)
    assert len(dispatch._replay_keys[owner][1]) == 4  # (batch 1, 16) x (bias, none)
    del qw
    gc.collect()
    assert owner not in dispatch._replay_keys
    assert not any(k[0] == owner for k in dispatch._replays)


@pytest.mark.gpu
def test_gpu_same_shape_4bit_then_residual(triton_backend, gen):
    """Regression: a 4-bit and a 4+4 weight of one shape share every runtime-argument
    specialization; the launcher must still run the residual kernel for the second."""
    w = torch.randn(300, 512, generator=gen).to("cuda")
    for residual in (None, 4, None):
        qw = tq.quantize(w, bits=4, group_size=64, residual_bits=residual)
        for batch in (1, 16, 40):
            x = torch.randn(batch, 512, generator=gen).to("cuda", torch.bfloat16)
            assert _rel(triton_backend.matmul(x, qw), x, qw) < TOL[torch.bfloat16], (residual, batch)


@pytest.mark.parametrize("residual,group", [(None, 128), (4, 64), (None, None)])
def test_dequant_kernel_matches_reference_rows(triton_backend, gen, residual, group):
    """The chunked prefill's workspace: rows [row0, row0 + rows) of W_rot, exact to fp16/bf16 rounding."""
    from tq.quantize import dequantize_rotated
    from tq.triton import dispatch

    qw = tq.quantize(torch.randn(70, 352, generator=gen).to(DEVICE), bits=4, group_size=group, residual_bits=residual)
    prep = dispatch.prepare_weight(qw)
    want = dequantize_rotated(qw).cpu().double()
    for dtype in (torch.bfloat16, torch.float16):
        out = torch.full((40, qw.k_padded), float("nan"), device=DEVICE, dtype=dtype)
        dispatch._launch_dequant(qw, prep, out, 23, 40)
        got = out.cpu().double()
        err = ((got - want[23:63]).norm() / want[23:63].norm()).item()
        assert err < (4e-3 if dtype == torch.bfloat16 else 1e-3), (dtype, err)
        out2 = torch.full((16, qw.k_padded), float("nan"), device=DEVICE, dtype=dtype)
        dispatch._launch_dequant(qw, prep, out2, 60, 10)   # a last, partial chunk
        assert torch.isfinite(out2[:10]).all() and torch.isnan(out2[10:].float()).all()


@pytest.mark.parametrize("residual,group", [(None, 128), (4, 64), (None, 32)])
def test_unrotate_kernel_matches_reference_rows(triton_backend, gen, residual, group, monkeypatch):
    """The weight-basis chunk: rows of W_rot rotated back (W_hat), exact to one fp16/bf16 rounding."""
    from tq.quantize import dequantize_rotated
    from tq.rotation import unrotate_np
    from tq.triton import dispatch

    monkeypatch.setenv("TQ_PREFILL_UNROTATE", "1")
    qw = tq.quantize(torch.randn(70, 352, generator=gen).to(DEVICE), bits=4, group_size=group, residual_bits=residual)
    assert dispatch.weight_basis(qw)
    prep = dispatch.prepare_weight(qw)
    want = torch.as_tensor(unrotate_np(dequantize_rotated(qw).cpu().double().numpy(), qw.rotation_block, qw.seed))
    for dtype in (torch.bfloat16, torch.float16):
        out = torch.full((40, qw.k_padded), float("nan"), device=DEVICE, dtype=dtype)
        dispatch._launch_unrotate(qw, prep, out, 23, 40)
        got = out.cpu().double()
        err = ((got - want[23:63]).norm() / want[23:63].norm()).item()
        assert err < (4e-3 if dtype == torch.bfloat16 else 1e-3), (dtype, err)
        out2 = torch.full((80, qw.k_padded), float("nan"), device=DEVICE, dtype=dtype)
        dispatch._launch_unrotate(qw, prep, out2, 60, 10)   # a last, partial chunk
        assert torch.isfinite(out2[:10]).all() and torch.isnan(out2[10:].float()).all()
        assert ((out2[:10].cpu().double() - want[60:70]).norm() / want[60:70].norm()).item() < 4e-3


def test_weight_basis_conditions(monkeypatch):
    from tq.triton import dispatch

    w = torch.randn(8, 512)
    assert not dispatch.weight_basis(tq.quantize(w, bits=4, group_size=128))   # default: rotate x
    monkeypatch.setenv("TQ_PREFILL_UNROTATE", "1")
    assert dispatch.weight_basis(tq.quantize(w, bits=4, group_size=128))
    assert not dispatch.weight_basis(tq.quantize(w, bits=4, group_size=256))   # R = 256 > the K tile
    assert not dispatch.weight_basis(tq.quantize(w, bits=4, group_size=None))  # full-row block
    monkeypatch.setenv("TQ_PREFILL_UNROTATE", "0")
    assert not dispatch.weight_basis(tq.quantize(w, bits=4, group_size=128))
    monkeypatch.setenv("TQ_PREFILL_UNROTATE", "yes")
    with pytest.raises(ValueError, match="TQ_PREFILL_UNROTATE must be 0 or 1"):
        dispatch.weight_basis(tq.quantize(w, bits=4, group_size=128))


def test_chunk_rows_bounded(monkeypatch):
    from tq.chunked import chunk_rows_for

    assert chunk_rows_for(8192, 8192) == 2048            # the measured best; 2 x 32 MiB
    assert chunk_rows_for(28672, 8192) == 1024           # 2 x 1152 x 28672 x 2 B <= 128 MiB, evened to 8 x 1024
    assert chunk_rows_for(8192, 28672) == 2048           # 14 full chunks
    assert chunk_rows_for(8192, 5000) == 1792            # 3 chunks: 1792 + 1792 + 1416, not 2048 + 2048 + 904
    for k_pad, n in ((28672, 8192), (8192, 5000), (4096, 300), (50000, 11008)):
        rows = chunk_rows_for(k_pad, n)                  # even, within the budget, as few chunks as the budget allows
        cap = max(128, min(2048, (128 << 20) // 2 // (k_pad * 2)) // 128 * 128)
        assert rows % 128 == 0 and rows <= cap and -(-n // rows) == -(-n // cap)
    assert chunk_rows_for(8192, 300) == 384               # never more rows than N (rounded to 128)
    monkeypatch.setenv("TQ_PREFILL_WORKSPACE_MB", "16")
    assert chunk_rows_for(8192, 8192) == 512
    assert chunk_rows_for(1 << 20, 8192) == 128           # a floor, even past the budget
    for bad in ("0", "-5", "lots"):
        monkeypatch.setenv("TQ_PREFILL_WORKSPACE_MB", bad)
        with pytest.raises(ValueError, match="TQ_PREFILL_WORKSPACE_MB must be a positive integer"):
            chunk_rows_for(8192, 8192)


@pytest.mark.gpu
@pytest.mark.parametrize("unrotate", ["0", "1"])
def test_gpu_chunked_prefill(triton_backend, gen, unrotate, monkeypatch):
    """Chunked dequant + cuBLAS on two streams, with and without bias, 4 and 4+4, ragged last chunk,
    rotating x or un-rotating the weight chunks."""
    from tq.triton import dispatch

    monkeypatch.setenv("TQ_PREFILL_UNROTATE", unrotate)
    for residual in (None, 4):
        qw = tq.quantize(torch.randn(1000, 2880, generator=gen).to("cuda"), bits=4, group_size=64,
                         residual_bits=residual)
        prep = dispatch.prepare_weight(qw)
        x = torch.randn(300, 2880, generator=gen).to("cuda", torch.bfloat16)
        bias = torch.randn(1000, generator=gen).to("cuda", torch.bfloat16)
        x_rot = dispatch.rotate.rotate(x, qw.rotation_block, qw.seed, qw.k_padded, torch.bfloat16)
        for b in (None, bias):
            y = torch.full((300, 1000), float("nan"), device="cuda", dtype=torch.bfloat16)
            cfg = dispatch.Lut4Config(bn=0, bm=0, split=1, group_m=0, num_warps=4, num_stages=3, scale_w=True,
                                      chunk_rows=384)
            dispatch._launch_lut4(cfg, qw, prep, x_rot, y, b, 300, x)
            torch.cuda.synchronize()
            assert _rel(y, x, qw, b) < TOL[torch.bfloat16], (residual, b is None)


def test_lut4_non_contiguous_planes(triton_backend, gen):
    """Planes stored as views of wider tensors (allowed by the format) read with the right stride."""
    qw = tq.quantize(torch.randn(21, 256, generator=gen).to(DEVICE), bits=4, group_size=64, residual_bits=4)
    for p in qw.passes:
        wide = torch.zeros(p.planes[0].shape[0], p.planes[0].shape[1] + 48, dtype=torch.uint8, device=DEVICE)
        wide[:, :p.planes[0].shape[1]] = p.planes[0]
        p.planes = [wide[:, :p.planes[0].shape[1]]]
    assert not qw.passes[0].planes[0].is_contiguous()
    x = torch.randn(5, 256, generator=gen).to(DEVICE, torch.float16)
    assert _rel(triton_backend.matmul(x, qw), x, qw) < TOL[torch.float16]


def test_lut4_reason_needs_float16_range(triton_backend, gen):
    from tq.triton import dispatch

    qw = tq.quantize(torch.randn(8, 64, generator=gen).to(DEVICE), bits=4, group_size=32)
    qw.passes[0].levels = qw.passes[0].levels * 1e5   # beyond fp16, fine in bf16
    assert "float16" in dispatch.lut4_reason(qw, torch.bfloat16)


@pytest.mark.gpu
def test_gpu_replay_follows_x_stride_and_graph_capture(triton_backend, gen):
    """A replay recorded for contiguous x must not be reused for a strided x (row stride differs);
    a captured CUDA graph of decode and prefill calls replays correctly."""
    qw = tq.quantize(torch.randn(512, 1024, generator=gen).to("cuda"), bits=4, group_size=128)
    big = torch.randn(8, 2048, generator=gen).to("cuda", torch.bfloat16)
    for x in (big[:, :1024].contiguous(), big[:, :1024].contiguous(), big[:, :1024], big[:, 512:1536]):
        assert _rel(triton_backend.matmul(x, qw), x, qw) < TOL[torch.bfloat16], x.stride()
    for batch in (1, 16, 1100):
        x = torch.randn(batch, 1024, generator=gen).to("cuda", torch.bfloat16)
        y = triton_backend.matmul(x, qw)                         # warm-up (tunes, records) outside capture
        g = torch.cuda.CUDAGraph()
        with torch.cuda.graph(g):
            y = triton_backend.matmul(x, qw)
        x.copy_(torch.randn(batch, 1024, generator=gen).to("cuda", torch.bfloat16))
        g.replay()
        torch.cuda.synchronize()
        assert _rel(y, x, qw) < TOL[torch.bfloat16], batch


def test_chunk_workspace_is_one_buffer_per_stream():
    # every layer shape's two chunks are views of one flat buffer per (device, stream, dtype),
    # so TQ_PREFILL_WORKSPACE_MB bounds the total, not each shape's share
    from tq import chunked
    chunked.release_prefill_workspace()
    dev = torch.device("cpu")
    a = chunked.workspace(dev, 7, 512, 1024, torch.bfloat16)
    b = chunked.workspace(dev, 7, 128, 4096, torch.bfloat16)          # same size: same buffer
    assert [t.shape for t in a] == [(512, 1024)] * 2 and [t.shape for t in b] == [(128, 4096)] * 2
    assert a[0].data_ptr() == b[0].data_ptr() and b[1].data_ptr() == b[0].data_ptr() + 128 * 4096 * 2
    c = chunked.workspace(dev, 7, 512, 4096, torch.bfloat16)          # grows to the largest shape
    assert len(chunked._workspaces) == 1 and next(iter(chunked._workspaces.values())).numel() == 2 * 512 * 4096
    assert c[1].data_ptr() - c[0].data_ptr() == 512 * 4096 * 2
    chunked.workspace(dev, 8, 128, 1024, torch.bfloat16)              # another stream: its own buffer
    assert len(chunked._workspaces) == 2
    chunked.release_prefill_workspace()
    assert not chunked._workspaces


def test_rotate_tile_setting(monkeypatch):
    from tq.triton import rotate
    assert rotate.tile_elements() == rotate.TILE_ELEMENTS
    monkeypatch.setenv("TQ_TRITON_ROTATE_TILE", "16384")
    assert rotate.tile_elements() == 16384
    for bad in ("3000", "512", "x"):
        monkeypatch.setenv("TQ_TRITON_ROTATE_TILE", bad)
        with pytest.raises(ValueError, match="TQ_TRITON_ROTATE_TILE"):
            rotate.tile_elements()
