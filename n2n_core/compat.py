"""The course's interface on top of n2n_core.

    from n2n_core.compat import *
    m = Model(); m.load_pretrained_model()
    m.train(train_input, train_target, num_epochs)   # uint8 N x 3 x H x W noisy pairs, 0..255
    out = m.predict(test_input)                      # float N x 3 x H x W in 0..255, any H x W
"""

from __future__ import annotations

import torch
from torch import Tensor

from n2n_core.inference.infer import denoise
from n2n_core.nn.layers import Conv2d, NearestUpsampling, ReLU, Sequential, Sigmoid, TransposeConv2d
from n2n_core.nn.loss import MSE
from n2n_core.models import seed
from n2n_core.nn.optim import SGD, Adam
from n2n_core.weights import load
from n2n_core.weights import resolve

__all__ = ["Model", "Conv2d", "TransposeConv2d", "NearestUpsampling", "ReLU", "Sigmoid", "Sequential", "MSE", "SGD"]

PRETRAINED = "seed"


def _as_unit(x: Tensor, name: str) -> Tensor:
    if not isinstance(x, Tensor) or x.dim() != 4 or x.shape[1] != 3:
        raise ValueError(f"Model.{name}: expected an N x 3 x H x W tensor, got {getattr(x, 'shape', type(x).__name__)}")
    return x.float() / 255.0


class Model:
    """The seed network (conv s2 -> conv s2 -> tconv s2 -> tconv s2, 48 channels) trained with Adam."""

    def __init__(self, batch_size: int = 64, lr: float = 1e-3, device: str | None = None, seed_value: int = 0) -> None:
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        torch.manual_seed(seed_value)
        self.model: Sequential = seed().to(self.device)  # type: ignore[assignment]
        self.optimizer = Adam(self.model, lr=lr)
        self.batch_size = batch_size
        self.loss = MSE()
        self.generator = torch.Generator().manual_seed(seed_value)

    def load_pretrained_model(self) -> None:
        """Load the shipped seed-architecture weights (weights/seed.safetensors)."""
        self.model.load_state_dict(load(resolve(PRETRAINED)).state_dict())

    def train(self, train_input: Tensor, train_target: Tensor, num_epochs: int) -> None:
        """Noise2Noise training on uint8 (or 0..255 float) N x 3 x H x W pairs, shuffled every epoch."""
        x_all, y_all = _as_unit(train_input, "train"), _as_unit(train_target, "train")
        if x_all.shape != y_all.shape:
            raise ValueError(f"Model.train: input {tuple(x_all.shape)} and target {tuple(y_all.shape)} differ")
        n = x_all.shape[0]
        for _ in range(int(num_epochs)):
            order = torch.randperm(n, generator=self.generator)
            for i in range(0, n, self.batch_size):
                idx = order[i : i + self.batch_size]
                x, y = x_all[idx].to(self.device), y_all[idx].to(self.device)
                self.model.forward_and_backward(x, lambda out: self.loss.vjp(out, y))
                self.optimizer.step()

    def predict(self, test_input: Tensor) -> Tensor:
        """uint8 or float N x 3 x H x W in 0..255 -> float in 0..255, same shape (any H x W)."""
        x = _as_unit(test_input, "predict")
        out = denoise(self.model, x.to(self.device), batch_size=self.batch_size)
        return (out * 255.0).to(test_input.device)  # type: ignore[operator]
