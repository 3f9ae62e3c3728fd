"""functional.pad: bit-identical to torch's F.pad for every mode the core uses, at odd sizes."""

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st

import n2n_core.nn.functional.conv as conv_fn
from n2n_core.nn.functional.pad import pad, pad_zeros
from n2n_core.inference.infer import _pad_to
from n2n_core.nn.layers.pool import maxpool2d_forward, maxpool2d_vjp

DTYPES = st.sampled_from([torch.float64, torch.float32])
widths = st.integers(0, 4)


@given(st.integers(1, 3), st.integers(1, 7), st.integers(1, 7), st.integers(1, 4),
       st.tuples(widths, widths, widths, widths), DTYPES)
def test_zero_padding_of_nhwc_equals_f_pad(n, h, w, c, pads, dtype):
    top, bottom, left, right = pads
    x = torch.randn(n, h, w, c, dtype=dtype)
    ours = pad_zeros(x, {1: (top, bottom), 2: (left, right)})
    assert torch.equal(ours, F.pad(x, (0, 0, left, right, top, bottom)))
    assert ours.is_contiguous()
    assert torch.equal(pad(x, {1: (top, bottom), 2: (left, right)}), ours)


@given(st.integers(1, 2), st.integers(1, 3), st.integers(1, 7), st.integers(1, 7), st.tuples(widths, widths, widths, widths))
def test_conv_input_padding_equals_f_pad_on_strided_views(n, c, h, w, pads):
    """The conv pads the NHWC view of an NCHW tensor (non-contiguous) and of a channels-last one."""
    x = torch.randn(n, c, h, w)
    for nchw in (x, x.contiguous(memory_format=torch.channels_last)):
        view = nchw.permute(0, 2, 3, 1)
        top, bottom, left, right = pads
        ours = conv_fn._pad_nhwc(view, top, bottom, left, right)
        assert torch.equal(ours, F.pad(view, (0, 0, left, right, top, bottom)))
        assert ours.is_contiguous()


@given(st.integers(1, 2), st.integers(1, 3), st.integers(2, 9), st.integers(2, 9), st.integers(1, 4), st.integers(1, 4))
def test_maxpool_vjp_padding_is_unchanged(n, c, h, w, kh, kw):
    """The vjp zero-pads the rows and columns the windows dropped; compare with F.pad's old result."""
    kh, kw = min(kh, h), min(kw, w)
    x = torch.randn(n, c, h, w, dtype=torch.float64)
    y, idx = maxpool2d_forward(x, (kh, kw))
    dy = torch.randn_like(y)
    dx = maxpool2d_vjp(dy, idx, (kh, kw), (h, w))
    ho, wo = h // kh, w // kw
    spread = dy.permute(0, 2, 3, 1).new_zeros((n, ho, wo, kh * kw, c)).scatter_(3, idx.unsqueeze(3),
                                                                                dy.permute(0, 2, 3, 1).unsqueeze(3))
    blocks = spread.view(n, ho, wo, kh, kw, c).permute(0, 1, 3, 2, 4, 5).reshape(n, ho * kh, wo * kw, c)
    expected = F.pad(blocks, (0, 0, 0, w - wo * kw, 0, h - ho * kh)).permute(0, 3, 1, 2)
    assert torch.equal(dx, expected)
    assert dx.stride() == expected.stride()


@given(st.integers(1, 9), st.integers(1, 9), widths, widths, widths, widths, st.sampled_from(["reflect", "replicate"]),
       DTYPES, st.sampled_from([3, 4]))
def test_reflect_and_replicate_equal_f_pad(h, w, top, bottom, left, right, mode, dtype, ndim):
    if mode == "reflect":
        top, bottom, left, right = min(top, h - 1), min(bottom, h - 1), min(left, w - 1), min(right, w - 1)
    x = torch.randn(*(2, 3, h, w)[4 - ndim :], dtype=dtype)
    ours = pad(x, {-2: (top, bottom), -1: (left, right)}, mode)
    assert torch.equal(ours, F.pad(x, (left, right, top, bottom), mode=mode))


@pytest.mark.parametrize("size", [(1, 1), (1, 5), (5, 1), (2, 3), (7, 5), (9, 16), (17, 9), (33, 31)])
@pytest.mark.parametrize("mult", [2, 4, 8, 16, 32])
def test_infer_pad_to_equals_its_former_f_pad(size, mult):
    h, w = size
    x = torch.rand(2, 3, h, w)
    ph, pw = (-h) % mult, (-w) % mult
    ours, hw = _pad_to(x, mult)
    assert hw == (h, w)
    if ph == pw == 0:
        assert ours is x
        return
    mode = "reflect" if ph < h and pw < w else "replicate"
    assert torch.equal(ours, F.pad(x, (0, pw, 0, ph), mode=mode))


def test_pad_without_widths_returns_its_input_for_edge_modes_and_a_copy_for_zeros():
    x = torch.randn(2, 3)
    assert pad(x, {0: (0, 0)}, "reflect") is x
    z = pad(x, {}, "zeros")
    assert torch.equal(z, x) and z.data_ptr() != x.data_ptr()


@pytest.mark.parametrize("widths, mode, message", [
    ({-1: (3, 0)}, "reflect", r"reflect widths \(3, 0\) must be smaller than size 3 of dimension -1 \(shape \(2, 3\)\)"),
    ({0: (-1, 0)}, "zeros", r"widths must be >= 0, got \(-1, 0\) for dimension 0 of shape \(2, 3\)"),
    ({2: (1, 1)}, "zeros", r"dimension 2 does not exist in a tensor of shape \(2, 3\)"),
    ({0: (1, 1)}, "circular", r"mode must be one of"),
])
def test_pad_rejects_bad_arguments(widths, mode, message):
    with pytest.raises(ValueError, match=message):
        pad(torch.zeros(2, 3), widths, mode)


def test_edge_padding_of_an_empty_dimension_is_rejected():
    with pytest.raises(ValueError, match=r"cannot replicate-pad the empty dimension 0 of shape \(0, 3\)"):
        pad(torch.zeros(0, 3), {0: (1, 1)}, "replicate")
