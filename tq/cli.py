"""`python -m tq <command>`: info (versions, GPU, backends, codebooks), quantize (a Hugging Face
causal LM to a tq checkpoint directory), eval (perplexity of such a checkpoint)."""
from __future__ import annotations

import argparse
import importlib
import platform
import sys


def _version(module: str) -> str:
    try:
        return getattr(importlib.import_module(module), "__version__", "installed")
    except Exception as e:  # report, never crash: info is what people run when things are broken
        return f"not available ({type(e).__name__})"


def cmd_info(args) -> int:
    import torch

    import tq
    from tq.backends import all_backends
    from tq.codebook import get_codebook

    print(f"tq {tq.__version__}  python {platform.python_version()}  torch {torch.__version__}")
    for name in ("numpy", "scipy", "triton", "cuda.tile", "cupy", "safetensors"):
        print(f"  {name:12s} {_version(name)}")
    if torch.cuda.is_available():
        p = torch.cuda.get_device_properties(0)
        print(f"GPU: {p.name}, sm_{p.major}{p.minor}, {p.multi_processor_count} SMs, "
              f"{p.total_memory / 2**30:.1f} GiB, CUDA {torch.version.cuda}")
    else:
        print("GPU: none visible to torch")
    print("backends (auto prefers them in this order):")
    for b in all_backends():
        print(f"  {b.name:10s} {'available  ' if b.available else 'unavailable'}  {b.reason}")
    if args.codebooks:
        print("codebook expected MSE per bits (unit-variance N(0,1) source), relative to Lloyd-Max:")
        print("  bits  lloyd-max    poly deg 3   poly deg 5   poly exact")
        for bits in range(1, 9):
            lm = get_codebook("gaussian", bits).expected_mse
            cols = [f"{lm:.4e}"]
            for deg in (3, 5, "exact"):
                try:
                    cols.append(f"{get_codebook('gaussian-poly', bits, poly_degree=deg).expected_mse / lm:10.5f}x")
                except ValueError:
                    cols.append("        n/a")
            print(f"  {bits:4d}  " + "  ".join(cols))
    return 0


class UsageError(ValueError):
    """Bad command-line input; main() prints it and exits with status 2."""


def _group_size(value: str):
    """--group-size: a power of two >= 32, or "row" for one group per row."""
    if value == "row":
        return None
    try:
        return int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a power of two >= 32 or 'row', got {value!r}") from None


def _quantize_options(args) -> dict:
    from tq.quantize import MIN_GROUP_SIZE
    from tq.rotation import is_power_of_two

    if args.bits is None:
        if args.residual_bits is not None:
            raise UsageError("--residual-bits needs --bits: give the main pass's bits too, "
                             "e.g. --bits 4 --residual-bits 4")
        args.bits = 4
    if not 1 <= args.bits <= 8:
        raise UsageError(f"--bits must be in 1..8, got {args.bits}")
    if args.residual_bits is not None and not 1 <= args.residual_bits <= 8:
        raise UsageError(f"--residual-bits must be in 1..8, got {args.residual_bits}")
    g = args.group_size
    if g is not None and (g < MIN_GROUP_SIZE or not is_power_of_two(g)):
        raise UsageError(f"--group-size must be a power of two >= {MIN_GROUP_SIZE} (32, 64, 128, ...) or 'row', "
                         f"got {g}")
    return dict(bits=args.bits, group_size=g, residual_bits=args.residual_bits, codebook=args.codebook,
                residual_codebook=args.residual_codebook, seed=args.seed, pad=not args.no_pad,
                skip=tuple(s for s in args.skip.split(",") if s))


def cmd_quantize(args) -> int:
    import json
    import os

    import tq
    from tq.experiments.perplexity import load_model
    from tq.model import CONFIG_FILE

    options = _quantize_options(args)
    if os.path.exists(os.path.join(args.out, CONFIG_FILE)) and not args.overwrite:
        raise UsageError(f"--out {args.out} already holds a tq checkpoint; pass --overwrite or choose another directory")
    if os.path.exists(args.out) and not os.path.isdir(args.out):
        raise UsageError(f"--out {args.out} exists and is not a directory")
    model, tokenizer, source = load_model(args.model, args.gguf_file)
    report = tq.quantize_model(model, **options, device=args.device)
    print(report.summary())
    hf_config = model.config.to_dict()
    hf_config.pop("quantization_config", None)     # a GGUF source's, not ours
    tq.save_quantized(model, args.out, extra_config={
        "source": source, "quantization": report.config,
        "report": {k: v for k, v in report.to_dict().items() if k != "quantized"}})
    with open(os.path.join(args.out, "config.json"), "w") as f:
        json.dump(hf_config, f, indent=1, sort_keys=True, default=str)
    tokenizer.save_pretrained(args.out)
    print(f"wrote {args.out}: {CONFIG_FILE}, model.safetensors, config.json and the tokenizer")
    return 0


def load_checkpoint_model(directory, device="cpu"):
    """(model, tokenizer) of a directory written by `python -m tq quantize`, built without full-precision weights."""
    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import tq
    from tq.model import empty_parameters, read_config

    read_config(directory)     # clear errors for a missing or foreign directory, before transformers runs
    if not os.path.exists(os.path.join(directory, "config.json")):
        raise UsageError(f"{directory} has no config.json (the model architecture); it was not written by "
                         f"`python -m tq quantize`, so build the model yourself and call tq.load_quantized")
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    config = AutoConfig.from_pretrained(directory)
    with empty_parameters():
        skeleton = AutoModelForCausalLM.from_config(config)
    model = tq.load_quantized(skeleton, directory, device=device).eval()
    return model, AutoTokenizer.from_pretrained(directory)


def cmd_eval(args) -> int:
    from tq.experiments.perplexity import perplexity, tokenize_file, windows
    from tq.model import model_bytes

    model, tokenizer = load_checkpoint_model(args.model, args.device)
    ids = tokenize_file(tokenizer, args.data)
    try:
        windows(len(ids), args.window, args.stride, args.max_windows or None)
    except ValueError as e:
        raise UsageError(str(e)) from None
    result = perplexity(model, ids, args.window, args.stride, args.max_windows or None, args.batch_size, args.device)
    size = model_bytes(model)["total"]
    print(f"{args.model}: perplexity {result['perplexity']:.3f} on {args.data} ({result['windows']} windows of "
          f"{args.window} tokens, stride {args.stride}, {result['tokens']} tokens scored; model {size / 1e6:.1f} MB; "
          f"{result['seconds']:.0f} s)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m tq", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    info = sub.add_parser("info", help="versions, GPU, backend availability with reasons")
    info.add_argument("--codebooks", action="store_true", help="also list each codebook kind's MSE per bits")
    info.set_defaults(func=cmd_info)

    quant = sub.add_parser("quantize", help="quantize a Hugging Face causal LM into a tq checkpoint directory")
    quant.add_argument("--model", required=True, help="Hugging Face model directory, a .gguf file, or 'smollm2'")
    quant.add_argument("--gguf-file", default=None, help="GGUF file name inside --model's directory")
    quant.add_argument("--out", required=True, help="output directory (model.safetensors, tq_config.json, ...)")
    quant.add_argument("--bits", type=int, default=None, help="bits of the main pass, 1..8 (default 4)")
    quant.add_argument("--group-size", type=_group_size, default=128,
                       help="power of two >= 32, or 'row' (default 128)")
    quant.add_argument("--residual-bits", type=int, default=None, help="bits of the residual pass (default none)")
    quant.add_argument("--codebook", default="gaussian", choices=("gaussian", "beta", "gaussian-poly", "beta-poly"))
    quant.add_argument("--residual-codebook", default="residual-poly", choices=("residual-poly", "residual", "gaussian"),
                       help="levels of the residual pass: fitted to the residual (polynomial, default; or "
                            "Lloyd-Max) or the Gaussian counterpart of --codebook")
    quant.add_argument("--seed", type=int, default=0, help="rotation seed (default 0)")
    quant.add_argument("--skip", default="lm_head", help="comma-separated module-name patterns left in full precision")
    quant.add_argument("--no-pad", action="store_true",
                       help="leave layers whose K the group size does not divide in full precision instead of padding")
    quant.add_argument("--device", default=None, help="where to quantize (default: where the model loads, the CPU)")
    quant.add_argument("--overwrite", action="store_true", help="replace an existing checkpoint in --out")
    quant.set_defaults(func=cmd_quantize)

    from tq.experiments.perplexity import add_scoring_arguments

    ev = sub.add_parser("eval", help="perplexity of a checkpoint written by `python -m tq quantize`")
    ev.add_argument("--model", required=True, help="checkpoint directory")
    add_scoring_arguments(ev)
    ev.set_defaults(func=cmd_eval)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.command in ("quantize", "eval"):
        from tq.experiments.perplexity import ModelNotFoundError
        from tq.format import FormatError
        from tq.model import NothingToQuantizeError

        try:
            return args.func(args)
        except (UsageError, ModelNotFoundError, FileNotFoundError, NothingToQuantizeError, FormatError,
                ImportError) as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
