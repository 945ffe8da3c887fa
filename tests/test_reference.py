import importlib

import numpy as np
import pytest
import torch

import tq
from tq.reference import matmul as ref_matmul
from tq.reference import matmul_float64

# the package re-exports the function `matmul`, which shadows the module of the same name
ref_module = importlib.import_module("tq.reference.matmul")


def rel_err(y, y64):
    y = y.double().numpy() if isinstance(y, torch.Tensor) else y
    return float(np.linalg.norm(y - y64) / np.linalg.norm(y64))


CONFIGS = [(4, None, 128), (4, 4, 128), (3, 2, 64), (2, None, 32), (8, None, 256), (4, 2, None), (1, None, 64)]


@pytest.mark.parametrize("bits,residual,group", CONFIGS)
def test_reference_matches_float64_dequantized(bits, residual, group, gen):
    n, k, b = 37, 576, 5
    w = torch.randn(n, k, generator=gen)
    qw = tq.quantize(w, bits, group, residual)
    x = torch.randn(b, k, generator=gen)
    bias = torch.randn(n, generator=gen)
    y64 = matmul_float64(x, qw, bias=bias)
    direct = x.double().numpy() @ tq.dequantize(qw, torch.float64).numpy().T + bias.double().numpy()
    assert rel_err(direct, y64) < 1e-12
    assert rel_err(ref_matmul(x, qw, bias=bias), y64) < 1e-5
    assert rel_err(ref_matmul(x.double(), qw, bias=bias), y64) < 1e-12


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_inputs_keep_dtype(dtype, gen):
    qw = tq.quantize(torch.randn(33, 256, generator=gen), 4, 128)
    x = torch.randn(2, 3, 256, generator=gen).to(dtype)
    y = tq.matmul(x, qw, backend="reference")
    assert y.shape == (2, 3, 33) and y.dtype == dtype
    assert rel_err(y.float(), matmul_float64(x.float(), qw)) < 1e-2


def test_chunking_gives_the_same_answer(monkeypatch, gen):
    qw = tq.quantize(torch.randn(64, 1024, generator=gen), 4, 128, residual_bits=2)
    x = torch.randn(3, 1024, generator=gen, dtype=torch.float64)
    whole = ref_matmul(x, qw)
    monkeypatch.setattr(ref_module, "CHUNK_BYTES", 64 * 8 * 96)  # 96 -> 96 columns per chunk
    assert ref_module.chunk_columns(qw, 8) == 96
    torch.testing.assert_close(ref_matmul(x, qw), whole)


def test_bad_inputs(gen):
    qw = tq.quantize(torch.randn(16, 128, generator=gen))
    with pytest.raises(ValueError, match="in_features K=128"):
        tq.matmul(torch.randn(2, 64), qw)
    with pytest.raises(TypeError, match="dtype"):
        tq.matmul(torch.ones(2, 128, dtype=torch.int64), qw)
    with pytest.raises(ValueError, match="move one of them"):
        tq.matmul(torch.randn(2, 128, device="meta"), qw)
    with pytest.raises(ValueError, match="bias"):
        tq.matmul(torch.randn(2, 128), qw, bias=torch.randn(15))
    with pytest.raises(TypeError, match="QuantizedWeight"):
        tq.matmul(torch.randn(2, 128), torch.randn(16, 128))
    with pytest.raises(TypeError, match="torch.Tensor"):
        tq.matmul(np.ones((2, 128)), qw)
