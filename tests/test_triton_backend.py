"""Parity of the triton backend with the float64 reference (tq.reference.matmul_float64).

Without a CUDA device the kernels run on the CPU under Triton's interpreter
(TRITON_INTERPRET=1, set by the `triton_backend` fixture of tests/conftest.py for this module only, with the
kernel modules re-imported so that their @triton.jit functions are interpreted), at
small shapes.  With a CUDA device the same tests run the compiled kernels, and the
``gpu`` tests add real shapes.

Tolerance: relative error ||y - y64|| / ||y64||.  fp32 activations use exact fp32
arithmetic (FMA or tl.dot with input_precision="ieee"), so 1e-4 is a loose bound for
what is ~1e-6.  For fp16 / bf16 the output itself is rounded to that dtype (relative
error up to 2^-11 / 2^-8 per element; the interpreter's bf16 conversion truncates
instead of rounding, doubling that), plus operand rounding on the GPU's tensor cores.
"""
from __future__ import annotations


import numpy as np
import pytest
import torch

import tq
from tq import backends
from tq.experiments.parity import relative_error
from tq.reference.matmul import matmul_float64

ON_GPU = torch.cuda.is_available()
DEVICE = "cuda" if ON_GPU else "cpu"
TOLERANCE = {torch.float32: 1e-4, torch.float16: 2e-3, torch.bfloat16: 6e-3}
# The `triton_backend` fixture (tests/conftest.py) runs the kernels interpreted when there is no GPU.
pytestmark = pytest.mark.usefixtures("triton_backend")


def _relative_error(y: torch.Tensor, x: torch.Tensor, qw, bias=None) -> float:
    ref = matmul_float64(x, qw, bias=bias)
    got = y.detach().cpu().double().numpy()
    assert got.shape == ref.shape
    assert np.all(np.isfinite(got)), "non-finite output"
    return relative_error(got, ref)


def _weight(n, k, gen, device=DEVICE):
    return torch.randn(n, k, generator=gen).to(device)


def _check(tqt, qw, x, bias=None):
    y = tqt.matmul(x, qw, bias=bias)
    assert y.dtype == x.dtype and y.device == x.device
    assert y.shape == (*x.shape[:-1], qw.out_features)
    err = _relative_error(y, x, qw, bias)
    assert err < TOLERANCE[x.dtype], f"relative error {err:.2e} >= {TOLERANCE[x.dtype]:.0e} for {qw}"
    return err


# Every (bits, residual) x group-size pair once; the codebook kind, batch (decode FMA,
# decode tl.dot, prefill) and dtype rotate through the cases so that every bits config
# meets every path and dtype.
BITS_CONFIGS = [(2, None), (3, None), (4, None), (8, None), (4, 4), (3, 2), (4, 2), (2, 2)]
GROUPS = [32, 64, 128, 256, None]
BATCHES = [1, 5, 19]
DTYPES = [torch.float32, torch.bfloat16, torch.float16]
CASES = [(bits, res, g, ("gaussian", "gaussian-poly")[(i + j) % 2], BATCHES[(i + 2 * j) % 3], DTYPES[(i + j) % 3])
         for i, (bits, res) in enumerate(BITS_CONFIGS) for j, g in enumerate(GROUPS)]
# K not a multiple of G (zero padding inside the last group); odd N.
SHAPES = {32: (37, 96), 64: (21, 200), 128: (19, 576), 256: (13, 300), None: (23, 328)}


@pytest.mark.parametrize("bits,residual,group,codebook,batch,dtype", CASES)
def test_parity_every_bits_and_group(triton_backend, gen, bits, residual, group, codebook, batch, dtype):
    n, k = SHAPES[group]
    qw = tq.quantize(_weight(n, k, gen), bits=bits, group_size=group, residual_bits=residual,
                     codebook=codebook, seed=int(torch.randint(0, 1000, (1,), generator=gen)))
    x = torch.randn(batch, k, generator=gen).to(DEVICE, dtype)
    _check(triton_backend, qw, x)


@pytest.mark.parametrize("codebook", ["gaussian", "beta", "gaussian-poly", "beta-poly"])
@pytest.mark.parametrize("bits", [2, 3, 4, 8])
def test_parity_codebook_kinds(triton_backend, gen, codebook, bits):
    """Lookup (table) and polynomial (Horner in registers) codebooks, decode and prefill."""
    qw = tq.quantize(_weight(17, 160, gen), bits=bits, group_size=32, codebook=codebook)
    for batch in (1, 18):
        _check(triton_backend, qw, torch.randn(batch, 160, generator=gen).to(DEVICE))


@pytest.mark.parametrize("residual_codebook", ["residual-poly", "residual", "gaussian"])
@pytest.mark.parametrize("bits, residual", [(4, 4), (3, 3), (4, 2)])
def test_parity_residual_codebooks(triton_backend, gen, residual_codebook, bits, residual):
    """The residual pass's levels are data like any codebook's: matched Lloyd-Max (heavy-tailed
    levels out to ~6.6), its polynomial, and the Gaussian one, decode and prefill, bf16 and fp32."""
    qw = tq.quantize(_weight(37, 384, gen), bits=bits, group_size=128, residual_bits=residual,
                     residual_codebook=residual_codebook)
    for batch, dtype in ((1, torch.float32), (5, torch.bfloat16), (18, torch.bfloat16)):
        _check(triton_backend, qw, torch.randn(batch, 384, generator=gen).to(DEVICE, dtype))


def test_poly_exact_degree_and_fp32_norms(triton_backend, gen):
    qw = tq.quantize(_weight(9, 256, gen), bits=4, group_size=64, codebook="gaussian-poly",
                     poly_degree="exact", norm_dtype=torch.float32)
    assert qw.passes[0].codebook.is_polynomial and len(qw.passes[0].codebook.poly_coefficients) == 8
    _check(triton_backend, qw, torch.randn(3, 256, generator=gen).to(DEVICE))


@pytest.mark.parametrize("dtype", DTYPES)
def test_bias_and_leading_dims(triton_backend, gen, dtype):
    qw = tq.quantize(_weight(31, 192, gen), bits=4, group_size=64, residual_bits=2, codebook="gaussian-poly")
    bias = torch.randn(31, generator=gen).to(DEVICE, dtype)
    for lead in [(2, 3), (1,), (4, 5)]:  # 6 and 1 rows: decode; 20 rows: prefill
        x = torch.randn(*lead, 192, generator=gen).to(DEVICE, dtype)
        _check(triton_backend, qw, x, bias=bias)
    x1 = torch.randn(192, generator=gen).to(DEVICE, dtype)  # a single vector
    _check(triton_backend, qw, x1, bias=bias)


def test_non_contiguous_input_and_empty_batch(triton_backend, gen):
    qw = tq.quantize(_weight(11, 128, gen), bits=3, group_size=32)
    x = torch.randn(128, 6, generator=gen).to(DEVICE).T  # column-major rows
    _check(triton_backend, qw, x)
    y = triton_backend.matmul(torch.empty(0, 128, device=DEVICE), qw)
    assert y.shape == (0, 11)


def test_explicit_tile_configs_split_k(triton_backend, gen):
    """Configs the GPU tuner may pick (wider tiles, split-K with a finalize pass) compute the same."""
    from tq.triton import dispatch

    qw = tq.quantize(_weight(45, 640, gen), bits=4, group_size=128, residual_bits=4)
    prep = dispatch.prepare_weight(qw)
    bias = torch.randn(45, generator=gen).to(DEVICE)
    for batch, cfg in [(1, dispatch.DecodeConfig(tn=16, tk=256, split=2, num_warps=4)),
                       (1, dispatch.DecodeConfig(tn=32, tk=64, split=4, num_warps=4)),
                       (7, dispatch.DecodeConfig(tn=64, tk=256, split=3, num_warps=4))]:
        x = torch.randn(batch, 640, generator=gen).to(DEVICE)
        x_rot = dispatch.rotate.rotate(x, qw.rotation_block, qw.seed, qw.k_padded, torch.float32)
        y = torch.full((batch, 45), float("nan"), device=DEVICE)
        dispatch._launch_decode(cfg, qw, prep, x_rot, y, bias, batch)
        assert _relative_error(y, x, qw, bias) < 1e-4, cfg
    x = torch.randn(40, 640, generator=gen).to(DEVICE)
    x_rot = dispatch.rotate.rotate(x, qw.rotation_block, qw.seed, qw.k_padded, torch.float32)
    for cfg in [dispatch.PrefillConfig(bn=16, bm=16, tk=256, group_m=2, num_warps=4),
                dispatch.PrefillConfig(bn=64, bm=32, tk=32, group_m=8, num_warps=4)]:
        y = torch.full((40, 45), float("nan"), device=DEVICE)
        dispatch._launch_prefill(cfg, qw, prep, x_rot, y, None, 40)
        assert _relative_error(y, x, qw) < 1e-4, cfg


@pytest.mark.parametrize("block", [32, 128, 256, 2048, 32768])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_rotation_kernel(triton_backend, gen, block, dtype):
    """rotate.py against rotation.rotate_np, including the multi-pass Kronecker split (R > 128)."""
    from tq.rotation import rotate_np
    from tq.triton import rotate

    k_pad = max(block, 256)
    k = k_pad - 29
    x = torch.randn(3, k, generator=gen).to(DEVICE, dtype)
    got = rotate.rotate(x, block, 7, k_pad, torch.float32).cpu().double().numpy()
    ref = rotate_np(x.cpu().double().numpy(), block, 7, k_pad)
    assert np.linalg.norm(got - ref) / np.linalg.norm(ref) < 1e-5


@pytest.mark.parametrize("pad", [0, 7])
@pytest.mark.parametrize("block", [32, 128, 2048])
def test_rotation_persistent_programs(triton_backend, gen, block, pad, monkeypatch):
    """Fewer programs than tiles: each program loops over several tiles (and H_n is built once);
    pad = 0 takes the unmasked (vectorized) column loads."""
    from tq.rotation import rotate_np
    from tq.triton import rotate

    monkeypatch.setattr(rotate, "PROGRAMS_PER_SM", 1)
    monkeypatch.setattr(rotate, "INTERPRETER_PROGRAMS", 3)
    monkeypatch.setattr(rotate, "TILE_ELEMENTS", 1024)
    monkeypatch.setenv("TQ_TRITON_ROTATE_BLOCKS", "0")  # 301 rows would take the block tiles (next test)
    rotate._plan.cache_clear()
    try:
        k_pad = 2048
        x = torch.randn(301, k_pad - pad, generator=gen).to(DEVICE, torch.float16)
        plan, _ = rotate._plan(301, k_pad - pad, block, k_pad, torch.float16, torch.float32, True, 1024, 3)
        assert all(p["n_tiles"] > 3 * p["grid"][0] for p in plan)  # the loop really runs
        got = rotate.rotate(x, block, 11, k_pad, torch.float32).cpu().double().numpy()
    finally:
        rotate._plan.cache_clear()
    ref = rotate_np(x.cpu().double().numpy(), block, 11, k_pad)
    assert np.linalg.norm(got - ref) / np.linalg.norm(ref) < 1e-5


@pytest.mark.parametrize("in_dtype,out_dtype", [(torch.float32, torch.float32), (torch.float16, torch.float32),
                                                (torch.bfloat16, torch.bfloat16), (torch.float16, torch.float16)])
@pytest.mark.parametrize("block,k", [(128, 512), (128, 389), (64, 192), (32, 101)])
def test_rotation_block_tiles(triton_backend, gen, block, k, in_dtype, out_dtype, monkeypatch):
    """_rotate_blocks_kernel (single-pass blocks, batch >= BLOCK_TILE_ROWS): a ragged last row tile,
    padded K (k not a multiple of the block), persistent programs looping over several tiles, and
    the route itself (it must be the kernel that ran)."""
    from tq.rotation import rotate_np
    from tq.triton import rotate

    monkeypatch.setattr(rotate, "BLOCK_TILE_ROWS", 16)  # small tiles: the interpreter stays fast
    monkeypatch.setattr(rotate, "BLOCK_PROGRAMS_PER_SM", 1)
    monkeypatch.setattr(rotate, "INTERPRETER_PROGRAMS", 3)
    calls = []
    real = rotate._rotate_blocks
    monkeypatch.setattr(rotate, "_rotate_blocks", lambda *a: calls.append(a[3:5]) or real(*a))
    k_pad = -(-k // block) * block
    x = torch.randn(37, k, generator=gen).to(DEVICE, in_dtype)
    got = rotate.rotate(x, block, 5, k_pad, out_dtype)
    assert calls == [(block, k)], "the block-tile kernel did not run"
    assert got.shape == (37, k_pad) and got.dtype == out_dtype
    ref = rotate_np(x.cpu().double().numpy(), block, 5, k_pad)
    err = np.linalg.norm(got.cpu().double().numpy() - ref) / np.linalg.norm(ref)
    assert err < (1e-5 if out_dtype == torch.float32 else 2e-3 if out_dtype == torch.float16 else 8e-3)
    # the line-flat tiles give the same numbers (the order of the fp32 sums aside)
    monkeypatch.setenv("TQ_TRITON_ROTATE_BLOCKS", "0")
    flat = rotate.rotate(x, block, 5, k_pad, out_dtype).cpu().double().numpy()
    assert len(calls) == 1
    assert np.linalg.norm(flat - got.cpu().double().numpy()) <= 1e-6 * np.linalg.norm(ref) + \
        (0 if out_dtype == torch.float32 else 1e-2 * np.linalg.norm(ref))


def test_rotation_blocks_switch(triton_backend, monkeypatch):
    from tq.triton import rotate

    monkeypatch.setenv("TQ_TRITON_ROTATE_BLOCKS", "yes")
    with pytest.raises(ValueError, match="TQ_TRITON_ROTATE_BLOCKS must be 0 or 1"):
        rotate.rotate(torch.zeros(70, 128, device=DEVICE), 128, 1, 128, torch.float32)


def test_rotation_factors():
    from tq.triton.rotate import factor_block

    for r in range(5, 22):
        f = factor_block(1 << r)
        assert int(np.prod(f)) == 1 << r and all(16 <= v <= 128 for v in f)
    with pytest.raises(ValueError):
        factor_block(8)


def test_supports_reports_reasons(triton_backend, gen):
    x = torch.randn(2, 64, generator=gen).to(DEVICE)
    for bits in (1, 5, 6, 7):
        qw = tq.quantize(_weight(4, 64, gen), bits=bits, group_size=32)
        reason = triton_backend.supports(x, qw)
        assert reason and f"{bits}-bit" in reason
        with pytest.raises(ValueError, match="supports bits"):
            triton_backend.matmul(x, qw)
    qw = tq.quantize(_weight(4, 64, gen), bits=4, group_size=32, residual_bits=5)
    assert "pass 1" in triton_backend.supports(x, qw)
    qw = tq.quantize(_weight(4, 64, gen), bits=4, group_size=32)
    assert triton_backend.supports(x, qw) is None
    assert "dtype" in triton_backend.supports(x.double(), qw)
    assert triton_backend.supports(torch.empty(2, 64, device="meta"), qw)


def test_bad_inputs_raise_clear_errors(triton_backend, gen):
    qw = tq.quantize(_weight(4, 64, gen), bits=4, group_size=32)
    with pytest.raises(ValueError, match="last dimension"):
        triton_backend.matmul(torch.randn(2, 63).to(DEVICE), qw)
    with pytest.raises(ValueError, match="on meta"):
        triton_backend.matmul(torch.empty(2, 64, device="meta"), qw)
    with pytest.raises(ValueError, match="bias"):
        triton_backend.matmul(torch.randn(2, 64).to(DEVICE), qw, bias=torch.randn(5).to(DEVICE))
    with pytest.raises(TypeError, match="dtype"):
        triton_backend.matmul(torch.randn(2, 64, dtype=torch.float64).to(DEVICE), qw)


def test_registered_in_registry(triton_backend, gen):
    backends._cache.pop("triton", None)
    try:
        b = backends.get_backend("triton")
        assert b.available and b.module is triton_backend
        qw = tq.quantize(_weight(8, 64, gen), bits=4, group_size=32)
        x = torch.randn(3, 64, generator=gen).to(DEVICE)
        y = tq.matmul(x, qw, backend="triton")
        assert _relative_error(y, x, qw) < 1e-4
    finally:
        backends._cache.pop("triton", None)


# ---------------------------------------------------------------------------
# Real shapes on the GPU
# ---------------------------------------------------------------------------
@pytest.mark.gpu
@pytest.mark.parametrize("codebook", ["gaussian", "gaussian-poly"])
@pytest.mark.parametrize("bits,residual,group", [(4, None, 128), (3, 2, 64), (8, None, 256), (2, 2, None)])
def test_gpu_parity_real_shapes(triton_backend, gen, codebook, bits, residual, group):
    n, k = 4096, 4096 + 96
    w = torch.randn(n, k, generator=gen).to("cuda")
    qw = tq.quantize(w, bits=bits, group_size=group, residual_bits=residual, codebook=codebook)
    bias = torch.randn(n, generator=gen).to("cuda", torch.bfloat16)
    for batch, dtype in [(1, torch.bfloat16), (16, torch.bfloat16), (300, torch.bfloat16),
                         (1, torch.float32), (300, torch.float16)]:
        x = torch.randn(batch, k, generator=gen).to("cuda", dtype)
        _check(triton_backend, qw, x, bias=bias.to(dtype))
