"""The seed network, built in n2n_core and in torch.nn from the same weights."""

import torch

from n2n_core import Sequential
from n2n_core.models import seed


def seed_n2n(channels: int = 48) -> Sequential:
    return seed(channels)


def seed_torch_from(model: Sequential) -> torch.nn.Sequential:
    nn = torch.nn
    layers = []
    for m in model:
        name = type(m).__name__
        if name == "Conv2d":
            t = nn.Conv2d(m.in_channels, m.out_channels, m.kernel_size, m.stride, m.padding, m.dilation)
        elif name == "TransposeConv2d":
            t = nn.ConvTranspose2d(m.in_channels, m.out_channels, m.kernel_size, m.stride, m.padding,
                                   m.output_padding, dilation=m.dilation)
        else:
            t = {"ReLU": nn.ReLU, "Sigmoid": nn.Sigmoid}[name]()
        if m.weight is not None:
            t = t.to(m.weight.dtype)
            with torch.no_grad():
                t.weight.copy_(m.weight)
                t.bias.copy_(m.bias)
        layers.append(t)
    return nn.Sequential(*layers)
