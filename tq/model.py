"""Whole models: quantize every nn.Linear in place, save and load quantized checkpoints.

    report = tq.quantize_model(model, bits=4, group_size=128)      # in place, layer by layer
    tq.save_quantized(model, "out/")                                 # model.safetensors + tq_config.json
    skeleton = ...                                                   # same architecture, weights on meta
    model = tq.load_quantized(skeleton, "out/")

``quantize_model`` replaces one nn.Linear at a time by a ``TQLinear`` and drops the
original from the model right away, so the extra memory at any moment is one layer's
temporaries, never a second copy of the model (the caller must not hold references
to the original Linear modules or their weights, or those stay alive).

Quantizing a model that has no nn.Linear left to quantize is an error
(``NothingToQuantizeError``) that says whether the model is already quantized: doing
nothing silently would hide a wrong call, and quantizing a TQLinear again is never
meant.  A partly quantized model (some nn.Linear left) gets only its remaining
nn.Linear quantized.

Checkpoint layout (a directory):

- ``model.safetensors``: every tensor of ``model.state_dict()`` once (tensors that
  share storage, such as tied embeddings, are written once and listed as aliases):
  the TQLinear buffers (packed planes, norms, levels, header bytes) and every
  parameter and buffer that was not quantized, in its own dtype;
- ``tq_config.json``: ``{"format": "tq-model", "version": 1, "layers": {name: header},
  "aliases": {name: stored name}, "quantization": {...}}`` where each header is the
  layer's format.header_json (how to read its tensors).
"""
from __future__ import annotations

import contextlib
import dataclasses
import fnmatch
import json
import os
import time

import torch
from torch import nn

from .codebook import DEFAULT_POLY_DEGREE, KINDS
from .format import FormatError, from_state
from .nn import HEADER_BUFFER, TQLinear
from .quantize import RESIDUAL_CHOICES, _check_bits, quantize, resolve_group

MODEL_FORMAT = "tq-model"
MODEL_FORMAT_VERSION = 1
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "tq_config.json"


class NothingToQuantizeError(ValueError):
    """quantize_model found no nn.Linear to quantize (none at all, all skipped, or already quantized)."""


@dataclasses.dataclass
class QuantizationReport:
    """What quantize_model did.  Bytes count stored tensors: weights, biases excluded."""

    quantized: list                 # names of the nn.Linear layers replaced by TQLinear
    skipped: dict                   # name -> reason, for nn.Linear layers left in full precision
    bytes_before: int               # full-precision bytes of the quantized layers' weights
    bytes_after: int                # stored bytes of the same layers as TQLinear
    seconds: float
    config: dict

    n_weights: int = 0              # weights in the quantized layers

    @property
    def compression_ratio(self) -> float:
        return self.bytes_before / self.bytes_after if self.bytes_after else float("nan")

    @property
    def bits_per_weight(self) -> float:
        """Average stored bits per weight over the quantized layers."""
        return 8.0 * self.bytes_after / self.n_weights if self.n_weights else float("nan")

    def summary(self) -> str:
        lines = [f"quantized {len(self.quantized)} Linear layers in {self.seconds:.1f} s: "
                 f"{self.bytes_before / 2**20:.1f} MiB -> {self.bytes_after / 2**20:.1f} MiB "
                 f"({self.compression_ratio:.2f}x, {self.bits_per_weight:.3f} bits/weight)"]
        if self.skipped:
            lines.append(f"left in full precision ({len(self.skipped)}):")
            lines += [f"  {name}: {why}" for name, why in self.skipped.items()]
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {"quantized": self.quantized, "skipped": self.skipped, "bytes_before": self.bytes_before,
                "bytes_after": self.bytes_after, "compression_ratio": self.compression_ratio,
                "bits_per_weight": self.bits_per_weight, "seconds": self.seconds, "config": self.config}


def matches(name: str, patterns) -> bool:
    """True if a module name matches any pattern: fnmatch on the full name, or a plain substring."""
    if isinstance(patterns, str):
        patterns = (patterns,)
    return any(fnmatch.fnmatchcase(name, p) or p in name for p in patterns)


def _set_submodule(model: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, leaf = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, leaf, module)


def _check_config(bits, group_size, residual_bits, codebook="gaussian", residual_codebook="residual-poly") -> None:
    if codebook not in KINDS:
        raise ValueError(f"codebook must be one of {KINDS}, got {codebook!r}")
    if residual_codebook not in RESIDUAL_CHOICES:
        raise ValueError(f"residual_codebook must be one of {RESIDUAL_CHOICES}, got {residual_codebook!r}")
    _check_bits("bits", bits)
    _check_bits("residual_bits", residual_bits, allow_none=True)
    resolve_group(1 << 20, group_size, pad=True)   # validates the group size whatever K is


def quantize_model(model: nn.Module, bits: int = 4, group_size=128, residual_bits: int | None = None,
                   skip=("lm_head",), backend: str = "auto", pad: bool = True, codebook: str = "gaussian",
                   seed: int = 0, *, residual_codebook: str = "residual-poly", poly_degree=DEFAULT_POLY_DEGREE,
                   norm_dtype: torch.dtype = torch.float16,
                   device=None, progress: bool = True) -> QuantizationReport:
    """Replace every nn.Linear of ``model`` by a TQLinear, in place, one layer at a time.

    skip: module-name patterns left in full precision (fnmatch, e.g. ``"*.mlp.*"``, or a
        substring, e.g. ``"lm_head"``).
    pad: zero-pad K that the group size does not divide (default); with ``pad=False``
        such layers are left in full precision and listed in ``report.skipped``.
    device: where to quantize each weight (e.g. "cuda" for a CPU-resident model);
        the TQLinear stays there.  Default: the weight's own device.
    Other arguments as ``tq.quantize`` / ``TQLinear.from_linear``.
    Raises NothingToQuantizeError if no nn.Linear is left to quantize.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    _check_config(bits, group_size, residual_bits, codebook, residual_codebook)
    start = time.perf_counter()
    linears = [(name, m) for name, m in model.named_modules() if type(m) is nn.Linear]
    already = sum(isinstance(m, TQLinear) for m in model.modules())
    if not linears:
        if already:
            raise NothingToQuantizeError(
                f"the model is already quantized ({already} TQLinear layers, no nn.Linear left); "
                f"quantize the original model instead of quantizing twice")
        raise NothingToQuantizeError(
            f"the model ({type(model).__name__}) has no torch.nn.Linear layers to quantize; "
            f"tq.quantize_model replaces nn.Linear only (subclasses and Conv layers are left alone)")

    skipped, todo = {}, []
    for name, m in linears:
        pattern = next((p for p in ((skip,) if isinstance(skip, str) else skip or ()) if matches(name, p)), None)
        if pattern is not None:
            skipped[name] = f"matches skip pattern {pattern!r}"
            continue
        if m.weight.device.type == "meta":
            skipped[name] = "weight is on the meta device (no values)"
            continue
        if not pad:
            try:
                resolve_group(m.in_features, group_size, pad=False)
            except ValueError:
                skipped[name] = (f"group_size={group_size} does not divide K={m.in_features} "
                                 f"(pass pad=True to zero-pad the last group)")
                continue
        todo.append(name)
    if not todo and already:
        raise NothingToQuantizeError(
            f"the model is already quantized ({already} TQLinear layers); its {len(skipped)} remaining "
            f"nn.Linear are skipped ({', '.join(list(skipped)[:3])}); quantize the original model instead")
    if not todo:
        raise NothingToQuantizeError(
            f"every nn.Linear of the model was skipped ({len(skipped)}: "
            + "; ".join(f"{n}: {w}" for n, w in list(skipped.items())[:5])
            + (" ..." if len(skipped) > 5 else "") + "); loosen skip= or pass pad=True")

    config = {"bits": bits, "residual_bits": residual_bits, "group_size": group_size, "codebook": codebook,
              "residual_codebook": residual_codebook if residual_bits else None,
              "seed": seed, "pad": pad, "poly_degree": poly_degree, "norm_dtype": str(norm_dtype).replace("torch.", ""),
              "skip": list((skip,) if isinstance(skip, str) else skip or ())}
    bytes_before = bytes_after = n_weights = 0
    iterator = todo
    if progress:
        from tqdm.auto import tqdm
        iterator = tqdm(todo, desc="quantizing", unit="layer", leave=False)
    for name in iterator:
        linear = model.get_submodule(name)
        weight = linear.weight.detach()
        bytes_before += weight.numel() * weight.element_size()
        n_weights += weight.numel()
        qw = quantize(weight if device is None else weight.to(device), bits, group_size, residual_bits, seed,
                      codebook, residual_codebook=residual_codebook, poly_degree=poly_degree,
                      norm_dtype=norm_dtype, pad=pad)
        bias = linear.bias
        if bias is not None and device is not None:
            bias = bias.to(device)
        layer = TQLinear(qw, bias, backend=backend)
        bytes_after += layer.nbytes
        _set_submodule(model, name, layer)
        del linear, weight, bias, qw, layer   # the original weight is freed here unless the caller holds it
    return QuantizationReport(quantized=todo, skipped=skipped, bytes_before=bytes_before, bytes_after=bytes_after,
                              seconds=time.perf_counter() - start, config=config, n_weights=n_weights)


# ---------------------------------------------------------------------------
# checkpoints
# ---------------------------------------------------------------------------
def _storage_key(t: torch.Tensor):
    return (t.device, t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape), tuple(t.stride()),
            t.dtype)


def save_quantized(model: nn.Module, directory, extra_config: dict | None = None) -> None:
    """Write ``model`` (quantized or partly so) to ``directory``: model.safetensors + tq_config.json."""
    from safetensors.torch import save_file

    layers = {name: json.loads(m.header) for name, m in model.named_modules() if isinstance(m, TQLinear)}
    if not layers:
        raise ValueError("the model has no TQLinear layers; quantize it first with tq.quantize_model(model, ...)")
    state = model.state_dict()
    tensors, aliases, seen = {}, {}, {}
    for name, t in state.items():
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"state_dict entry {name!r} is a {type(t).__name__}, not a tensor; "
                            f"save_quantized stores tensors only")
        if t.device.type == "meta":
            raise ValueError(f"{name} is on the meta device (no values to save)")
        key = _storage_key(t)
        if key in seen:                    # tied weights: store once, remember the alias
            aliases[name] = seen[key]
            continue
        seen[key] = name
        tensors[name] = t.detach().contiguous().cpu()
    os.makedirs(directory, exist_ok=True)
    save_file(tensors, os.path.join(directory, WEIGHTS_FILE), metadata={"format": MODEL_FORMAT})
    config = {"format": MODEL_FORMAT, "version": MODEL_FORMAT_VERSION, "layers": layers, "aliases": aliases}
    config.update(extra_config or {})
    with open(os.path.join(directory, CONFIG_FILE), "w") as f:
        json.dump(config, f, indent=1, sort_keys=True)


def read_config(directory) -> dict:
    path = os.path.join(directory, CONFIG_FILE)
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"no such checkpoint directory: {directory}")
    if not os.path.exists(path) or not os.path.exists(os.path.join(directory, WEIGHTS_FILE)):
        raise FileNotFoundError(f"{directory} is not a tq checkpoint: it needs {CONFIG_FILE} and {WEIGHTS_FILE} "
                                f"(written by tq.save_quantized or `python -m tq quantize`)")
    with open(path) as f:
        try:
            config = json.load(f)
        except json.JSONDecodeError as e:
            raise FormatError(f"{path} is not valid JSON: {e}") from None
    if config.get("format") != MODEL_FORMAT or config.get("version") != MODEL_FORMAT_VERSION:
        raise FormatError(f"{path}: format {config.get('format')!r} version {config.get('version')!r}, "
                          f"expected {MODEL_FORMAT!r} version {MODEL_FORMAT_VERSION}")
    return config


@contextlib.contextmanager
def empty_parameters():
    """Build a model skeleton whose parameters live on the meta device and whose buffers are real.

        with tq.model.empty_parameters():
            skeleton = AutoModelForCausalLM.from_config(config)
        tq.load_quantized(skeleton, directory)

    Each parameter is moved to meta as soon as it is registered (so at most one layer's
    weight is ever allocated, briefly, and initializing it costs nothing); buffers such
    as rotary-embedding tables keep their computed values, which a checkpoint that
    omits non-persistent buffers needs.  (accelerate.init_empty_weights() does the same.)
    """
    original = nn.Module.register_parameter

    def register_on_meta(module, name, param):
        original(module, name, param)
        if param is not None and param.device.type != "meta":
            kind = type(module._parameters[name])
            module._parameters[name] = kind(param.to("meta"), requires_grad=param.requires_grad)

    nn.Module.register_parameter = register_on_meta
    try:
        yield
    finally:
        nn.Module.register_parameter = original


def load_quantized(model: nn.Module, directory, device=None, backend: str = "auto") -> nn.Module:
    """Fill the skeleton ``model`` from a checkpoint written by ``save_quantized``; returns it.

    The skeleton is the same architecture with nn.Linear where the checkpoint has
    quantized layers; build it with its parameters on the meta device
    (``tq.model.empty_parameters()`` or ``accelerate.init_empty_weights()``; plain
    ``torch.device("meta")`` only for a model without non-persistent buffers) so that
    no full-precision weight is ever allocated.
    Each listed Linear is replaced by a TQLinear built from the file; every other
    tensor is assigned from the file (``load_state_dict(assign=True)``).  Tensors are
    read one by one, so peak memory is the quantized model plus one tensor.
    """
    from safetensors import safe_open

    config = read_config(directory)
    layers, aliases = config["layers"], config.get("aliases", {})
    path = os.path.join(directory, WEIGHTS_FILE)
    target = torch.device(device) if device is not None else None
    with safe_open(path, framework="pt", device="cpu") as f:
        keys = set(f.keys())

        def read(name):
            t = f.get_tensor(name)
            return t.to(target) if target is not None else t

        used = set()
        for name, header in layers.items():
            try:
                old = model.get_submodule(name)
            except AttributeError:
                raise FormatError(f"the checkpoint quantized layer {name!r}, which the skeleton does not have; "
                                  f"build the skeleton from the same model config") from None
            if not isinstance(old, (nn.Linear, TQLinear)):
                raise FormatError(f"{name} is a {type(old).__name__} in the skeleton, a Linear in the checkpoint")
            if (old.out_features, old.in_features) != (header["out_features"], header["in_features"]):
                raise FormatError(f"{name}: skeleton Linear is {old.out_features}x{old.in_features}, checkpoint "
                                  f"has {header['out_features']}x{header['in_features']}")
            n_passes = len(header["passes"])
            names = {}
            for i, ph in enumerate(header["passes"]):
                for j in range(int(ph["n_planes"])):
                    names[f"pass{i}.plane{j}"] = f"{name}.pass{i}_plane{j}"
                names[f"pass{i}.norms"] = f"{name}.pass{i}_norms"
                names[f"pass{i}.levels"] = f"{name}.pass{i}_levels"
            missing = [v for v in names.values() if v not in keys]
            if missing:
                raise FormatError(f"{path} lacks tensors {missing} of layer {name}")
            qw = from_state(header, {k: read(v) for k, v in names.items()}, device=target)
            bias = None
            if f"{name}.bias" in keys:
                bias = read(f"{name}.bias")
                used.add(f"{name}.bias")
            elif old.bias is not None:
                raise FormatError(f"{name}: the skeleton's Linear has a bias, the checkpoint has none")
            _set_submodule(model, name, TQLinear(qw, bias, backend=backend))
            used.update(names.values())
            used.add(f"{name}.{HEADER_BUFFER}")
            assert n_passes == len(qw.passes)

        rest = {k: read(k) for k in keys - used}
    incompatible = model.load_state_dict(rest, strict=False, assign=True)
    # Tied tensors were written once: point each alias at its stored module attribute.
    for alias, stored in aliases.items():
        src_mod, _, src_attr = stored.rpartition(".")
        dst_mod, _, dst_attr = alias.rpartition(".")
        value = getattr(model.get_submodule(src_mod) if src_mod else model, src_attr)
        owner = model.get_submodule(dst_mod) if dst_mod else model
        if isinstance(value, nn.Parameter) or dst_attr in owner._parameters:
            owner._parameters[dst_attr] = value
        else:
            owner._buffers[dst_attr] = value
    missing = [k for k in incompatible.missing_keys if k not in aliases and k not in used]
    if missing:
        raise FormatError(f"the checkpoint lacks {len(missing)} tensors the skeleton has: {missing[:8]}"
                          + (" ..." if len(missing) > 8 else ""))
    if incompatible.unexpected_keys:
        raise FormatError(f"the checkpoint has tensors the skeleton lacks: {incompatible.unexpected_keys[:8]}")
    on_meta = [n for n, t in list(model.named_parameters()) + list(model.named_buffers()) if t.device.type == "meta"]
    if on_meta:
        raise ValueError(f"after loading, {len(on_meta)} tensors are still on the meta device ({on_meta[:4]}): "
                         f"they are not saved in the checkpoint (non-persistent buffers); build the skeleton "
                         f"with only its parameters on meta, e.g. accelerate.init_empty_weights()")
    return model


def model_bytes(model: nn.Module) -> dict:
    """Bytes as stored in memory: {"quantized", "full_precision", "total"}.

    "quantized": the TQLinear weights' stored bytes (tq.QuantizedWeight.nbytes: packed
    indices, norms, levels); "full_precision": every other parameter and buffer
    (embeddings, norms, biases, skipped Linear weights), each tensor counted once even
    where weights are tied.
    """
    quantized, rest, seen, tq_buffers = 0, 0, set(), set()
    for m in model.modules():
        if isinstance(m, TQLinear):
            quantized += m.nbytes
            tq_buffers.update(id(b) for name, b in m.named_buffers(recurse=False))
    for t in list(model.parameters()) + list(model.buffers()):
        if id(t) in tq_buffers:
            continue
        key = _storage_key(t)
        if key not in seen:
            seen.add(key)
            rest += t.numel() * t.element_size()
    return {"quantized": quantized, "full_precision": rest, "total": quantized + rest}
