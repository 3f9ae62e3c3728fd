"""MSE against torch's mse_loss(reduction="mean")."""

import re

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st

from n2n_core import MSE

from tests.core.reference import assert_close, autograd_vjp


@given(st.lists(st.integers(1, 5), min_size=1, max_size=4), st.sampled_from([torch.float64, torch.float32]))
def test_mse_matches_autograd(shape, dtype):
    y, t = torch.randn(*shape, dtype=dtype), torch.randn(*shape, dtype=dtype)
    loss_ref, (dy_ref, _) = autograd_vjp(lambda a, b: F.mse_loss(a, b), [y, t], torch.tensor(1.0, dtype=dtype))
    loss = MSE()(y, t)
    assert loss.dim() == 0
    assert_close(loss, loss_ref, dtype)
    assert_close(MSE().vjp(y, t), dy_ref, dtype)


def test_mse_shape_mismatch():
    with pytest.raises(ValueError, match=r"MSE.*\(2, 3\).*\(3, 2\)"):
        MSE()(torch.zeros(2, 3), torch.zeros(3, 2))


@pytest.mark.parametrize("shape", [(0, 3, 4, 4), (0,), (2, 0, 3)])
def test_mse_rejects_an_empty_batch(shape):
    y = torch.zeros(shape)
    message = re.escape(f"MSE: empty prediction and target of shape {shape}")
    with pytest.raises(ValueError, match=message):
        MSE()(y, y.clone())
    with pytest.raises(ValueError, match=message):
        MSE().vjp(y, y.clone())


@pytest.mark.parametrize("grad_mode", [False, True])
def test_mse_takes_tensors_with_requires_grad_as_data(grad_mode):
    y, t = torch.randn(2, 3), torch.randn(2, 3)
    with torch.set_grad_enabled(grad_mode):
        yg, tg = y.clone().requires_grad_(True), t.clone().requires_grad_(True)
        loss, dy = MSE()(yg, tg), MSE().vjp(yg, tg)
    assert not loss.requires_grad and not dy.requires_grad
    assert torch.equal(loss, MSE()(y, t)) and torch.equal(dy, MSE().vjp(y, t))
