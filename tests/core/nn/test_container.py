"""Sequential: the container contract, nesting, and exact gradients against autograd."""

import pytest
import torch
import torch.nn.functional as F

from n2n_core import MSE, Conv2d, LeakyReLU, ReLU, Sequential, Sigmoid

from tests.core.mirror import seed_n2n, seed_torch_from


def test_sequential_is_iterable_and_indexable():
    a, b, c = Conv2d(3, 4, 3), ReLU(), Sigmoid()
    seq = Sequential(a, b, c)
    assert list(seq) == [a, b, c] and len(seq) == 3 and seq[1] is b and seq[-1] is c
    assert seq.children() == [a, b, c]
    assert isinstance(seq[:2], Sequential) and list(seq[:2]) == [a, b]
    assert seq.weight is None and seq.bias is None


def test_state_dict_keys_and_roundtrip():
    seq = Sequential(Conv2d(3, 4, 3), ReLU(), Sequential(Conv2d(4, 2, 1, bias=False), Sigmoid()))
    sd = seq.state_dict()
    assert list(sd) == ["0.weight", "0.bias", "2.0.weight"]
    other = Sequential(Conv2d(3, 4, 3), ReLU(), Sequential(Conv2d(4, 2, 1, bias=False), Sigmoid()))
    other.load_state_dict(sd)
    x = torch.randn(1, 3, 6, 6)
    assert torch.equal(other(x), seq(x))
    with pytest.raises(ValueError, match="missing"):
        other.load_state_dict({"0.weight": sd["0.weight"]})
    with pytest.raises(ValueError, match="shape"):
        other.load_state_dict({**sd, "0.bias": torch.zeros(5)})


def test_to_converts_children_in_place_and_returns_self():
    seq = Sequential(Conv2d(3, 4, 3), Sequential(Conv2d(4, 2, 1)))
    assert seq.to(dtype=torch.float64) is seq
    assert all(p.dtype == torch.float64 for p in seq.parameters())


def test_training_form_stores_exact_gradients_and_nesting_works():
    torch.manual_seed(0)
    model = Sequential(Conv2d(3, 5, 3, padding=1), LeakyReLU(0.1), Sequential(Conv2d(5, 4, 3, stride=2), ReLU()),
                       Conv2d(4, 3, 1)).to(dtype=torch.float64)
    x = torch.randn(2, 3, 9, 8, dtype=torch.float64)
    t = torch.randn(2, 3, 4, 3, dtype=torch.float64)
    y = model.forward_and_backward(x, lambda y: MSE().vjp(y, t))
    assert torch.equal(y, model(x))

    params = [p.clone().requires_grad_(True) for p in model.parameters()]
    with torch.enable_grad():
        h = F.leaky_relu(F.conv2d(x, params[0], params[1], padding=1), 0.1)
        h = F.relu(F.conv2d(h, params[2], params[3], stride=2))
        loss = F.mse_loss(F.conv2d(h, params[4], params[5]), t)
        grads = torch.autograd.grad(loss, params)
    leaves = [model[0], model[2][0], model[3]]
    ours = [g for m in leaves for g in (m.d_weight, m.d_bias)]
    for a, b in zip(ours, grads):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)

    # module form: (y, vjp), vjp returns (dx, empty, empty) and stores the children's grads
    y2, vjp = model.forward_and_vjp(x)
    dx, dw, db = vjp(MSE().vjp(y2, t))
    assert dx.shape == x.shape and dw.numel() == 0 and db.numel() == 0
    torch.testing.assert_close(model[0].d_weight, grads[0], rtol=1e-10, atol=1e-12)


def test_seed_network_forward_matches_torch_nn():
    model = seed_n2n(8).to(dtype=torch.float64)
    ref = seed_torch_from(model)
    x = torch.rand(2, 3, 32, 32, dtype=torch.float64)
    torch.testing.assert_close(model(x), ref(x).detach(), rtol=1e-12, atol=1e-12)


def test_a_module_used_twice_gets_the_sum_of_its_gradients_in_module_form():
    torch.manual_seed(0)
    c = Conv2d(2, 2, 1).to(dtype=torch.float64)
    model = Sequential(c, ReLU(), c)
    x, dy = torch.randn(2, 2, 4, 4, dtype=torch.float64), torch.randn(2, 2, 4, 4, dtype=torch.float64)
    y, vjp = model.forward_and_vjp(x)
    dx, _, _ = vjp(dy)
    w, b = c.weight.clone().requires_grad_(True), c.bias.clone().requires_grad_(True)
    xr = x.clone().requires_grad_(True)
    with torch.enable_grad():
        y_ref = F.conv2d(F.relu(F.conv2d(xr, w, b)), w, b)
        grads = torch.autograd.grad(y_ref, [xr, w, b], dy)
    torch.testing.assert_close(y, y_ref.detach(), rtol=1e-12, atol=1e-12)
    for ours, theirs in zip((dx, c.d_weight, c.d_bias), grads):
        torch.testing.assert_close(ours, theirs, rtol=1e-10, atol=1e-12)


def test_self_ensemble_matches_autograd_and_is_equivariant():
    """SelfEnsemble against the same average built from torch.nn layers and autograd (float64)."""
    from n2n_core import SelfEnsemble

    from tests.core.mirror import torch_mirror

    torch.manual_seed(0)
    body = Sequential(Conv2d(3, 4, 3, padding=1), LeakyReLU(0.1), Conv2d(4, 3, 3, padding=1)).to(dtype=torch.float64)
    for count in (2, 4, 8):
        model = SelfEnsemble(body, count)
        ref = torch_mirror(body)
        x = torch.rand(2, 3, 6, 10, dtype=torch.float64)
        dy = torch.rand(2, 3, 6, 10, dtype=torch.float64)
        y, vjp = model.forward_and_vjp(x)
        dx, _, _ = vjp(dy)
        with torch.enable_grad():
            xr = x.clone().requires_grad_(True)
            outs = []
            for k, mirrored in ([(0, False), (0, True)] if count == 2 else
                                [(k, m) for m in (False, True) for k in range(4)][:count]):
                t = torch.rot90(xr.flip(-1) if mirrored else xr, k, dims=(-2, -1))
                back = torch.rot90(ref(t), -k, dims=(-2, -1))
                outs.append(back.flip(-1) if mirrored else back)
            yr = torch.stack(outs).mean(0)
            yr.backward(dy)
        torch.testing.assert_close(y, yr.detach(), rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(model(x), y, rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(dx, xr.grad, rtol=1e-10, atol=1e-12)
        for (name, _), p_ref in zip(body.named_parameters(), ref.parameters()):
            ours = dict(body.named_modules())[name.rsplit(".", 1)[0] + "."]
            grad = ours.d_weight if name.endswith("weight") else ours.d_bias
            torch.testing.assert_close(grad, p_ref.grad, rtol=1e-10, atol=1e-12, msg=name)
        if count == 8:  # the average over the whole group commutes with every symmetry
            torch.testing.assert_close(model(x.flip(-1)), y.flip(-1), rtol=1e-10, atol=1e-12)
