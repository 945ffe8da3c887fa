"""The tensor-core decode kernel (tq/triton/lutmma.py): lookup registers straight into mma.sync.

CPU checks, needing no GPU:
- the PTX of one asm call run for a whole warp through a NumPy model (lut4's prmt/lop3 model
  per lane, then each mma.sync from the 32 lanes' fragments), against plain float64 math: this
  checks the fragment bookkeeping (which lane holds which rows, columns and batch rows);
- the kernel under TRITON_INTERPRET=1 (the same partials from a gather and a dot, in the asm's
  output order) against the float64 reference, with split-K, bias, residual, odd shapes;
- the layout guard on TTGIR text (test_triton_aot.py compiles the kernel ahead of time and
  checks that its TTGIR passes it).
On a GPU the kernel tests run the compiled PTX.
"""
from __future__ import annotations

import re

import numpy as np
import pytest
import torch

import tq
from test_triton_lut4 import CODEBOOKS, ON_GPU, DEVICE, TOL, _rel, run_ptx

M32 = 0xFFFFFFFF


def _bits_to_float(bits: np.ndarray, dtype) -> np.ndarray:
    return torch.from_numpy(bits.astype(np.int32).astype(np.int16)).view(dtype).double().numpy()


def _float_bits(values: np.ndarray, dtype) -> np.ndarray:
    return torch.from_numpy(values.astype(np.float32)).to(dtype).view(torch.int16).numpy().astype(np.int64) & 0xFFFF


def _warp_run(asm: str, lanes: list[dict], mma_dtype) -> list[dict]:
    """Execute the asm for 32 lanes: per-lane integer code, then every mma.sync across the warp."""
    lines = [ln.strip() for ln in asm.splitlines()]
    per_lane = "\n".join(ln for ln in lines if not ln.startswith(("mma.", "mov.f32")))
    regs = [run_ptx(per_lane, ops) for ops in lanes]
    for r in regs:
        r["z"] = 0
    for ln in lines:
        if ln.startswith("mov.f32") and "z," not in ln.split()[1]:
            d, src = [t.strip() for t in ln.split(None, 1)[1].rstrip(";").split(",")]
            for r in regs:
                r[d] = r[src]
        if not ln.startswith("mma."):
            continue
        groups = re.findall(r"\{([^}]*)\}", ln)
        d, a, b, c = ([t.strip() for t in g.split(",")] for g in groups)
        A = np.zeros((16, 16))
        Bm = np.zeros((16, 8))
        C = np.zeros((16, 8))
        f32 = lambda v: np.array([v], dtype=np.uint32).view(np.float32)[0]  # noqa: E731
        half = lambda v: _bits_to_float(np.array([v & 0xFFFF, v >> 16]), mma_dtype)  # noqa: E731
        for lane, r in enumerate(regs):
            g, t = lane // 4, lane % 4
            for i, (row, col) in enumerate([(g, 2 * t), (g + 8, 2 * t), (g, 2 * t + 8), (g + 8, 2 * t + 8)]):
                A[row, col:col + 2] = half(r[a[i]])
            for i, k in enumerate([2 * t, 2 * t + 8]):
                Bm[k:k + 2, g] = half(r[b[i]])
            for i, (row, col) in enumerate([(g, 2 * t), (g, 2 * t + 1), (g + 8, 2 * t), (g + 8, 2 * t + 1)]):
                C[row, col] = f32(r[c[i]])
        D = (A @ Bm + C).astype(np.float32)
        for lane, r in enumerate(regs):
            g, t = lane // 4, lane % 4
            for i, (row, col) in enumerate([(g, 2 * t), (g, 2 * t + 1), (g + 8, 2 * t), (g + 8, 2 * t + 1)]):
                r[d[i]] = int(np.array([D[row, col]], dtype=np.float32).view(np.uint32)[0])
    return regs


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("n_tiles", [1, 2])
@pytest.mark.parametrize("codebook,sym", [("lloyd-max", True), ("lloyd-max", False), ("asymmetric", False),
                                          ("mirrored-random", True)])
def test_ptx_warp_model(dtype, n_tiles, codebook, sym):
    from tq.triton import lut4, lutmma

    rng = np.random.default_rng(abs(hash((codebook, str(dtype), n_tiles, sym))) % 2**32)
    if codebook == "mirrored-random":  # any sign-mirrored levels, not only Lloyd-Max's
        half = np.sort(np.abs(rng.standard_normal(8))) * 2
        levels = np.concatenate([-half[::-1], half]).astype(np.float32)
    else:
        levels = np.asarray(CODEBOOKS[codebook](rng), dtype=np.float32)
    assert lutmma.symmetric(lut4.level_bits(levels, dtype)) == (codebook != "asymmetric")
    lv = _bits_to_float(lut4.level_bits(levels, dtype).astype(np.int64), dtype)
    packed = rng.integers(0, 256, size=(16, 64), dtype=np.int64)  # mma rows 0-7: ra of lane g, 8-15: rb
    idx = np.zeros((16, 128), dtype=np.int64)
    for byte in range(64):  # tq/packing.py: block byte j = column j (low nibble), j + 16 (high)
        col = 32 * (byte // 16) + byte % 16
        idx[:, col] = packed[:, byte] & 15
        idx[:, col + 16] = packed[:, byte] >> 4
    xbits = _float_bits(rng.standard_normal((16, 128)), dtype)  # batch rows 0-15
    x = _bits_to_float(xbits, dtype)
    want = lv[idx] @ x.T  # [16 mma rows, 16 batch rows]
    tables = [v & 0xFFFFFFFFFFFFFFFF for v in lut4.tables(levels, dtype)]
    first_table = 16 + 16 * n_tiles
    lanes = []
    for lane in range(32):
        g, t = lane // 4, lane % 4
        ops = {}
        for part, row in enumerate((g, g + 8)):
            for w in range(4):
                b = packed[row, 16 * t + 4 * w: 16 * t + 4 * w + 4]
                ops[f"${8 + 4 * part + w}"] = int(b[0] | (b[1] << 8) | (b[2] << 16) | (b[3] << 24))
        for nt in range(n_tiles):
            pairs = [int(xbits[8 * nt + g, 32 * t + 2 * i] | (xbits[8 * nt + g, 32 * t + 2 * i + 1] << 16))
                     for i in range(16)]
            # operand order of the asm: tensor 1 = pairs 0-7 (ra's elements: 0-3, rb's: 4-7), tensor 2 = 8-15
            for i in range(16):
                ops[f"${16 + 16 * nt + i}"] = pairs[i]
        for k in range(4):
            for j in range(8):
                ops[f"${first_table + 8 * k + j}"] = tables[k]
        lanes.append(ops)
    regs = _warp_run(lutmma._ptx("bf16" if dtype == torch.bfloat16 else "f16", n_tiles, sym), lanes, dtype)
    f32 = lambda v: float(np.array([v], dtype=np.uint32).view(np.float32)[0])  # noqa: E731
    scale = np.abs(want).max()
    for lane, r in enumerate(regs):
        g, t = lane // 4, lane % 4
        for out, (row, n) in {0: (g, 2 * t), 1: (g, 2 * t + 1), 4: (g + 8, 2 * t), 5: (g + 8, 2 * t + 1),
                              2: (g, 8 + 2 * t), 3: (g, 9 + 2 * t), 6: (g + 8, 8 + 2 * t), 7: (g + 8, 9 + 2 * t)}.items():
            got = f32(r[f"${out}"])
            expect = want[row, n] if n < 8 * n_tiles else 0.0
            assert abs(got - expect) <= 1e-5 * scale, (lane, out, got, expect)


GOOD = """#blocked = #ttg.blocked<{sizePerThread = [1, 4], threadsPerWarp = [8, 4], warpsPerCTA = [4, 1], order = [1, 0]}>
#blocked1 = #ttg.blocked<{sizePerThread = [1, 1], threadsPerWarp = [32, 1], warpsPerCTA = [4, 1], order = [0, 1]}>
    %5 = tt.elementwise_inline_asm "{ mma.sync.aligned... }" {constraints = "=r"} %1, %2 : tensor<64x16xi32, #blocked>, i64 -> tensor<64x16xf32, #blocked>
"""


def test_layout_guard():
    from tq.triton import lutmma

    assert lutmma.layout_ok(GOOD, 4)
    assert not lutmma.layout_ok(GOOD, 8)  # other warp count than the kernel assumes
    assert not lutmma.layout_ok(GOOD.replace("threadsPerWarp = [8, 4]", "threadsPerWarp = [4, 8]"), 4)
    assert not lutmma.layout_ok(GOOD.replace("tensor<64x16xf32, #blocked>", "tensor<64x16xf32, #blocked1>"), 4)
    assert not lutmma.layout_ok(GOOD.replace("mma.sync", "fma"), 4)  # no asm call found
    # the TMA kernel's x loads (4 words of a thread through one pointer) are checked too
    load = ('    %6 = tt.elementwise_inline_asm "ld.global.nc.v4.b32 {$0, $1, $2, $3}, [$4];" {pure = true} %3 : '
            'tensor<64x16x!tt.ptr<i32>, {0}> -> tensor<64x16xi32, {0}>\n')
    assert lutmma.layout_ok(GOOD + load.replace("{0}", "#blocked"), 4)
    assert not lutmma.layout_ok(GOOD + load.replace("{0}", "#blocked1"), 4)


# ---------------------------------------------------------------------------
# The kernel against the reference (interpreter on the CPU, PTX on a GPU)
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("group,residual,codebook", [(128, None, "gaussian"), (256, 4, "gaussian-poly"),
                                                     (None, None, "beta")])
def test_mma_kernel_parity(triton_backend, gen, dtype, group, residual, codebook):
    from tq.triton import dispatch

    n, k = 45, 512 if group != 256 else 768  # odd N; full row: one 512-column group
    qw = tq.quantize(torch.randn(n, k, generator=gen).to(DEVICE), bits=4, group_size=group,
                     residual_bits=residual, codebook=codebook, seed=int(torch.randint(0, 999, (1,), generator=gen)))
    prep = dispatch.prepare_weight(qw)
    bias = torch.randn(n, generator=gen).to(DEVICE, dtype)
    rot_dtype = dtype if ON_GPU else torch.float32
    # (depth: the register ring's three forms; maxnreg: a compile option only, on a GPU;
    # tma: the TMA kernel's stages, 0 = the ring; on a GPU before Hopper those take the ring)
    for batch, bn, warps, split, depth, tma in [(1, 16, 1, 1, 1, 0), (3, 32, 2, 3, 2, 0), (8, 64, 4, 2, 3, 0),
                                                (9, 16, 1, 4, 2, 0), (16, 32, 1, 1, 1, 0), (1, 128, 8, 3, 2, 0),
                                                (11, 32, 1, 3, 1, 3), (16, 64, 2, 1, 1, 2), (5, 16, 1, 2, 1, 3),
                                                # uneven pieces (split -1: n_tiles - 1 K tiles, then 1)
                                                (3, 32, 2, -1, 2, 0), (12, 32, 1, -1, 1, 3)]:
        n_tiles = qw.k_padded // dispatch.MMA_TILE  # 4 or 6
        cfg = dispatch.Lut4Config(bn=bn, bm=8 if batch <= 8 else 16, split=max(split, 1), group_m=1,
                                  num_warps=warps, num_stages=1, scale_w=False, unroll=2, mma=True, depth=depth,
                                  maxnreg=128 if warps == 8 else 0, tma_stages=tma,
                                  per_split=n_tiles - 1 if split < 0 else 0)
        x = torch.randn(batch, k, generator=gen).to(DEVICE, dtype)
        x_rot = dispatch.rotate.rotate(x, qw.rotation_block, qw.seed, qw.k_padded, rot_dtype)
        y = torch.full((batch, n), float("nan"), device=DEVICE, dtype=dtype)
        dispatch._launch_mma(cfg, qw, prep, x_rot, y, bias if batch % 2 else None, batch)
        assert _rel(y, x, qw, bias if batch % 2 else None) < TOL[dtype], (batch, cfg)
        if cfg.per_split:  # (two pieces were launched, not one)
            assert dispatch._lut4_kernel_args(qw, prep, x_rot, y, None, batch, dispatch.MMA_TILE, cfg.split, 1,
                                              cfg.per_split)[2] == 2
        assert int(dispatch._lock_buffer(y.device, 1).abs().sum()) == 0


def test_mma_chosen_for_decode_and_switch(monkeypatch):
    from tq.triton import dispatch

    cpu = torch.device("cpu")
    assert dispatch.mma_reason(128, cpu) is None
    assert "multiple of 128" in dispatch.mma_reason(64, cpu)
    cands = dispatch.lut4_candidates(8192, 8192, 1, 128, cpu)
    assert cands and all(c.mma and c.bm == 8 for c in cands)
    assert all(c.bm == 16 for c in dispatch.lut4_candidates(8192, 8192, 9, 128, cpu))
    assert not any(c.mma for c in dispatch.lut4_candidates(8192, 8192, 1, 64, cpu))
    monkeypatch.setenv("TQ_TRITON_MMA", "0")
    assert "TQ_TRITON_MMA" in dispatch.mma_reason(128, cpu)
    assert not any(c.mma for c in dispatch.lut4_candidates(8192, 8192, 1, 128, cpu))


def test_tma_choice_and_reasons(monkeypatch, gen):
    """TMA candidates only at B 9-16 and only where tma_reason allows; each reason names the cause."""
    from tq.triton import dispatch

    if dispatch.TensorDescriptor is None:
        pytest.skip("this Triton has no host tensor descriptors (triton.tools.tensor_descriptor)")
    cpu = torch.device("cpu")
    assert not any(c.tma_stages for c in dispatch.lut4_candidates(8192, 8192, 16, 128, cpu, tma=False))
    # (the GPU candidate lists; the module's interpreter setting would shrink them to one)
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    cands = dispatch._mma_candidates(8192, 8192, 16, cpu, tma=True)
    assert any(c.tma_stages for c in cands) and any(not c.tma_stages for c in cands)
    assert not any(c.tma_stages for c in dispatch._mma_candidates(8192, 8192, 8, cpu, tma=True))
    assert not any(c.tma_stages for c in dispatch._mma_candidates(8192, 8192, 16, cpu, tma=False))
    qw = tq.quantize(torch.randn(16, 256, generator=gen), bits=4, group_size=128)
    assert dispatch.tma_reason(qw, cpu) is None
    monkeypatch.setenv("TQ_TRITON_TMA", "0")
    assert "TQ_TRITON_TMA=0" in dispatch.tma_reason(qw, cpu)
    monkeypatch.delenv("TQ_TRITON_TMA")
    # a plane whose base is not 16-byte aligned (a view 4 bytes into a buffer)
    plane = qw.passes[0].planes[0]
    buf = torch.zeros(plane.numel() + 16, dtype=torch.uint8)
    shifted = buf[4:4 + plane.numel()].view(plane.shape)
    shifted.copy_(plane)
    monkeypatch.setattr(qw.passes[0], "planes", [shifted] + list(qw.passes[0].planes[1:]))
    assert "16-byte" in dispatch.tma_reason(qw, cpu)


def test_tma_config_on_unaligned_planes_takes_the_ring(triton_backend, gen, monkeypatch):
    """A tuned TMA choice applied to a weight TMA cannot read still gives the right answer."""
    from tq.triton import dispatch

    n, k = 24, 256
    qw = tq.quantize(torch.randn(n, k, generator=gen).to(DEVICE), bits=4, group_size=128)
    plane = qw.passes[0].planes[0]
    buf = torch.zeros(plane.numel() + 16, dtype=torch.uint8, device=plane.device)
    shifted = buf[4:4 + plane.numel()].view(plane.shape)
    shifted.copy_(plane)
    monkeypatch.setattr(qw.passes[0], "planes", [shifted] + list(qw.passes[0].planes[1:]))
    prep = dispatch.prepare_weight(qw)
    assert dispatch.tma_reason(qw, DEVICE) is not None
    x = torch.randn(12, k, generator=gen).to(DEVICE, torch.bfloat16)
    x_rot = dispatch.rotate.rotate(x, qw.rotation_block, qw.seed, qw.k_padded,
                                   torch.bfloat16 if ON_GPU else torch.float32)
    y = torch.full((12, n), float("nan"), device=DEVICE, dtype=torch.bfloat16)
    cfg = dispatch.Lut4Config(bn=16, bm=16, split=1, group_m=1, num_warps=1, num_stages=1, scale_w=False,
                              mma=True, tma_stages=3)
    dispatch._launch_mma(cfg, qw, prep, x_rot, y, None, 12)
    assert _rel(y, x, qw, None) < TOL[torch.bfloat16]
    assert not prep.tma_descs.get((16, not dispatch.interpreting()))


def test_prefetch_depth_out_of_range_is_rejected(triton_backend, gen):
    """The register ring holds 1-3 tiles; another DEPTH must not compile to silently wrong sums."""
    from tq.triton import dispatch

    qw = tq.quantize(torch.randn(16, 256, generator=gen).to(DEVICE), bits=4, group_size=128)
    prep = dispatch.prepare_weight(qw)
    x = torch.randn(1, 256, generator=gen).to(DEVICE, torch.bfloat16)
    x_rot = dispatch.rotate.rotate(x, qw.rotation_block, qw.seed, qw.k_padded,
                                   torch.bfloat16 if ON_GPU else torch.float32)
    y = torch.empty((1, 16), device=DEVICE, dtype=torch.bfloat16)
    cfg = dispatch.Lut4Config(bn=16, bm=8, split=1, group_m=1, num_warps=1, num_stages=1, scale_w=False,
                              mma=True, depth=4)
    with pytest.raises(Exception, match="DEPTH"):
        dispatch._launch_mma(cfg, qw, prep, x_rot, y, None, 1)


def test_decode_candidates_come_from_mma_tilings(monkeypatch):
    """_mma_candidates expands exactly mma_tilings' rows (what the probes replace to force one),
    each with split_candidates' factors."""
    from tq.triton import dispatch

    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    cpu = torch.device("cpu")
    for batch, tma in [(1, False), (16, True), (12, False)]:
        bb = 8 if batch <= 8 else 16
        got = {(c.bn, c.num_warps, c.depth, c.maxnreg, c.tma_stages) for c in
               dispatch._mma_candidates(28672, 8192, batch, cpu, tma)}
        assert got == set(dispatch.mma_tilings(bb, tma))
    monkeypatch.setattr(dispatch, "mma_tilings", lambda bb, tma: [(64, 4, 3, 96, 0)])
    cands = dispatch._mma_candidates(8192, 8192, 1, cpu)
    assert {(c.bn, c.depth, c.maxnreg) for c in cands} == {(64, 3, 96)}
    sms = dispatch.launch.sm_count(cpu)
    assert sorted(c.split for c in cands if not c.per_split) == dispatch.split_candidates(128, 64, sms)
    # On 132 SMs the 224 blocks of 128 rows at 28672x8192 also get the two uneven pieces; the
    # 448 blocks of 64 rows (more than 2 per SM) do not.
    monkeypatch.setattr(dispatch, "mma_tilings", lambda bb, tma: [(128, 8, 2, 128, 0), (64, 4, 2, 128, 0)])
    monkeypatch.setattr(dispatch.launch, "sm_count", lambda device: 132)
    cands = dispatch._mma_candidates(28672, 8192, 1, cpu)
    uneven = {(c.bn, c.split, c.per_split) for c in cands if c.per_split}
    assert uneven == {(128, 2, 51), (128, 2, 40)}
    assert {c.split for c in cands if c.bn == 128 and not c.per_split} == set(dispatch.split_candidates(224, 64, 132))


def test_uneven_splits():
    """Two uneven K pieces only where the row blocks leave CTA slots idle (fewer than 2 per SM):
    the 224 blocks of 28672x8192 on 132 SMs get pieces of 51 + 13 and 40 + 24 of the 64 tiles."""
    from tq.triton import dispatch

    assert dispatch.uneven_splits(224, 64, 132) == [51, 40]
    assert dispatch.uneven_splits(264, 64, 132) == []      # every slot already busy
    assert dispatch.uneven_splits(64, 4, 132) == []        # too few K tiles to cut unevenly
    for programs, n_tiles in [(8, 8), (100, 9), (131, 224)]:
        for per in dispatch.uneven_splits(programs, n_tiles, 132):
            assert n_tiles / 2 < per < n_tiles  # exactly two pieces, the first the longer
