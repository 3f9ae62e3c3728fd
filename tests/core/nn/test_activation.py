"""ReLU, LeakyReLU, Sigmoid against torch autograd."""

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st

from n2n_core import LeakyReLU, ReLU, Sigmoid

from tests.core.reference import assert_close, autograd_vjp

shapes = st.lists(st.integers(1, 5), min_size=1, max_size=4)
dtypes = st.sampled_from([torch.float64, torch.float32])


@given(shapes, dtypes, st.floats(-2, 2), st.sampled_from(["relu", "leaky", "sigmoid"]))
def test_activation_matches_autograd(shape, dtype, slope, kind):
    layer, ref = {
        "relu": (ReLU(), F.relu),
        "leaky": (LeakyReLU(slope), lambda x: F.leaky_relu(x, slope)),
        "sigmoid": (Sigmoid(), torch.sigmoid),
    }[kind]
    x = torch.randn(*shape, dtype=dtype) * 3
    x.view(-1)[0] = 0.0  # the kink: both sides must take the same branch
    before = x.clone()
    y, vjp = layer.forward_and_vjp(x)
    dy = torch.randn_like(y)
    y_ref, (dx_ref,) = autograd_vjp(ref, [x], dy)
    assert_close(y, y_ref, dtype)
    assert_close(layer(x), y_ref, dtype)
    dx, dw, db = vjp(dy)
    assert_close(dx, dx_ref, dtype)
    assert dw.numel() == 0 and db.numel() == 0
    assert layer.weight is None and layer.bias is None
    assert torch.equal(x, before)


@pytest.mark.parametrize("layer", [ReLU(), LeakyReLU(), Sigmoid()])
def test_activation_rejects_integer_input(layer):
    with pytest.raises(ValueError, match=type(layer).__name__):
        layer(torch.ones(2, 2, dtype=torch.int64))
