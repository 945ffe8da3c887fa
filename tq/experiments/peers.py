"""What the sweep times: the tq backends, the cuBLAS bf16 baseline, and the speed peers.

Every method turns one bf16 weight W (N x K) into ``copies`` independent stored copies
(so that the timing can rotate among them, see timing.py) and exposes

    run(x, i) -> y                     # y = x @ W_method.T with copy i, x bf16 [B, K]
    own_weight(rows) -> float64 [rows, K] on the CPU, the method's own dequantized
                                       # weight: what its kernel must reproduce exactly
    stored_bytes                       # bytes of one stored copy (weights + scales/norms)

Methods:
- ``tq-<backend>``: tq.quantize once, copies cloned; run = backend.matmul.  Its reference
  is ``tq.reference.matmul_float64`` (so it is checked by the harness's definition).
- ``cublas-bf16``: the baseline, ``x @ W.T`` with the bf16 weight (cuBLAS on a GPU).
- ``torch-int4``: torch's built-in int4 weight-only kernel (tinygemm), group 128:
  asymmetric 4-bit per group, ``W = (q - 8) * scale + zero`` with bf16 scale and zero
  stored as scales_and_zeros [K/G, N, 2].  CUDA: ``aten._convert_weight_to_int4pack``
  takes uint8 [N, K/2] with two 4-bit values per byte (even column in the high
  nibble, odd column in the low nibble) and inner_k_tiles (8 here), then
  ``aten._weight_int4pack_mm(x, packed, 128, scales_and_zeros)``.  The CPU build of
  torch has the ``_for_cpu`` twins (int32 [N, K] input), used on machines without a GPU
  so that this code path is exercised everywhere.
- ``bnb-nf4``: bitsandbytes NormalFloat-4 with blocks of 64 (``quantize_4bit`` then
  ``bnb.matmul_4bit``), only where bitsandbytes imports and CUDA is present.

A peer that cannot run here raises ``MethodUnavailable`` with the reason; the sweep
records it and goes on.
"""
from __future__ import annotations

import dataclasses

import torch

import tq
from tq.reference import matmul_float64

INT4_GROUP = 128
INT4_INNER_K_TILES = 8
NF4_BLOCK = 64
# own_weight() serves at most this many rows (the sweep checks 256); only these are kept on
# the host, so a peer never holds a second full-size copy of the weight for checking.
CHECK_ROWS_KEPT = 512


class MethodUnavailable(RuntimeError):
    """This method cannot run here (missing op, package or device); the message says why."""


def clone_quantized(qw):
    """An independent copy of a QuantizedWeight's tensors (new memory, same values)."""
    passes = [dataclasses.replace(p, planes=[pl.clone() for pl in p.planes], norms=p.norms.clone(),
                                  levels=p.levels.clone()) for p in qw.passes]
    return dataclasses.replace(qw, passes=passes)


def slice_rows(qw, rows: int):
    """The first ``rows`` output rows of a QuantizedWeight (rows are independent)."""
    passes = [dataclasses.replace(p, planes=[pl[:rows] for pl in p.planes], norms=p.norms[:rows])
              for p in qw.passes]
    return dataclasses.replace(qw, out_features=rows, passes=passes)


class Method:
    name = "method"
    kind = "peer"              # "tq", "baseline" or "peer"
    stored_bytes = 0
    bits_per_weight = 0.0

    def prepare(self, weight: torch.Tensor, copies: int, key=None) -> None:
        """Store ``copies`` copies of ``weight``; ``key`` names the weight (same key, same weight)."""
        raise NotImplementedError

    def run(self, x: torch.Tensor, i: int) -> torch.Tensor:
        raise NotImplementedError

    def own_weight(self, rows: int):
        raise NotImplementedError

    def reference_output(self, x: torch.Tensor, rows: int):
        """float64 numpy [B, rows]: x times this method's own weight, the exact answer its kernel approximates."""
        return x.detach().cpu().double().numpy() @ self.own_weight(rows).numpy().T

    def release(self) -> None:
        """Drop the stored copies (the sweep calls this before the next shape)."""


# ---------------------------------------------------------------------------
class TqMethod(Method):
    kind = "tq"

    def __init__(self, backend, quantize_kwargs: dict, cache: dict | None = None):
        self.backend = backend
        self.name = f"tq-{backend.name}"
        self.quantize_kwargs = quantize_kwargs
        self.cache = {} if cache is None else cache  # one quantization per weight, shared by tq backends
        self.copies = []

    def prepare(self, weight, copies, key=None):
        key = (tuple(weight.shape), weight.data_ptr()) if key is None else key
        if key not in self.cache:
            self.cache.clear()
            self.cache[key] = tq.quantize(weight, **self.quantize_kwargs)
        qw = self.cache[key]
        self.qw = qw
        self._cpu_rows = (None, None)
        self.copies = [qw] + [clone_quantized(qw) for _ in range(copies - 1)]
        self.stored_bytes = qw.nbytes
        self.bits_per_weight = qw.bits_per_weight

    def supports(self, x):
        return self.backend.supports(x, self.qw)

    def run(self, x, i):
        return self.backend.matmul(x, self.copies[i])

    def _rows_on_cpu(self, rows):
        # Cached: every batch size of a shape checks the same rows of the same weight.
        if getattr(self, "_cpu_rows", (None, None))[0] != (id(self.qw), rows):
            qw_rows = slice_rows(self.qw, rows).to("cpu")
            self._cpu_rows = ((id(self.qw), rows), (qw_rows, tq.dequantize(qw_rows, dtype=torch.float64)))
        return self._cpu_rows[1]

    def own_weight(self, rows):
        return self._rows_on_cpu(rows)[1]

    def reference_output(self, x, rows):
        return matmul_float64(x, self._rows_on_cpu(rows)[0])

    def release(self):
        self.copies = []
        self._cpu_rows = (None, None)


# ---------------------------------------------------------------------------
class CublasBf16(Method):
    name = "cublas-bf16"
    kind = "baseline"

    def prepare(self, weight, copies, key=None):
        w = weight.to(torch.bfloat16)
        self.copies = [w] + [w.clone() for _ in range(copies - 1)]
        self.stored_bytes = w.numel() * 2
        self.bits_per_weight = 16.0

    def run(self, x, i):
        return x @ self.copies[i].T

    def own_weight(self, rows):
        return self.copies[0][:rows].double().cpu()

    def release(self):
        self.copies = []


# ---------------------------------------------------------------------------
def _int4_quantize(weight: torch.Tensor, group: int):
    """Asymmetric 4-bit per group of ``group`` columns, in tinygemm's convention.

    Returns q (uint8 [N, K], 0..15) and scales_and_zeros (bf16 [K/G, N, 2]) such that
    W ~ (q - 8) * scale + zero: zero is the group's value for q = 8.
    """
    n, k = weight.shape
    w = weight.float().view(n, k // group, group)
    lo, hi = w.amin(-1), w.amax(-1)
    scale = (hi - lo).clamp(min=1e-6) / 15
    zero = lo + 8 * scale
    q = torch.round((w - lo.unsqueeze(-1)) / scale.unsqueeze(-1)).clamp(0, 15).to(torch.uint8).view(n, k)
    scales_and_zeros = torch.stack([scale, zero], dim=-1).transpose(0, 1).contiguous().to(torch.bfloat16)
    return q, scales_and_zeros


class TorchInt4(Method):
    name = "torch-int4"

    def prepare(self, weight, copies, key=None):
        n, k = weight.shape
        if k % INT4_GROUP or k % (INT4_INNER_K_TILES * 16) or n % 8:
            raise MethodUnavailable(f"torch's int4 kernel needs K % {INT4_GROUP} == 0 and N % 8 == 0; got {n}x{k}")
        self.cuda = weight.is_cuda
        aten = torch.ops.aten
        pack_name = "_convert_weight_to_int4pack" if self.cuda else "_convert_weight_to_int4pack_for_cpu"
        mm_name = "_weight_int4pack_mm" if self.cuda else "_weight_int4pack_mm_for_cpu"
        if not hasattr(aten, pack_name) or not hasattr(aten, mm_name):
            raise MethodUnavailable(f"this torch ({torch.__version__}) has no aten.{pack_name}/aten.{mm_name}")
        self.mm = getattr(aten, mm_name)
        q, sz = _int4_quantize(weight, INT4_GROUP)
        pack = getattr(aten, pack_name)
        if self.cuda:
            # torch >= 2.5: uint8 [N, K/2], even column in the high nibble, odd column in the
            # low one.  Older torch took the int32 [N, K] values instead; try that second
            # (the output check before timing catches a layout that is accepted but wrong).
            layouts = [(q[:, ::2] << 4 | q[:, 1::2]).contiguous(), q.to(torch.int32).contiguous()]
        else:
            layouts = [q.to(torch.int32).contiguous()]  # the _for_cpu op takes int32 [N, K]
        errors = []
        for packed_in in layouts:
            try:
                packed = pack(packed_in, INT4_INNER_K_TILES)
                break
            except Exception as e:  # the op's signature changed across torch versions: say which
                errors.append(f"{packed_in.dtype}: {type(e).__name__}: {str(e).splitlines()[0][:120]}")
        else:
            raise MethodUnavailable(f"aten.{pack_name} refused the weight ({'; '.join(errors)}); "
                                    f"torch {torch.__version__}")
        self.q, self.scales_and_zeros = q[:CHECK_ROWS_KEPT].cpu(), sz[:, :CHECK_ROWS_KEPT].cpu()
        self.copies = [(packed, sz)] + [(packed.clone(), sz.clone()) for _ in range(copies - 1)]
        self.stored_bytes = n * k // 2 + sz.numel() * sz.element_size()
        self.bits_per_weight = 8.0 * self.stored_bytes / (n * k)

    def run(self, x, i):
        packed, sz = self.copies[i]
        return self.mm(x, packed, INT4_GROUP, sz)

    def own_weight(self, rows):
        n, k = self.q.shape
        assert rows <= n, f"own_weight keeps {CHECK_ROWS_KEPT} rows"
        q = self.q[:rows].double().cpu().view(rows, k // INT4_GROUP, INT4_GROUP)
        sz = self.scales_and_zeros[:, :rows].double().cpu()  # [K/G, rows, 2]
        scale, zero = sz[..., 0].T.unsqueeze(-1), sz[..., 1].T.unsqueeze(-1)
        return ((q - 8) * scale + zero).reshape(rows, k)

    def release(self):
        self.copies = []


# ---------------------------------------------------------------------------
class BnbNf4(Method):
    name = "bnb-nf4"

    def prepare(self, weight, copies, key=None):
        if not weight.is_cuda:
            raise MethodUnavailable("bitsandbytes NF4 is timed on CUDA only")
        try:
            import bitsandbytes as bnb
            import bitsandbytes.functional as bnbf
        except Exception as e:
            raise MethodUnavailable(f"bitsandbytes is not importable ({type(e).__name__}: {e}); "
                                    f"pip install bitsandbytes") from None
        self.bnb = bnb
        w = weight.to(torch.bfloat16).contiguous()
        self.copies = []
        for _ in range(copies):  # each copy is its own quantization (new memory, same values)
            packed, state = bnbf.quantize_4bit(w, blocksize=NF4_BLOCK, quant_type="nf4", compress_statistics=False)
            self.copies.append((packed, state))
        packed, state = self.copies[0]
        self.dequantized = bnbf.dequantize_4bit(packed, quant_state=state)[:CHECK_ROWS_KEPT].cpu()
        n, k = w.shape
        absmax = state.absmax
        self.stored_bytes = packed.numel() * packed.element_size() + absmax.numel() * absmax.element_size()
        self.bits_per_weight = 8.0 * self.stored_bytes / (n * k)

    def run(self, x, i):
        packed, state = self.copies[i]
        return self.bnb.matmul_4bit(x, packed.t(), quant_state=state)

    def own_weight(self, rows):
        return self.dequantized[:rows].double().cpu()

    def release(self):
        self.copies = []
        self.dequantized = None


PEERS = {"torch-int4": TorchInt4, "bnb-nf4": BnbNf4}
