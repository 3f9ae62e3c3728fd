"""Pure tensor functions: forward passes, vector-Jacobian products and padding."""

from n2n_core.nn.functional.conv import conv2d_forward, conv2d_vjp, conv_transpose2d_forward, conv_transpose2d_vjp
from n2n_core.nn.functional.pad import pad, pad_zeros

__all__ = ["conv2d_forward", "conv2d_vjp", "conv_transpose2d_forward", "conv_transpose2d_vjp", "pad", "pad_zeros"]
