"""Module: the unit of the framework.

A module computes ``y = f(x)`` and, on request, a closure for its vector-Jacobian product:

    y = m(x)
    y, vjp = m.forward_and_vjp(x)
    dL_dx, dL_dweight, dL_dbias = vjp(dL_dy)
    y = m.forward_and_backward(x, vjp_loss)   # training: dL/dy = vjp_loss(y), gradients stored

Subclasses implement ``forward`` and ``_forward_and_vjp``. The entry points above are the one
boundary where every module's inputs are checked (``Module.forward_and_vjp`` says what).

Every layer also describes itself to the code that plans tiled and streamed inference (the layer
protocol, see ``Module.reach``): how far it reaches, how many activations it makes, which outputs
depend on which inputs, which input sides it needs, and how it is computed by rows. The base class
answers none of these (a ValueError naming the layer): a layer that does not describe itself cannot
be tiled with a silently wrong margin. Elementwise layers inherit their answers from ``Pointwise``.

Parameters live in ``.weight`` and ``.bias`` (``None`` when absent). Containers store the
gradients of their children in ``.d_weight`` / ``.d_bias`` (summed over the uses of a module
that a pass uses several times); optimizers read them there. No module keeps per-call state in
attributes: the closure holds what the vjp needs.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from typing import Any, ClassVar

import torch
from torch import Tensor

VJP = Callable[..., tuple[Tensor | None, Tensor, Tensor]]
Mask = Tensor  # bool (N, H, W): which values depend on a probed input pixel (``Module.dependency_mask``)

#: the ways of computing a layer by rows that ``n2n_core.inference.streaming.row_stream`` knows (``Module.row_streaming``)
ROW_STREAMING_KINDS = ("pointwise", "conv", "pool", "upsample", "sequential", "concat", "residual", "cast")


def empty_like_grad(x: Tensor) -> Tensor:
    """The empty tensor a vjp returns for a parameter the module does not have."""
    return torch.empty(0, dtype=x.dtype, device=x.device)


def as_data(x: Any) -> Any:
    """x detached from any autograd graph (a tensor with requires_grad is plain data here); non-tensors as is.

    A view of the same storage, no copy: in-place layers still write where they would have.
    """
    return x.detach() if isinstance(x, Tensor) else x


def layer_name(m: Module) -> str:
    """How errors name a module: a layer by its repr, a container by its type (its repr spans lines)."""
    return type(m).__name__ if m.named_children() else repr(m)


def reject_empty_input(m: Module, x: Any) -> None:
    """A training pass needs at least one value: an empty x (e.g. a batch of N = 0) is a ValueError."""
    if isinstance(x, Tensor) and x.numel() == 0:
        raise ValueError(
            f"{layer_name(m)}.forward_and_vjp: empty input of shape {tuple(x.shape)}; a training pass "
            "needs at least one sample (N >= 1)"
        )


def vjp_checking_dy(m: Module, y: Tensor, vjp: VJP) -> VJP:
    """``vjp`` behind a check that dy is a tensor of y's shape (detached, like the inputs).

    Keeps y's shape, not y: the closure must not hold on to the output's memory.
    """
    shape = y.shape

    def checked(dy: Tensor, need_input_grad: bool = True) -> tuple[Tensor | None, Tensor, Tensor]:
        if not isinstance(dy, Tensor) or dy.shape != shape:
            got = tuple(dy.shape) if isinstance(dy, Tensor) else type(dy).__name__
            raise ValueError(f"{layer_name(m)}.vjp: dy must have the output's shape {tuple(shape)}, got {got}")
        return vjp(dy.detach(), need_input_grad)

    return checked


def clear_grads(modules: list[Module]) -> None:
    """Forget the gradients of the previous pass (a container calls it for its children in its forward)."""
    for m in modules:
        m.d_weight = m.d_bias = None


def store_grads(m: Module, dw: Tensor, db: Tensor) -> None:
    """Keep a module's parameter gradients where optimizers read them.

    A module used several times in one pass gets the sum of its uses' gradients: its containers'
    forwards cleared them (``clear_grads``) before any vjp ran, and each use's vjp adds its own.
    """
    if m.weight is not None:
        m.d_weight = dw if m.d_weight is None or m.d_weight.numel() == 0 else m.d_weight + dw
    if m.bias is not None:
        m.d_bias = db if m.d_bias is None or m.d_bias.numel() == 0 else m.d_bias + db


def values_beside_body(body: Module, scale: float, channels: int) -> tuple[float, float, int]:
    """``activation_values`` of a wrapper that keeps one input-sized result beside its body's values (a
    residual sum, an ensemble's running mean, a second pass's output): body's + channels / scale^2, at the
    input's scale and channels."""
    total, _, _ = body.activation_values(scale, channels)
    return total + channels / scale**2, scale, channels


def _undescribed(m: Module, what: str) -> ValueError:
    return ValueError(
        f"{type(m).__name__} does not describe its receptive reach and resolution ({what}): a layer must "
        "answer the layer protocol of n2n_core.nn.module.Module (reach, activation_values, dependency_mask, "
        "size_multiple, row_streaming), or subclass Pointwise if it is elementwise"
    )


class Module:
    """Base class. Subclasses implement ``forward`` and ``_forward_and_vjp`` (and may override
    ``_forward_and_vjp_inplace``) and the layer protocol (``reach``, ``activation_values``,
    ``dependency_mask``, ``size_multiple``, ``row_streaming``); callers use ``m(x)``,
    ``m.forward_and_vjp(x)`` and ``m.forward_and_backward(x, vjp_loss)``."""

    registry: ClassVar[dict[str, type[Module]]] = {}
    #: forward returns new storage that its vjp does not keep, so a container may let the next
    #: module overwrite it (see ``Sequential`` and the activations' ``*_inplace`` methods).
    fresh_output: ClassVar[bool] = False
    #: ``forward_inplace`` overwrites its input instead of allocating the output (the activations);
    #: when False it is the plain forward.
    supports_inplace: ClassVar[bool] = False
    #: how ``n2n_core.inference.streaming.row_stream`` computes this layer by rows: one of ``ROW_STREAMING_KINDS``
    #: ("pointwise": band by band; "conv" / "pool": keeping the rows the next output row still reads;
    #: "upsample": band by band, each row repeated; "sequential" / "concat" / "residual" / "cast": through
    #: the children), or None when it has no row-by-row form (a transposed convolution, the rotations of a
    #: self-ensemble, a whole-image decision): ``row_stream`` then raises ValueError naming the layer.
    row_streaming: ClassVar[str | None] = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if not cls.__name__.startswith("_"):  # private helpers (e.g. _ConvBase) are not loadable types
            Module.registry[cls.__name__] = cls

    def __init__(self) -> None:
        self.weight: Tensor | None = None
        self.bias: Tensor | None = None
        self.d_weight: Tensor | None = None
        self.d_bias: Tensor | None = None

    # -- computation -------------------------------------------------------------------
    def __call__(self, x: Tensor) -> Tensor:
        """y = forward(x), x detached first. An empty batch (N = 0) gives an empty output, as in torch."""
        return self.forward(as_data(x))

    def forward_and_vjp(self, x: Tensor, vjp_loss: Callable[[Tensor], Tensor] | None = None) -> Any:
        """(y, vjp) with y = self(x).

        Checks made here for every module, nested or not:
          - x (and later dy) is detached: a tensor with requires_grad is accepted as plain data;
          - an empty x (a batch of N = 0) is a ValueError: there is nothing to train on;
          - the vjp raises ValueError naming the module when dy's shape is not y's.

        ``forward_and_vjp(x, vjp_loss)``, the former training form, is deprecated: it warns
        (DeprecationWarning) and returns ``forward_and_backward(x, vjp_loss)``.
        """
        if vjp_loss is not None:
            warnings.warn("Module.forward_and_vjp(x, vjp_loss) is deprecated; use forward_and_backward(x, vjp_loss)",
                          DeprecationWarning, stacklevel=2)
            return self.forward_and_backward(x, vjp_loss)
        return self._checked_pass(x, inplace=False)

    def forward_and_backward(self, x: Tensor, vjp_loss: Callable[[Tensor], Tensor]) -> Tensor:
        """The training pass: y = self(x), then the vjp on dL/dy = vjp_loss(y); returns y.

        Clears this module's stored gradients first, then stores every parameter gradient
        (``d_weight`` / ``d_bias``) of the module and its descendants. The checks of ``forward_and_vjp``
        apply (and dL/dy must have y's shape).
        """
        y, vjp = self._checked_pass(x, inplace=False, clear=True)
        _, dw, db = vjp(vjp_loss(y), False)
        store_grads(self, dw, db)
        return y

    def forward_and_vjp_inplace(self, x: Tensor) -> tuple[Tensor, VJP]:
        """``forward_and_vjp`` that may overwrite x (Sequential calls it when no one else holds x)."""
        return self._checked_pass(x, inplace=True)

    def _checked_pass(self, x: Tensor, inplace: bool, clear: bool = False) -> tuple[Tensor, VJP]:
        """The checks of ``forward_and_vjp`` around ``_forward_and_vjp(_inplace)``; ``clear``: forget this
        module's stored gradients first (the training pass)."""
        x = as_data(x)
        reject_empty_input(self, x)
        if clear:
            clear_grads([self])
        y, vjp = self._forward_and_vjp_inplace(x) if inplace else self._forward_and_vjp(x)
        return y, vjp_checking_dy(self, y, vjp)

    def forward(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def forward_inplace(self, x: Tensor) -> Tensor:
        """self(x), allowed to overwrite x. A layer that really does (``supports_inplace``) overrides it;
        by default it is the plain forward, which leaves x alone."""
        return self(x)

    def _forward_and_vjp(self, x: Tensor) -> tuple[Tensor, VJP]:
        """(y, vjp) for an input that passed the checks of ``forward_and_vjp``."""
        raise NotImplementedError

    def _forward_and_vjp_inplace(self, x: Tensor) -> tuple[Tensor, VJP]:
        """Like ``_forward_and_vjp``, allowed to overwrite x; by default it does not."""
        return self._forward_and_vjp(x)

    # -- layer protocol: what tiled and streamed inference need to know --------------------
    # Distances are in input pixels; ``scale`` is how many input pixels one pixel of the layer's input
    # spans (1 at the network's input, 2 after a 2x2 pooling, 1/2 after a 2x upsampling).
    def reach(self, scale: float) -> tuple[float, float]:
        """(r, scale'): how far, in input pixels, an output pixel of this layer sees beyond the input
        pixel under it (a bound: the full extent of its window, r = (extent - 1) * scale for a
        convolution of extent d(k - 1) + 1), and the scale of its output. ``receptive_bound`` sums r."""
        raise _undescribed(self, "reach")

    def activation_values(self, scale: float, channels: int) -> tuple[float, float, int]:
        """(values, scale', channels'): the activations this layer makes per input pixel of the network,
        values = channels' / scale'^2 for a layer with a new output (0 for a pointwise one, which works
        in place or frees its input), and the scale and channel count of its output.
        ``activation_values_per_pixel`` sums the values."""
        raise _undescribed(self, "activation_values")

    def dependency_mask(self, mask: Mask) -> Mask:
        """The output positions (N, H', W') that depend on the input positions marked in ``mask`` (N, H, W):
        the layer's map of values with "depends on any tap" in place of its arithmetic."""
        raise _undescribed(self, "dependency_mask")

    def size_multiple(self) -> int:
        """Input sides must be multiples of this: the product over the layer and its descendants of every
        downsampling factor (a pooling's lcm(kh, kw), a convolution's lcm(sh, sw))."""
        raise _undescribed(self, "size_multiple")

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
        """[("0.weight", tensor), ("0.bias", tensor), ...]: every name, so a shared tensor appears under each."""
        out = []
        for prefix, m in self.named_modules():
            for attr in ("weight", "bias"):
                p = getattr(m, attr)
                if p is not None:
                    out.append((prefix + attr, p))
        return out

    def parameters(self) -> list[Tensor]:
        """Each distinct parameter tensor once (a shared module or a tied weight is listed once), as in torch."""
        distinct: dict[int, Tensor] = {}
        for _, p in self.named_parameters():
            distinct.setdefault(id(p), p)
        return list(distinct.values())

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
        """Convert every parameter (and stored gradient) of self and its children in place.

        A tensor held at several places (a shared module, tied weights) stays one tensor.
        """
        converted: dict[int, tuple[Tensor, Tensor]] = {}  # id -> (original, converted): originals stay alive
        for m in self.modules():
            for attr in ("weight", "bias", "d_weight", "d_bias"):
                t = getattr(m, attr)
                if t is not None:
                    if id(t) not in converted:
                        converted[id(t)] = (t, t.to(device=device, dtype=dtype))
                    setattr(m, attr, converted[id(t)][1])
        return self

    def epilogue(self) -> Callable[[Tensor], Tensor] | None:
        """An in-place elementwise function equal to this layer's forward, which the layer before it may
        apply to each block of its output while that block is still in cache (``forward_then``); None
        (the default) for a layer that is not elementwise."""
        return None

    def forward_then(self, x: Tensor, epilogue: Callable[[Tensor], Tensor]) -> Tensor:
        """epilogue(self(x)) for an output nobody else holds; a layer that computes its output in blocks
        (a convolution) applies ``epilogue`` to each block as it is written."""
        return epilogue(self(x))

    def with_reduced_body(self, reduce: Callable[[Module], Module]) -> Module | None:
        """This module rebuilt around ``reduce(body)`` when its own arithmetic must stay in the caller's
        floating-point type while its body may compute in a reduced one (a residual sum, an ensemble's
        mean, a noise estimate); None (the default) when the whole module may compute reduced.

        ``n2n_core.inference.precision.at_precision`` asks every module this, from the top down.
        """
        return None

    # -- architecture description (used by n2n_core.nn.serialize) ---------------------------
    def config(self) -> dict[str, Any]:
        """JSON-able description from which ``Module.from_config`` rebuilds the module."""
        return {"type": type(self).__name__}

    @staticmethod
    def from_config(cfg: dict[str, Any]) -> Module:
        """Rebuild a module from its ``config()``; only public (registered) layer types are built."""
        from n2n_core.nn import layers  # noqa: F401  (registers the layer types; `import n2n_core` no longer does)

        if not isinstance(cfg, dict):
            raise ValueError(f"a module description must be a JSON object, got {type(cfg).__name__}")
        kind = cfg.get("type")
        cls = Module.registry.get(kind) if isinstance(kind, str) else None
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


class Pointwise:
    """Mixin for an elementwise layer (``class ReLU(Pointwise, Module)``): an output value depends on the
    input value at the same position only, so the layer's answers to the layer protocol are

        reach(scale) = (0, scale)                 activation_values(scale, c) = (0, scale, c)
        dependency_mask(mask) = mask              size_multiple() = 1           row_streaming = "pointwise"
    """

    row_streaming: ClassVar[str | None] = "pointwise"

    def reach(self, scale: float) -> tuple[float, float]:
        return 0.0, scale

    def activation_values(self, scale: float, channels: int) -> tuple[float, float, int]:
        return 0.0, scale, channels  # works in place or frees its input

    def dependency_mask(self, mask: Mask) -> Mask:
        return mask

    def size_multiple(self) -> int:
        return 1
