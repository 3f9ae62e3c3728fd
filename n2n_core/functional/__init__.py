"""Pure tensor functions: forward passes and vector-Jacobian products."""

from .conv import conv2d_forward, conv2d_vjp, conv_transpose2d_forward, conv_transpose2d_vjp

__all__ = ["conv2d_forward", "conv2d_vjp", "conv_transpose2d_forward", "conv_transpose2d_vjp"]
