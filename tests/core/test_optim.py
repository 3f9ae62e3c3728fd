"""Parity: the seed network trained with n2n_core and with torch.nn + torch.optim on the same batches."""

import pytest
import torch

from n2n_core import MSE, SGD, Adam

from .mirror import seed_n2n, seed_torch_from

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
        y = model.forward_and_vjp(x, lambda y: loss_fn.vjp(y, t))
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
        a.forward_and_vjp(x, lambda y: MSE().vjp(y, t))
        oa.step()
    b.load_state_dict(a.state_dict())
    ob = Adam(b, lr=1e-2)
    ob.load_state_dict(oa.state_dict())
    for m, o in ((a, oa), (b, ob)):
        m.forward_and_vjp(x, lambda y: MSE().vjp(y, t))
        o.step()
    for (k, pa), pb in zip(a.state_dict().items(), b.parameters()):
        assert torch.equal(pa, pb), k


def test_optimizer_rejects_bad_arguments():
    m = seed_n2n(4)
    with pytest.raises(ValueError):
        SGD(m, lr=-1)
    with pytest.raises(ValueError):
        SGD(m, lr=0.1, nesterov=True)
    with pytest.raises(ValueError):
        Adam(m, betas=(1.0, 0.9))
