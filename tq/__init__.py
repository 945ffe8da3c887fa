"""tq: TurboQuant for LLM weights, with cuTile, Triton and reference backends."""
from .backends import BackendUnavailableError, available_backends, get_backend, matmul
from .codebook import Codebook, get_codebook
from .format import FormatError, QuantizedWeight, load, save
from .quantize import dequantize, quantize
from .residual import get_residual_codebook
from .nn import TQLinear
from .model import load_quantized, quantize_model, save_quantized
from . import baselines

__version__ = "0.1.0"
__all__ = [
    "quantize", "dequantize", "matmul", "save", "load", "QuantizedWeight", "FormatError",
    "Codebook", "get_codebook", "get_residual_codebook", "available_backends", "get_backend", "BackendUnavailableError",
    "TQLinear", "quantize_model", "save_quantized", "load_quantized",
]
