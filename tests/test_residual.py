"""Residual-pass codebooks fitted to the residual's own source (tq/residual.py)."""
import dataclasses
import math

import numpy as np
import pytest
import torch

import tq
from tq.codebook import _lloyd_max, expected_mse, get_codebook
from tq.quantize import dequantize_rotated
from tq.residual import (_optimal_start, get_residual_codebook, parent_key, residual_samples,
                         residual_source)
from tq.rotation import rotate_torch


def residual_pass_error(w, qw) -> float:
    """||t - t_hat1 - t_hat2||^2 / ||t - t_hat1||^2 in the rotated basis: the residual pass's own
    relative error, which its codebook's expected_mse predicts."""
    t = rotate_torch(w.float(), qw.rotation_block, qw.seed, qw.k_padded).double()
    first = dequantize_rotated(dataclasses.replace(qw, passes=qw.passes[:1])).double()
    both = dequantize_rotated(qw).double()
    return float(((t - both) ** 2).sum() / ((t - first) ** 2).sum())


@pytest.mark.parametrize("bits, residual, group, choice", [
    (4, 4, 128, "residual-poly"), (4, 4, 128, "residual"), (3, 2, 64, "residual-poly"),
    (4, 3, 256, "residual"), (2, 2, 32, "residual-poly")])
def test_measured_error_matches_expected(gen, bits, residual, group, choice):
    w = torch.randn(384, 1024, generator=gen)
    qw = tq.quantize(w, bits, group, residual_bits=residual, residual_codebook=choice)
    assert qw.passes[1].codebook.kind == choice
    # Over 6 seeds at this size: within 4% at 4+4 (a few tail groups carry its error), 1.5% elsewhere.
    assert abs(residual_pass_error(w, qw) / qw.passes[1].codebook.expected_mse - 1) < 0.07


@pytest.mark.parametrize("bits, residual, gain", [(4, 4, 1.8), (3, 3, 1.25), (4, 2, 1.03)])
def test_matched_codebook_beats_the_gaussian_one(gen, bits, residual, gain):
    # Expected 2.25x at 4+4, 1.39x at 3+3, 1.05x at 4+2 (g128 Gaussian weights; MiniLM the same).
    w = torch.randn(256, 2048, generator=gen)
    err = {c: residual_pass_error(w, tq.quantize(w, bits, 128, residual_bits=residual, residual_codebook=c))
           for c in ("residual-poly", "gaussian")}
    assert err["gaussian"] > gain * err["residual-poly"]


def test_lloyd_max_levels_are_centroids_of_their_cells():
    parent = get_codebook("gaussian", 4)
    cb = get_residual_codebook(parent, 4, 128, polynomial=False)
    src = residual_source(parent_key(parent.levels), 128)
    edges = np.concatenate([[-src.support], cb.thresholds, [src.support]])
    m0, m1, _ = src.moments(edges)
    np.testing.assert_allclose(cb.levels, m1 / m0, rtol=0, atol=1e-9)
    np.testing.assert_array_equal(cb.levels, -cb.levels[::-1])
    assert cb.expected_mse == pytest.approx(expected_mse(cb.levels, src), rel=1e-12)
    # Lloyd-Max is the best codebook, the 3-term polynomial close to it.
    poly = get_residual_codebook(parent, 4, 128, polynomial=True)
    assert len(poly.poly_coefficients) == 3
    assert cb.expected_mse <= poly.expected_mse < 1.15 * cb.expected_mse


@pytest.mark.parametrize("bits, group", [(4, 4096), (8, 128)])
def test_global_start_escapes_the_local_optimum(bits, group):
    # From the Gaussian start, Lloyd-Max stalls 4.3% (4+4, G = 4096) and 83% (4+8, G = 128) higher.
    parent = get_codebook("gaussian", 4)
    src = residual_source(parent_key(parent.levels), group)
    plain = expected_mse(_lloyd_max(bits, src), src)
    start = _optimal_start(src, bits)
    assert expected_mse(start, src) < plain
    assert get_residual_codebook(parent, bits, group, polynomial=False).expected_mse < 0.98 * plain


def test_sample_is_deterministic_and_unit_mean_square():
    levels = parent_key(get_codebook("gaussian", 3).levels)
    x1, w1 = residual_samples(levels, 64, samples=1 << 14)
    x2, w2 = residual_samples(levels, 64, samples=1 << 14)
    np.testing.assert_array_equal(x1, x2)
    np.testing.assert_array_equal(w1, w2)
    np.testing.assert_allclose(np.mean(x1.reshape(-1, 64) ** 2, axis=1), 1.0, rtol=1e-12)
    assert np.all(w1 > 0)


def test_save_load_keeps_the_residual_codebook(tmp_path, gen, monkeypatch):
    w = torch.randn(40, 320, generator=gen)
    for choice in ("residual-poly", "residual"):
        qw = tq.quantize(w, 4, 64, residual_bits=3, residual_codebook=choice)
        path = tmp_path / f"{choice}.safetensors"
        tq.save(qw, path)
        back = tq.load(path)
        cb, cb2 = qw.passes[1].codebook, back.passes[1].codebook
        assert cb2.kind == choice and cb2.dimension == 64
        np.testing.assert_array_equal(back.passes[1].levels.numpy(), qw.passes[1].levels.numpy())
        assert cb2.poly_coefficients == cb.poly_coefficients
        assert cb2.expected_mse == cb.expected_mse          # stored in the header: no sampling on load
        # a header without the stored number (written before it was stored) samples the source
        # again, from the float32 parent levels the quantizer applied: the same source
        header = tq.format._header(qw)
        del header["passes"][1]["expected_mse"]
        again = tq.format.from_state(header, tq.format.state_tensors(qw)).passes[1].codebook
        assert again.expected_mse == pytest.approx(cb.expected_mse, rel=1e-6)   # (levels in float32)
    import tq.format as fmt
    monkeypatch.setattr(fmt, "residual_source", lambda *a: pytest.fail("sampled on load"))
    tq.load(tmp_path / "residual-poly.safetensors")


def _tampered(qw, **changes):
    header = tq.format._header(qw)
    header["passes"][1].update(changes)
    return header, tq.format.state_tensors(qw)


def test_load_refuses_inconsistent_residual_headers(gen):
    qw = tq.quantize(torch.randn(24, 256, generator=gen), 4, 64, residual_bits=4)
    coef = list(qw.passes[1].codebook.poly_coefficients)
    cases = [
        (dict(dimension=1 << 40), "dimension must be the group size 64"),   # (would sample 2^40 coordinates)
        (dict(dimension=128), "dimension must be the group size 64"),
        (dict(dimension=None), "dimension must be the group size 64"),
        (dict(poly_coefficients=[coef[0] * 1.01] + coef[1:]), "do not reproduce the stored levels"),
        (dict(poly_coefficients=None), "needs polynomial coefficients"),
        (dict(codebook="residual"), "has no polynomial coefficients"),
    ]
    for change, message in cases:
        with pytest.raises(tq.FormatError, match=message):
            tq.format.from_state(*_tampered(qw, **change))
    # the first pass's polynomial is checked the same way (any -poly kind)
    qp = tq.quantize(torch.randn(24, 256, generator=gen), 4, 64, codebook="gaussian-poly")
    header = tq.format._header(qp)
    header["passes"][0]["poly_coefficients"][1] *= 1.001
    with pytest.raises(tq.FormatError, match="pass 0 codebook: the polynomial coefficients"):
        tq.format.from_state(header, tq.format.state_tensors(qp))


def test_gaussian_choice_keeps_the_gaussian_counterpart(gen):
    w = torch.randn(16, 256, generator=gen)
    assert tq.quantize(w, 4, 128, residual_bits=4, codebook="beta",
                       residual_codebook="gaussian").passes[1].codebook.kind == "gaussian"
    assert tq.quantize(w, 4, 128, residual_bits=4, codebook="gaussian-poly",
                       residual_codebook="gaussian").passes[1].codebook.kind == "gaussian-poly"
    qw = tq.quantize(w, 4, 128, residual_bits=4)
    assert qw.passes[1].codebook.kind == "residual-poly"
    np.testing.assert_allclose(qw.passes[1].levels.numpy(),
                               get_residual_codebook(qw.passes[0].codebook, 4, 128, polynomial=True).levels,
                               rtol=1e-6)


def test_bad_arguments_are_named():
    w = torch.randn(8, 64)
    with pytest.raises(ValueError, match="residual_codebook"):
        tq.quantize(w, 4, 32, residual_bits=2, residual_codebook="nf4")
    with pytest.raises(ValueError, match="codebook must be one of"):
        tq.quantize(w, 4, 32, codebook="residual")      # a residual kind is no first pass
    parent = get_codebook("gaussian", 4)
    with pytest.raises(TypeError, match="parent"):
        get_residual_codebook("gaussian", 4, 128)
    with pytest.raises(ValueError, match="bits"):
        get_residual_codebook(parent, 9, 128)
    with pytest.raises(ValueError, match="group_size"):
        get_residual_codebook(parent, 4, 1)
    with pytest.raises(ValueError, match="poly_degree"):
        get_residual_codebook(parent, 4, 128, polynomial=True, poly_degree=4)


def test_load_refuses_a_residual_kind_in_the_first_pass(gen):
    qw = tq.quantize(torch.randn(8, 64, generator=gen), 4, 32, residual_bits=2)
    header = tq.format._header(qw)
    header["passes"][0]["codebook"] = "residual-poly"
    with pytest.raises(tq.FormatError, match="pass 0: unknown codebook kind 'residual-poly'"):
        tq.format.from_state(header, tq.format.state_tensors(qw))
    header = tq.format._header(qw)
    header["passes"][1]["dimension"] = None
    with pytest.raises(tq.FormatError, match="pass 1 codebook: a 'residual-poly' codebook's dimension must be"):
        tq.format.from_state(header, tq.format.state_tensors(qw))


def test_word_decode_takes_the_default_residual_codebook():
    # The default residual levels are a 3-term polynomial: the cuTile word decode evaluates them in
    # fewer terms than the 4 its Lloyd-Max first pass needs (wordlevels.fit, bf16 bound).
    from tq.cutile import wordlevels
    parent = get_codebook("gaussian", 4)
    for bits in (2, 4):
        cb = get_residual_codebook(parent, bits, 128, polynomial=True)
        fit = wordlevels.fit(cb.levels / math.sqrt(128), bits, "bf16")
        assert fit is not None and fit[0].size <= 3


def test_model_and_layer_entry_points_pass_the_choice(gen):
    from torch import nn
    lin = nn.Linear(128, 24)
    layer = tq.TQLinear.from_linear(lin, 4, 64, residual_bits=4, residual_codebook="gaussian")
    assert layer.quantized_weight.passes[1].codebook.kind == "gaussian"
    model = nn.Sequential(nn.Linear(128, 24), nn.ReLU(), nn.Linear(24, 8))
    report = tq.quantize_model(model, 4, 32, residual_bits=2, residual_codebook="residual", progress=False)
    assert report.config["residual_codebook"] == "residual"
    assert model[0].quantized_weight.passes[1].codebook.kind == "residual"
    with pytest.raises(ValueError, match="residual_codebook"):
        tq.quantize_model(nn.Sequential(nn.Linear(64, 8)), 4, 32, residual_bits=2, residual_codebook="x")
