"""MRI physics on native complex tensors: centered FFTs, the SENSE operator, conjugate gradient."""

from .cg import cg_solve
from .convert import complex_to_real, real_to_complex
from .fft import fft2c, ifft2c
from .sense import SenseOp

__all__ = ["SenseOp", "cg_solve", "complex_to_real", "fft2c", "ifft2c", "real_to_complex"]
