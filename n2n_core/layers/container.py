"""Sequential: a chain of modules, with the training entry point of the framework."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from torch import Tensor

from ..module import VJP, Module, empty_like_grad


def store_grads(m: Module, dw: Tensor, db: Tensor) -> None:
    """Keep a child's parameter gradients where optimizers read them."""
    if m.weight is not None:
        m.d_weight = dw
    if m.bias is not None:
        m.d_bias = db


class Sequential(Module):
    """y = m_k(... m_2(m_1(x))).

    ``forward_and_vjp(x, vjp_loss)`` runs forward, gets dL/dy = vjp_loss(y), runs the vjps in
    reverse, stores every child's d_weight / d_bias and returns y. Without ``vjp_loss`` it has
    the module form and returns (y, vjp); the vjp stores the gradients and returns
    (dL/dx, empty, empty), which is how containers nest.
    """

    def __init__(self, *modules: Module) -> None:
        super().__init__()
        for i, m in enumerate(modules):
            if not isinstance(m, Module):
                raise ValueError(f"Sequential: child {i} is {type(m).__name__}, not an n2n_core Module")
        self._children: list[Module] = list(modules)

    def __iter__(self) -> Iterator[Module]:
        return iter(self._children)

    def __len__(self) -> int:
        return len(self._children)

    def __getitem__(self, i: int | slice) -> Any:
        if isinstance(i, slice):
            return Sequential(*self._children[i])
        return self._children[i]

    def named_children(self) -> list[tuple[str, Module]]:
        return [(str(i), m) for i, m in enumerate(self._children)]

    def config(self) -> dict[str, Any]:
        return {"type": "Sequential", "children": [m.config() for m in self._children]}

    @classmethod
    def _from_config(cls, cfg: dict[str, Any]) -> Module:
        return cls(*(Module.from_config(c) for c in cfg["children"]))

    def __repr__(self) -> str:
        inner = "".join(f"\n  ({i}): {m!r}" for i, m in enumerate(self._children))
        return f"Sequential({inner}\n)"

    def _inplace_flags(self) -> list[bool]:
        """Child i may work in place when child i-1 hands it storage nobody else holds."""
        flags, prev_fresh = [], False
        for m in self._children:
            flags.append(prev_fresh and hasattr(m, "forward_inplace"))
            prev_fresh = m.fresh_output
        return flags

    def forward(self, x: Tensor) -> Tensor:
        for m, inplace in zip(self._children, self._inplace_flags()):
            x = m.forward_inplace(x) if inplace else m(x)  # type: ignore[attr-defined]
        return x

    def forward_and_vjp(self, x: Tensor, vjp_loss: Callable[[Tensor], Tensor] | None = None) -> Any:
        vjps: list[VJP | None] = []
        for m, inplace in zip(self._children, self._inplace_flags()):
            x, vjp = m.forward_and_vjp_inplace(x) if inplace else m.forward_and_vjp(x)  # type: ignore[attr-defined]
            vjps.append(vjp)

        def vjp(dy: Tensor, need_input_grad: bool = True) -> tuple[Tensor | None, Tensor, Tensor]:
            e = empty_like_grad(dy)
            for i in reversed(range(len(vjps))):
                child_vjp, vjps[i] = vjps[i], None  # free each closure's saved tensors as we go
                dy, dw, db = child_vjp(dy, need_input_grad or i > 0)  # type: ignore[misc]
                store_grads(self._children[i], dw, db)
            return dy, e, e

        if vjp_loss is None:
            return x, vjp
        vjp(vjp_loss(x), False)
        return x
