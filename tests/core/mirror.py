"""n2n_core models rebuilt in torch.nn with the same weights: the reference for parity tests and benchmarks."""

import torch
from torch import nn

from n2n_core import Module, Sequential
from n2n_core.models import seed


def seed_n2n(channels: int = 48) -> Sequential:
    return seed(channels)


class _Concat(nn.Module):
    def __init__(self, branches: list[nn.Module]) -> None:
        super().__init__()
        self.branches = nn.ModuleList(branches)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([b(x) for b in self.branches], dim=1)


class _Residual(nn.Module):
    def __init__(self, body: nn.Module) -> None:
        super().__init__()
        self.body = body

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


def torch_mirror(model: Module, memo: dict[int, tuple[Module, nn.Module]] | None = None) -> nn.Module:
    """The same network as torch.nn modules, weights copied; its ``parameters()`` follow ``model.parameters()``.

    A module used at several places is mirrored once and shared the same way; ``memo`` (id of an
    n2n_core module -> (module, its mirror)) collects the pairs when given.
    """
    memo = {} if memo is None else memo
    if id(model) not in memo:
        memo[id(model)] = (model, _mirror_one(model, memo))
    return memo[id(model)][1]


def _mirror_one(model: Module, memo: dict[int, tuple[Module, nn.Module]]) -> nn.Module:
    name = type(model).__name__
    if name == "Sequential":
        return nn.Sequential(*(torch_mirror(m, memo) for m in model))
    if name == "Concat":
        return _Concat([torch_mirror(b, memo) for b in model.branches])
    if name == "Residual":
        return _Residual(torch_mirror(model.body, memo))
    if name == "Conv2d":
        t = nn.Conv2d(model.in_channels, model.out_channels, model.kernel_size, model.stride, model.padding,
                      model.dilation)
    elif name == "TransposeConv2d":
        t = nn.ConvTranspose2d(model.in_channels, model.out_channels, model.kernel_size, model.stride, model.padding,
                               model.output_padding, dilation=model.dilation)
    elif name == "LeakyReLU":
        return nn.LeakyReLU(model.negative_slope)
    elif name == "MaxPool2d":
        return nn.MaxPool2d(model.kernel_size)
    elif name == "NearestUpsampling":
        return nn.Upsample(scale_factor=model.scale_factor, mode="nearest")
    else:
        return {"ReLU": nn.ReLU, "Sigmoid": nn.Sigmoid, "Identity": nn.Identity}[name]()
    t = t.to(device=model.weight.device, dtype=model.weight.dtype)
    with torch.no_grad():
        t.weight.copy_(model.weight)
        t.bias.copy_(model.bias)
    return t


seed_torch_from = torch_mirror
