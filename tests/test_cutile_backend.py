"""cutile backend: availability reasons and AOT compilation on the CPU; parity on the GPU.

CPU / CI: ``pytest tests/test_cutile_backend.py`` compiles a representative set of kernel
variants to cubin for sm_80, sm_90, sm_100 and sm_120 (needs ``cuda-tile[tileiras]``,
skipped with the reason otherwise) and checks every availability reason.
GPU: ``pytest -m gpu tests/test_cutile_backend.py`` checks the fused kernels against
the float64 reference on fresh random inputs across bits / groups / residual passes /
codebook kinds / dtypes / bias / odd shapes, and with cupy inputs.
"""
from __future__ import annotations

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
    assert {r.kernel for r in results} == {"rotate", "fused", "gemv", "reduce"}


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
