"""The layer protocol: each layer describes its reach, activations, dependency masks, size multiple and
row streaming itself (``Module.reach`` ...), and the planning functions only ask it."""

from __future__ import annotations

import warnings

import pytest
import torch

from n2n_core import models
from n2n_core.nn import layers
from n2n_core.nn.layers import Cast, Concat, Conv2d, Identity, LeakyReLU, MaxPool2d, NearestUpsampling, ReLU, Residual, SelfEnsemble, Sequential, Sigmoid, TransposeConv2d
from n2n_core.inference.noise_adaptive import NoiseAdaptive
from n2n_core.nn.loss import MSE
from n2n_core.nn.module import ROW_STREAMING_KINDS, Module, Pointwise
from n2n_core.analysis import activation_values_per_pixel, propagate, receptive_bound, receptive_radius
from n2n_core.inference.streaming import STREAMS, row_stream, state_per_column, streamable


class _Blur(Module):
    """A new spatial layer (a 3x3 box blur) that does not answer the layer protocol. Private name: not
    registered as a loadable layer type."""

    def forward(self, x):
        return torch.nn.functional.avg_pool2d(x, 3, stride=1, padding=1)


def _with_blur() -> Module:
    return Sequential(Conv2d(3, 3, 3, padding=1), ReLU(), _Blur(), Conv2d(3, 3, 3, padding=1))


# -- a layer that does not describe itself is refused, by name -------------------------------------


@pytest.mark.parametrize("ask", [
    receptive_radius, receptive_bound, activation_values_per_pixel, models.size_multiple,
    lambda m: propagate(m, torch.zeros((1, 8, 8), dtype=torch.bool)),
])
def test_a_layer_without_the_protocol_is_a_value_error_naming_it(ask):
    for model in (_Blur(), _with_blur(), Residual(_with_blur())):
        with pytest.raises(ValueError, match=r"_Blur does not describe its receptive reach"):
            ask(model)


def test_a_layer_without_the_protocol_has_no_row_stream():
    for model in (_Blur(), _with_blur(), Concat(Identity(), _with_blur())):
        with pytest.raises(ValueError, match=r"row_stream: _Blur has no row-by-row form"):
            row_stream(model)
        assert not streamable(model)


def test_every_declared_row_streaming_kind_has_a_stream():
    assert set(STREAMS) == set(ROW_STREAMING_KINDS)


def test_an_unknown_row_streaming_kind_is_a_value_error_naming_the_layer():
    class _Odd(Pointwise, Module):
        row_streaming = "diagonal"

        def forward(self, x):
            return x

    with pytest.raises(ValueError, match=r"row_stream: _Odd declares an unknown row_streaming kind 'diagonal'"):
        row_stream(Sequential(ReLU(), _Odd()))


# -- every shipped layer answers ------------------------------------------------------------------


def _one_of_each() -> dict[str, Module]:
    body = Sequential(Conv2d(3, 4, 3, padding=1), LeakyReLU(0.1), Conv2d(4, 3, 1))
    return {
        "Conv2d": Conv2d(3, 4, 3, stride=2, padding=1),
        "TransposeConv2d": TransposeConv2d(3, 4, 3, stride=2, padding=1, output_padding=1),
        "ReLU": ReLU(), "LeakyReLU": LeakyReLU(0.1), "Sigmoid": Sigmoid(), "Identity": Identity(),
        "NearestUpsampling": NearestUpsampling(2), "MaxPool2d": MaxPool2d(2),
        "Sequential": body, "Concat": Concat(Identity(), body), "Residual": Residual(body),
        "SelfEnsemble": SelfEnsemble(body, 8), "NoiseAdaptive": NoiseAdaptive(body, 25.0, 2),
        "Cast": Cast(Sequential(Conv2d(3, 3, 3, padding=1)).to(dtype=torch.bfloat16), "bfloat16"),
    }


def test_every_shipped_layer_class_answers_the_protocol():
    """The framework's layers and the product's own (NoiseAdaptive, in n2n_core.inference)."""
    instances = _one_of_each()
    assert set(instances) == set(layers.__all__) | {"NoiseAdaptive"}
    for name, m in instances.items():
        cls = NoiseAdaptive if name == "NoiseAdaptive" else getattr(layers, name)
        assert type(m) is cls
        for method in ("reach", "activation_values", "dependency_mask", "size_multiple"):
            assert getattr(cls, method) is not getattr(Module, method), f"{name}.{method} is Module's"
        assert "row_streaming" in {k for c in cls.__mro__ if c is not Module for k in vars(c)}, name
        assert cls.row_streaming is None or cls.row_streaming in ROW_STREAMING_KINDS
        r, scale = m.reach(1.0)
        assert r >= 0 and scale > 0
        values, scale, channels = m.activation_values(1.0, 3)
        assert values >= 0 and scale > 0 and channels >= 1
        mask = torch.zeros((1, 8, 8), dtype=torch.bool)
        mask[0, 4, 4] = True
        assert m.dependency_mask(mask).any()
        assert m.size_multiple() >= 1
        if cls.row_streaming is None:
            assert not streamable(m)
        else:
            assert streamable(m)


def test_the_elementwise_layers_declare_themselves_pointwise():
    for cls in (ReLU, LeakyReLU, Sigmoid, Identity):
        assert issubclass(cls, Pointwise) and cls.row_streaming == "pointwise"
        m = cls()
        mask = torch.rand(2, 5, 7) > 0.5
        assert m.reach(2.0) == (0.0, 2.0)
        assert m.activation_values(2.0, 5) == (0.0, 2.0, 5)
        assert torch.equal(m.dependency_mask(mask), mask) and m.size_multiple() == 1


def test_the_windowed_layers_answer_with_their_formulas():
    conv = Conv2d(3, 8, (3, 5), stride=(2, 3), padding=1, dilation=(2, 1))
    assert conv.reach(2.0) == (8.0, 6.0)  # max(2*2, 1*4) * 2, 2 * max(2, 3)
    assert conv.activation_values(1.0, 3) == (8 / 9, 3.0, 8)
    assert conv.size_multiple() == 6  # lcm(2, 3)
    t = TransposeConv2d(3, 4, 3, stride=2, padding=1, output_padding=1)
    assert t.reach(4.0) == (2 * 4.0 / 2 + 4.0, 2.0)
    assert t.activation_values(4.0, 3) == (1.0, 2.0, 4) and t.size_multiple() == 1
    pool = MaxPool2d((2, 4))
    assert pool.reach(1.0) == (3.0, 4.0) and pool.size_multiple() == 4
    assert pool.activation_values(1.0, 16) == (1.0, 4.0, 16)
    up = NearestUpsampling(2)
    assert up.reach(4.0) == (4.0, 2.0) and up.activation_values(2.0, 4) == (4.0, 1.0, 4)
    mask = torch.zeros((1, 2, 3), dtype=torch.bool)
    mask[0, 1, 2] = True
    assert up.dependency_mask(mask).nonzero().tolist() == [[0, 2, 4], [0, 2, 5], [0, 3, 4], [0, 3, 5]]


def test_only_the_in_place_activations_support_in_place():
    supported = {name for name in layers.__all__ if getattr(layers, name).supports_inplace}
    assert supported == {"ReLU", "LeakyReLU", "Sigmoid"}
    x = torch.randn(2, 3, 4, 4)
    assert torch.equal(Identity().forward_inplace(x), x)  # Module's default: the plain forward
    y = torch.randn(2, 3, 4, 4)
    assert ReLU().forward_inplace(y) is y


# -- the shipped architectures: the same answers as the type-switch implementation ---------------

# Measured with the former type-switch implementation (isinstance chains in receptive.py, streaming.py
# and models.size_multiple), before the layers described themselves:
#   name: (receptive_bound, receptive_radius, activation_values_per_pixel(3), (1), size_multiple,
#          streamable, state_per_column or None when not measured)
FORMER = {
    "seed": (18, 6, 33.0, 31.0, 4, False, None),
    "tiny": (19, 9, 71.0, 67.0, 2, True, 185.0),
    "fast": (49, 23, 192.5, 188.5, 4, True, 816.75),
    "unet-s": (109, 51, 314.5, 310.5, 8, True, None),  # state_per_column 2420.75 (slow to measure)
    "unet-m": (109, 51, 404.0, 400.0, 8, True, None),  # state_per_column 2890.75 (slow to measure)
    "unet-l": (109, 51, 572.5, 568.5, 8, True, None),
    "unet": (229, 107, 577.375, 573.375, 16, True, None),
    "n2n-unet": (347, 158, 568.03125, 564.03125, 32, True, None),
    "adaptive-fast": (98, 43, 195.5, 189.5, 4, False, None),
    "ensemble-tiny": (19, 9, 74.0, 68.0, 2, False, None),
    "cast-fast": (49, 23, 192.5, 188.5, 4, True, 786.75),
    "adaptive3-seed": (54, 14, 36.0, 32.0, 4, False, None),
}


def _build(name: str) -> Module:
    if name == "adaptive-fast":
        return NoiseAdaptive(models.build("fast"), 25.0, 2)
    if name == "ensemble-tiny":
        return SelfEnsemble(models.build("tiny"), 8)
    if name == "cast-fast":
        return Cast(models.build("fast"), "bfloat16")
    if name == "adaptive3-seed":
        return NoiseAdaptive(models.build("seed"), 25.0, 3)
    return models.build(name)


def test_every_architecture_is_covered():
    assert set(models.ARCHITECTURES) <= set(FORMER)


@pytest.mark.parametrize("name", sorted(FORMER))
def test_the_shipped_architectures_give_what_the_type_switches_gave(name):
    bound, radius, values3, values1, multiple, can_stream, state = FORMER[name]
    torch.manual_seed(0)
    model = _build(name)
    assert receptive_bound(model) == bound
    assert receptive_radius(model) == radius
    assert activation_values_per_pixel(model) == values3
    assert activation_values_per_pixel(model, 1) == values1
    assert models.size_multiple(model) == multiple == model.size_multiple()
    assert streamable(model) is can_stream
    if state is not None:
        assert state_per_column(model) == state


# -- forward_and_backward: the training pass; the two-argument forward_and_vjp is deprecated -----


def test_forward_and_backward_is_the_former_training_form_which_warns():
    torch.manual_seed(0)
    a = models.build("tiny")
    b = models.build("tiny")
    b.load_state_dict(a.state_dict())
    x, t = torch.rand(2, 3, 8, 8), torch.rand(2, 3, 8, 8)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ya = a.forward_and_backward(x, lambda y: MSE().vjp(y, t))
    with pytest.warns(DeprecationWarning, match=r"forward_and_vjp\(x, vjp_loss\) is deprecated; use forward_and_backward"):
        yb = b.forward_and_vjp(x, lambda y: MSE().vjp(y, t))
    assert torch.equal(ya, yb)
    for (name, pa), (_, pb) in zip(a.named_modules(), b.named_modules()):
        for attr in ("d_weight", "d_bias"):
            ga, gb = getattr(pa, attr), getattr(pb, attr)
            assert (ga is None and gb is None) or torch.equal(ga, gb), f"{name}{attr}"
    y, vjp = a.forward_and_vjp(x)  # the pure form: no warning, (y, vjp)
    assert torch.equal(y, ya) and callable(vjp)
