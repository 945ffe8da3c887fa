"""cutile backend: availability reasons and AOT compilation on the CPU; parity on the GPU.

CPU / CI: ``pytest tests/test_cutile_backend.py`` compiles a representative set of kernel
variants to cubin for sm_80, sm_90, sm_100 and sm_120 (needs ``cuda-tile[tileiras]``,
skipped with the reason otherwise) and checks every availability reason.
GPU: ``pytest -m gpu tests/test_cutile_backend.py`` checks the fused kernels against
the float64 reference on fresh random inputs across bits / groups / residual passes /
codebook kinds / dtypes / bias / odd shapes, and with cupy inputs.
"""
from __future__ import annotations

import math
import secrets

import numpy as np
import pytest
import torch

import tq
import tq.cutile as tqc
from tq.cutile import env
from tq.reference import matmul_float64

COMPILER_OK, COMPILER_REASON = env.compiler_ready()
needs_compiler = pytest.mark.skipif(not COMPILER_OK, reason=f"cannot compile cuTile kernels here: {COMPILER_REASON}")
RUNTIME_OK, RUNTIME_REASON = env.availability()
needs_gpu = pytest.mark.skipif(not RUNTIME_OK, reason=f"cutile backend unavailable: {RUNTIME_REASON}")


# ---------------------------------------------------------------------------
# Availability reasons (pure function of the machine facts)
# ---------------------------------------------------------------------------
GOOD = {"cuda_tile_error": None, "tileiras_path": "/x/tileiras", "tileiras_version": (13, 4),
        "device_count": 1, "driver_api": 13000, "capability": (9, 0), "device_name": "H100"}


@pytest.mark.parametrize("change, words", [
    ({"cuda_tile_error": "ModuleNotFoundError: No module named 'cuda'"}, "cuda-tile is missing"),
    ({"tileiras_path": None}, "tileiras compiler is missing"),
    ({"tileiras_version": (13, 0)}, "version 13.0"),
    ({"tileiras_version": (13, 5)}, "13.2-13.4"),
    ({"device_count": 0}, "no CUDA device"),
    ({"driver_api": 12080}, "older than r580"),
    ({"driver_api": None}, "older than r580"),
    ({"capability": (7, 5)}, "below 8.0"),
])
def test_availability_reasons(change, words):
    ok, reason = env.verdict({**GOOD, **change})
    assert not ok and words in reason


def test_availability_ok_and_registry():
    ok, reason = env.verdict(GOOD)
    assert ok and "sm_90" in reason
    ok, reason = tqc.availability()
    assert isinstance(ok, bool) and reason
    from tq.backends import get_backend
    b = get_backend("cutile", require_available=False)
    assert b.available == ok and b.reason == reason


def test_horner_coefficients_reproduce_levels():
    from tq.codebook import get_codebook
    from tq.cutile.dispatch import horner_coefficients
    for bits in (2, 3, 4, 8):
        cb = get_codebook("gaussian-poly", bits)
        c = horner_coefficients(cb.poly_coefficients, bits, 128)
        w = np.arange(1 << bits) - ((1 << bits) - 1) / 2
        h = np.zeros_like(w)
        for cj in c[::-1]:
            h = h * w * w + cj
        np.testing.assert_allclose(h * w, cb.levels / np.sqrt(128), rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_pair_table_decodes_to_both_nibbles(dtype):
    # NumPy model of levels.py's decode of a byte-pair entry v: slice 0 (low nibble) from
    # the low 16 bits, slice 1 (high nibble) from the high 16 bits.
    from tq.codebook import get_codebook
    from tq.cutile.dispatch import pair_table
    lv = torch.tensor(get_codebook("gaussian", 4).levels, dtype=torch.float64) / np.sqrt(128)
    t = pair_table(lv, dtype)
    assert t.dtype == torch.int32 and t.shape == (256,)
    v = t.numpy().astype(np.int64) & 0xFFFFFFFF
    if dtype == torch.bfloat16:   # the GEMV's bit tricks: bitcast(v << 16), bitcast(v & 0xFFFF0000)
        lo = ((v << 16) & 0xFFFFFFFF).astype(np.uint32).view(np.float32)
        hi = (v & 0xFFFF0000).astype(np.uint32).view(np.float32)
    else:
        lo = (v & 0xFFFF).astype(np.uint16).view(np.float16).astype(np.float32)
        hi = (v >> 16).astype(np.uint16).view(np.float16).astype(np.float32)
    b = np.arange(256)
    want = lv.to(dtype).float().numpy()
    np.testing.assert_array_equal(lo, want[b & 15])
    np.testing.assert_array_equal(hi, want[b >> 4])
    assert not np.array_equal(lo, hi)


def test_pair_table_refuses_levels_that_do_not_fit():
    from tq.cutile.dispatch import pair_table
    big = torch.linspace(-1e5, 1e5, 16, dtype=torch.float64)        # overflows fp16
    assert pair_table(big, torch.float16) is None and pair_table(big, torch.bfloat16) is not None
    tiny = torch.linspace(-1e-6, 1e-6, 16, dtype=torch.float64)     # fp16 subnormals
    assert pair_table(tiny, torch.float16) is None
    with pytest.raises(ValueError, match="16 levels"):
        pair_table(torch.zeros(8, dtype=torch.float64), torch.bfloat16)


def test_level_mode_choice(monkeypatch):
    # lookup + bf16/fp16 -> fitted polynomial, else byte pairs (4-bit), else gather; fp32 -> exact gather
    from tq.cutile import dispatch as d
    pairs = {torch.bfloat16: torch.zeros(256, dtype=torch.int32), torch.float16: torch.ones(256, dtype=torch.int32)}
    one, fitc = torch.zeros(1), torch.ones(5)
    pd = d.PassData(4, 0, 0, one, one, one, one, one, pairs, (5, fitc))
    assert d.level_mode(pd, torch.bfloat16)[:2] == (5, fitc) and d.level_mode(pd, torch.float16)[0] == 5
    assert d.level_mode(pd, torch.float32) == (0, one, one)
    monkeypatch.setenv("TQ_CUTILE_LEVELS", "pairs")
    assert d.level_mode(pd, torch.bfloat16)[0] == -1 and d.level_mode(pd, torch.float16)[0] == -2
    assert d.level_mode(pd, torch.float16)[2] is pairs[torch.float16]
    monkeypatch.setenv("TQ_CUTILE_LEVELS", "fit")
    assert d.level_mode(d.PassData(4, 0, 0, one, one, one, one, one, pairs), torch.bfloat16)[0] == -1  # no fit
    assert d.level_mode(d.PassData(8, 0, 0, one, one, one, one, one), torch.bfloat16)[0] == 0   # neither
    monkeypatch.setenv("TQ_CUTILE_LEVELS", "gather")
    assert d.level_mode(pd, torch.bfloat16)[0] == 0
    monkeypatch.setenv("TQ_CUTILE_LEVELS", "table")
    with pytest.raises(ValueError, match="TQ_CUTILE_LEVELS"):
        d.level_mode(pd, torch.bfloat16)
    # fp16 evaluation: the default for the batch 2-16 tensor-core decode only, or when asked
    monkeypatch.delenv("TQ_CUTILE_LEVELS")
    c16 = torch.full((5,), 2.0)
    pd16 = d.PassData(4, 0, 0, one, one, one, one, one, pairs, (5, fitc), (5, c16))
    assert d.level_mode(pd16, torch.bfloat16)[:2] == (5, fitc)
    assert d.level_mode(pd16, torch.bfloat16, fit16_default=True)[:2] == (d.FP16_TERMS + 5, c16)
    assert d.level_mode(pd16, torch.float16, fit16_default=True)[0] == 5    # 2^-9 is not below fp16's rounding
    assert d.level_mode(pd16, torch.float32, fit16_default=True)[0] == 0
    monkeypatch.setenv("TQ_CUTILE_LEVELS", "fit16")
    assert d.level_mode(pd16, torch.float16)[0] == d.FP16_TERMS + 5
    assert d.level_mode(pd, torch.float16)[0] == 5   # no fp16 form: the fp32 fit
    monkeypatch.setenv("TQ_CUTILE_LEVELS", "fit")
    assert d.level_mode(pd16, torch.bfloat16, fit16_default=True)[0] == 5
    monkeypatch.delenv("TQ_CUTILE_LEVELS")
    poly = d.PassData(4, 0, 3, one, one, one, fitc, one)
    assert d.level_mode(poly, torch.bfloat16)[:2] == (3, fitc)


def test_dequant_level_mode_choice(monkeypatch):
    # the chunked prefill's dequant: fit16 for bf16 chunks by default; fp16 chunks, or a codebook
    # without an fp16 form, the fp16-table choice (fp32 fit); TQ_CUTILE_LEVELS overrides both
    from tq.cutile import dispatch as d
    monkeypatch.delenv("TQ_CUTILE_LEVELS", raising=False)
    pairs = {torch.bfloat16: torch.zeros(256, dtype=torch.int32), torch.float16: torch.ones(256, dtype=torch.int32)}
    one, fitc, c16 = torch.zeros(1), torch.ones(5), torch.full((5,), 2.0)
    pd16 = d.PassData(4, 0, 0, one, one, one, one, one, pairs, (5, fitc), (5, c16))
    pd = d.PassData(4, 0, 0, one, one, one, one, one, pairs, (5, fitc))
    assert d.dequant_level_mode(pd16, torch.bfloat16)[:2] == (d.FP16_TERMS + 5, c16)
    assert d.dequant_level_mode(pd16, torch.float16)[:2] == (5, fitc)
    assert d.dequant_level_mode(pd, torch.bfloat16)[:2] == (5, fitc)
    monkeypatch.setenv("TQ_CUTILE_LEVELS", "fit")
    assert d.dequant_level_mode(pd16, torch.bfloat16)[0] == 5
    monkeypatch.setenv("TQ_CUTILE_LEVELS", "pairs")   # fp16 pair tables for either output dtype
    assert d.dequant_level_mode(pd16, torch.bfloat16)[0] == -2


@pytest.mark.parametrize("codebook, bits", [("gaussian", 4), ("gaussian", 3), ("gaussian", 2),
                                            ("gaussian-poly", 4), ("beta-poly", 4)])
def test_fp16_levels_emulation(codebook, bits):
    # The host's op-by-op fp16 model of levels16: within FIT16_TOL of the exact scaled levels
    # for the shipped codebooks (so fit16 is offered), and what a plain fp16 evaluation gives.
    from tq.cutile import dispatch as d
    qw = tq.quantize(torch.randn(16, 256), bits=bits, group_size=128, codebook=codebook)
    pd = d.weight_data(qw).passes[0]
    assert pd.fit16 is not None
    cw = (pd.coef if pd.terms > 0 else pd.fit[1]).double().numpy()
    exact = qw.passes[0].levels.double().numpy() / math.sqrt(128)
    got = d.fp16_levels(cw, bits)
    assert np.max(np.abs(got - exact) / np.abs(exact)) <= d.FIT16_TOL
    assert np.all(got.astype(np.float16).astype(np.float64) == got)      # fp16 values
    # independent model: numpy float16 scalars step by step (each product and sum rounded once)
    f16, u_max = np.float16, ((1 << bits) - 1) / 2
    b = [f16(v) for v in d.fp16_coefficients(cw, bits)]
    for i, want in enumerate(got):
        u = f16(i - u_max)
        sq = f16(f16(u * u) * f16(1.0 / (u_max * u_max)))
        h = b[-1]
        for bj in reversed(b[:-1]):
            h = f16(float(h) * float(sq) + float(bj))
        assert float(f16(h * u)) == want, (i, float(f16(h * u)), want)
    # an 8-bit codebook never takes it; a codebook that fp16 cannot evaluate well is refused
    assert d.fit16_for(cw, 8, np.ones(256)) is None
    assert d.fit16_for(cw, bits, exact * 1.01) is None


def test_fitted_polynomial_reproduces_lookup_codebooks():
    from tq.codebook import get_codebook
    from tq.cutile.dispatch import FIT_TOL, fit_odd_polynomial, horner_coefficients
    for bits, terms in ((2, 2), (3, 4), (4, 5)):
        lv = get_codebook("gaussian", bits).levels
        c, err = fit_odd_polynomial(lv)
        assert len(c) == terms and err <= FIT_TOL
        # the kernels' Horner form (levels.py) over w = idx - u_max, with 1/sqrt(G) folded in
        h = horner_coefficients(c, bits, 64)
        w = np.arange(1 << bits) - ((1 << bits) - 1) / 2
        acc = np.zeros_like(w)
        for cj in h[::-1]:
            acc = acc * w * w + cj
        rel = np.abs(acc * w * 8 - lv) / np.abs(lv)
        assert rel.max() <= FIT_TOL and (bits == 4) == (rel.max() > 1e-9)
    assert fit_odd_polynomial(get_codebook("gaussian", 8).levels) is None      # 128 levels: no short fit
    assert fit_odd_polynomial(np.linspace(-1, 2, 16)) is None                  # asymmetric
    assert fit_odd_polynomial(np.array([-1.0, 0.0, 0.0, 1.0])) is None         # a zero level


def test_chunked_choice(monkeypatch):
    from tq.cutile import dispatch as d
    assert d.uses_chunked(2048, torch.bfloat16) and d.uses_chunked(17, torch.float16)
    assert not d.uses_chunked(2048, torch.float32) and not d.uses_chunked(16, torch.bfloat16)
    monkeypatch.setenv("TQ_CUTILE_CHUNKED_MIN_BATCH", "1024")
    assert d.uses_chunked(1024, torch.bfloat16) and not d.uses_chunked(1023, torch.bfloat16)
    monkeypatch.setenv("TQ_CUTILE_CHUNKED_MIN_BATCH", "lots")
    with pytest.raises(ValueError, match="TQ_CUTILE_CHUNKED_MIN_BATCH"):
        d.uses_chunked(2048, torch.bfloat16)


# ---------------------------------------------------------------------------
# Ahead-of-time compilation (no GPU needed)
# ---------------------------------------------------------------------------
@needs_compiler
@pytest.mark.parametrize("arch", ["sm_80", "sm_90", "sm_100", "sm_120"])
def test_aot_compile_representative(arch, tmp_path):
    from tq.cutile import compile as aot
    variants = aot.variants("ci")
    results = aot.compile_all([arch], variants, out_dir=tmp_path, jobs=2)
    assert results and all(r.ok for r in results), [r.error for r in results if not r.ok]
    assert all(r.size > 1000 for r in results)
    assert {r.kernel for r in results} == {"rotate", "rotate_mma", "fused", "gemv", "reduce", "dequant", "unrotate",
                                           "words", "rotate_words"}
    assert any("pairs" in r.variant.name for r in results if r.kernel == "gemv")


@needs_compiler
def test_aot_cli_bad_arch():
    from tq.cutile import compile as aot
    with pytest.raises(SystemExit):
        aot.main(["--arch", "sm_75x"])


# ---------------------------------------------------------------------------
# GPU parity against the float64 reference
# ---------------------------------------------------------------------------
def _seed():
    return secrets.randbelow(2**31)


def _rel(y, ref):
    y = np.asarray(y.detach().double().cpu() if isinstance(y, torch.Tensor) else y, dtype=np.float64)
    return float(np.linalg.norm(y - ref) / np.linalg.norm(ref))


TOL = {torch.bfloat16: 1e-2, torch.float16: 1e-2, torch.float32: 1e-4}

CONFIGS = [  # (bits, residual_bits, group_size)
    (2, None, 32), (3, None, 64), (4, None, 128), (8, None, 256), (4, None, None),
    (4, 4, 128), (3, 2, 64), (4, 2, 32), (2, 2, 256), (8, 4, 128), (3, 3, None), (2, None, None),
]


@pytest.mark.gpu
@needs_gpu
@pytest.mark.parametrize("codebook", ["gaussian", "beta-poly"])
@pytest.mark.parametrize("bits, residual, group", CONFIGS)
def test_parity(bits, residual, group, codebook):
    seed = _seed()
    g = torch.Generator().manual_seed(seed)
    n = int(torch.randint(33, 300, (1,), generator=g)) | 1
    k = int(torch.randint(40, 700, (1,), generator=g)) | 1
    w = torch.randn(n, k, generator=g)
    qw = tq.quantize(w.cuda(), bits=bits, group_size=group, residual_bits=residual, codebook=codebook,
                     seed=seed % 1000)
    for dtype, lead in ((torch.bfloat16, (3,)), (torch.float16, (2, 5)), (torch.float32, (37,)), (torch.bfloat16, (1,))):
        x = torch.randn(*lead, k, generator=g).to(dtype).cuda()
        bias = torch.randn(n, generator=g).to(dtype).cuda() if lead[0] % 2 else None
        ref = matmul_float64(x, qw, bias=bias)
        y = tqc.matmul(x, qw, bias=bias)
        assert y.dtype == dtype and tuple(y.shape) == (*lead, n)
        err = _rel(y, ref)
        assert err < TOL[dtype], f"seed={seed} n={n} k={k} {dtype} lead={lead}: rel err {err:.2e}"


@pytest.mark.gpu
@needs_gpu
@pytest.mark.parametrize("codebook, degree, bits, group", [
    ("gaussian-poly", 5, 4, 64), ("beta", 5, 3, 128), ("gaussian-poly", "exact", 4, 128),
    ("gaussian-poly", "exact", 3, None), ("beta-poly", 3, 8, 32)])
def test_parity_codebook_kinds(codebook, degree, bits, group):
    seed = _seed()
    g = torch.Generator().manual_seed(seed)
    n, k = 129 + 2 * (seed % 60), 257 + (seed % 300)
    qw = tq.quantize(torch.randn(n, k, generator=g).cuda(), bits=bits, group_size=group, codebook=codebook,
                     poly_degree=degree, seed=seed % 997)
    for dtype in (torch.bfloat16, torch.float32):
        x = torch.randn(7, k, generator=g).to(dtype).cuda()
        err = _rel(tqc.matmul(x, qw), matmul_float64(x, qw))
        assert err < TOL[dtype], f"seed={seed} n={n} k={k} {dtype}: {err:.2e}"


@pytest.mark.gpu
@needs_gpu
@pytest.mark.parametrize("residual_codebook", ["residual-poly", "residual", "gaussian"])
@pytest.mark.parametrize("bits, residual, group", [(4, 4, 128), (3, 3, 64), (4, 2, None)])
def test_parity_residual_codebooks(residual_codebook, bits, residual, group):
    # The matched Lloyd-Max residual has no short polynomial (no word decode for it): every
    # choice must still match the reference, at decode (words or fused) and prefill batches.
    seed = _seed()
    g = torch.Generator().manual_seed(seed)
    n, k = 257 + 2 * (seed % 40), 1024 + 32 * (seed % 5)
    qw = tq.quantize(torch.randn(n, k, generator=g).cuda(), bits=bits, group_size=group, residual_bits=residual,
                     residual_codebook=residual_codebook, seed=seed % 991)
    for batch, dtype in ((1, torch.bfloat16), (16, torch.bfloat16), (9, torch.float32), (300, torch.float16)):
        x = torch.randn(batch, k, generator=g).to(dtype).cuda()
        err = _rel(tqc.matmul(x, qw), matmul_float64(x, qw))
        assert err < TOL[dtype], f"seed={seed} n={n} k={k} batch={batch} {dtype}: {err:.2e}"


@pytest.mark.gpu
@needs_gpu
@pytest.mark.parametrize("batch", [1, 5, 16, 17, 200, 300])
def test_parity_batches(batch):
    seed = _seed()
    g = torch.Generator().manual_seed(seed)
    n, k = 1000 + 2 * (seed % 50) + 1, 1024 + 32 * (seed % 7)
    qw = tq.quantize(torch.randn(n, k, generator=g).cuda(), bits=4, group_size=128, codebook="gaussian-poly")
    for dtype in (torch.bfloat16, torch.float32):
        x = torch.randn(batch, k, generator=g).to(dtype).cuda()
        err = _rel(tqc.matmul(x, qw), matmul_float64(x, qw))
        assert err < TOL[dtype], f"seed={seed} batch={batch} {dtype}: {err:.2e}"
    if batch > 16:  # the fused tensor-core prefill kernel, which bf16/fp16 reach only on request
        import os
        os.environ["TQ_CUTILE_CHUNKED_MIN_BATCH"] = "100000"
        try:
            x = torch.randn(batch, k, generator=g).to(torch.float16).cuda()
            err = _rel(tqc.matmul(x, qw), matmul_float64(x, qw))
        finally:
            del os.environ["TQ_CUTILE_CHUNKED_MIN_BATCH"]
        assert err < TOL[torch.float16], f"seed={seed} batch={batch} fused fp16: {err:.2e}"


@pytest.mark.gpu
@needs_gpu
@pytest.mark.parametrize("bits, residual, group, codebook, unrotate", [
    (4, None, 128, "gaussian", "1"), (4, 4, 64, "gaussian", "1"), (4, None, None, "gaussian", "1"),
    (3, 2, 32, "gaussian", "1"), (2, None, 256, "beta-poly", "1"), (8, 4, 128, "gaussian", "1"),
    (4, 2, 64, "gaussian-poly", "1"), (4, None, 128, "gaussian", "0"), (4, 4, 64, "gaussian", "0")])
def test_parity_chunked_prefill(bits, residual, group, codebook, unrotate, monkeypatch):
    # Small thresholds so that small shapes take the chunked path with several chunks
    # (128-row chunks; N odd, so the last chunk and the last dequant tile are partial).
    # Groups 32-128 un-rotate the weight chunks (unrotate = 1), the others rotate x.
    from tq import chunked
    from tq.cutile import dispatch as d
    monkeypatch.setenv("TQ_PREFILL_UNROTATE", unrotate)
    seed = _seed()
    g = torch.Generator().manual_seed(seed)
    n, k = 301 + 2 * (seed % 200), 1025 + 32 * (seed % 20)
    monkeypatch.setenv("TQ_PREFILL_WORKSPACE_MB", "1")
    assert chunked.chunk_rows_for(-(-k // 32) * 32, n) == 128
    qw = tq.quantize(torch.randn(n, k, generator=g).cuda(), bits=bits, group_size=group, residual_bits=residual,
                     codebook=codebook, seed=seed % 1000)
    for dtype, lead in ((torch.bfloat16, (37,)), (torch.float16, (3, 11))):
        x = torch.randn(*lead, k, generator=g).to(dtype).cuda()
        bias = torch.randn(n, generator=g).to(dtype).cuda() if dtype == torch.bfloat16 else None
        y = tqc.matmul(x, qw, bias=bias)
        plans = [p for p in d.weight_data(qw).plans.values() if p.tiling.tb == x.numel() // k]
        assert plans and all(p.chunk_rows == 128 for p in plans)   # several chunks, last one partial
        want_weight = unrotate == "1" and qw.rotation_block == d.k_tile(qw)   # (TK == R)
        assert want_weight or unrotate == "0" or group in (None, 256)
        assert all((p.rotate_form == "weight") == want_weight for p in plans)
        err = _rel(y, matmul_float64(x, qw, bias=bias))
        assert y.shape == (*lead, n) and err < TOL[dtype], f"seed={seed} n={n} k={k} {dtype}: {err:.2e}"
    # under CUDA-graph capture the replay matches the eager call
    x = torch.randn(64, k, generator=g).to(torch.bfloat16).cuda()
    want = tqc.matmul(x, qw)
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        tqc.matmul(x, qw)
    torch.cuda.current_stream().wait_stream(s)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = tqc.matmul(x, qw)
    graph.replay()
    torch.cuda.synchronize()
    assert torch.equal(out, want)


@pytest.mark.gpu
@needs_gpu
@pytest.mark.parametrize("bits, residual, codebook", [
    (2, None, "gaussian"), (3, None, "gaussian"), (4, None, "gaussian"), (8, None, "gaussian"),
    (4, 4, "gaussian"), (4, 2, "gaussian-poly")])
def test_parity_exact_tiles(bits, residual, codebook, monkeypatch):
    # N, K and B multiples of the tiles: the kernels' variants without bounds checks (CN = CB =
    # False), which the odd shapes above never select; plus the fused tensor-core prefill with
    # bf16 x (lookup codebooks take the byte pairs or the fit there) and fp32 x.
    seed = _seed()
    g = torch.Generator().manual_seed(seed)
    n, k = 1024, 1024
    qw = tq.quantize(torch.randn(n, k, generator=g).cuda(), bits=bits, group_size=128, residual_bits=residual,
                     codebook=codebook, seed=seed % 1000)
    cases = [(1, torch.bfloat16), (16, torch.bfloat16), (16, torch.float16), (8, torch.bfloat16),
             (128, torch.float32), (256, torch.bfloat16)]
    for batch, dtype in cases:
        x = torch.randn(batch, k, generator=g).to(dtype).cuda()
        for fused in ((False, True) if batch == 256 else (False,)):
            if fused:
                monkeypatch.setenv("TQ_CUTILE_CHUNKED_MIN_BATCH", "100000")
            for mode in (("fit", "pairs") if dtype != torch.float32 else ("fit",)):
                monkeypatch.setenv("TQ_CUTILE_LEVELS", mode)
                err = _rel(tqc.matmul(x, qw), matmul_float64(x, qw))
                assert err < TOL[dtype], f"seed={seed} B={batch} {dtype} fused={fused} {mode}: {err:.2e}"
            monkeypatch.delenv("TQ_CUTILE_CHUNKED_MIN_BATCH", raising=False)


@pytest.mark.gpu
@needs_gpu
@pytest.mark.parametrize("bits, residual", [(4, None), (4, 4), (3, 2)])
def test_level_modes_agree(bits, residual, monkeypatch):
    # The fitted polynomial (levels to 2^-11) and the byte pairs (levels rounded to x's
    # dtype) against the exact per-weight gather, on every decode / prefill path.
    seed = _seed()
    g = torch.Generator().manual_seed(seed)
    qw = tq.quantize(torch.randn(515, 1024, generator=g).cuda(), bits=bits, group_size=128, residual_bits=residual)
    for batch in (1, 16, 200):
        for dtype in (torch.bfloat16, torch.float16):
            x = torch.randn(batch, 1024, generator=g).to(dtype).cuda()
            ref = matmul_float64(x, qw)
            ys = {}
            for mode in ("fit", "fit16", "pairs", "gather"):
                monkeypatch.setenv("TQ_CUTILE_LEVELS", mode)
                ys[mode] = tqc.matmul(x, qw).double()
                assert _rel(ys[mode], ref) < TOL[dtype], f"seed={seed} {mode} batch={batch} {dtype}"
            for mode in ("fit", "fit16", "pairs"):
                diff = float((ys[mode] - ys["gather"]).norm() / ys["gather"].norm())
                assert diff < 5e-3, f"seed={seed} {mode} batch={batch} {dtype}: {diff:.2e}"
    monkeypatch.delenv("TQ_CUTILE_LEVELS")


@pytest.mark.gpu
@needs_gpu
@pytest.mark.parametrize("bits", [2, 3, 4])
def test_fp16_levels_on_gpu_match_host_model(bits, monkeypatch):
    # The chunked prefill's dequant with fp16 levels, unit norms and fp16 output writes the
    # fp16 levels themselves: they must equal the host's op-by-op model bit for bit (the
    # model is what decided that fit16 is accurate enough).
    from tq import chunked
    from tq.cutile import dispatch as d
    g = torch.Generator().manual_seed(_seed())
    n, k = 200, 512
    qw = tq.quantize(torch.randn(n, k, generator=g).cuda(), bits=bits, group_size=128)
    for p in qw.passes:
        p.norms.fill_(1.0)
    pd = d.weight_data(qw).passes[0]
    model = torch.as_tensor(d.fp16_levels(pd.fit[1].double().cpu().numpy(), bits))
    idx = (qw.passes[0].levels.double().cpu().numpy() / math.sqrt(128))
    want_idx = torch.as_tensor(np.abs(d_exact_rot(qw)[..., None] - idx).argmin(-1))
    monkeypatch.setenv("TQ_CUTILE_LEVELS", "fit16")
    monkeypatch.setenv("TQ_PREFILL_UNROTATE", "0")
    chunked.release_prefill_workspace()
    tqc.matmul(torch.randn(64, k, generator=g).to(torch.float16).cuda(), qw)   # one chunk: n <= chunk rows
    torch.cuda.synchronize()
    (buf,) = [b for key, b in chunked._workspaces.items() if key[2] == torch.float16]
    got = buf[: n * qw.k_padded].view(n, qw.k_padded).double().cpu()
    assert torch.equal(got, model[want_idx]), "GPU fp16 levels differ from the host model"
    chunked.release_prefill_workspace()


def d_exact_rot(qw):
    from tq.quantize import dequantize_rotated
    return dequantize_rotated(qw, dtype=torch.float64).cpu().numpy()


@pytest.mark.gpu
@needs_gpu
def test_cupy_inputs():
    cupy = pytest.importorskip("cupy")
    seed = _seed()
    g = torch.Generator().manual_seed(seed)
    qw = tq.quantize(torch.randn(257, 300, generator=g).cuda(), bits=4, group_size=64)
    x = torch.randn(4, 300, generator=g).to(torch.float16).cuda()
    bias = torch.randn(257, generator=g).to(torch.float16).cuda()
    y = tqc.matmul(cupy.asarray(x), qw, bias=cupy.asarray(bias))
    assert isinstance(y, cupy.ndarray) and y.dtype == cupy.float16 and y.shape == (4, 257)
    assert _rel(cupy.asnumpy(y), matmul_float64(x, qw, bias=bias)) < 1e-2


@pytest.mark.gpu
@needs_gpu
def test_bad_inputs_and_stats():
    qw = tq.quantize(torch.randn(64, 64).cuda(), bits=4, group_size=32)
    with pytest.raises(ValueError, match="in_features"):
        tqc.matmul(torch.randn(2, 65, device="cuda"), qw)
    with pytest.raises(TypeError, match="x must be"):
        tqc.matmul([1.0] * 64, qw)
    assert "CUDA" in tqc.supports(torch.randn(2, 64), qw)
    tqc.matmul(torch.randn(2, 64, device="cuda"), qw)
    stats = tqc.compile_stats()
    assert stats["variants"] >= 2 and stats["total_first_call_s"] > 0


def test_dequant_tn_setting(monkeypatch):
    from tq.cutile import dispatch as d
    assert d.dequant_tn() == d.DEQUANT_TN
    monkeypatch.setenv("TQ_CUTILE_DEQUANT_TN", "32")
    assert d.dequant_tn() == 32
    for bad in ("256", "0", "48", "abc"):   # 256 would not divide a 128-row chunk
        monkeypatch.setenv("TQ_CUTILE_DEQUANT_TN", bad)
        with pytest.raises(ValueError, match="TQ_CUTILE_DEQUANT_TN"):
            d.dequant_tn()


def test_decode_tilings():
    # measured choices (docs/cutile.md): register levels split 2, gather-bound levels split 4
    # at B = 1 and >= 2 programs per SM at B <= 16; fp32 prefill tiles of 64
    from tq.cutile.dispatch import choose_tiling
    assert choose_tiling(1, 8192, 64, 132, torch.bfloat16).split == 2
    assert choose_tiling(1, 8192, 64, 132, torch.bfloat16, gather_bound=True).split == 4
    assert choose_tiling(1, 300, 2, 132, torch.bfloat16).split == 1
    assert choose_tiling(1, 1024, 32, 132, torch.bfloat16).split == 8     # small N: cover the SMs
    assert choose_tiling(8, 1024, 32, 132, torch.bfloat16).split == 8
    assert choose_tiling(16, 8192, 64, 132, torch.bfloat16).split == 2
    assert choose_tiling(16, 28672, 64, 132, torch.bfloat16, fp16_levels=True).split == 1   # 224 row tiles
    assert choose_tiling(16, 28672, 64, 132, torch.bfloat16).split == 2    # fp32 levels: not measured, split 2
    assert choose_tiling(16, 8192, 64, 132, torch.bfloat16, gather_bound=True).split == 8
    t = choose_tiling(300, 8192, 64, 132, torch.float32)
    assert (t.tn, t.tb, t.split, t.path) == (64, 64, 1, "prefill")


def test_rotation_forms(monkeypatch):
    # tensor-core rotation for bf16/fp16 and blocks 32-128, persistent along rows; butterfly otherwise
    from tq.cutile import dispatch as d
    form, grid, consts = d.rotate_launch(128, 8192, 2048, torch.bfloat16, 132, 1, 0)
    assert form == "mma" and grid == (5, 64, 1) and consts == (128, 64, 1, 0)   # 2 programs / SM, 32 row tiles
    assert d.rotate_launch(128, 8192, 1, torch.float16, 132, 2, 4)[1] == (1, 64, 1)
    assert d.rotate_launch(128, 8192, 16, torch.float32, 132, 2, 0)[0] == "butterfly"
    assert d.rotate_launch(256, 8192, 16, torch.bfloat16, 132, 2, 0)[0] == "butterfly"
    monkeypatch.setenv("TQ_CUTILE_ROTATE", "butterfly")
    assert d.rotate_form(128, torch.bfloat16) == "butterfly"
    monkeypatch.setenv("TQ_CUTILE_ROTATE", "fast")
    with pytest.raises(ValueError, match="TQ_CUTILE_ROTATE must be 'mma' or 'butterfly'"):
        d.rotate_form(128, torch.bfloat16)
    from tq.rotation import hadamard_torch
    h = hadamard_torch(32, torch.float16, "cpu")   # (the H_R the mma rotation takes)
    assert torch.equal(h.double() @ h.double(), 32 * torch.eye(32, dtype=torch.float64))


@pytest.mark.gpu
@needs_gpu
@pytest.mark.parametrize("group", [32, 64, 128])
def test_rotation_forms_agree(group, monkeypatch):
    # the mma rotation (default for bf16/fp16) against the butterfly, through the whole backend
    # (fused.py's paths: the word decode has its own rotation, tests/test_cutile_words.py)
    from tq.cutile import dispatch as d
    monkeypatch.setenv("TQ_CUTILE_WORDS", "0")
    seed = _seed()
    g = torch.Generator().manual_seed(seed)
    n, k = 257 + seed % 64, 1000 + 8 * (seed % 50)
    qw = tq.quantize(torch.randn(n, k, generator=g).cuda(), bits=4, group_size=group, seed=seed % 1000)
    for dtype, batch in ((torch.bfloat16, 1), (torch.float16, 7), (torch.bfloat16, 300)):
        x = torch.randn(batch, k, generator=g).to(dtype).cuda()
        monkeypatch.delenv("TQ_CUTILE_ROTATE", raising=False)
        monkeypatch.setenv("TQ_PREFILL_UNROTATE", "0")   # (B = 300: rotate x, to compare the rotations)
        y_mma = tqc.matmul(x, qw)
        assert any(p.rotate_form == "mma" for p in d.weight_data(qw).plans.values())
        monkeypatch.setenv("TQ_CUTILE_ROTATE", "butterfly")
        y_bfly = tqc.matmul(x, qw)
        ref = matmul_float64(x, qw)
        assert _rel(y_mma, ref) < TOL[dtype] and _rel(y_bfly, ref) < TOL[dtype], f"seed={seed}"
        assert _rel(y_mma, y_bfly.double().cpu().numpy()) < 4e-3, f"seed={seed} {dtype} B={batch}"
