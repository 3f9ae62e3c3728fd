"""NearestUpsampling against F.interpolate(mode="nearest") and autograd."""

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st

from n2n_core import NearestUpsampling

from tests.core.reference import assert_close, autograd_vjp


@given(
    st.integers(1, 3), st.integers(1, 4), st.integers(1, 7), st.integers(1, 7),
    st.one_of(st.integers(1, 4), st.tuples(st.integers(1, 4), st.integers(1, 4))),
    st.sampled_from([torch.float64, torch.float32]), st.booleans(),
)
def test_upsampling_matches_autograd(n, c, h, w, scale, dtype, channels_last):
    m = NearestUpsampling(scale)
    x = torch.randn(n, c, h, w, dtype=dtype)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    s = (scale, scale) if isinstance(scale, int) else scale
    ref = lambda x: F.interpolate(x, scale_factor=s, mode="nearest")  # noqa: E731
    y, vjp = m.forward_and_vjp(x)
    dy = torch.randn_like(y)
    y_ref, (dx_ref,) = autograd_vjp(ref, [x], dy)
    assert_close(y, y_ref, dtype)
    dx, dw, db = vjp(dy)
    assert_close(dx, dx_ref, dtype, scale=16)
    assert m.weight is None and m.bias is None and dw.numel() == 0


@pytest.mark.parametrize("bad", [0, 1.5, (2, 0), "2"])
def test_bad_scale_factor(bad):
    with pytest.raises(ValueError, match="NearestUpsampling"):
        NearestUpsampling(bad)


def test_bad_rank():
    with pytest.raises(ValueError, match=r"NearestUpsampling.*\(3, 4\)"):
        NearestUpsampling(2)(torch.randn(3, 4))
