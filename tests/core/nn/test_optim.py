"""Parity: the seed network trained with n2n_core and with torch.nn + torch.optim on the same batches."""

import pytest
import torch

from n2n_core import MSE, SGD, Adam, Concat, Conv2d, Identity, LeakyReLU, ReLU, Residual, Sequential, Sigmoid
from n2n_core.nn.optim import parameter_slots

from tests.core.mirror import seed_n2n, seed_torch_from, torch_mirror

OPTIMIZERS = {
    "sgd_momentum": (lambda m: SGD(m, lr=0.5, momentum=0.9),
                     lambda p: torch.optim.SGD(p, lr=0.5, momentum=0.9)),
    "sgd_nesterov_wd": (lambda m: SGD(m, lr=0.3, momentum=0.8, nesterov=True, weight_decay=1e-3),
                        lambda p: torch.optim.SGD(p, lr=0.3, momentum=0.8, nesterov=True, weight_decay=1e-3)),
    "adam": (lambda m: Adam(m, lr=2e-3), lambda p: torch.optim.Adam(p, lr=2e-3)),
    "adam_wd": (lambda m: Adam(m, lr=1e-3, betas=(0.8, 0.99), eps=1e-6, weight_decay=1e-2),
                lambda p: torch.optim.Adam(p, lr=1e-3, betas=(0.8, 0.99), eps=1e-6, weight_decay=1e-2)),
}


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_seed_network_training_parity_float64(name):
    torch.manual_seed(0)
    model = seed_n2n(16).to(dtype=torch.float64)
    ref = seed_torch_from(model)
    make_ours, make_ref = OPTIMIZERS[name]
    opt, opt_ref = make_ours(model), make_ref(ref.parameters())
    loss_fn = MSE()
    gen = torch.Generator().manual_seed(1)
    for step in range(12):
        x = torch.rand(8, 3, 32, 32, dtype=torch.float64, generator=gen)
        t = torch.rand(8, 3, 32, 32, dtype=torch.float64, generator=gen)
        y = model.forward_and_backward(x, lambda y: loss_fn.vjp(y, t))
        loss = loss_fn(y, t)
        opt.step()

        with torch.enable_grad():
            opt_ref.zero_grad()
            loss_ref = torch.nn.functional.mse_loss(ref(x), t)
            loss_ref.backward()
            opt_ref.step()
        torch.testing.assert_close(loss, loss_ref.detach(), rtol=1e-9, atol=0, msg=f"step {step}")
    for (k, ours), theirs in zip(model.state_dict().items(), ref.parameters()):
        torch.testing.assert_close(ours, theirs.detach(), rtol=1e-9, atol=1e-12, msg=k)


def test_optimizer_state_dict_resumes_identically():
    torch.manual_seed(0)
    a = seed_n2n(4).to(dtype=torch.float64)
    b = seed_n2n(4).to(dtype=torch.float64)
    b.load_state_dict(a.state_dict())
    oa = Adam(a, lr=1e-2)
    x, t = torch.rand(2, 3, 16, 16, dtype=torch.float64), torch.rand(2, 3, 16, 16, dtype=torch.float64)
    for _ in range(3):
        a.forward_and_backward(x, lambda y: MSE().vjp(y, t))
        oa.step()
    b.load_state_dict(a.state_dict())
    ob = Adam(b, lr=1e-2)
    ob.load_state_dict(oa.state_dict())
    for m, o in ((a, oa), (b, ob)):
        m.forward_and_backward(x, lambda y: MSE().vjp(y, t))
        o.step()
    for (k, pa), pb in zip(a.state_dict().items(), b.parameters()):
        assert torch.equal(pa, pb), k


def test_optimizer_rejects_bad_arguments():
    m = seed_n2n(4)
    with pytest.raises(ValueError, match=r"^SGD: lr must be >= 0, got -1$"):
        SGD(m, lr=-1)
    with pytest.raises(ValueError, match=r"^SGD: nesterov momentum requires a momentum > 0$"):
        SGD(m, lr=0.1, nesterov=True)
    with pytest.raises(ValueError, match=r"^Adam: invalid betas \(1\.0, 0\.9\)"):
        Adam(m, betas=(1.0, 0.9))


# -- shared modules and tied weights: gradients add up, each tensor is stepped once ------------


def _used_twice_in_a_row():
    c = Conv2d(2, 2, 1)
    return Sequential(c, ReLU(), c)


def _shared_across_nested_containers():
    c = Conv2d(2, 2, 3, padding=1)
    return Sequential(Concat(c, Identity()), Conv2d(4, 2, 1), LeakyReLU(0.1), c,
                      Residual(Sequential(c, Sigmoid())), Sequential(Sequential(c)))


def _tied_weights_of_two_modules():
    a, b = Conv2d(2, 2, 3, padding=1), Conv2d(2, 2, 3, padding=1)
    b.weight = a.weight  # distinct biases, one weight
    return Sequential(a, LeakyReLU(0.1), b, ReLU(), Conv2d(2, 2, 1))


SHARED_MODELS = {"twice_in_a_row": _used_twice_in_a_row, "nested_containers": _shared_across_nested_containers,
                 "tied_weights": _tied_weights_of_two_modules}


def _mirror_with_ties(model):
    """torch.nn mirror sharing modules like ``model`` and tying the weights it ties; [(ours, theirs)] leaves."""
    memo = {}
    ref = torch_mirror(model, memo)
    pairs = [(m, t) for m, t in memo.values() if m.weight is not None]
    first_holder = {}
    for m, t in pairs:
        if id(m.weight) in first_holder:
            t.weight = first_holder[id(m.weight)].weight
        else:
            first_holder[id(m.weight)] = t
    return ref, pairs


@pytest.mark.parametrize("name", ["sgd_momentum", "sgd_nesterov_wd", "adam", "adam_wd"])
@pytest.mark.parametrize("model_name", list(SHARED_MODELS))
def test_shared_modules_and_tied_weights_train_like_torch(model_name, name):
    torch.manual_seed(0)
    model = SHARED_MODELS[model_name]()
    distinct = len({id(p) for p in model.state_dict().values()})
    model.to(dtype=torch.float64)
    assert len({id(p) for p in model.state_dict().values()}) == distinct, "to() must keep shared tensors shared"
    ref, pairs = _mirror_with_ties(model)
    assert len(list(ref.parameters())) == len(model.parameters()) == len(parameter_slots(model))
    make_ours, make_ref = OPTIMIZERS[name]
    opt, opt_ref = make_ours(model), make_ref(ref.parameters())
    gen = torch.Generator().manual_seed(1)
    for step in range(5):
        x = torch.randn(3, 2, 5, 5, dtype=torch.float64, generator=gen)
        t = torch.randn(3, 2, 5, 5, dtype=torch.float64, generator=gen)
        y = model.forward_and_backward(x, lambda y: MSE().vjp(y, t))
        with torch.enable_grad():
            opt_ref.zero_grad()
            y_ref = ref(x)
            torch.nn.functional.mse_loss(y_ref, t).backward()
        torch.testing.assert_close(y, y_ref.detach(), rtol=1e-10, atol=1e-12, msg=f"output, step {step}")
        for _, holders in parameter_slots(model):  # summed over the holders, as torch accumulates it
            m, attr = holders[0]
            theirs = getattr(dict(pairs)[m], attr).grad
            ours = sum(getattr(h, "d_" + a) for h, a in holders)
            torch.testing.assert_close(ours, theirs, rtol=1e-10, atol=1e-12, msg=f"gradient, step {step}")
        opt.step()
        opt_ref.step()
        for m, t_mod in pairs:
            torch.testing.assert_close(m.weight, t_mod.weight.detach(), rtol=1e-10, atol=1e-12, msg=f"step {step}")
            torch.testing.assert_close(m.bias, t_mod.bias.detach(), rtol=1e-10, atol=1e-12, msg=f"step {step}")


def test_a_shared_module_is_one_slot_and_its_uses_add_up():
    model = _used_twice_in_a_row().to(dtype=torch.float64)
    c = model[0]
    assert [(name, len(holders)) for name, holders in parameter_slots(model)] == [("0.weight", 1), ("0.bias", 1)]
    assert list(model.state_dict()) == ["0.weight", "0.bias", "2.weight", "2.bias"]
    assert model.parameters() == [c.weight, c.bias] and model.num_parameters() == 6
    x, t = torch.randn(2, 2, 3, 3, dtype=torch.float64), torch.randn(2, 2, 3, 3, dtype=torch.float64)
    model.forward_and_backward(x, lambda y: MSE().vjp(y, t))
    first = c.d_weight.clone()
    model.forward_and_backward(x, lambda y: MSE().vjp(y, t))  # a new pass replaces the sum, never adds to it
    assert torch.equal(c.d_weight, first)
    w0 = c.weight.clone()
    SGD(model, lr=0.1).step()
    torch.testing.assert_close(c.weight, w0 - 0.1 * first, rtol=0, atol=1e-15)


def test_tied_weights_stay_tied_through_to_and_are_summed():
    model = _tied_weights_of_two_modules()
    a, b = model[0], model[2]
    model.to(dtype=torch.float64)
    assert a.weight is b.weight and a.weight.dtype == torch.float64
    [(name, holders)] = [s for s in parameter_slots(model) if s[0] == "0.weight"]
    assert holders == [(a, "weight"), (b, "weight")]
    assert "2.weight" not in [n for n, _ in parameter_slots(model)]


# -- Adam: per-parameter step counts -------------------------------------------------------------


def test_adam_steps_before_any_gradient_do_not_advance_the_bias_correction():
    torch.manual_seed(0)
    model = seed_n2n(4).to(dtype=torch.float64)
    ref = seed_torch_from(model)
    opt, opt_ref = Adam(model, lr=1e-2), torch.optim.Adam(ref.parameters(), lr=1e-2)
    for _ in range(3):  # no gradient anywhere yet: nothing happens, as in torch
        opt.step()
        opt_ref.step()
    assert opt.state == {} and opt_ref.state_dict()["state"] == {}
    gen = torch.Generator().manual_seed(1)
    for step in range(3):
        x = torch.rand(2, 3, 16, 16, dtype=torch.float64, generator=gen)
        t = torch.rand(2, 3, 16, 16, dtype=torch.float64, generator=gen)
        model.forward_and_backward(x, lambda y: MSE().vjp(y, t))
        opt.step()
        with torch.enable_grad():
            opt_ref.zero_grad()
            torch.nn.functional.mse_loss(ref(x), t).backward()
        opt_ref.step()
        for (k, ours), theirs in zip(model.state_dict().items(), ref.parameters()):
            torch.testing.assert_close(ours, theirs.detach(), rtol=1e-9, atol=1e-12, msg=f"{k}, step {step}")
    assert all(int(st["step"]) == 3 for st in opt.state.values())


@pytest.mark.parametrize("weight_decay", [0.0, 1e-2])
def test_adam_matches_torch_when_some_parameters_miss_gradients_on_some_steps(weight_decay):
    torch.manual_seed(0)
    model = Sequential(Conv2d(2, 3, 3, padding=1), ReLU(), Conv2d(3, 2, 3, padding=1)).to(dtype=torch.float64)
    ref = seed_torch_from(model)
    opt = Adam(model, lr=1e-2, weight_decay=weight_decay)
    opt_ref = torch.optim.Adam(ref.parameters(), lr=1e-2, weight_decay=weight_decay)
    # which (module index, attribute) pairs have no gradient at each step
    missing = [set(), {(0, "weight"), (0, "bias")}, {(2, "bias")}, set(), {(0, "weight"), (0, "bias")},
               {(0, "weight"), (0, "bias")}, set()]
    gen = torch.Generator().manual_seed(1)
    for step, gone in enumerate(missing):
        x = torch.randn(2, 2, 6, 6, dtype=torch.float64, generator=gen)
        t = torch.randn(2, 2, 6, 6, dtype=torch.float64, generator=gen)
        model.forward_and_backward(x, lambda y: MSE().vjp(y, t))
        with torch.enable_grad():
            opt_ref.zero_grad()
            torch.nn.functional.mse_loss(ref(x), t).backward()
        for i, attr in gone:
            setattr(model[i], "d_" + attr, None)
            getattr(ref[i], attr).grad = None
        opt.step()
        opt_ref.step()
        for (k, ours), theirs in zip(model.state_dict().items(), ref.parameters()):
            torch.testing.assert_close(ours, theirs.detach(), rtol=1e-9, atol=1e-12, msg=f"{k}, step {step}")
    assert int(opt.state["0.weight"]["step"]) == 4 and int(opt.state["2.bias"]["step"]) == 6
    assert int(opt.state["2.weight"]["step"]) == 7


def test_adam_resumes_state_saved_before_per_parameter_steps():
    torch.manual_seed(0)
    a = seed_n2n(4).to(dtype=torch.float64)
    b = seed_n2n(4).to(dtype=torch.float64)
    x, t = torch.rand(2, 3, 16, 16, dtype=torch.float64), torch.rand(2, 3, 16, 16, dtype=torch.float64)
    oa = Adam(a, lr=1e-2)
    for _ in range(3):
        a.forward_and_backward(x, lambda y: MSE().vjp(y, t))
        oa.step()
    old = oa.state_dict()
    old["buffers"] = {k: v for k, v in old["buffers"].items() if not k.endswith(".step")}  # the old format
    b.load_state_dict(a.state_dict())
    ob = Adam(b, lr=1e-2)
    ob.load_state_dict(old)
    for m, o in ((a, oa), (b, ob)):
        m.forward_and_backward(x, lambda y: MSE().vjp(y, t))
        o.step()
    for (k, pa), pb in zip(a.state_dict().items(), b.parameters()):
        assert torch.equal(pa, pb), k
