"""Optimizers with PyTorch's SGD and Adam update rules (single-tensor form).

``step()`` reads the gradients the latest ``forward_and_vjp`` stored in each module's
``d_weight`` / ``d_bias`` (overwritten by each training pass, never accumulated across passes: no
zero_grad needed). Each parameter tensor is stepped once per ``step()``, however many modules
hold it or however often its module is used: the gradient is the sum over the distinct modules
that hold it. State is per parameter, as in ``torch.optim`` (Adam keeps its own step count for
each parameter, advanced only when that parameter has a gradient).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from n2n_core.nn.module import Module


class Optimizer:
    """Base: one slot per distinct parameter tensor, named by its first dotted name in the model."""

    def __init__(self, model: Module, lr: float) -> None:
        if not isinstance(model, Module):
            raise ValueError(f"{type(self).__name__}: expected an n2n_core Module, got {type(model).__name__}")
        if not lr >= 0:
            raise ValueError(f"{type(self).__name__}: lr must be >= 0, got {lr!r}")
        self.model = model
        self.lr = float(lr)
        self.steps = 0  # calls of step(), for information; updates count per parameter
        self.state: dict[str, dict[str, Tensor]] = {}
        self._slots: list[tuple[str, list[tuple[Module, str]]]] = parameter_slots(model)

    def step(self) -> None:
        self.steps += 1
        for name, holders in self._slots:
            p = getattr(*holders[0])
            grads = [g for m, attr in holders if (g := getattr(m, "d_" + attr)) is not None and g.numel()]
            if not grads:
                continue
            g = grads[0] if len(grads) == 1 else torch.stack(grads).sum(0)
            state = self.state.setdefault(name, {})
            for k, v in state.items():  # buffers follow the parameter; Adam's step count stays on the CPU
                if k != "step" and (v.device != p.device or v.dtype != p.dtype):
                    state[k] = v.to(device=p.device, dtype=p.dtype)
            self._update(p, g, state)

    def _update(self, p: Tensor, g: Tensor, state: dict[str, Tensor]) -> None:
        raise NotImplementedError

    # -- checkpointing -----------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """{"steps": int, "lr": float, "buffers": {"<param>.<buffer>": tensor}}."""
        buffers = {f"{name}.{k}": v for name, st in self.state.items() for k, v in st.items()}
        return {"steps": self.steps, "lr": self.lr, "buffers": buffers}

    def load_state_dict(self, sd: dict[str, Any]) -> None:
        self.steps = int(sd["steps"])
        self.lr = float(sd["lr"])
        names = {name for name, _ in self._slots}
        self.state = {}
        for key, v in sd["buffers"].items():
            name, buf = key.rsplit(".", 1)
            if name not in names:
                raise ValueError(f"{type(self).__name__}.load_state_dict: unknown parameter {name!r}")
            self.state.setdefault(name, {})[buf] = v.clone()
        self._upgrade_state()

    def _upgrade_state(self) -> None:
        """Hook for state saved by older versions."""


def parameter_slots(model: Module) -> list[tuple[str, list[tuple[Module, str]]]]:
    """(name, [(module, "weight"|"bias"), ...]) for each distinct parameter tensor, in model order.

    A module used at several places appears once among the holders; distinct modules that share
    one tensor (tied weights) are all listed, so that their gradients add up.
    """
    slots: dict[int, tuple[str, list[tuple[Module, str]]]] = {}
    for prefix, m in model.named_modules():
        for attr in ("weight", "bias"):
            p = getattr(m, attr)
            if p is None:
                continue
            name, holders = slots.setdefault(id(p), (f"{prefix}{attr}", []))
            if not any(h is m and a == attr for h, a in holders):
                holders.append((m, attr))
    return list(slots.values())


class SGD(Optimizer):
    """g = grad + wd*p;  b = g (first step) else mu*b + g;  g = g + mu*b (nesterov) else b;  p -= lr*g."""

    def __init__(self, model: Module, lr: float, momentum: float = 0.0, nesterov: bool = False,
                 weight_decay: float = 0.0) -> None:
        super().__init__(model, lr)
        if momentum < 0 or weight_decay < 0:
            raise ValueError(f"SGD: momentum and weight_decay must be >= 0, got {momentum}, {weight_decay}")
        if nesterov and momentum <= 0:
            raise ValueError("SGD: nesterov momentum requires a momentum > 0")
        self.momentum, self.nesterov, self.weight_decay = float(momentum), bool(nesterov), float(weight_decay)

    def _update(self, p: Tensor, g: Tensor, state: dict[str, Tensor]) -> None:
        if self.weight_decay:
            g = g.add(p, alpha=self.weight_decay)
        if self.momentum:
            buf = state.get("momentum_buffer")
            if buf is None:
                buf = state["momentum_buffer"] = g.clone()
            else:
                buf.mul_(self.momentum).add_(g)
            g = g.add(buf, alpha=self.momentum) if self.nesterov else buf
        p.add_(g, alpha=-self.lr)


class Adam(Optimizer):
    """t += 1;  m = lerp(m, g, 1-b1);  v = b2 v + (1-b2) g^2;  p -= lr/(1-b1^t) * m / (sqrt(v)/sqrt(1-b2^t) + eps).

    t, m and v are per parameter (state "step", "exp_avg", "exp_avg_sq"), as in ``torch.optim.Adam``.
    """

    def __init__(self, model: Module, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0) -> None:
        super().__init__(model, lr)
        if not (0 <= betas[0] < 1 and 0 <= betas[1] < 1) or eps < 0 or weight_decay < 0:
            raise ValueError(f"Adam: invalid betas {betas}, eps {eps} or weight_decay {weight_decay}")
        self.betas, self.eps, self.weight_decay = (float(betas[0]), float(betas[1])), float(eps), float(weight_decay)

    def _update(self, p: Tensor, g: Tensor, state: dict[str, Tensor]) -> None:
        b1, b2 = self.betas
        if self.weight_decay:
            g = g.add(p, alpha=self.weight_decay)
        if "exp_avg" not in state:
            state["step"] = torch.zeros((), dtype=torch.float32)
            state["exp_avg"] = torch.zeros_like(p)
            state["exp_avg_sq"] = torch.zeros_like(p)
        state["step"] += 1
        m, v, t = state["exp_avg"], state["exp_avg_sq"], int(state["step"].item())
        m.lerp_(g, 1 - b1)
        v.mul_(b2).addcmul_(g, g, value=1 - b2)
        step_size = self.lr / (1 - b1**t)
        denom = (v.sqrt() / (1 - b2**t) ** 0.5).add_(self.eps)
        p.addcdiv_(m, denom, value=-step_size)

    def _upgrade_state(self) -> None:
        """Checkpoints from before per-parameter steps: every parameter had been stepped ``steps`` times."""
        for st in self.state.values():
            if "exp_avg" in st and "step" not in st:
                st["step"] = torch.tensor(float(self.steps))
