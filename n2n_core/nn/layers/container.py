"""Containers: Sequential (a chain), Concat (branches side by side) and Residual (x + body(x)).

Each clears its children's stored gradients in its forward and stores them from its vjp, summed over
the uses of a child that appears several times. The training pass ``forward_and_backward(x, vjp_loss)``
is ``Module``'s, shared by every module. Each answers the layer protocol through its children.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import Tensor

from n2n_core.nn.module import Mask, Module, VJP, clear_grads, empty_like_grad, store_grads, values_beside_body


class Sequential(Module):
    """y = m_k(... m_2(m_1(x))).

    ``forward_and_backward(x, vjp_loss)`` runs forward, gets dL/dy = vjp_loss(y), runs the vjps in
    reverse, stores every child's d_weight / d_bias and returns y. ``forward_and_vjp(x)`` has
    the module form and returns (y, vjp); the vjp stores the gradients and returns
    (dL/dx, empty, empty), which is how containers nest. A child may appear several times (or in
    several containers): its stored gradients are then the sum over its uses.
    """

    row_streaming = "sequential"

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

    # -- layer protocol: the children in turn --------------------------------------------
    def reach(self, scale: float) -> tuple[float, float]:
        """r = sum of the children's r, each at the scale the one before it leaves."""
        r = 0.0
        for m in self._children:
            dr, scale = m.reach(scale)
            r += dr
        return r, scale

    def activation_values(self, scale: float, channels: int) -> tuple[float, float, int]:
        """The sum of the children's values, each fed the scale and channels the one before it leaves."""
        total = 0.0
        for m in self._children:
            t, scale, channels = m.activation_values(scale, channels)
            total += t
        return total, scale, channels

    def dependency_mask(self, mask: Mask) -> Mask:
        for m in self._children:
            mask = m.dependency_mask(mask)
        return mask

    def size_multiple(self) -> int:
        """The product of the children's multiples."""
        return math.prod(m.size_multiple() for m in self._children)

    def _inplace_flags(self) -> list[bool]:
        """Child i may work in place when child i-1 hands it storage nobody else holds."""
        flags, prev_fresh = [], False
        for m in self._children:
            flags.append(prev_fresh and m.supports_inplace)
            prev_fresh = m.fresh_output
        return flags

    def fused_steps(self) -> list[tuple[Module, Callable[[Tensor], Tensor] | None, bool]]:
        """The inference forward as (module, epilogue, in place) steps: a child followed by an elementwise
        child that may overwrite its fresh output runs as one step, module.forward_then(x, epilogue)."""
        flags = self._inplace_flags()
        steps, i = [], 0
        while i < len(self._children):
            follower = self._children[i + 1] if i + 1 < len(self._children) else None
            epilogue = follower.epilogue() if follower is not None and flags[i + 1] else None
            steps.append((self._children[i], epilogue, flags[i]))
            i += 2 if epilogue is not None else 1
        return steps

    def forward(self, x: Tensor) -> Tensor:
        for m, epilogue, inplace in self.fused_steps():
            if epilogue is not None:
                x = m.forward_then(x, epilogue)
            else:
                x = m.forward_inplace(x) if inplace else m(x)
        return x

    def _forward_and_vjp(self, x: Tensor) -> tuple[Tensor, VJP]:
        clear_grads(self._children)
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

        return x, vjp


class Concat(Module):
    """y = cat([b_1(x), ..., b_k(x)], dim=1): branches side by side along channels.

    vjp: dy is split by channels, each branch's vjp runs on its slice, dx = sum of the branch dx's.
    With ``Identity`` as a branch this is a U-Net skip connection.
    """

    fresh_output = True
    row_streaming = "concat"

    def __init__(self, *branches: Module) -> None:
        super().__init__()
        if not branches:
            raise ValueError("Concat: needs at least one branch")
        for i, m in enumerate(branches):
            if not isinstance(m, Module):
                raise ValueError(f"Concat: branch {i} is {type(m).__name__}, not an n2n_core Module")
        self.branches = list(branches)

    def named_children(self) -> list[tuple[str, Module]]:
        return [(str(i), m) for i, m in enumerate(self.branches)]

    def config(self) -> dict[str, Any]:
        return {"type": "Concat", "branches": [m.config() for m in self.branches]}

    @classmethod
    def _from_config(cls, cfg: dict[str, Any]) -> Module:
        return cls(*(Module.from_config(c) for c in cfg["branches"]))

    def __repr__(self) -> str:
        return "Concat(" + ", ".join(repr(m) for m in self.branches) + ")"

    # -- layer protocol: the branches side by side ------------------------------------------
    def reach(self, scale: float) -> tuple[float, float]:
        """r = the largest branch r; scale' = the first branch's (the branches must agree)."""
        results = [m.reach(scale) for m in self.branches]
        return max(r for r, _ in results), results[0][1]

    def activation_values(self, scale: float, channels: int) -> tuple[float, float, int]:
        """The branches' values plus the concatenation, c' / scale^2 with c' = the sum of the branches'
        channels (at the input's scale)."""
        results = [m.activation_values(scale, channels) for m in self.branches]
        out = sum(c for _, _, c in results)
        return sum(t for t, _, _ in results) + out / scale**2, results[0][1], out

    def dependency_mask(self, mask: Mask) -> Mask:
        """The OR of the branches' masks."""
        return functools.reduce(torch.logical_or, [m.dependency_mask(mask) for m in self.branches])

    def size_multiple(self) -> int:
        """The product of the branches' multiples."""
        return math.prod(m.size_multiple() for m in self.branches)

    def _cat(self, ys: list[Tensor]) -> Tensor:
        shapes = [tuple(y.shape) for y in ys]
        if len({(s[0],) + s[2:] for s in shapes}) != 1 or any(len(s) != 4 for s in shapes):
            raise ValueError(f"Concat: branch outputs must agree in batch and spatial size, got {shapes}")
        return torch.cat(ys, dim=1)

    def forward(self, x: Tensor) -> Tensor:
        return self._cat([m(x) for m in self.branches])

    def _forward_and_vjp(self, x: Tensor) -> tuple[Tensor, VJP]:
        clear_grads(self.branches)
        outs = [m.forward_and_vjp(x) for m in self.branches]
        y = self._cat([o[0] for o in outs])
        splits = [o[0].shape[1] for o in outs]
        vjps: list[VJP | None] = [o[1] for o in outs]
        del outs

        def vjp(dy: Tensor, need_input_grad: bool = True) -> tuple[Tensor | None, Tensor, Tensor]:
            e = empty_like_grad(dy)
            dx = None
            for i, (m, g) in enumerate(zip(self.branches, dy.split(splits, dim=1))):
                branch_vjp, vjps[i] = vjps[i], None
                dxi, dw, db = branch_vjp(g, need_input_grad)  # type: ignore[misc]
                store_grads(m, dw, db)
                if need_input_grad:
                    dx = dxi if dx is None else dx + dxi
            return dx, e, e

        return y, vjp


class Residual(Module):
    """y = x + body(x);  dx = dy + body_vjp(dy)."""

    fresh_output = True
    row_streaming = "residual"

    def __init__(self, body: Module) -> None:
        super().__init__()
        if not isinstance(body, Module):
            raise ValueError(f"Residual: body is {type(body).__name__}, not an n2n_core Module")
        self.body = body

    def named_children(self) -> list[tuple[str, Module]]:
        return [("body", self.body)]

    def config(self) -> dict[str, Any]:
        return {"type": "Residual", "body": self.body.config()}

    @classmethod
    def _from_config(cls, cfg: dict[str, Any]) -> Module:
        return cls(Module.from_config(cfg["body"]))

    def __repr__(self) -> str:
        return f"Residual({self.body!r})"

    # -- layer protocol: the body's, plus the sum -------------------------------------------
    def reach(self, scale: float) -> tuple[float, float]:
        return self.body.reach(scale)

    def activation_values(self, scale: float, channels: int) -> tuple[float, float, int]:
        """The body's values plus the sum (``values_beside_body``)."""
        return values_beside_body(self.body, scale, channels)

    def dependency_mask(self, mask: Mask) -> Mask:
        """mask | body's mask (x itself is added)."""
        return mask | self.body.dependency_mask(mask)

    def size_multiple(self) -> int:
        return self.body.size_multiple()

    def with_reduced_body(self, reduce: Callable[[Module], Module]) -> Module:
        """The sum x + body(x) stays in the caller's type (x is exact there); the body may be reduced."""
        return Residual(reduce(self.body))

    def _add(self, x: Tensor, h: Tensor) -> Tensor:
        if h.shape != x.shape:
            raise ValueError(f"Residual: body output {tuple(h.shape)} differs from input {tuple(x.shape)}")
        return h + x

    def forward(self, x: Tensor) -> Tensor:
        return self._add(x, self.body(x))

    def _forward_and_vjp(self, x: Tensor) -> tuple[Tensor, VJP]:
        clear_grads([self.body])
        h, body_vjp = self.body.forward_and_vjp(x)
        y = self._add(x, h)

        def vjp(dy: Tensor, need_input_grad: bool = True) -> tuple[Tensor | None, Tensor, Tensor]:
            e = empty_like_grad(dy)
            dh, dw, db = body_vjp(dy, need_input_grad)
            store_grads(self.body, dw, db)
            return (dy + dh if need_input_grad else None), e, e

        return y, vjp
