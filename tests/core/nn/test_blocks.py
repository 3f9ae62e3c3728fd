"""Skip connections (Concat, Residual) and MaxPool2d against autograd; the U-Net end to end."""

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st

from n2n_core import MSE, Concat, Conv2d, Identity, LeakyReLU, MaxPool2d, Residual, Sequential
from n2n_core import models

from tests.core.mirror import torch_mirror
from tests.core.reference import assert_close, autograd_vjp


@given(st.integers(1, 3), st.integers(1, 4), st.integers(1, 9), st.integers(1, 9),
       st.one_of(st.integers(1, 3), st.tuples(st.integers(1, 3), st.integers(1, 3))),
       st.sampled_from([torch.float64, torch.float32]))
def test_maxpool_matches_autograd(n, c, h, w, k, dtype):
    kk = (k, k) if isinstance(k, int) else k
    if h < kk[0] or w < kk[1]:
        with pytest.raises(ValueError, match="MaxPool2d"):
            MaxPool2d(k)(torch.randn(n, c, h, w, dtype=dtype))
        return
    x = torch.randn(n, c, h, w, dtype=dtype)
    m = MaxPool2d(k)
    y, vjp = m.forward_and_vjp(x)
    dy = torch.randn_like(y)
    y_ref, (dx_ref,) = autograd_vjp(lambda x: F.max_pool2d(x, kk), [x], dy)
    assert_close(y, y_ref, dtype)
    assert_close(vjp(dy)[0], dx_ref, dtype)


@given(st.integers(1, 2), st.integers(1, 3), st.integers(2, 6), st.sampled_from([torch.float64, torch.float32]))
def test_concat_and_residual_match_autograd(n, c, size, dtype):
    torch.manual_seed(0)
    a, b = Conv2d(c, 2, 3, padding=1), Conv2d(c, 3, 1)
    net = Sequential(Concat(Identity(), a, Sequential(b, LeakyReLU(0.1))), Residual(Conv2d(c + 5, c + 5, 3, padding=1)))
    net.to(dtype=dtype)
    inner = net[1].body
    x = torch.randn(n, c, size, size + 1, dtype=dtype)

    def ref(x, wa, ba, wb, bb, wr, br):
        h = torch.cat([x, F.conv2d(x, wa, ba, padding=1), F.leaky_relu(F.conv2d(x, wb, bb), 0.1)], dim=1)
        return h + F.conv2d(h, wr, br, padding=1)

    params = [a.weight, a.bias, b.weight, b.bias, inner.weight, inner.bias]
    y, vjp = net.forward_and_vjp(x)
    dy = torch.randn_like(y)
    y_ref, grads = autograd_vjp(ref, [x, *params], dy)
    assert_close(y, y_ref, dtype)
    dx, _, _ = vjp(dy)
    assert_close(dx, grads[0], dtype, scale=10)
    for m, (gw, gb) in zip((a, b, inner), zip(grads[1::2], grads[2::2])):
        assert_close(m.d_weight, gw, dtype, scale=dy.numel())
        assert_close(m.d_bias, gb, dtype, scale=dy.numel())


def test_block_errors_name_the_block():
    with pytest.raises(ValueError, match="Concat"):
        Concat(Identity(), MaxPool2d(2))(torch.randn(1, 1, 4, 4))
    with pytest.raises(ValueError, match="Residual"):
        Residual(Conv2d(1, 2, 1))(torch.randn(1, 1, 4, 4))


@pytest.mark.parametrize("arch", ["fast", "unet-s", "n2n-unet"])
def test_unet_gradients_match_autograd(arch):
    torch.manual_seed(0)
    model = models.build(arch).to(dtype=torch.float64)
    ref = torch_mirror(model)
    size = models.size_multiple(model)
    x = torch.rand(2, 3, size, 2 * size, dtype=torch.float64)
    t = torch.rand_like(x)
    y = model.forward_and_backward(x, lambda y: MSE().vjp(y, t))
    with torch.enable_grad():
        y_ref = ref(x)
        F.mse_loss(y_ref, t).backward()
    torch.testing.assert_close(y, y_ref.detach(), rtol=1e-10, atol=1e-12)
    ours = [getattr(m, "d_" + a) for _, m in model.named_modules() for a in ("weight", "bias")
            if getattr(m, a) is not None]
    assert len(ours) == len(list(ref.parameters())) > 0
    for g, p in zip(ours, ref.parameters()):
        torch.testing.assert_close(g, p.grad, rtol=1e-8, atol=1e-12)
