"""tq.TQLinear: the nn.Linear contract (shapes, dtypes, bias), state_dict round trips, repr, errors."""
from __future__ import annotations

import pytest
import torch
from torch import nn

import tq
from tq.reference.matmul import matmul_float64


def make_linear(k, n, bias, gen):
    linear = nn.Linear(k, n, bias=bias)
    with torch.no_grad():
        linear.weight.copy_(torch.randn(n, k, generator=gen) / k ** 0.5)
        if bias:
            linear.bias.copy_(torch.randn(n, generator=gen))
    return linear


@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("lead", [(), (5,), (2, 3)])
def test_forward_matches_float64_reference(bias, lead, gen):
    linear = make_linear(96, 40, bias, gen)           # K = 96: G = 64 pads the last group
    layer = tq.TQLinear.from_linear(linear, bits=4, group_size=64)
    x = torch.randn(*lead, 96, generator=gen)
    y = layer(x)
    assert y.shape == (*lead, 40) and y.dtype == torch.float32
    want = matmul_float64(x, layer.quantized_weight, bias=linear.bias)
    torch.testing.assert_close(y.double(), torch.as_tensor(want), rtol=1e-5, atol=1e-5)
    # and it equals nn.Linear with the de-quantized weight
    dense = torch.nn.functional.linear(x, layer.dequantized_weight(torch.float32), linear.bias)
    torch.testing.assert_close(y, dense, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
def test_output_dtype_is_input_dtype(dtype, gen):
    layer = tq.TQLinear.from_linear(make_linear(64, 32, True, gen), bits=3, group_size=32)
    x = torch.randn(4, 64, generator=gen).to(dtype)
    y = layer(x)
    assert y.dtype == dtype and y.shape == (4, 32)
    ref = layer(x.float())
    tol = {torch.float16: 1e-2, torch.bfloat16: 5e-2, torch.float32: 1e-6}[dtype]
    torch.testing.assert_close(y.float(), ref, rtol=tol, atol=tol)


def test_module_dtype_cast_keeps_the_stored_format(gen):
    layer = tq.TQLinear.from_linear(make_linear(64, 32, True, gen), bits=4, group_size=32)
    x = torch.randn(3, 64, generator=gen)
    before = layer(x)
    layer.to(torch.bfloat16)
    assert layer.pass0_levels.dtype == torch.float32 and layer.pass0_norms.dtype == torch.float16
    assert layer.pass0_plane0.dtype == torch.uint8 and layer.bias.dtype == torch.bfloat16
    after = layer(x.bfloat16())
    assert after.dtype == torch.bfloat16
    torch.testing.assert_close(after.float(), before, rtol=5e-2, atol=5e-2)


def test_extra_repr_shows_config_and_bits():
    layer = tq.TQLinear.from_linear(nn.Linear(128, 16), bits=4, group_size=128, residual_bits=2)
    text = repr(layer)
    assert "bits=4+2" in text and "group=128" in text and "bits/weight" in text and "codebook=gaussian" in text
    assert f"{layer.bits_per_weight:.3f}" in text
    row = tq.TQLinear.from_linear(nn.Linear(96, 8, bias=False), bits=2, group_size=None)
    assert "group=row" in repr(row) and "bias=False" in repr(row)


def test_state_dict_round_trip(gen):
    a = tq.TQLinear.from_linear(make_linear(96, 24, True, gen), bits=4, group_size=32, residual_bits=3, seed=7)
    b = tq.TQLinear.from_linear(make_linear(96, 24, True, gen), bits=4, group_size=32, residual_bits=3, seed=7)
    x = torch.randn(2, 96, generator=gen)
    assert not torch.equal(a(x), b(x))
    sd = a.state_dict()
    assert {"pass0_plane0", "pass0_norms", "pass0_levels", "pass1_norms", "tq_header", "bias"} <= set(sd)
    before = b.quantized_weight
    b.load_state_dict(sd)
    # a fresh weight object: backends key what they prepared (cuTile's transposed norms and
    # fits, Triton's tables and replays) by the object, and the buffers changed in place
    assert b.quantized_weight is not before
    torch.testing.assert_close(b(x), a(x), rtol=0, atol=0)
    # assign=True (what tq.load_quantized does for the rest of a model) works too
    c = tq.TQLinear.from_linear(make_linear(96, 24, True, gen), bits=4, group_size=32, residual_bits=3, seed=7)
    c.load_state_dict({k: v.clone() for k, v in sd.items()}, assign=True)
    torch.testing.assert_close(c(x), a(x), rtol=0, atol=0)


def test_state_dict_of_another_configuration_is_a_clear_error(gen):
    a = tq.TQLinear.from_linear(make_linear(64, 16, False, gen), bits=4, group_size=32, seed=0)
    other_seed = tq.TQLinear.from_linear(make_linear(64, 16, False, gen), bits=4, group_size=32, seed=1)
    with pytest.raises(RuntimeError, match="tq.load_quantized"):
        other_seed.load_state_dict(a.state_dict())
    other_bits = tq.TQLinear.from_linear(make_linear(64, 16, False, gen), bits=3, group_size=32, seed=0)
    with pytest.raises(RuntimeError, match="quantized as"):
        other_bits.load_state_dict(a.state_dict())


def _refit(sd: dict, scale: float) -> dict:
    # The state_dict of the same layer as another NumPy/SciPy could make it: the residual
    # codebook's coefficients (and so its levels) and its expected MSE a little off
    import json

    from tq.codebook import poly_basis
    from tq.nn import HEADER_BUFFER, decode_header, encode_header
    h = json.loads(decode_header(sd[HEADER_BUFFER]))
    p = h["passes"][1]
    coef = [c * scale for c in p["poly_coefficients"]]
    p["poly_coefficients"], p["expected_mse"] = coef, p["expected_mse"] * scale
    out = dict(sd)
    out["pass1_levels"] = torch.tensor(poly_basis(p["bits"], len(coef)) @ coef, dtype=torch.float32)
    out[HEADER_BUFFER] = encode_header(json.dumps(h, sort_keys=True))
    return out


def test_state_dict_with_other_fitted_numbers_takes_the_checkpoints_codebooks(gen):
    # Same configuration, residual codebook fitted in the last bits differently: the module loads
    # it and then computes with the checkpoint's codebooks (coefficients and levels agree), not
    # with the ones it was built with.
    a = tq.TQLinear.from_linear(make_linear(256, 24, True, gen), bits=4, group_size=128, residual_bits=4, seed=3)
    sd = _refit(a.state_dict(), 1 + 2 ** -12)
    b = tq.TQLinear.from_linear(make_linear(256, 24, True, gen), bits=4, group_size=128, residual_bits=4, seed=3)
    before = b.quantized_weight
    b.load_state_dict(sd)
    qw = b.quantized_weight
    assert qw is not before
    cb = qw.passes[1].codebook
    assert torch.equal(qw.passes[1].levels, sd["pass1_levels"])
    assert list(cb.poly_coefficients) == b.config["passes"][1]["poly_coefficients"]
    assert cb.expected_mse == b.config["passes"][1]["expected_mse"] != a.quantized_weight.passes[1].codebook.expected_mse
    assert max(abs(x - y) for x, y in zip(cb.levels, sd["pass1_levels"].double().tolist())) < 1e-6
    x = torch.randn(3, 256, generator=gen)
    want = matmul_float64(x, qw, bias=b.bias)
    torch.testing.assert_close(b(x).double(), torch.as_tensor(want), rtol=1e-5, atol=1e-5)
    # a checkpoint whose numbers do not agree with its own levels is refused, and the module keeps its own
    bad = _refit(a.state_dict(), 1 + 2 ** -12)
    bad["pass1_levels"] = bad["pass1_levels"] * 1.01
    c = tq.TQLinear.from_linear(make_linear(256, 24, True, gen), bits=4, group_size=128, residual_bits=4, seed=3)
    kept = {k: v.clone() for k, v in c.state_dict().items()}
    with pytest.raises(RuntimeError, match="do not reproduce the stored levels"):
        c.load_state_dict(bad)
    assert all(torch.equal(v, kept[k]) for k, v in c.state_dict().items())
    # the parent load copies what it can and fails on the bias: the codebooks follow the levels
    # the buffers then hold, and the weight is rebuilt
    e = tq.TQLinear.from_linear(make_linear(256, 24, True, gen), bits=4, group_size=128, residual_bits=4, seed=3)
    stale = e.quantized_weight
    broken = _refit(a.state_dict(), 1 + 2 ** -12)
    broken["bias"] = torch.zeros(25)
    with pytest.raises(RuntimeError, match="bias"):
        e.load_state_dict(broken)
    qe = e.quantized_weight
    assert qe is not stale and torch.equal(qe.passes[1].levels, broken["pass1_levels"])
    assert list(qe.passes[1].codebook.poly_coefficients) == e.config["passes"][1]["poly_coefficients"]
    assert max(abs(x - y) for x, y in zip(qe.passes[1].codebook.levels, broken["pass1_levels"].double().tolist())) < 1e-6
    # without its pass tensors a refitted checkpoint cannot be taken, even non-strictly: they are named
    partial = _refit(a.state_dict(), 1 + 2 ** -12)
    del partial["pass1_levels"]
    with pytest.raises(RuntimeError, match="without its pass1_levels"):
        c.load_state_dict(partial, strict=False)
    # a different polynomial length is another configuration
    d = tq.TQLinear.from_linear(make_linear(256, 24, True, gen), bits=4, group_size=128, residual_bits=4, seed=3,
                                poly_degree=7)
    with pytest.raises(RuntimeError, match="quantized as"):
        d.load_state_dict(a.state_dict())


def test_quantized_weight_view_and_accounting(gen):
    layer = tq.TQLinear.from_linear(make_linear(128, 64, False, gen), bits=4, group_size=128)
    qw = layer.quantized_weight
    assert qw.shape == (64, 128) and qw.bits == 4 and qw.group_size == 128
    assert layer.nbytes == qw.nbytes and layer.bits_per_weight == pytest.approx(4 + 16 / 128 + 8 * 64 / (64 * 128))
    assert layer.config["passes"][0]["bits"] == 4


def test_errors():
    with pytest.raises(TypeError, match="nn.Linear"):
        tq.TQLinear.from_linear(nn.Conv1d(4, 4, 1))
    with pytest.raises(ValueError, match="meta"):
        tq.TQLinear.from_linear(nn.Linear(64, 8, device="meta"))
    with pytest.raises(ValueError, match="backend"):
        tq.TQLinear.from_linear(nn.Linear(64, 8), group_size=32, backend="fast")
    with pytest.raises(ValueError, match="does not divide"):
        tq.TQLinear.from_linear(nn.Linear(96, 8), group_size=64, pad=False)
    layer = tq.TQLinear.from_linear(nn.Linear(64, 8), group_size=32)
    with pytest.raises(ValueError, match="in_features"):
        layer(torch.randn(2, 65))


def test_quantized_weight_is_stable_until_the_buffers_change(gen):
    """Backends cache per-weight work by identity: forward must not build a new object each call."""
    layer = tq.TQLinear.from_linear(nn.Linear(64, 8), bits=4, group_size=32)
    qw = layer.quantized_weight
    assert layer.quantized_weight is qw
    layer(torch.randn(2, 64, generator=gen))
    assert layer.quantized_weight is qw
    other = tq.TQLinear.from_linear(nn.Linear(64, 8), bits=4, group_size=32)
    # load_state_dict copies new values into the same buffers: a new object all the same, since
    # what backends prepared from the old values (cuTile's transposed norms, level fits) is stale
    layer.load_state_dict(other.state_dict())
    assert layer.quantized_weight is not qw
    qw = layer.quantized_weight
    assert layer.quantized_weight is qw
    assert torch.equal(layer.quantized_weight.passes[0].planes[0], other.quantized_weight.passes[0].planes[0])
    layer.to(torch.float16)                    # _apply replaces the buffers
    assert layer.quantized_weight is not qw
    x = torch.randn(3, 64, generator=gen)
    assert torch.allclose(layer(x.half()).float(), other(x.half()).float(), atol=1e-2)
