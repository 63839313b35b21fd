"""Fused ops with a PyTorch reference. Never imports gin: callers pass switches explicitly."""
from ops.residual_quantization import residual_quantize, residual_quantize_reference, uses_kernel

__all__ = ["residual_quantize", "residual_quantize_reference", "uses_kernel"]
