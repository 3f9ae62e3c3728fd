"""Module: the unit of the framework.

A module computes ``y = f(x)`` and, on request, a closure for its vector-Jacobian product:

    y, vjp = m.forward_and_vjp(x)
    dL_dx, dL_dweight, dL_dbias = vjp(dL_dy)

Parameters live in ``.weight`` and ``.bias`` (``None`` when absent). Containers store the
gradients of their children in ``.d_weight`` / ``.d_bias``; optimizers read them there.
No module keeps per-call state in attributes: the closure holds what the vjp needs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, ClassVar

import torch
from torch import Tensor

VJP = Callable[..., tuple[Tensor | None, Tensor, Tensor]]


def empty_like_grad(x: Tensor) -> Tensor:
    """The empty tensor a vjp returns for a parameter the module does not have."""
    return torch.empty(0, dtype=x.dtype, device=x.device)


class Module:
    """Base class. Subclasses implement ``forward`` and ``forward_and_vjp``."""

    registry: ClassVar[dict[str, type[Module]]] = {}
    #: forward returns new storage that its vjp does not keep, so a container may let the next
    #: module overwrite it (see ``Sequential`` and the activations' ``*_inplace`` methods).
    fresh_output: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        Module.registry[cls.__name__] = cls

    def __init__(self) -> None:
        self.weight: Tensor | None = None
        self.bias: Tensor | None = None
        self.d_weight: Tensor | None = None
        self.d_bias: Tensor | None = None

    # -- computation -------------------------------------------------------------------
    def forward(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def forward_and_vjp(self, x: Tensor) -> tuple[Tensor, VJP]:
        raise NotImplementedError

    def __call__(self, x: Tensor) -> Tensor:
        return self.forward(x)

    # -- structure ---------------------------------------------------------------------
    def named_children(self) -> list[tuple[str, Module]]:
        return []

    def children(self) -> list[Module]:
        return [m for _, m in self.named_children()]

    def named_modules(self, prefix: str = "") -> Iterator[tuple[str, Module]]:
        """(dotted name, module) for self and every descendant, depth first."""
        yield prefix, self
        for name, child in self.named_children():
            yield from child.named_modules(f"{prefix}{name}.")

    def modules(self) -> Iterator[Module]:
        for _, m in self.named_modules():
            yield m

    def named_parameters(self) -> list[tuple[str, Tensor]]:
        """[("0.weight", tensor), ("0.bias", tensor), ...]."""
        out = []
        for prefix, m in self.named_modules():
            for attr in ("weight", "bias"):
                p = getattr(m, attr)
                if p is not None:
                    out.append((prefix + attr, p))
        return out

    def parameters(self) -> list[Tensor]:
        return [p for _, p in self.named_parameters()]

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    # -- state -------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Tensor]:
        return dict(self.named_parameters())

    def load_state_dict(self, state: dict[str, Tensor], strict: bool = True) -> None:
        """Copy tensors into the parameters in place (keeping their device and dtype)."""
        own = dict(self.named_parameters())
        missing = sorted(set(own) - set(state))
        unexpected = sorted(set(state) - set(own))
        if strict and (missing or unexpected):
            raise ValueError(f"{type(self).__name__}.load_state_dict: missing keys {missing}, unexpected keys {unexpected}")
        for name, p in own.items():
            if name not in state:
                continue
            src = state[name]
            if tuple(src.shape) != tuple(p.shape):
                raise ValueError(
                    f"{type(self).__name__}.load_state_dict: {name} has shape {tuple(src.shape)}, expected {tuple(p.shape)}"
                )
            p.copy_(src)

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> Module:
        """Convert every parameter (and stored gradient) of self and its children in place."""
        for m in self.modules():
            for attr in ("weight", "bias", "d_weight", "d_bias"):
                t = getattr(m, attr)
                if t is not None:
                    setattr(m, attr, t.to(device=device, dtype=dtype))
        return self

    # -- architecture description (used by n2n_core.serialize) ---------------------------
    def config(self) -> dict[str, Any]:
        """JSON-able description from which ``Module.from_config`` rebuilds the module."""
        return {"type": type(self).__name__}

    @staticmethod
    def from_config(cfg: dict[str, Any]) -> Module:
        kind = cfg.get("type")
        cls = Module.registry.get(kind)  # type: ignore[arg-type]
        if cls is None:
            raise ValueError(f"unknown module type {kind!r} in architecture description")
        return cls._from_config(cfg)

    @classmethod
    def _from_config(cls, cfg: dict[str, Any]) -> Module:
        return cls(**{k: v for k, v in cfg.items() if k != "type"})

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.config().items() if k != "type")

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.extra_repr()})"
