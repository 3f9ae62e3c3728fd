"""The checks of Module's entry points, for every public layer: dy's shape, empty batches, requires_grad."""

import re

import pytest
import torch

import n2n_core.nn.layers
from n2n_core import (
    MSE,
    Cast,
    Concat,
    Conv2d,
    Identity,
    LeakyReLU,
    MaxPool2d,
    Module,
    NearestUpsampling,
    NoiseAdaptive,
    ReLU,
    Residual,
    SelfEnsemble,
    Sequential,
    Sigmoid,
    TransposeConv2d,
)


def every_layer() -> list[Module]:
    """One instance of each public layer type (containers with parameters inside), for (2, 3, 6, 6) inputs."""
    torch.manual_seed(0)
    return [
        Conv2d(3, 3, 3, padding=1), TransposeConv2d(3, 3, 3, stride=2, padding=1, output_padding=1), ReLU(),
        LeakyReLU(0.1), Sigmoid(), Identity(), MaxPool2d(2), NearestUpsampling(2),
        Sequential(Conv2d(3, 4, 3, padding=1), ReLU(), Conv2d(4, 3, 1)), Concat(Identity(), Conv2d(3, 2, 1)),
        Residual(Sequential(Conv2d(3, 3, 3, padding=1), LeakyReLU(0.1))),
        SelfEnsemble(Sequential(Conv2d(3, 3, 3, padding=1), LeakyReLU(0.1)), transforms=8),
        NoiseAdaptive(Sequential(Conv2d(3, 3, 3, padding=1), LeakyReLU(0.1)), threshold=25, passes=2),
        Cast(Sequential(Conv2d(3, 3, 3, padding=1), LeakyReLU(0.1)).to(dtype=torch.float64), "float64"),
    ]


LAYERS = every_layer()
IDS = [type(m).__name__ for m in LAYERS]


def test_every_public_layer_is_covered():
    """The framework's layers and the product's own NoiseAdaptive (n2n_core.inference.noise_adaptive)."""
    assert set(IDS) == set(n2n_core.nn.layers.__all__) | {"NoiseAdaptive"}


# -- 13: the vjp checks dy's shape ------------------------------------------------------------


def _name_pattern(m: Module) -> str:
    return re.escape(type(m).__name__ if m.children() else repr(m))


@pytest.mark.parametrize("layer", LAYERS, ids=IDS)
@pytest.mark.parametrize("bad", [(1, 3, 7, 7), (2, 3, 6), (2, 3, 6, 6, 1), "transposed"])
def test_vjp_rejects_a_dy_of_another_shape(layer, bad):
    x = torch.randn(2, 3, 6, 6)
    y, vjp = layer.forward_and_vjp(x)
    shape = tuple(y.shape)
    if bad == "transposed":  # same number of values, other shape
        bad = (shape[0], shape[1], shape[3] + 1, shape[2] - 1) if shape[2] > 1 else shape[::-1]
    assert tuple(bad) != shape
    message = rf"{_name_pattern(layer)}\.vjp: .*{re.escape(str(shape))}.*got {re.escape(str(tuple(bad)))}"
    with pytest.raises(ValueError, match=message):
        vjp(torch.randn(*bad))
    with pytest.raises(ValueError, match=message):
        vjp(torch.randn(*bad), False)
    dx, _, _ = vjp(torch.randn(shape))  # the right shape still works afterwards
    assert dx.shape == x.shape


@pytest.mark.parametrize("layer", [ReLU(), LeakyReLU(0.2), Sigmoid()], ids=["ReLU", "LeakyReLU", "Sigmoid"])
def test_inplace_vjp_rejects_a_dy_of_another_shape(layer):
    y, vjp = layer.forward_and_vjp_inplace(torch.randn(2, 3, 6, 6))
    with pytest.raises(ValueError, match=r"\.vjp: dy must have the output's shape \(2, 3, 6, 6\), got \(1, 3, 7, 7\)"):
        vjp(torch.randn(1, 3, 7, 7))


def test_vjp_of_an_unbatched_conv_wants_an_unbatched_dy():
    m = Conv2d(3, 2, 3)
    y, vjp = m.forward_and_vjp(torch.randn(3, 6, 6))
    assert y.shape == (2, 4, 4)
    with pytest.raises(ValueError, match=r"got \(1, 2, 4, 4\)"):
        vjp(torch.randn(1, 2, 4, 4))
    assert vjp(torch.randn(2, 4, 4))[0].shape == (3, 6, 6)


def test_vjp_rejects_what_is_not_a_tensor():
    _, vjp = ReLU().forward_and_vjp(torch.randn(2, 3))
    with pytest.raises(ValueError, match=r"ReLU\(\)\.vjp: dy must have the output's shape \(2, 3\), got list"):
        vjp([[0.0] * 3] * 2)


def test_a_bad_dy_inside_a_container_names_the_container():
    model = Sequential(Conv2d(3, 3, 3), ReLU())
    _, vjp = model.forward_and_vjp(torch.randn(2, 3, 6, 6))
    with pytest.raises(ValueError, match=r"^Sequential\.vjp: .*\(2, 3, 4, 4\), got \(2, 3, 6, 6\)"):
        vjp(torch.randn(2, 3, 6, 6))


def test_training_form_rejects_a_loss_gradient_of_another_shape():
    model = Sequential(Conv2d(3, 3, 3), ReLU())
    with pytest.raises(ValueError, match=r"Sequential\.vjp: .*\(2, 3, 4, 4\), got \(2, 3\)"):
        model.forward_and_backward(torch.randn(2, 3, 6, 6), lambda y: torch.zeros(2, 3))


# -- 15: empty batches ------------------------------------------------------------------------


@pytest.mark.parametrize("layer", LAYERS, ids=IDS)
def test_forward_and_vjp_rejects_an_empty_batch(layer):
    empty = torch.randn(0, 3, 6, 6)
    message = rf"^{_name_pattern(layer)}\.forward_and_vjp: empty input of shape \(0, 3, 6, 6\)"
    with pytest.raises(ValueError, match=message):
        layer.forward_and_vjp(empty)
    with pytest.raises(ValueError, match=message):
        layer.forward_and_backward(empty, lambda y: MSE().vjp(y, torch.zeros_like(y)))


@pytest.mark.parametrize("layer", LAYERS, ids=IDS)
def test_forward_accepts_an_empty_batch_like_torch(layer):
    full = layer(torch.randn(2, 3, 6, 6))
    assert layer(torch.randn(0, 3, 6, 6)).shape == (0, *full.shape[1:])


def test_an_empty_batch_leaves_the_stored_gradients_alone():
    model = Sequential(Conv2d(3, 3, 3), ReLU())
    x, t = torch.randn(2, 3, 6, 6), torch.randn(2, 3, 4, 4)
    model.forward_and_backward(x, lambda y: MSE().vjp(y, t))
    before = model[0].d_weight.clone()
    with pytest.raises(ValueError, match=r"^Sequential\.forward_and_\w+: empty input of shape \(0, 3, 6, 6\); "
                                         r"a training pass needs at least one sample"):
        model.forward_and_backward(x[:0], lambda y: MSE().vjp(y, t[:0]))
    assert torch.equal(model[0].d_weight, before)


# -- 17: inputs with requires_grad --------------------------------------------------------------


@pytest.mark.parametrize("grad_mode", [False, True])
@pytest.mark.parametrize("layer", LAYERS, ids=IDS)
def test_inputs_with_requires_grad_are_taken_as_plain_data(layer, grad_mode):
    torch.manual_seed(1)
    x = torch.randn(2, 3, 6, 6)
    y_ref, vjp_ref = layer.forward_and_vjp(x.clone())
    dy = torch.randn_like(y_ref)
    dx_ref = vjp_ref(dy.clone())[0]
    with torch.set_grad_enabled(grad_mode):
        leaf = x.clone().requires_grad_(True)
        y = layer(leaf)
        y2, vjp = layer.forward_and_vjp(leaf)
        dx = vjp(dy.clone().requires_grad_(True))[0]
    for out, ref in ((y, y_ref), (y2, y_ref), (dx, dx_ref)):
        assert not out.requires_grad
        assert torch.equal(out, ref)
    assert leaf.grad is None and torch.equal(leaf.detach(), x)


@pytest.mark.parametrize("grad_mode", [False, True])
def test_training_with_requires_grad_inputs_and_targets(grad_mode):
    torch.manual_seed(0)
    model = Sequential(Conv2d(3, 4, 3, padding=1), ReLU(), Conv2d(4, 3, 3, padding=1))
    x, t = torch.randn(2, 3, 6, 6), torch.randn(2, 3, 6, 6)
    model.forward_and_backward(x, lambda y: MSE().vjp(y, t))
    expected = [m.d_weight.clone() for m in (model[0], model[2])]
    with torch.set_grad_enabled(grad_mode):
        xg, tg = x.clone().requires_grad_(True), t.clone().requires_grad_(True)
        y = model.forward_and_backward(xg, lambda y: MSE().vjp(y, tg))
        loss = MSE()(y, tg)
    assert not y.requires_grad and not loss.requires_grad
    for m, g in zip((model[0], model[2]), expected):
        assert not m.d_weight.requires_grad
        assert torch.equal(m.d_weight, g)
