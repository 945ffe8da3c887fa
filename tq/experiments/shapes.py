"""Linear-layer shapes (N out features x K in features) of real model families.

Each family lists the projections of one transformer block as ``nn.Linear`` weights
(N x K), derived from the model's published ``config.json``.  Where a serving stack
fuses projections (q/k/v into one qkv weight, gate and up into one gate_up weight) the
fused shape is listed, since that is the matmul a server actually runs.

A shape argument is a comma-separated list of family names and explicit ``NxK``.
"""
from __future__ import annotations

import dataclasses
import re


@dataclasses.dataclass(frozen=True)
class LayerShape:
    name: str       # e.g. "llama3-8b.qkv" or "8192x28672"
    n: int          # out features (rows of W)
    k: int          # in features

    @property
    def label(self) -> str:
        return f"{self.name} ({self.n}x{self.k})" if self.name != f"{self.n}x{self.k}" else self.name


@dataclasses.dataclass(frozen=True)
class ModelFamily:
    source: str                          # where the numbers come from
    layers: tuple[tuple[str, int, int], ...]


def _attention_mlp(hidden, intermediate, heads, kv_heads, head_dim, fuse_gate_up=True):
    """(name, N, K) of q/k/v fused, o, gate/up and down for a Llama-style block."""
    qkv = (heads + 2 * kv_heads) * head_dim
    layers = [("qkv", qkv, hidden), ("o", hidden, heads * head_dim)]
    if fuse_gate_up:
        layers.append(("gate_up", 2 * intermediate, hidden))
    else:
        layers.append(("gate", intermediate, hidden))
        layers.append(("up", intermediate, hidden))
    layers.append(("down", hidden, intermediate))
    return tuple(layers)


FAMILIES: dict[str, ModelFamily] = {
    # meta-llama/Meta-Llama-3-8B config.json: hidden_size 4096, intermediate_size 14336,
    # num_attention_heads 32, num_key_value_heads 8 (head_dim 4096/32 = 128).
    # -> qkv 6144x4096, o 4096x4096, gate_up 28672x4096, down 4096x14336.
    "llama3-8b": ModelFamily(
        "Meta-Llama-3-8B config.json: hidden 4096, intermediate 14336, 32 heads, 8 KV heads, head_dim 128",
        _attention_mlp(4096, 14336, 32, 8, 128)),
    # meta-llama/Meta-Llama-3-70B config.json: hidden_size 8192, intermediate_size 28672,
    # num_attention_heads 64, num_key_value_heads 8 (head_dim 128).  Gate and up are
    # listed separately (as in transformers' LlamaMLP): 28672x8192 and 8192x28672 are
    # the shapes of the kernel issues' performance goals.
    "llama3-70b": ModelFamily(
        "Meta-Llama-3-70B config.json: hidden 8192, intermediate 28672, 64 heads, 8 KV heads, head_dim 128",
        _attention_mlp(8192, 28672, 64, 8, 128, fuse_gate_up=False)),
    # Qwen/Qwen3-0.6B config.json: hidden_size 1024, intermediate_size 3072,
    # num_attention_heads 16, num_key_value_heads 8, head_dim 128 (so q is 2048 wide,
    # wider than hidden) -> qkv 4096x1024, o 1024x2048, gate_up 6144x1024, down 1024x3072.
    "qwen3-0.6b": ModelFamily(
        "Qwen3-0.6B config.json: hidden 1024, intermediate 3072, 16 heads, 8 KV heads, head_dim 128",
        _attention_mlp(1024, 3072, 16, 8, 128)),
    # HuggingFaceTB/SmolLM2-135M config.json: hidden_size 576, intermediate_size 1536,
    # num_attention_heads 9, num_key_value_heads 3 (head_dim 64): K = 576 is not a
    # multiple of 128, the padded-last-group case of issue 8.
    "smollm2-135m": ModelFamily(
        "SmolLM2-135M config.json: hidden 576, intermediate 1536, 9 heads, 3 KV heads, head_dim 64",
        _attention_mlp(576, 1536, 9, 3, 64)),
}

_EXPLICIT = re.compile(r"^(\d+)x(\d+)$")


def family_layers(name: str) -> list[LayerShape]:
    fam = FAMILIES[name]
    return [LayerShape(f"{name}.{layer}", n, k) for layer, n, k in fam.layers]


def parse_shapes(spec: str | list[str]) -> list[LayerShape]:
    """'llama3-8b,qwen3-0.6b,8192x28672' -> layer shapes; raises ValueError on unknown names."""
    items = spec if isinstance(spec, (list, tuple)) else [s for s in spec.split(",")]
    shapes: list[LayerShape] = []
    for item in (s.strip() for s in items):
        if not item:
            continue
        m = _EXPLICIT.match(item.lower())
        if m:
            n, k = int(m.group(1)), int(m.group(2))
            if n < 1 or k < 1:
                raise ValueError(f"shape {item!r}: N and K must be positive")
            shapes.append(LayerShape(f"{n}x{k}", n, k))
        elif item.lower() in FAMILIES:
            shapes.extend(family_layers(item.lower()))
        else:
            raise ValueError(f"unknown shape {item!r}: use NxK (e.g. 8192x28672) or a model family, "
                             f"one of {sorted(FAMILIES)}")
    if not shapes:
        raise ValueError("no shapes given")
    return shapes


def scale_down(shape: LayerShape, factor: int, multiple: int = 32, minimum: int = 64) -> LayerShape:
    """The same layer with N and K divided by ``factor`` (for CPU runs), kept a multiple of ``multiple``."""
    def shrink(v):
        return max(minimum, -(-(v // factor) // multiple) * multiple)
    return LayerShape(shape.name, shrink(shape.n), shrink(shape.k))


def describe_sources(shapes: list[LayerShape]) -> dict[str, str]:
    """family name -> source, for the families present in ``shapes`` (for the report)."""
    out = {}
    for s in shapes:
        fam = s.name.rsplit(".", 1)[0]
        if fam in FAMILIES:
            out[fam] = FAMILIES[fam].source
    return out
