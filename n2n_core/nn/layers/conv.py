"""Conv2d and TransposeConv2d: thin modules around ``n2n_core.nn.functional.conv``."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from torch import Tensor

from n2n_core.nn.checks import Pair, check_image_batch, positive_int, to_pair
from n2n_core.nn.functional.conv import (
    conv2d_forward,
    conv2d_output_size,
    conv2d_vjp,
    conv_transpose2d_forward,
    conv_transpose2d_output_size,
    conv_transpose2d_vjp,
)
from n2n_core.nn.functional.dependency import gather_mask, scatter_mask
from n2n_core.nn.init import bias_uniform, kaiming_uniform
from n2n_core.nn.module import VJP, Mask, Module, as_data, empty_like_grad


class _ConvBase(Module):
    """Shared configuration, checks and (un)batching of the two convolutions."""

    fresh_output = True

    def __init__(self, in_channels: int, out_channels: int, kernel_size: Any, stride: Any, padding: Any,
                 dilation: Any, bias: bool) -> None:
        super().__init__()
        name = type(self).__name__
        self.in_channels = positive_int(name, "in_channels", in_channels)
        self.out_channels = positive_int(name, "out_channels", out_channels)
        self.kernel_size: Pair = to_pair(name, "kernel_size", kernel_size, 1)
        self.stride: Pair = to_pair(name, "stride", stride, 1)
        self.padding: Pair = to_pair(name, "padding", padding, 0)
        self.dilation: Pair = to_pair(name, "dilation", dilation, 1)
        if not isinstance(bias, bool):
            raise ValueError(f"{name}: bias must be True or False, got {bias!r}")

    def _output_size(self, size: Pair) -> Pair:
        raise NotImplementedError

    def _prepare(self, x: Tensor) -> tuple[Tensor, bool]:
        """Check x; return it as a 4-d batch and whether it came unbatched (C, H, W)."""
        unbatched = isinstance(x, Tensor) and x.dim() == 3
        if unbatched:
            x = x.unsqueeze(0)
        check_image_batch(repr(self), x, self.in_channels)
        if x.dtype != self.weight.dtype or x.device != self.weight.device:  # type: ignore[union-attr]
            raise ValueError(
                f"{self!r}: input is {x.dtype} on {x.device} but the weights are "
                f"{self.weight.dtype} on {self.weight.device}; call .to() on one of them"  # type: ignore[union-attr]
            )
        out = self._output_size((x.shape[2], x.shape[3]))
        if min(out) < 1:
            raise ValueError(f"{self!r}: input of shape {tuple(x.shape)} gives an empty output of size {out}")
        return x, unbatched

    def config(self) -> dict[str, Any]:
        return {
            "type": type(self).__name__,
            "in_channels": self.in_channels,
            "out_channels": self.out_channels,
            "kernel_size": list(self.kernel_size),
            "stride": list(self.stride),
            "padding": list(self.padding),
            "dilation": list(self.dilation),
            "bias": self.bias is not None,
        }

    def _wrap_vjp(self, vjp: VJP, unbatched: bool, x: Tensor) -> VJP:
        def wrapped(dy: Tensor, need_input_grad: bool = True) -> tuple[Tensor | None, Tensor, Tensor]:
            if unbatched:
                dy = dy.unsqueeze(0)
            dx, dw, db = vjp(dy, need_input_grad)
            if dx is not None and unbatched:
                dx = dx[0]
            return dx, dw, db if self.bias is not None else empty_like_grad(x)

        return wrapped


class Conv2d(_ConvBase):
    """2-d cross-correlation, PyTorch's Conv2d semantics and parameter shapes.

    weight: (out_channels, in_channels, kh, kw), bias: (out_channels,).
    x: (N, C_in, H, W) -> y: (N, C_out, Ho, Wo), Ho = floor((H + 2p - d(kh-1) - 1)/s) + 1.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: Any, stride: Any = 1, padding: Any = 0,
                 dilation: Any = 1, bias: bool = True) -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, bias)
        fan_in = in_channels * self.kernel_size[0] * self.kernel_size[1]
        self.weight = kaiming_uniform((out_channels, in_channels, *self.kernel_size), fan_in)
        self.bias = bias_uniform((out_channels,), fan_in) if bias else None

    row_streaming = "conv"

    def _output_size(self, size: Pair) -> Pair:
        return conv2d_output_size(size, self.kernel_size, self.stride, self.padding, self.dilation)

    # -- layer protocol ------------------------------------------------------------------
    def reach(self, scale: float) -> tuple[float, float]:
        """r = max_i d_i (k_i - 1) * scale (the window's extent), scale' = scale * max(s)."""
        r = max(self.dilation[i] * (self.kernel_size[i] - 1) for i in range(2)) * scale
        return r, scale * max(self.stride)

    def activation_values(self, scale: float, channels: int) -> tuple[float, float, int]:
        """scale' = scale * max(s): out_channels / scale'^2 values, out_channels channels."""
        scale *= max(self.stride)
        return self.out_channels / scale**2, scale, self.out_channels

    def dependency_mask(self, mask: Mask) -> Mask:
        """Output (i, j) depends on input (i*s - p + t*d) for every tap t."""
        return gather_mask(mask, self.kernel_size, self.stride, self.padding, self.dilation)

    def size_multiple(self) -> int:
        """lcm(s_h, s_w): the stride must tile the input."""
        return math.lcm(*self.stride)

    def forward(self, x: Tensor) -> Tensor:
        x, unbatched = self._prepare(x)
        y, _ = conv2d_forward(x, self.weight, self.bias, self.stride, self.padding, self.dilation)
        return y[0] if unbatched else y

    def forward_then(self, x: Tensor, epilogue: Callable[[Tensor], Tensor]) -> Tensor:
        """epilogue(conv(x)), the epilogue applied in place to the convolution's fresh output."""
        x, unbatched = self._prepare(as_data(x))
        y, _ = conv2d_forward(x, self.weight, self.bias, self.stride, self.padding, self.dilation, epilogue)
        return y[0] if unbatched else y

    def _forward_and_vjp(self, x: Tensor) -> tuple[Tensor, VJP]:
        x4, unbatched = self._prepare(x)
        weight, size = self.weight, (x4.shape[2], x4.shape[3])
        y, xp = conv2d_forward(x4, weight, self.bias, self.stride, self.padding, self.dilation)

        def vjp(dy: Tensor, need_input_grad: bool = True) -> tuple[Tensor | None, Tensor, Tensor]:
            return conv2d_vjp(dy, xp, weight, size, self.stride, self.padding, self.dilation, need_input_grad)

        return (y[0] if unbatched else y), self._wrap_vjp(vjp, unbatched, x4)


class TransposeConv2d(_ConvBase):
    """2-d transposed convolution, PyTorch's ConvTranspose2d semantics and parameter shapes.

    weight: (in_channels, out_channels, kh, kw), bias: (out_channels,).
    x: (N, C_in, H, W) -> y: (N, C_out, Ho, Wo), Ho = (H - 1)s - 2p + d(kh-1) + op + 1.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: Any, stride: Any = 1, padding: Any = 0,
                 output_padding: Any = 0, dilation: Any = 1, bias: bool = True) -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, bias)
        name = type(self).__name__
        self.output_padding: Pair = to_pair(name, "output_padding", output_padding, 0)
        for i in range(2):
            if self.output_padding[i] >= max(self.stride[i], self.dilation[i]):
                raise ValueError(
                    f"{name}: output_padding {self.output_padding} must be smaller than max(stride, dilation) "
                    f"per dimension (stride {self.stride}, dilation {self.dilation})"
                )
        fan_in = out_channels * self.kernel_size[0] * self.kernel_size[1]  # torch.nn: weight.size(1) * k
        self.weight = kaiming_uniform((in_channels, out_channels, *self.kernel_size), fan_in)
        self.bias = bias_uniform((out_channels,), fan_in) if bias else None

    def _output_size(self, size: Pair) -> Pair:
        return conv_transpose2d_output_size(
            size, self.kernel_size, self.stride, self.padding, self.output_padding, self.dilation
        )

    row_streaming = None  # no row-by-row form

    # -- layer protocol ------------------------------------------------------------------
    def reach(self, scale: float) -> tuple[float, float]:
        """scale' = scale / min(s); r = max_i d_i (k_i - 1) * scale' + scale (the window's extent at the
        output's resolution, plus an input pixel's span)."""
        r = max(self.dilation[i] * (self.kernel_size[i] - 1) for i in range(2)) * scale / min(self.stride)
        return r + scale, scale / min(self.stride)

    def activation_values(self, scale: float, channels: int) -> tuple[float, float, int]:
        """scale' = scale / min(s): out_channels / scale'^2 values, out_channels channels."""
        scale /= min(self.stride)
        return self.out_channels / scale**2, scale, self.out_channels

    def dependency_mask(self, mask: Mask) -> Mask:
        """Input (i, j) reaches output (i*s - p + t*d) for every tap t."""
        return scatter_mask(mask, self.kernel_size, self.stride, self.padding, self.dilation, self.output_padding)

    def size_multiple(self) -> int:
        """1: any input size gives a whole output."""
        return 1

    def config(self) -> dict[str, Any]:
        return {**super().config(), "output_padding": list(self.output_padding)}

    def forward(self, x: Tensor) -> Tensor:
        x, unbatched = self._prepare(x)
        y = conv_transpose2d_forward(
            x, self.weight, self.bias, self.stride, self.padding, self.output_padding, self.dilation
        )
        return y[0] if unbatched else y

    def _forward_and_vjp(self, x: Tensor) -> tuple[Tensor, VJP]:
        x4, unbatched = self._prepare(x)
        weight = self.weight
        y = conv_transpose2d_forward(
            x4, weight, self.bias, self.stride, self.padding, self.output_padding, self.dilation
        )

        def vjp(dy: Tensor, need_input_grad: bool = True) -> tuple[Tensor | None, Tensor, Tensor]:
            return conv_transpose2d_vjp(dy, x4, weight, self.stride, self.padding, self.dilation, need_input_grad)

        return (y[0] if unbatched else y), self._wrap_vjp(vjp, unbatched, x4)
