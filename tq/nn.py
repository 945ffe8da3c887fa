"""``TQLinear``: a drop-in ``torch.nn.Linear`` whose weight is stored TurboQuant-compressed.

    layer = tq.TQLinear.from_linear(nn.Linear(K, N), bits=4, group_size=128)
    y = layer(x)            # x [..., K] -> y [..., N], in x's dtype, through tq.matmul

The module keeps no full-precision weight.  Its state is the quantized weight's stored
tensors, registered as buffers so that ``state_dict`` / ``load_state_dict`` round-trip:

    pass{i}_plane{j}   uint8 packed codebook indices of pass i (format.py)
    pass{i}_norms      float16/float32 per-group norms of pass i
    pass{i}_levels     float32 codebook levels of pass i

plus ``bias`` (a Parameter, as in nn.Linear) and ``tq_header``: the quantized weight's
JSON header (format.header_json, which says how to read the other buffers) as UTF-8
bytes in a uint8 buffer, so a state_dict describes itself.  Loading a state_dict whose
header differs from the module's (another bits, group size, seed, codebook...) is an
error that says so; one that differs only in fitted numbers (a polynomial codebook's
coefficients, a residual codebook's expected MSE, which may differ in the last bits
across NumPy/SciPy versions) is loaded, and the module takes the checkpoint's codebooks.
``tq.load_quantized`` builds each layer from its own header.

The buffers keep their dtypes whatever ``.to(dtype)`` / ``.half()`` asks: only the
device moves (casting packed indices or codebook levels would corrupt the format);
the bias follows the module's dtype as nn.Linear's would.
"""
from __future__ import annotations

import json

import torch
from torch import nn

from . import backends, format as tq_format
from .codebook import DEFAULT_POLY_DEGREE
from .format import QuantizedPass, QuantizedWeight
from .quantize import dequantize, quantize


HEADER_BUFFER = "tq_header"


def _configuration(header: str) -> dict:
    """A header without its fitted numbers: how a layer was quantized (bits, group size, seed,
    codebook kinds, polynomial term counts, ...), not the last bits of an optimizer's output."""
    h = json.loads(header)
    for p in h.get("passes", []):
        coef = p.pop("poly_coefficients", None)
        p["poly_terms"] = None if coef is None else len(coef)
        p.pop("expected_mse", None)
    return h


def encode_header(header: str, device=None) -> torch.Tensor:
    return torch.tensor(list(header.encode("utf-8")), dtype=torch.uint8, device=device)


def decode_header(tensor: torch.Tensor) -> str:
    return bytes(tensor.detach().cpu().tolist()).decode("utf-8")


class TQLinear(nn.Module):
    """y = x @ W_hat.T + bias with W_hat held as a ``tq.QuantizedWeight``.

    Build it with ``TQLinear.from_linear(linear, ...)`` or ``TQLinear(qw, bias)``.
    ``backend`` is any name ``tq.matmul`` accepts ("auto", "reference", "triton",
    "cutile"); it is chosen per call, so the module may move between devices.
    """

    def __init__(self, qw: QuantizedWeight, bias: torch.Tensor | None = None, backend: str = "auto"):
        super().__init__()
        if not isinstance(qw, QuantizedWeight):
            raise TypeError(f"qw must be a tq.QuantizedWeight (from tq.quantize), got {type(qw).__name__}")
        if backend != "auto" and backend not in backends.PREFERENCE:
            raise ValueError(f"backend must be 'auto' or one of {list(backends.PREFERENCE)}, got {backend!r}")
        self.in_features = qw.in_features
        self.out_features = qw.out_features
        self.backend = backend
        self.header = tq_format.header_json(qw)
        # Everything about qw that is not a tensor; tensors are read from the buffers each call.
        self._codebooks = [p.codebook for p in qw.passes]
        self._layout = dict(out_features=qw.out_features, in_features=qw.in_features,
                            group_size=qw.group_size, k_padded=qw.k_padded,
                            rotation_block=qw.rotation_block, seed=qw.seed, dtype=qw.dtype,
                            full_row=qw.full_row, format_version=qw.format_version)
        self._n_planes = [len(p.planes) for p in qw.passes]
        for i, p in enumerate(qw.passes):
            for j, plane in enumerate(p.planes):
                self.register_buffer(f"pass{i}_plane{j}", plane.contiguous())
            self.register_buffer(f"pass{i}_norms", p.norms.contiguous())
            self.register_buffer(f"pass{i}_levels", p.levels.contiguous())
        self.register_buffer(HEADER_BUFFER, encode_header(self.header, qw.device))
        if bias is not None:
            if tuple(bias.shape) != (qw.out_features,):
                raise ValueError(f"bias must have shape ({qw.out_features},), got {tuple(bias.shape)}")
            self.bias = nn.Parameter(bias.detach().clone().to(qw.device), requires_grad=bias.requires_grad)
        else:
            self.register_parameter("bias", None)

    # -- construction ----------------------------------------------------------------
    @classmethod
    def from_linear(cls, linear: nn.Linear, bits: int = 4, group_size=128, residual_bits: int | None = None,
                    backend: str = "auto", codebook: str = "gaussian", seed: int = 0, *,
                    residual_codebook: str = "residual-poly", poly_degree=DEFAULT_POLY_DEGREE,
                    norm_dtype: torch.dtype = torch.float16, pad: bool = True) -> "TQLinear":
        """Quantize ``linear.weight`` (arguments as ``tq.quantize``) and keep ``linear.bias``."""
        if not isinstance(linear, nn.Linear):
            raise TypeError(f"from_linear needs a torch.nn.Linear, got {type(linear).__name__}")
        if linear.weight.device.type == "meta":
            raise ValueError("linear.weight is on the meta device (no values to quantize); "
                             "load the weights first, or use tq.load_quantized for a quantized checkpoint")
        qw = quantize(linear.weight.detach(), bits, group_size, residual_bits, seed, codebook,
                      residual_codebook=residual_codebook, poly_degree=poly_degree, norm_dtype=norm_dtype,
                      pad=pad)
        return cls(qw, linear.bias, backend=backend)

    # -- the quantized weight, rebuilt from the current buffers ------------------------
    @property
    def quantized_weight(self) -> QuantizedWeight:
        """The QuantizedWeight viewing this module's buffers (no copy; follows .to(device)).

        The same object is returned while the buffers are the same tensors: backends cache
        per-weight preparation (and the Triton backend its decode replays) by identity, so a
        fresh object per forward would redo that work on every call.
        """
        current = tuple(id(b) for b in self._buffers.values() if b is not None)
        cached = getattr(self, "_qw_cache", None)
        if cached is not None and cached[0] == current:
            return cached[1]
        qw = self._build_quantized_weight()
        object.__setattr__(self, "_qw_cache", (current, qw))
        return qw

    def _build_quantized_weight(self) -> QuantizedWeight:
        passes = []
        for i, (cb, n_planes) in enumerate(zip(self._codebooks, self._n_planes)):
            passes.append(QuantizedPass(
                bits=cb.bits, codebook=cb,
                planes=[getattr(self, f"pass{i}_plane{j}") for j in range(n_planes)],
                norms=getattr(self, f"pass{i}_norms"), levels=getattr(self, f"pass{i}_levels")))
        return QuantizedWeight(passes=passes, **self._layout)

    def dequantized_weight(self, dtype: torch.dtype | None = None) -> torch.Tensor:
        """W_hat [N, K] in the original basis (default: the original weight's dtype)."""
        return dequantize(self.quantized_weight, dtype)

    @property
    def config(self) -> dict:
        return json.loads(self.header)

    @property
    def nbytes(self) -> int:
        """Stored bytes of the quantized weight (indices, norms, levels), bias excluded."""
        return self.quantized_weight.nbytes

    @property
    def bits_per_weight(self) -> float:
        return self.quantized_weight.bits_per_weight

    # -- nn.Module -----------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bias = self.bias
        if bias is not None and bias.dtype != x.dtype:
            bias = bias.to(x.dtype)
        return backends.matmul(x, self.quantized_weight, bias=bias, backend=self.backend)

    def _apply(self, fn, recurse=True):
        # Let nn.Module move/cast everything, then put the stored tensors back in their
        # own dtypes: only their device may change.
        dtypes = {name: buf.dtype for name, buf in self._buffers.items() if buf is not None}
        super()._apply(fn, recurse)
        for name, dtype in dtypes.items():
            buf = self._buffers[name]
            if buf is not None and buf.dtype != dtype:
                self._buffers[name] = buf.to(dtype)
        return self

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys,
                              unexpected_keys, error_msgs):
        # A checkpoint of a differently configured layer cannot be copied into this one;
        # say so in terms of the configuration rather than raw shapes.
        key = prefix + HEADER_BUFFER
        adopt = None
        if key in state_dict and state_dict[key].device.type != "meta":
            theirs = decode_header(state_dict[key])
            if json.loads(theirs) != json.loads(self.header):
                if _configuration(theirs) != _configuration(self.header):
                    error_msgs.append(
                        f"{key}: the checkpoint's layer was quantized as {theirs}, this TQLinear as {self.header}; "
                        f"build the layer with the same configuration, or use tq.load_quantized, which reads "
                        f"each layer's configuration from the checkpoint")
                    return
                # Same configuration, other fitted numbers (a polynomial codebook's coefficients,
                # a residual codebook's expected MSE: they come out of a seeded sample and an
                # optimizer, which can differ in the last bits across NumPy/SciPy versions).  The
                # checkpoint's are the ones its levels were made with: take them.
                adopt = theirs
                missing = [n for n in self._stored_names() if prefix + n not in state_dict]
                if missing:
                    error_msgs.append(f"{key}: the checkpoint's codebooks were fitted differently from this "
                                      f"layer's, and without its {', '.join(prefix + n for n in missing)} they "
                                      f"cannot be taken; nothing was loaded into this TQLinear")
                    return
                try:
                    codebooks = self._codebooks_of(adopt, state_dict, prefix)
                except (tq_format.FormatError, NotImplementedError, RuntimeError) as e:
                    # (NotImplementedError / RuntimeError: meta tensors, which hold no values to check)
                    error_msgs.append(f"{key}: the checkpoint's codebooks do not hold together ({e}); "
                                      f"nothing was loaded into this TQLinear")
                    return
        for name, buf in self._buffers.items():
            if name == HEADER_BUFFER:
                continue
            key = prefix + name
            if key in state_dict and tuple(state_dict[key].shape) != tuple(buf.shape):
                error_msgs.append(
                    f"{key}: shape {tuple(state_dict[key].shape)} in the checkpoint, {tuple(buf.shape)} in "
                    f"this TQLinear ({self._short_config()}); the checkpoint was quantized with another "
                    f"configuration: build the layer with the same bits/group_size/residual_bits, or use "
                    f"tq.load_quantized, which reads the configuration from the checkpoint")
                return
        if adopt is not None:
            old = self._buffers[HEADER_BUFFER]
            self._buffers[HEADER_BUFFER] = encode_header(adopt, old.device)   # (its length may differ)
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys,
                                      unexpected_keys, error_msgs)
        # New values in the buffers, copied in place: a fresh QuantizedWeight object, so that no
        # backend reuses what it prepared from the old ones (caches keyed by the weight object:
        # cuTile's transposed norms and level fits, Triton's tables and replays).
        object.__setattr__(self, "_qw_cache", None)
        if adopt is not None:
            # (the parent copies what it can even when another tensor fails, e.g. the bias: the
            # codebooks follow the levels the buffers now hold)
            if self._holds_levels_of(state_dict, prefix):
                self._codebooks = codebooks
                self.header = adopt
            else:
                self._buffers[HEADER_BUFFER] = old

    def _holds_levels_of(self, state_dict, prefix: str) -> bool:
        try:
            return all(torch.equal(getattr(self, f"pass{i}_levels").cpu(), state_dict[f"{prefix}pass{i}_levels"].cpu())
                       for i in range(len(self._n_planes)))
        except (NotImplementedError, RuntimeError):   # (meta buffers: a load into them copies nothing)
            return False

    def _stored_names(self) -> list:
        names = []
        for i, n_planes in enumerate(self._n_planes):
            names += [f"pass{i}_plane{j}" for j in range(n_planes)] + [f"pass{i}_norms", f"pass{i}_levels"]
        return names

    def _codebooks_of(self, header: str, state_dict, prefix: str) -> list:
        # The codebooks of a checkpoint's header over its own levels (format.from_state checks
        # that a polynomial's coefficients reproduce them: kernels read the coefficients, the
        # reference reads the levels); its other tensors are checked against the header too.
        # (buffer pass{i}_x is format.state_tensors' pass{i}.x; the levels are read on the host)
        tensors = {name.replace("_", ".", 1): state_dict[prefix + name] for name in self._stored_names()}
        tensors = {k: v.detach().cpu() if k.endswith(".levels") else v for k, v in tensors.items()}
        return [p.codebook for p in tq_format.from_state(header, tensors).passes]

    def _short_config(self) -> str:
        h = self.config
        bits = "+".join(str(p["bits"]) for p in h["passes"])
        group = "row" if h["full_row"] else h["group_size"]
        return f"bits={bits}, group={group}, codebook={h['passes'][0]['codebook']}"

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"bias={self.bias is not None}, {self._short_config()}, "
                f"{self.bits_per_weight:.3f} bits/weight, backend={self.backend}")
