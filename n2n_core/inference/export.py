"""Export a model to ONNX, built from n2n_core's own module graph with the ``onnx`` helper API.

There is no torch.nn model to hand to ``torch.onnx``: every layer type has one converter in
``CONVERTERS`` that appends the ONNX nodes computing its forward pass, and containers convert their
children. A layer type without a converter is a ValueError naming it.

The graph has one input ``input`` and one output ``output``, float32 (N, C, H, W) with dynamic batch,
height and width (dim_params ``batch``, ``height``, ``width``). Two forms:

    whole image (default)  what ``n2n_core.denoise(model, x)`` computes for x in [0, 1] at strength 1:
                           x is padded at the bottom and right to the model's size multiple m,
                           by reflection (by replication when a pad is not smaller than its side, as
                           ``n2n_core.inference.infer`` does), the network runs, the result is cropped back to
                           H x W and clamped to [0, 1]. Any H, W >= 1 works.
    network (whole_image=False)  ``model(x)`` alone: H and W must be multiples of m; nothing is
                           clamped.

``NoiseAdaptive`` (the ``blind`` model) exports exactly: its noise estimate (``n2n_core.data.noise_level``:
the median absolute diagonal Haar detail / 0.6745 per channel, averaged over the channels, at the pixel
scale and after a 2x pixel-shuffle, the larger kept) is built from Slice, Concat, TopK (the lower median,
as torch's), ReduceSum and Max, and an ``If`` node runs the further
passes only when an image of the batch is above the threshold; a ``Where`` picks, per image, the
passes it takes. In the whole-image form, the estimate is made on the unpadded input and each pass is
padded, cropped and clamped, as ``n2n_core.denoise`` runs such a model.

Parameters are written in float32 (within a ``Cast`` layer in its type: its body then computes in float16,
or in bfloat16 from opset 22). The model card and the architecture go in the model's metadata_props
(``n2n_card``, JSON; ``n2n_architecture``, the JSON of ``Module.config()``), with ``n2n_size_multiple``
and ``n2n_graph``.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper, numpy_helper

from n2n_core.data import noise_level
from n2n_core.nn.atomic import atomic_write_bytes
from n2n_core.nn.layers import Cast, Concat, Conv2d, Identity, LeakyReLU, MaxPool2d, NearestUpsampling, ReLU, Residual, SelfEnsemble, Sequential, Sigmoid, TransposeConv2d
from n2n_core.inference.noise_adaptive import NoiseAdaptive
from n2n_core.nn.layers.ensemble import Transform, symmetries
from n2n_core.models import size_multiple
from n2n_core.nn.module import Module

DEFAULT_OPSET = 17
MIN_OPSET = 17  # Pad, Slice, Resize, TopK, Unsqueeze and ReduceSum with tensor inputs; the default
BFLOAT16_OPSET = 22  # the first opset whose Conv, ConvTranspose and MaxPool take bfloat16
INPUT_NAME, OUTPUT_NAME = "input", "output"
CARD_KEY, ARCH_KEY = "n2n_card", "n2n_architecture"
INT64_MAX, INT64_MIN = np.iinfo(np.int64).max, np.iinfo(np.int64).min

#: ONNX element types of the torch floating-point types a graph may compute in
ONNX_TYPES: dict[torch.dtype, int] = {torch.float32: TensorProto.FLOAT, torch.float64: TensorProto.DOUBLE,
                                      torch.float16: TensorProto.FLOAT16, torch.bfloat16: TensorProto.BFLOAT16}


class GraphBuilder:
    """Appends nodes to one ONNX graph (the model's, or a branch of an ``If``).

    Value and node names are unique across the whole model; initializers (weights, constants) always
    live in the root graph, which a branch sees as its outer scope, and a tensor used at several
    places (a body run by ``SelfEnsemble`` 8 times) is stored once. ``dtype``: the torch type the
    current layer computes in (float32, or a ``Cast`` layer's type), that of the weights written.
    """

    def __init__(self, root: GraphBuilder | None = None, dtype: torch.dtype = torch.float32,
                 opset: int = DEFAULT_OPSET) -> None:
        self.root = root or self
        self.dtype = dtype
        self.opset = root.opset if root is not None else opset
        self.nodes: list[onnx.NodeProto] = []
        if root is None:
            self.initializers: list[onnx.TensorProto] = []
            self._count = 0
            self._stored: dict[tuple[int, torch.dtype], str] = {}  # (id(tensor), dtype) -> initializer name

    def fresh(self, hint: str) -> str:
        """A value name no other value of the model has: ``hint`` and a counter."""
        self.root._count += 1
        return f"{hint}_{self.root._count}"

    def op(self, op_type: str, inputs: list[str], hint: str = "", outputs: int = 1, **attrs: Any) -> Any:
        """Append ``op_type(inputs)``; its output name (a list of names when ``outputs`` > 1)."""
        names = [self.fresh(f"{hint}{op_type}") for _ in range(outputs)]
        self.nodes.append(helper.make_node(op_type, inputs, names, name=names[0], **attrs))
        return names[0] if outputs == 1 else names

    def const(self, value: Any, hint: str = "const", dtype: Any = np.int64) -> str:
        """An initializer holding ``value`` (a number or a list, as a numpy array of ``dtype``)."""
        name = self.fresh(hint)
        self.root.initializers.append(numpy_helper.from_array(np.asarray(value, dtype=dtype), name))
        return name

    def scalar(self, value: float, hint: str) -> str:
        """An initializer holding the number ``value`` in the current ``dtype``."""
        name = self.fresh(hint)
        self.root.initializers.append(_tensor_proto(torch.tensor(value, dtype=self.dtype), name))
        return name

    def weight(self, tensor: torch.Tensor, hint: str) -> str:
        """An initializer holding a parameter, in the current ``dtype``; each tensor is stored once."""
        key = (id(tensor), self.dtype)
        stored = self.root._stored.get(key)
        if stored is None:
            stored = self.fresh(hint)
            self.root.initializers.append(_tensor_proto(tensor.detach().to("cpu", self.dtype), stored))
            self.root._stored[key] = stored
        return stored

    def branch(self) -> GraphBuilder:
        """A builder for a subgraph (a branch of an ``If``), in the current dtype."""
        return GraphBuilder(self.root, self.dtype)

    def graph(self, name: str, outputs: list[str]) -> onnx.GraphProto:
        """This builder's nodes as a branch graph with the given outputs (types left to the runtime)."""
        return helper.make_graph(self.nodes, name, [], [helper.make_value_info(o, onnx.TypeProto()) for o in outputs])

    @contextmanager
    def computing_in(self, dtype: torch.dtype) -> Iterator[None]:
        """Within the block, weights are written in ``dtype`` (a ``Cast`` layer's body)."""
        outer, self.dtype = self.dtype, dtype
        try:
            yield
        finally:
            self.dtype = outer


def _tensor_proto(tensor: torch.Tensor, name: str) -> onnx.TensorProto:
    """A CPU tensor as an ONNX initializer; bfloat16 (which numpy lacks) is written as raw bits."""
    if tensor.dtype == torch.bfloat16:
        bits = tensor.contiguous().view(torch.int16).numpy().tobytes()
        return helper.make_tensor(name, TensorProto.BFLOAT16, list(tensor.shape), bits, raw=True)
    return numpy_helper.from_array(tensor.contiguous().numpy(), name)


# -- converters: one per layer type, each appends the nodes of the layer's forward pass -------------------------

Converter = Callable[[GraphBuilder, Any, str, str], str]


def convert(g: GraphBuilder, module: Module, x: str, path: str = "") -> str:
    """Append the nodes computing ``module(x)``; the name of its output. ValueError for a layer type that has
    no ONNX form (the type is looked up exactly in ``CONVERTERS``: a subclass may compute something else)."""
    return _converter(module)(g, module, x, path)


def _converter(module: Module) -> Converter:
    """The converter of ``module``'s exact type; ValueError naming a type without one."""
    converter = CONVERTERS.get(type(module))
    if converter is None:
        raise ValueError(
            f"export: {type(module).__name__} cannot be exported to ONNX: it has no converter in n2n_core.inference.export "
            f"(exportable layers: {', '.join(sorted(t.__name__ for t in CONVERTERS))})"
        )
    return converter


def _conv(g: GraphBuilder, m: Conv2d, x: str, path: str) -> str:
    """Conv: weight (Cout, Cin, kh, kw) as ONNX's; pads (top, left, bottom, right) = (p_h, p_w, p_h, p_w)."""
    inputs = [x, g.weight(m.weight, f"{path}weight")]  # type: ignore[arg-type]
    if m.bias is not None:
        inputs.append(g.weight(m.bias, f"{path}bias"))
    return g.op("Conv", inputs, path, kernel_shape=list(m.kernel_size), strides=list(m.stride),
                pads=[*m.padding, *m.padding], dilations=list(m.dilation), group=1)


def _conv_transpose(g: GraphBuilder, m: TransposeConv2d, x: str, path: str) -> str:
    """ConvTranspose: torch's weight layout (Cin, Cout, kh, kw) is ONNX's (C, M/group, kh, kw);
    H_out = s (H - 1) + op + d (k - 1) + 1 - 2 p in both."""
    inputs = [x, g.weight(m.weight, f"{path}weight")]  # type: ignore[arg-type]
    if m.bias is not None:
        inputs.append(g.weight(m.bias, f"{path}bias"))
    return g.op("ConvTranspose", inputs, path, kernel_shape=list(m.kernel_size), strides=list(m.stride),
                pads=[*m.padding, *m.padding], dilations=list(m.dilation), output_padding=list(m.output_padding),
                group=1)


def _max_pool(g: GraphBuilder, m: MaxPool2d, x: str, path: str) -> str:
    """MaxPool with stride = kernel, no padding, floor: trailing rows and columns dropped, as n2n_core's."""
    return g.op("MaxPool", [x], path, kernel_shape=list(m.kernel_size), strides=list(m.kernel_size))


def _upsample(g: GraphBuilder, m: NearestUpsampling, x: str, path: str) -> str:
    """Resize, nearest, asymmetric coordinates, floor: y[i, j] = x[floor(i / s_h), floor(j / s_w)], exact
    for integer scales."""
    scales = g.const([1.0, 1.0, *map(float, m.scale_factor)], f"{path}scales", np.float32)
    return g.op("Resize", [x, "", scales], path, mode="nearest", coordinate_transformation_mode="asymmetric",
                nearest_mode="floor")


def _relu(g: GraphBuilder, m: ReLU, x: str, path: str) -> str:
    return g.op("Relu", [x], path)


def _leaky_relu(g: GraphBuilder, m: LeakyReLU, x: str, path: str) -> str:
    """LeakyRelu: y = x for x >= 0, a x otherwise (n2n_core's max(x, a x) for 0 <= a <= 1)."""
    return g.op("LeakyRelu", [x], path, alpha=m.negative_slope)


def _sigmoid(g: GraphBuilder, m: Sigmoid, x: str, path: str) -> str:
    return g.op("Sigmoid", [x], path)


def _identity(g: GraphBuilder, m: Identity, x: str, path: str) -> str:
    return x


def _sequential(g: GraphBuilder, m: Sequential, x: str, path: str) -> str:
    for name, child in m.named_children():
        x = convert(g, child, x, f"{path}{name}.")
    return x


def _concat(g: GraphBuilder, m: Concat, x: str, path: str) -> str:
    """Concat along axis 1 (channels) of the branches' outputs, in order."""
    outs = [convert(g, branch, x, f"{path}{name}.") for name, branch in m.named_children()]
    return g.op("Concat", outs, path, axis=1)


def _residual(g: GraphBuilder, m: Residual, x: str, path: str) -> str:
    return g.op("Add", [convert(g, m.body, x, f"{path}body."), x], path)


#: the torch.rot90(x, k, dims=(H, W)) of each k as flips and a transpose of (H, W), in the order torch applies them
ROT90_STEPS: dict[int, tuple[str, ...]] = {0: (), 1: ("flip_w", "transpose"), 2: ("flip_h", "flip_w"),
                                           3: ("flip_h", "transpose")}


def _geometric(g: GraphBuilder, x: str, steps: tuple[str, ...], path: str) -> str:
    """Flips (Slice with step -1 over an axis) and transposes of H and W, in order."""
    for step in steps:
        if step == "transpose":
            x = g.op("Transpose", [x], path, perm=[0, 1, 3, 2])
        else:
            axis = g.const([2 if step == "flip_h" else 3], f"{path}axis")
            x = g.op("Slice", [x, g.const([-1], f"{path}start"), g.const([INT64_MIN], f"{path}end"), axis,
                               g.const([-1], f"{path}step")], path)
    return x


def _apply_steps(t: Transform) -> tuple[str, ...]:
    """``ensemble.apply``: mirror W, then k quarter turns."""
    k, mirrored = t
    return (("flip_w",) if mirrored else ()) + ROT90_STEPS[k % 4]


def _undo_steps(t: Transform) -> tuple[str, ...]:
    """``ensemble.undo``: -k quarter turns (= 4 - k), then mirror W."""
    k, mirrored = t
    return ROT90_STEPS[-k % 4] + (("flip_w",) if mirrored else ())


def _self_ensemble(g: GraphBuilder, m: SelfEnsemble, x: str, path: str) -> str:
    """y = (sum_t T_t^-1(body(T_t(x)))) / n, summed in the order of the transforms as n2n_core sums them."""
    total = None
    for i, t in enumerate(symmetries(m.count)):
        branch = f"{path}t{i}."
        y = _geometric(g, convert(g, m.body, _geometric(g, x, _apply_steps(t), branch), f"{branch}body."),
                       _undo_steps(t), branch)
        total = y if total is None else g.op("Add", [total, y], branch)
    return g.op("Div", [total, g.scalar(float(m.count), f"{path}count")], path)  # type: ignore[list-item]


def _cast(g: GraphBuilder, m: Cast, x: str, path: str) -> str:
    """Cast to the layer's type, the body computing in it (weights stored in it), Cast back."""
    if m.dtype == torch.bfloat16 and g.opset < BFLOAT16_OPSET:
        raise ValueError(f"export: Cast (a body computing in bfloat16) needs opset {BFLOAT16_OPSET} or later, the "
                         f"first whose Conv, ConvTranspose and MaxPool take bfloat16; got opset {g.opset}")
    outer = g.dtype
    inner = g.op("Cast", [x], path, to=ONNX_TYPES[m.dtype])
    with g.computing_in(m.dtype):
        y = convert(g, m.body, inner, f"{path}body.")
    return g.op("Cast", [y], path, to=ONNX_TYPES[outer])


def _noise_adaptive(g: GraphBuilder, m: NoiseAdaptive, x: str, path: str,
                    run_pass: Callable[[GraphBuilder, str], str] | None = None) -> str:
    """y_1 = pass(x); when any image's estimated sigma exceeds the threshold (an ``If``), y_k = pass(y_k-1) up to
    ``passes`` and each image takes y_passes if its own sigma does, y_1 otherwise (``Where``).
    ``run_pass``: what a pass is (default: the body as ``forward`` runs it)."""

    def body_pass(builder: GraphBuilder, z: str) -> str:
        return convert(builder, m.body, z, f"{path}body.")

    run = run_pass or body_pass
    first = run(g, x)
    if m.passes == 1:
        return first
    noisy = g.op("Greater", [noise_sigma(g, x, path), g.const(m.threshold, f"{path}threshold", np.float64)], path)
    count = g.op("ReduceSum", [g.op("Cast", [noisy], path, to=TensorProto.FLOAT)], path, keepdims=0)
    any_noisy = g.op("Greater", [count, g.const(0.0, f"{path}zero", np.float32)], path)
    again = g.branch()
    y = first
    for _ in range(m.passes - 1):
        y = run(again, y)
    per_image = again.op("Reshape", [noisy, g.const([-1, 1, 1, 1], f"{path}mask_shape")], path)
    chosen = again.op("Where", [per_image, y, first], path)
    once = g.branch()
    kept = once.op("Identity", [first], path)
    return g.op("If", [any_noisy], path, then_branch=again.graph(f"{path}more_passes", [chosen]),
                else_branch=once.graph(f"{path}one_pass", [kept]))


CONVERTERS: dict[type[Module], Converter] = {
    Conv2d: _conv,
    TransposeConv2d: _conv_transpose,
    MaxPool2d: _max_pool,
    NearestUpsampling: _upsample,
    ReLU: _relu,
    LeakyReLU: _leaky_relu,
    Sigmoid: _sigmoid,
    Identity: _identity,
    Sequential: _sequential,
    Concat: _concat,
    Residual: _residual,
    SelfEnsemble: _self_ensemble,
    Cast: _cast,
    NoiseAdaptive: _noise_adaptive,
}


# -- shapes, the noise estimate, the whole-image form ----------------------------------------------------------


def _side(g: GraphBuilder, x: str, axis: int, path: str) -> str:
    """x.shape[axis] as an int64 scalar."""
    return g.op("Gather", [g.op("Shape", [x], path), g.const(axis, f"{path}axis")], path, axis=0)


def _vector(g: GraphBuilder, scalars: list[str], path: str) -> str:
    """int64 scalars -> a 1-d int64 tensor of them."""
    axes = g.const([0], f"{path}axes")
    return g.op("Concat", [g.op("Unsqueeze", [s, axes], path) for s in scalars], path, axis=0)


def noise_sigma(g: GraphBuilder, x: str, path: str = "") -> str:
    """sigma of each image of x (N, C, H, W): (N,) float64, ``n2n_core.data.noise_level.estimate_sigma`` of each.

    At each scale s of ``noise_level.SCALES``: the pixel-shuffle sub-images x[..., dy::s, dx::s] (Slice with
    steps s, dy then dx increasing), of each HH = (a - b - c + d) / 2 over each 2x2 block of its even part
    (Slice with steps 2), flattened and concatenated; per channel the lower median of |HH| (TopK of the
    (m - 1) // 2 + 1 smallest, the last of them) over every ``stride``-th coefficient,
    stride = max(1, M // MAX_SAMPLES); times 1 / 0.6745, averaged over the channels (a sum divided by C),
    then times 255 in float64; 0 where there is no coefficient (an ``If``). The estimate is the ``Max`` over
    the scales.
    """
    p = f"{path}sigma."
    if g.dtype != torch.float32:
        x = g.op("Cast", [x], p, to=TensorProto.FLOAT)
    readings = [_sigma_at_scale(g, x, scale, f"{p}s{scale}.") for scale in noise_level.SCALES]
    return readings[0] if len(readings) == 1 else g.op("Max", readings, p)


def _diagonal_details(g: GraphBuilder, x: str, p: str) -> str:
    """x (N, C, H, W) -> (N, C, M): ``noise_level.diagonal_details`` of x, flattened."""
    h, w = _side(g, x, 2, p), _side(g, x, 3, p)
    two = g.const(2, f"{p}two")
    even = _vector(g, [g.op("Sub", [side, g.op("Mod", [side, two], p)], p) for side in (h, w)], p)
    spatial, steps = g.const([2, 3], f"{p}axes"), g.const([2, 2], f"{p}steps")
    a, b, c, d = (g.op("Slice", [x, g.const(start, f"{p}start"), even, spatial, steps], p)
                  for start in ([0, 0], [0, 1], [1, 0], [1, 1]))
    diff = g.op("Add", [g.op("Sub", [g.op("Sub", [a, b], p), c], p), d], p)
    details = g.op("Div", [diff, g.const(2.0, f"{p}two", np.float32)], p)
    return g.op("Reshape", [details, g.const([0, 0, -1], f"{p}shape")], p)


def _sigma_at_scale(g: GraphBuilder, x: str, scale: int, p: str) -> str:
    """(N,) float64: ``noise_level.sigma_at_scale(image, scale)`` of each image of x (N, C, H, W) float32."""
    if scale == 1:
        flat = _diagonal_details(g, x, p)
    else:
        ends, spatial = g.const([INT64_MAX, INT64_MAX], f"{p}ends"), g.const([2, 3], f"{p}axes")
        steps = g.const([scale, scale], f"{p}shuffle")
        subs = [g.op("Slice", [x, g.const([dy, dx], f"{p}phase"), ends, spatial, steps], p)
                for dy in range(scale) for dx in range(scale)]
        flat = g.op("Concat", [_diagonal_details(g, sub, p) for sub in subs], p, axis=2)
    two = g.const(2, f"{p}two")
    coefficients = _side(g, flat, 2, p)
    some = g.op("Greater", [coefficients, g.const(0, f"{p}zero")], p)

    measured = g.branch()
    one = g.const(1, f"{p}one")
    stride = measured.op("Max", [measured.op("Div", [coefficients, g.const(noise_level.MAX_SAMPLES, f"{p}max")], p),
                                 one], p)
    kept = measured.op("Slice", [flat, g.const([0], f"{p}start"), g.const([INT64_MAX], f"{p}end"),
                                 g.const([2], f"{p}axis"), measured.op("Unsqueeze", [stride, g.const([0], p)], p)], p)
    count = measured.op("Div", [measured.op("Sub", [measured.op("Add", [coefficients, stride], p), one], p), stride], p)
    k = measured.op("Add", [measured.op("Div", [measured.op("Sub", [count, one], p), two], p), one], p)
    smallest = measured.op("TopK", [measured.op("Abs", [kept], p), measured.op("Unsqueeze", [k, g.const([0], p)], p)],
                           p, outputs=2, axis=-1, largest=0, sorted=1)[0]
    median = measured.op("Slice", [smallest, g.const([-1], f"{p}start"), g.const([INT64_MAX], f"{p}end"),
                                   g.const([2], f"{p}axis")], p)  # (N, C, 1)
    per_channel = measured.op("Mul", [median, g.const(noise_level.MAD_TO_SIGMA, f"{p}mad", np.float32)], p)
    channels = measured.op("Cast", [_side(measured, x, 1, p)], p, to=TensorProto.FLOAT)
    mean = measured.op("Div", [measured.op("ReduceSum", [per_channel, g.const([1, 2], f"{p}axes")], p, keepdims=0),
                               channels], p)
    sigma = measured.op("Mul", [measured.op("Cast", [mean], p, to=TensorProto.DOUBLE),
                                g.const(255.0, f"{p}scale", np.float64)], p)

    unmeasurable = g.branch()
    batch = unmeasurable.op("Unsqueeze", [_side(unmeasurable, x, 0, p), g.const([0], p)], p)
    zero = helper.make_tensor("value", TensorProto.DOUBLE, [1], [0.0])
    zeros = unmeasurable.op("ConstantOfShape", [batch], p, value=zero)
    return g.op("If", [some], p, then_branch=measured.graph(f"{p}measured", [sigma]),
                else_branch=unmeasurable.graph(f"{p}too_small", [zeros]))


def _pad_to_multiple(g: GraphBuilder, x: str, multiple: int) -> tuple[str, str]:
    """(x padded at the bottom and right to multiples of ``multiple``, the int64 [H, W] of x).

    Reflection when both pads are smaller than their sides, else replication (ONNX ``edge``): the
    choice of ``n2n_core.inference.infer``, made by an ``If``."""
    p = "pad."
    h, w = _side(g, x, 2, p), _side(g, x, 3, p)
    mult = g.const(multiple, f"{p}multiple")
    ph, pw = (g.op("Mod", [g.op("Sub", [mult, g.op("Mod", [side, mult], p)], p), mult], p) for side in (h, w))
    pads = g.op("Concat", [g.const([0] * 6, f"{p}zeros"), _vector(g, [ph, pw], p)], p, axis=0)
    reflectable = g.op("And", [g.op("Less", [ph, h], p), g.op("Less", [pw, w], p)], p)
    branches = {}
    for mode in ("reflect", "edge"):
        b = g.branch()
        branches[mode] = b.graph(f"pad_{mode}", [b.op("Pad", [x, pads], p, mode=mode)])
    padded = g.op("If", [reflectable], p, then_branch=branches["reflect"], else_branch=branches["edge"])
    return padded, _vector(g, [h, w], p)


def _whole_image_pass(g: GraphBuilder, module: Module, x: str, multiple: int, path: str) -> str:
    """clamp(crop(module(pad(x))), 0, 1): a pass of ``n2n_core.denoise`` over a whole image."""
    if multiple > 1:
        padded, size = _pad_to_multiple(g, x, multiple)
        y = convert(g, module, padded, path)
        y = g.op("Slice", [y, g.const([0, 0], "crop.start"), size, g.const([2, 3], "crop.axes")], "crop.")
    else:
        y = convert(g, module, x, path)
    return g.op("Clip", [y, g.const(0.0, "clamp.low", np.float32), g.const(1.0, "clamp.high", np.float32)], "clamp.")


def _whole_image(g: GraphBuilder, model: Module, x: str) -> str:
    """What ``n2n_core.denoise`` computes (strength 1): a ``NoiseAdaptive`` decides on the unpadded image, and
    each of its passes is a whole-image pass of its body; any other model is one whole-image pass."""
    multiple = size_multiple(model)
    if type(model) is NoiseAdaptive:
        return _noise_adaptive(g, model, x, "",
                               lambda builder, z: _whole_image_pass(builder, model.body, z, multiple, "body."))
    return _whole_image_pass(g, model, x, multiple, "")


def _channels(model: Module) -> tuple[int | str, int | str, bool]:
    """(input channels, output channels, whether the output keeps the input's height and width), from a
    pass over one zero image of the size multiple; ("channels", "channels", True) for a model without
    convolutions, whose input channels nothing fixes."""
    first = next((m for m in model.modules() if isinstance(m, (Conv2d, TransposeConv2d))), None)
    if first is None:
        return "channels", "channels", True
    side = size_multiple(model)
    probe = torch.zeros(1, first.in_channels, side, side, dtype=first.weight.dtype,  # type: ignore[union-attr]
                        device=first.weight.device)  # type: ignore[union-attr]
    out = model(probe)
    return first.in_channels, int(out.shape[1]), tuple(out.shape[2:]) == (side, side)


# -- the model --------------------------------------------------------------------------------------------------


def build_onnx(model: Module, opset: int = DEFAULT_OPSET, metadata: dict[str, Any] | None = None,
               whole_image: bool = True) -> onnx.ModelProto:
    """The ONNX model of ``model`` (see the module's docstring), checked by ``onnx.checker``.

    ``metadata``: the model card (JSON-able), stored as ``n2n_card``. ``whole_image``: the whole-image form
    (any size, padded, cropped, clamped) or the network alone. ValueError for an opset outside
    MIN_OPSET..the installed onnx's latest, or a layer that cannot be exported (naming it).
    """
    latest = onnx.defs.onnx_opset_version()
    if isinstance(opset, bool) or not isinstance(opset, int) or not MIN_OPSET <= opset <= latest:
        raise ValueError(f"export: opset must be an integer from {MIN_OPSET} to {latest}, got {opset!r}")
    if not isinstance(model, Module):
        raise ValueError(f"export: expected an n2n_core Module, got {type(model).__name__}")
    for m in model.modules():  # before size_multiple: a layer without a converter is named as such
        _converter(m)
    cin, cout, same_size = _channels(model)
    g = GraphBuilder(opset=opset)
    output = _whole_image(g, model, INPUT_NAME) if whole_image else convert(g, model, INPUT_NAME)
    g.nodes.append(helper.make_node("Identity", [output], [OUTPUT_NAME], name=OUTPUT_NAME))
    height, width = ("height", "width") if whole_image or same_size else ("out_height", "out_width")
    graph = helper.make_graph(
        g.nodes, "n2n",
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, ["batch", cin, "height", "width"])],
        [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, ["batch", cout, height, width])],
        g.initializers,
    )
    opsets = [helper.make_opsetid("", opset)]
    proto = helper.make_model(graph, opset_imports=opsets, producer_name="n2n",
                              producer_version=_version(), ir_version=helper.find_min_ir_version_for(opsets))
    multiple = size_multiple(model)
    form = (f"whole image: any height and width, padded at the bottom and right to multiples of {multiple} "
            "(reflection), cropped back and clamped to [0, 1], as n2n_core.denoise computes it"
            if whole_image else
            f"network: height and width must be multiples of {multiple}; the output is not clamped")
    proto.doc_string = f"n2n denoiser. Input 'input': float32 (N, C, H, W) in [0, 1]. {form}."
    props = {ARCH_KEY: json.dumps(model.config()), "n2n_size_multiple": str(multiple), "n2n_graph": form}
    if metadata:
        props[CARD_KEY] = json.dumps(metadata)
    helper.set_model_props(proto, props)
    onnx.checker.check_model(proto, full_check=True)  # with type and shape inference
    return proto


def export_onnx(model: Module, path_or_file: str | os.PathLike[str] | IO[bytes], opset: int = DEFAULT_OPSET,
                metadata: dict[str, Any] | None = None, whole_image: bool = True) -> onnx.ModelProto:
    """Write ``build_onnx(model, opset, metadata, whole_image)`` to a path (atomically) or a binary file;
    return the model."""
    proto = build_onnx(model, opset, metadata, whole_image)
    data = proto.SerializeToString()
    if isinstance(path_or_file, (str, os.PathLike)):
        atomic_write_bytes(Path(path_or_file), data)
    else:
        path_or_file.write(data)
    return proto


def to_onnx_bytes(model: Module, opset: int = DEFAULT_OPSET, metadata: dict[str, Any] | None = None,
                  whole_image: bool = True) -> bytes:
    """The serialized ONNX model (``build_onnx``), e.g. for a download."""
    buffer = io.BytesIO()
    export_onnx(model, buffer, opset, metadata, whole_image)
    return buffer.getvalue()


def _version() -> str:
    from n2n_core import __version__

    return __version__
