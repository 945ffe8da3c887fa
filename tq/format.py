"""The quantized-weight container, its byte accounting, and its safetensors file format.

A ``QuantizedWeight`` of an N x K weight (N out features, K in features) holds, for
each pass (the main pass and an optional residual pass):

- ``planes``: the packed codebook indices, uint8 tensors [N, K_pad * p / 8] (packing.py);
- ``norms``: the L2 norm of each (row, group) of that pass's target, [N, K_pad / G],
  float16 by default (float32 on request);
- ``levels``: the codebook's 2^bits levels for unit-variance coordinates, float32.

The weight it stands for, in the rotated basis, is

    W_rot[n, k] = sum over passes  norms[n, k // G] / sqrt(G) * levels[idx[n, k]]

and in the original basis W_hat = unrotate(W_rot)[:, :K] (rotation.py).

On disk: one safetensors file (no pickle) with tensors ``pass{i}.plane{j}``,
``pass{i}.norms`` and ``pass{i}.levels`` and a JSON header under the metadata key
``tq``.  ``load`` validates every field against the header and raises
``FormatError`` on anything truncated, missing or inconsistent.
"""
from __future__ import annotations

import dataclasses
import json
import os

import torch

from . import packing
from .codebook import KINDS, Codebook, codebook_from_levels
from .residual import RESIDUAL_KINDS, parent_key, residual_source

FORMAT_NAME = "tq-weight"
FORMAT_VERSION = 1
SUPPORTED_VERSIONS = (1,)
NORM_DTYPES = {"float16": torch.float16, "float32": torch.float32}
WEIGHT_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16,
                 "float64": torch.float64}


class FormatError(ValueError):
    """A file or tensor set that is not a valid quantized weight."""


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).replace("torch.", "")


@dataclasses.dataclass
class QuantizedPass:
    bits: int
    codebook: Codebook
    planes: list
    norms: torch.Tensor
    levels: torch.Tensor

    @property
    def nbytes(self) -> int:
        return (sum(p.numel() for p in self.planes) + self.norms.numel() * self.norms.element_size()
                + self.levels.numel() * self.levels.element_size())

    def to(self, device) -> "QuantizedPass":
        return dataclasses.replace(self, planes=[p.to(device) for p in self.planes],
                                   norms=self.norms.to(device), levels=self.levels.to(device))


@dataclasses.dataclass
class QuantizedWeight:
    """A TurboQuant-compressed 2-D weight (see the module docstring for the math)."""

    out_features: int
    in_features: int
    group_size: int
    k_padded: int
    rotation_block: int
    seed: int
    dtype: torch.dtype
    passes: list
    full_row: bool = False
    format_version: int = FORMAT_VERSION

    # -- shape and configuration -------------------------------------------------
    @property
    def shape(self) -> tuple[int, int]:
        return (self.out_features, self.in_features)

    @property
    def n_groups(self) -> int:
        return self.k_padded // self.group_size

    @property
    def bits(self) -> int:
        return self.passes[0].bits

    @property
    def residual_bits(self) -> int | None:
        return self.passes[1].bits if len(self.passes) > 1 else None

    @property
    def codebook_kind(self) -> str:
        return self.passes[0].codebook.kind

    @property
    def device(self) -> torch.device:
        return self.passes[0].norms.device

    @property
    def norm_dtype(self) -> torch.dtype:
        return self.passes[0].norms.dtype

    # -- storage accounting -----------------------------------------------------------
    @property
    def nbytes(self) -> int:
        """Every stored byte: packed indices, norms and codebook levels of all passes."""
        return sum(p.nbytes for p in self.passes)

    @property
    def bits_per_weight(self) -> float:
        return 8.0 * self.nbytes / (self.out_features * self.in_features)

    def config(self) -> dict:
        return {
            "bits": self.bits, "residual_bits": self.residual_bits, "group_size": self.group_size,
            "full_row": self.full_row, "codebook": self.codebook_kind, "seed": self.seed,
            "norm_dtype": dtype_name(self.norm_dtype),
        }

    def __repr__(self) -> str:
        cfg = f"{self.bits}" + (f"+{self.residual_bits}" if self.residual_bits else "")
        group = "row" if self.full_row else self.group_size
        return (f"QuantizedWeight({self.out_features}x{self.in_features}, bits={cfg}, group={group}, "
                f"codebook={self.codebook_kind}, {self.bits_per_weight:.3f} bits/weight, "
                f"device={self.device})")

    def to(self, device) -> "QuantizedWeight":
        return dataclasses.replace(self, passes=[p.to(device) for p in self.passes])

    def indices(self, pass_index: int = 0) -> torch.Tensor:
        """Unpacked codebook indices of one pass, int32 [N, K_pad]."""
        p = self.passes[pass_index]
        return packing.unpack_indices(p.planes, p.bits, self.k_padded)


# ---------------------------------------------------------------------------
# Validation shared by the constructor in quantize.py and by load()
# ---------------------------------------------------------------------------
def validate(qw: QuantizedWeight) -> QuantizedWeight:
    n, k, g = qw.out_features, qw.in_features, qw.group_size
    err = FormatError
    if qw.format_version not in SUPPORTED_VERSIONS:
        raise err(f"format version {qw.format_version} is not supported (supported: {SUPPORTED_VERSIONS})")
    if n < 1 or k < 1:
        raise err(f"shape must be positive, got {n}x{k}")
    if qw.k_padded < k or qw.k_padded % g or qw.k_padded % packing.PACK_BLOCK:
        raise err(f"k_padded={qw.k_padded} must cover K={k} and be a multiple of group_size={g} "
                  f"and of {packing.PACK_BLOCK}")
    if qw.k_padded - k >= g:
        raise err(f"k_padded={qw.k_padded} pads more than one group beyond K={k}")
    rb = qw.rotation_block
    if rb < 1 or rb & (rb - 1) or g % rb:
        raise err(f"rotation_block={rb} must be a power of two dividing group_size={g}")
    if not 1 <= len(qw.passes) <= 2:
        raise err(f"a quantized weight has 1 or 2 passes, got {len(qw.passes)}")
    for i, p in enumerate(qw.passes):
        widths = packing.plane_widths(p.bits)
        if len(p.planes) != len(widths):
            raise err(f"pass {i}: {p.bits}-bit indices need {len(widths)} planes, got {len(p.planes)}")
        for j, (plane, w) in enumerate(zip(p.planes, widths)):
            want = (n, qw.k_padded * w // 8)
            if tuple(plane.shape) != want or plane.dtype != torch.uint8:
                raise err(f"pass {i} plane {j}: expected uint8 {want}, got {plane.dtype} {tuple(plane.shape)}")
        if tuple(p.norms.shape) != (n, qw.n_groups) or p.norms.dtype not in NORM_DTYPES.values():
            raise err(f"pass {i} norms: expected float16/float32 {(n, qw.n_groups)}, "
                      f"got {p.norms.dtype} {tuple(p.norms.shape)}")
        if not bool(torch.isfinite(p.norms).all()) or bool((p.norms < 0).any()):
            raise err(f"pass {i} norms must be finite and non-negative")
        if tuple(p.levels.shape) != (1 << p.bits,) or p.levels.dtype != torch.float32:
            raise err(f"pass {i} levels: expected float32 ({1 << p.bits},), got {p.levels.dtype} "
                      f"{tuple(p.levels.shape)}")
        if p.codebook.bits != p.bits:
            raise err(f"pass {i}: codebook has {p.codebook.bits} bits, pass has {p.bits}")
    return qw


# ---------------------------------------------------------------------------
# save / load
# ---------------------------------------------------------------------------
def _header(qw: QuantizedWeight) -> dict:
    return {
        "format": FORMAT_NAME, "version": qw.format_version,
        "out_features": qw.out_features, "in_features": qw.in_features,
        "group_size": qw.group_size, "k_padded": qw.k_padded, "rotation_block": qw.rotation_block,
        "full_row": qw.full_row, "seed": qw.seed, "dtype": dtype_name(qw.dtype),
        "passes": [{
            "bits": p.bits, "codebook": p.codebook.kind, "dimension": p.codebook.dimension,
            "poly_coefficients": list(p.codebook.poly_coefficients) if p.codebook.is_polynomial else None,
            "norm_dtype": dtype_name(p.norms.dtype), "n_planes": len(p.planes),
            # (a residual kind's expected error comes from a sampled source: stored, so that
            # loading needs no sampling)
            **({"expected_mse": p.codebook.expected_mse} if p.codebook.kind in RESIDUAL_KINDS else {}),
        } for p in qw.passes],
    }


def state_tensors(qw: QuantizedWeight, prefix: str = "") -> dict:
    """Flat name -> tensor map of everything stored (contiguous CPU tensors)."""
    out = {}
    for i, p in enumerate(qw.passes):
        for j, plane in enumerate(p.planes):
            out[f"{prefix}pass{i}.plane{j}"] = plane
        out[f"{prefix}pass{i}.norms"] = p.norms
        out[f"{prefix}pass{i}.levels"] = p.levels
    return {k: v.detach().contiguous().cpu() for k, v in out.items()}


def header_json(qw: QuantizedWeight) -> str:
    return json.dumps(_header(qw), sort_keys=True)


def from_state(header: dict | str, tensors: dict, prefix: str = "", device=None) -> QuantizedWeight:
    """Rebuild and validate a QuantizedWeight from a header and a name -> tensor map."""
    err = FormatError
    try:
        h = json.loads(header) if isinstance(header, str) else dict(header)
    except json.JSONDecodeError as e:
        raise err(f"metadata is not valid JSON: {e}") from None
    if h.get("format") != FORMAT_NAME:
        raise err(f"not a tq weight (format={h.get('format')!r}, expected {FORMAT_NAME!r})")
    try:
        version = int(h["version"])
        if version not in SUPPORTED_VERSIONS:
            raise err(f"format version {version} is not supported (supported: {SUPPORTED_VERSIONS})")
        passes = []
        for i, ph in enumerate(h["passes"]):
            kind = ph["codebook"]
            if kind not in KINDS and not (i > 0 and kind in RESIDUAL_KINDS):
                allowed = KINDS + RESIDUAL_KINDS if i else KINDS
                raise err(f"pass {i}: unknown codebook kind {kind!r} (expected one of {allowed})")
            bits = int(ph["bits"])
            if not 1 <= bits <= 8:
                raise err(f"pass {i}: bits={bits} outside 1..8")
            names = [f"{prefix}pass{i}.plane{j}" for j in range(int(ph["n_planes"]))]
            names += [f"{prefix}pass{i}.norms", f"{prefix}pass{i}.levels"]
            missing = [n for n in names if n not in tensors]
            if missing:
                raise err(f"missing tensors {missing}")
            levels = tensors[f"{prefix}pass{i}.levels"]
            if levels.dtype != torch.float32 or tuple(levels.shape) != (1 << bits,):
                raise err(f"pass {i} levels: expected float32 ({1 << bits},), got {levels.dtype} {tuple(levels.shape)}")
            try:
                source = expected = None
                if kind in RESIDUAL_KINDS:
                    dim = ph.get("dimension")
                    if dim != int(h["group_size"]) or isinstance(dim, bool):
                        raise ValueError(f"a {kind!r} codebook's dimension must be the group size "
                                         f"{h['group_size']}, got {dim!r}")
                    expected = ph.get("expected_mse")
                    if not isinstance(expected, float) or not 0.0 <= expected < float("inf"):
                        expected = None
                        source = residual_source(parent_key(passes[0].levels.numpy()), dim)
                cb = codebook_from_levels(kind, bits, levels.double().numpy(), ph.get("dimension"),
                                          ph.get("poly_coefficients"), source=source, expected=expected)
            except ValueError as e:
                raise err(f"pass {i} codebook: {e}") from None
            passes.append(QuantizedPass(
                bits=bits, codebook=cb,
                planes=[tensors[n] for n in names[:-2]],
                norms=tensors[f"{prefix}pass{i}.norms"], levels=levels))
        dtype = WEIGHT_DTYPES[h["dtype"]]
        qw = QuantizedWeight(
            out_features=int(h["out_features"]), in_features=int(h["in_features"]),
            group_size=int(h["group_size"]), k_padded=int(h["k_padded"]),
            rotation_block=int(h["rotation_block"]), seed=int(h["seed"]), dtype=dtype,
            passes=passes, full_row=bool(h["full_row"]), format_version=version)
    except (KeyError, TypeError) as e:
        raise err(f"metadata is incomplete or malformed: {e!r}") from None
    validate(qw)
    return qw.to(device) if device is not None else qw


def save(qw: QuantizedWeight, path) -> None:
    """Write ``qw`` to a safetensors file (tensors plus a JSON header, no pickle)."""
    from safetensors.torch import save_file

    save_file(state_tensors(qw), os.fspath(path), metadata={"tq": header_json(qw)})


def load(path, device=None) -> QuantizedWeight:
    """Read and validate a file written by ``save``; raises FormatError if it is damaged."""
    from safetensors import safe_open

    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"no such file: {path}")
    try:
        with safe_open(path, framework="pt") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:  # safetensors raises its own error types for truncated/corrupt files
        raise FormatError(f"{path} is not a readable safetensors file ({type(e).__name__}: {e})") from None
    if "tq" not in meta:
        raise FormatError(f"{path} has no tq metadata; was it written by tq.save?")
    return from_state(meta["tq"], tensors, device=device)
