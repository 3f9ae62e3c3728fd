"""Cast: a body that computes in another floating-point type than its caller (reduced precision)."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from n2n_core.nn.module import VJP, Mask, Module, clear_grads, empty_like_grad, store_grads

#: the floating-point types a body may compute in, by the names that configs and settings use
DTYPES: dict[str, torch.dtype] = {"float64": torch.float64, "float32": torch.float32,
                                  "bfloat16": torch.bfloat16, "float16": torch.float16}


def dtype_named(name: str) -> torch.dtype:
    """The torch dtype of a name in ``DTYPES``; ValueError otherwise."""
    if name not in DTYPES:
        raise ValueError(f"Cast: dtype must be one of {sorted(DTYPES)}, got {name!r}")
    return DTYPES[name]


def name_of(dtype: torch.dtype) -> str:
    """The name in ``DTYPES`` of a torch dtype; ValueError for any other type."""
    for name, known in DTYPES.items():
        if known == dtype:
            return name
    raise ValueError(f"Cast: unsupported dtype {dtype}; choose one of {sorted(DTYPES)}")


class Cast(Module):
    """y = body(x.to(dtype)).to(x.dtype): the body (parameters in ``dtype``) computes in ``dtype``,
    the caller keeps its own type on both sides.

    vjp: dx = body_vjp(dy.to(dtype)).to(dy.dtype); the body's parameter gradients stay in ``dtype``.
    Used for reduced precision (``Module.at_precision``): products in bfloat16 or float16 with their
    float32 accumulation, while what surrounds the body (a residual sum, an ensemble's mean, the noise
    estimate) stays in the caller's float32.
    """

    fresh_output = True
    row_streaming = "cast"

    def __init__(self, body: Module, dtype: str | torch.dtype = "bfloat16") -> None:
        super().__init__()
        if not isinstance(body, Module):
            raise ValueError(f"Cast: body is {type(body).__name__}, not an n2n_core Module")
        self.dtype = dtype if isinstance(dtype, torch.dtype) else dtype_named(dtype)
        name_of(self.dtype)  # refuses integer and complex types
        self.body = body

    def named_children(self) -> list[tuple[str, Module]]:
        return [("body", self.body)]

    def config(self) -> dict[str, Any]:
        return {"type": "Cast", "body": self.body.config(), "dtype": name_of(self.dtype)}

    @classmethod
    def _from_config(cls, cfg: dict[str, Any]) -> Module:
        dtype = dtype_named(cfg.get("dtype", "bfloat16"))
        return cls(Module.from_config(cfg["body"]).to(dtype=dtype), dtype)

    def __repr__(self) -> str:
        return f"Cast({self.body!r}, dtype={name_of(self.dtype)})"

    # -- layer protocol: the body's (the casts make no activations that the body's do not count) --
    def reach(self, scale: float) -> tuple[float, float]:
        return self.body.reach(scale)

    def activation_values(self, scale: float, channels: int) -> tuple[float, float, int]:
        return self.body.activation_values(scale, channels)

    def dependency_mask(self, mask: Mask) -> Mask:
        return self.body.dependency_mask(mask)

    def size_multiple(self) -> int:
        return self.body.size_multiple()

    def at_precision(self, dtype: torch.dtype) -> Module:
        return self

    def forward(self, x: Tensor) -> Tensor:
        return self.body(x.to(self.dtype)).to(x.dtype)

    def _forward_and_vjp(self, x: Tensor) -> tuple[Tensor, VJP]:
        clear_grads([self.body])
        y, body_vjp = self.body.forward_and_vjp(x.to(self.dtype))
        outer = x.dtype

        def vjp(dy: Tensor, need_input_grad: bool = True) -> tuple[Tensor | None, Tensor, Tensor]:
            e = empty_like_grad(dy)
            dx, dw, db = body_vjp(dy.to(self.dtype), need_input_grad)
            store_grads(self.body, dw, db)
            return (dx.to(outer) if dx is not None else None), e, e

        return y.to(outer), vjp
