"""Helpers comparing n2n_core with torch autograd (tests only may use autograd)."""

from __future__ import annotations

import torch

TOL = {torch.float64: dict(rtol=1e-10, atol=1e-10), torch.float32: dict(rtol=1e-4, atol=1e-5)}


def autograd_vjp(fn, inputs, dy):
    """Forward fn(*inputs) with autograd, then the vjp of dy w.r.t. every input (None where unused)."""
    leaves = [t.detach().clone().requires_grad_(True) if t is not None else None for t in inputs]
    with torch.enable_grad():
        y = fn(*leaves)
        used = [t for t in leaves if t is not None]
        grads = iter(torch.autograd.grad(y, used, dy, allow_unused=True))
    return y.detach(), [next(grads) if t is not None else None for t in leaves]


def assert_close(actual, expected, dtype, scale: float = 1.0):
    tol = TOL[dtype]
    torch.testing.assert_close(actual, expected, rtol=tol["rtol"], atol=tol["atol"] * max(1.0, scale))
