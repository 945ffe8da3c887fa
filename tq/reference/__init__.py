"""Reference backend: the specification, written for reading (see matmul.py)."""
from .matmul import availability, matmul, matmul_float64, supports

NAME = "reference"
__all__ = ["NAME", "availability", "supports", "matmul", "matmul_float64"]
