"""`python -m tq quantize` and `python -m tq eval`: end to end on a tiny model, and their errors."""
from __future__ import annotations

import json

import pytest
import torch

from tq import cli

transformers = pytest.importorskip("transformers")
tokenizers = pytest.importorskip("tokenizers")

WORDS = [f"w{i}" for i in range(120)]


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory):
    """A saved random LlamaForCausalLM (K = 64 and 128) with a word-level tokenizer, and a text file."""
    directory = tmp_path_factory.mktemp("tiny-llama")
    vocab = {"<unk>": 0, **{w: i + 1 for i, w in enumerate(WORDS)}}
    tok = tokenizers.Tokenizer(tokenizers.models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = tokenizers.pre_tokenizers.Whitespace()
    transformers.PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>").save_pretrained(directory)
    torch.manual_seed(0)
    config = transformers.LlamaConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                      num_attention_heads=4, num_key_value_heads=2, vocab_size=128,
                                      max_position_embeddings=64, tie_word_embeddings=True)
    transformers.LlamaForCausalLM(config).save_pretrained(directory)
    text = directory / "text.txt"
    g = torch.Generator().manual_seed(1)
    text.write_text(" ".join(WORDS[int(i)] for i in torch.randint(0, len(WORDS), (400,), generator=g)))
    return directory


def run(capsys, *argv):
    code = cli.main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_quantize_then_eval(tiny_model_dir, tmp_path, capsys):
    out = tmp_path / "q"
    code, stdout, err = run(capsys, "quantize", "--model", tiny_model_dir, "--out", out, "--bits", "4",
                            "--group-size", "32", "--residual-bits", "4")
    assert code == 0, err
    assert "quantized 14 Linear layers" in stdout and "lm_head" in stdout
    config = json.loads((out / "tq_config.json").read_text())
    assert config["quantization"]["residual_bits"] == 4 and len(config["layers"]) == 14
    assert config["quantization"]["residual_codebook"] == "residual-poly"
    assert config["aliases"] == {"lm_head.weight": "model.embed_tokens.weight"}
    code, stdout, err = run(capsys, "eval", "--model", out, "--data", tiny_model_dir / "text.txt",
                            "--window", 32, "--stride", 32, "--max-windows", 4)
    assert code == 0, err
    assert "perplexity" in stdout and "4 windows of 32 tokens" in stdout
    # the same model in full precision gives nearly the same perplexity (4+4 bits)
    from tq.experiments.perplexity import load_model, perplexity, tokenize_file

    model, tokenizer, _ = load_model(str(tiny_model_dir))
    ids = tokenize_file(tokenizer, tiny_model_dir / "text.txt")
    full = perplexity(model, ids, 32, 32, 4, progress=False)["perplexity"]
    quantized = float(stdout.split("perplexity ")[1].split()[0])
    assert quantized == pytest.approx(full, rel=0.02)
    code, _, err = run(capsys, "quantize", "--model", tiny_model_dir, "--out", out)
    assert code == 2 and "--overwrite" in err


@pytest.mark.parametrize("argv, message", [
    (["quantize", "--model", "/no/such/model", "--out", "OUT"], "no such file or directory"),
    (["quantize", "--model", "MODEL", "--out", "OUT", "--residual-bits", "4"], "--residual-bits needs --bits"),
    (["quantize", "--model", "MODEL", "--out", "OUT", "--group-size", "100"], "--group-size must be a power of two"),
    (["quantize", "--model", "MODEL", "--out", "OUT", "--bits", "9"], "--bits must be in 1..8"),
    (["quantize", "--model", "MODEL", "--out", "OUT", "--skip", "*"], "every nn.Linear of the model was skipped"),
    (["eval", "--model", "/no/such/dir"], "no such checkpoint directory"),
    (["eval", "--model", "MODEL"], "not a tq checkpoint"),
])
def test_errors(argv, message, tiny_model_dir, tmp_path, capsys):
    argv = [str(tiny_model_dir) if a == "MODEL" else str(tmp_path / "out") if a == "OUT" else a for a in argv]
    code, _, err = run(capsys, *argv)
    assert code == 2 and message in err, err


def test_residual_codebook_choice(capsys):
    args = cli.build_parser().parse_args(["quantize", "--model", "m", "--out", "o", "--bits", "3",
                                          "--residual-bits", "2", "--residual-codebook", "gaussian"])
    assert cli._quantize_options(args)["residual_codebook"] == "gaussian"
    with pytest.raises(SystemExit):
        cli.main(["quantize", "--model", "m", "--out", "o", "--residual-codebook", "lloyd"])
    assert "invalid choice" in capsys.readouterr().err


def test_bad_group_size_text(capsys):
    with pytest.raises(SystemExit):
        cli.main(["quantize", "--model", "m", "--out", "o", "--group-size", "big"])
    assert "'row'" in capsys.readouterr().err
