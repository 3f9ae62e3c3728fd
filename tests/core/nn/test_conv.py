"""Conv2d and TransposeConv2d against torch's convolutions and autograd, over every configuration."""

import contextlib

import pytest
import torch
import torch.nn.functional as F
from hypothesis import assume, given
from hypothesis import strategies as st

from n2n_core import Conv2d, TransposeConv2d
import n2n_core.nn.functional.conv as conv_fn
from n2n_core.nn.functional.conv import conv2d_forward, conv2d_vjp, conv_transpose2d_forward

from tests.core.reference import assert_close, autograd_vjp

DTYPES = st.sampled_from([torch.float64, torch.float32])
CHUNKS = st.sampled_from([5, 40, conv_fn.CHUNK_ELEMENTS])  # tiny blocks exercise the blocked GEMM paths


@contextlib.contextmanager
def chunk_size(n: int):
    old, conv_fn.CHUNK_ELEMENTS = conv_fn.CHUNK_ELEMENTS, n
    try:
        yield
    finally:
        conv_fn.CHUNK_ELEMENTS = old


pairs = lambda lo, hi: st.tuples(st.integers(lo, hi), st.integers(lo, hi))  # noqa: E731


@st.composite
def conv_case(draw):
    k, s, p, d = draw(pairs(1, 5)), draw(pairs(1, 3)), draw(pairs(0, 3)), draw(pairs(1, 3))
    lo = [max(1, d[i] * (k[i] - 1) + 1 - 2 * p[i]) for i in range(2)]
    h, w = draw(st.integers(lo[0], lo[0] + 6)), draw(st.integers(lo[1], lo[1] + 6))
    return dict(k=k, s=s, p=p, d=d, hw=(h, w), n=draw(st.integers(1, 3)), cin=draw(st.integers(1, 4)),
                cout=draw(st.integers(1, 4)), bias=draw(st.booleans()), dtype=draw(DTYPES), chunk=draw(CHUNKS))


@st.composite
def tconv_case(draw):
    k, s, p, d = draw(pairs(1, 5)), draw(pairs(1, 3)), draw(pairs(0, 3)), draw(pairs(1, 3))
    op = tuple(draw(st.integers(0, max(s[i], d[i]) - 1)) for i in range(2))
    h, w = draw(st.integers(1, 6)), draw(st.integers(1, 6))
    out = [(n - 1) * s[i] - 2 * p[i] + d[i] * (k[i] - 1) + op[i] + 1 for i, n in enumerate((h, w))]
    assume(min(out) >= 1)
    return dict(k=k, s=s, p=p, d=d, op=op, hw=(h, w), n=draw(st.integers(1, 3)), cin=draw(st.integers(1, 4)),
                cout=draw(st.integers(1, 4)), bias=draw(st.booleans()), dtype=draw(DTYPES),
                method=draw(st.sampled_from(["auto", "gather", "scatter"])), chunk=draw(CHUNKS))


@given(conv_case())
def test_conv2d_matches_autograd(c):
    with chunk_size(c["chunk"]):
        _check_conv2d(c)


def _check_conv2d(c):
    m = Conv2d(c["cin"], c["cout"], c["k"], c["s"], c["p"], c["d"], bias=c["bias"]).to(dtype=c["dtype"])
    x = torch.randn(c["n"], c["cin"], *c["hw"], dtype=c["dtype"])
    ref = lambda x, w, b: F.conv2d(x, w, b, c["s"], c["p"], c["d"])  # noqa: E731
    y_ref = ref(x, m.weight, m.bias)
    y, vjp = m.forward_and_vjp(x)
    assert_close(y, y_ref, c["dtype"])
    assert_close(m(x), y_ref, c["dtype"])
    dy = torch.randn_like(y_ref)
    _, (dx_ref, dw_ref, db_ref) = autograd_vjp(ref, [x, m.weight, m.bias], dy)
    for method in ("gather", "scatter"):
        _, cols = conv2d_forward(x, m.weight, m.bias, m.stride, m.padding, m.dilation)
        dx, _, _ = conv2d_vjp(dy, cols, m.weight, c["hw"], m.stride, m.padding, m.dilation, True, method)
        assert_close(dx, dx_ref, c["dtype"])
    dx, dw, db = vjp(dy)
    assert_close(dx, dx_ref, c["dtype"])
    assert_close(dw, dw_ref, c["dtype"], scale=dy.numel())
    if c["bias"]:
        assert_close(db, db_ref, c["dtype"], scale=dy.numel())
    else:
        assert db.numel() == 0


@given(tconv_case())
def test_transpose_conv2d_matches_autograd(c):
    with chunk_size(c["chunk"]):
        _check_transpose_conv2d(c)


def _check_transpose_conv2d(c):
    m = TransposeConv2d(c["cin"], c["cout"], c["k"], c["s"], c["p"], c["op"], c["d"], bias=c["bias"])
    m.to(dtype=c["dtype"])
    x = torch.randn(c["n"], c["cin"], *c["hw"], dtype=c["dtype"])
    ref = lambda x, w, b: F.conv_transpose2d(x, w, b, c["s"], c["p"], c["op"], 1, c["d"])  # noqa: E731
    y_ref = ref(x, m.weight, m.bias)
    y = conv_transpose2d_forward(x, m.weight, m.bias, m.stride, m.padding, m.output_padding, m.dilation, c["method"])
    assert_close(y, y_ref, c["dtype"])
    y, vjp = m.forward_and_vjp(x)
    assert_close(y, y_ref, c["dtype"])
    dy = torch.randn_like(y_ref)
    _, (dx_ref, dw_ref, db_ref) = autograd_vjp(ref, [x, m.weight, m.bias], dy)
    dx, dw, db = vjp(dy)
    assert_close(dx, dx_ref, c["dtype"], scale=dy.numel())
    assert_close(dw, dw_ref, c["dtype"], scale=dy.numel())
    if c["bias"]:
        assert_close(db, db_ref, c["dtype"], scale=dy.numel())
    else:
        assert db.numel() == 0


def test_uncovered_inputs_get_exactly_zero_gradient():
    m = Conv2d(2, 3, 1, stride=3).to(dtype=torch.float64)
    x = torch.randn(2, 2, 8, 7, dtype=torch.float64)
    y, vjp = m.forward_and_vjp(x)
    dx = vjp(torch.randn_like(y))[0]
    covered = torch.zeros(8, 7, dtype=torch.bool)
    covered[::3, ::3] = True
    assert (dx[:, :, ~covered] == 0).all()
    assert (dx[:, :, covered] != 0).all()


def test_forward_does_not_modify_input():
    x = torch.randn(2, 3, 9, 9)
    before = x.clone()
    for m in (Conv2d(3, 4, 3, 2, 1), TransposeConv2d(3, 4, 3, 2, 1, 1)):
        y, vjp = m.forward_and_vjp(x)
        vjp(torch.randn_like(y))
        m(x)
    assert torch.equal(x, before)


def test_default_init_matches_torch_nn():
    torch.manual_seed(0)
    a = Conv2d(3, 8, 3)
    b = TransposeConv2d(8, 4, (3, 2))
    torch.manual_seed(0)
    ra = torch.nn.Conv2d(3, 8, 3)
    rb = torch.nn.ConvTranspose2d(8, 4, (3, 2))
    for mine, theirs in ((a, ra), (b, rb)):
        assert torch.equal(mine.weight, theirs.weight.detach())
        assert torch.equal(mine.bias, theirs.bias.detach())


def test_unbatched_input_like_torch():
    m = Conv2d(3, 4, 3, padding=1)
    x = torch.randn(3, 6, 5)
    torch.testing.assert_close(m(x), F.conv2d(x, m.weight, m.bias, padding=1))


@pytest.mark.parametrize(
    "make, shape, match",
    [
        (lambda: Conv2d(3, 4, 3), (2, 5, 8, 8), "3 input channels"),
        (lambda: Conv2d(3, 4, 3), (8, 8), "4-d input"),
        (lambda: Conv2d(3, 4, 3), (1, 1, 3, 8, 8), "4-d input"),
        (lambda: Conv2d(3, 4, 5), (1, 3, 3, 8), "empty output"),
        (lambda: Conv2d(3, 4, 3, dilation=3), (1, 3, 6, 6), "empty output"),
        (lambda: TransposeConv2d(3, 4, 1, padding=2), (1, 3, 2, 2), "empty output"),
        (lambda: TransposeConv2d(3, 4, 3), (1, 4, 2, 2), "3 input channels"),
    ],
)
def test_invalid_inputs_raise_value_error_naming_layer_and_shape(make, shape, match):
    m = make()
    with pytest.raises(ValueError, match=match) as e:
        m(torch.randn(*shape))
    assert type(m).__name__ in str(e.value) and str(tuple(shape)) in str(e.value)


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: Conv2d(3, 4, 0), r"^Conv2d: kernel_size must be >= 1, got 0$"),
        (lambda: Conv2d(0, 4, 3), r"^Conv2d: in_channels must be a positive int, got 0$"),
        (lambda: Conv2d(3, 4, 3, stride=0), r"^Conv2d: stride must be >= 1, got 0$"),
        (lambda: Conv2d(3, 4, 3, padding=-1), r"^Conv2d: padding must be >= 0, got -1$"),
        (lambda: Conv2d(3, 4, (3, 3, 3)),
         r"^Conv2d: kernel_size must be an int or a pair of ints, got \(3, 3, 3\)$"),
        (lambda: Conv2d(3, 4, 3, dilation=0), r"^Conv2d: dilation must be >= 1, got 0$"),
        (lambda: TransposeConv2d(3, 4, 3, stride=2, output_padding=2),
         r"^TransposeConv2d: output_padding \(2, 2\) must be smaller than max\(stride, dilation\) .*"
         r"\(stride \(2, 2\), dilation \(1, 1\)\)$"),
        (lambda: TransposeConv2d(3, 4, 3, stride=1, dilation=1, output_padding=1),
         r"^TransposeConv2d: output_padding \(1, 1\) must be smaller than max\(stride, dilation\) .*"
         r"\(stride \(1, 1\), dilation \(1, 1\)\)$"),
    ],
)
def test_invalid_configurations_raise_value_error(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_output_padding_may_reach_stride_when_dilation_is_larger():
    m = TransposeConv2d(2, 2, 3, stride=2, output_padding=2, dilation=3).to(dtype=torch.float64)
    x = torch.randn(1, 2, 4, 4, dtype=torch.float64)
    ref = F.conv_transpose2d(x, m.weight, m.bias, 2, 0, 2, 1, 3)
    torch.testing.assert_close(m(x), ref)


def test_dtype_mismatch_is_a_value_error():
    with pytest.raises(ValueError, match="float64"):
        Conv2d(3, 4, 3)(torch.randn(1, 3, 8, 8, dtype=torch.float64))


# -- phase GEMMs: stride-1 convolutions over views of the padded input ---------------------------------


@pytest.mark.parametrize("kernel, channels, out_channels, width", [(3, 5, 4, 13), (3, 8, 3, 9), (5, 3, 2, 17), (1, 4, 4, 7)])
def test_phase_gemms_equal_the_column_gemm_in_float64(kernel, channels, out_channels, width):
    from n2n_core.nn.functional.conv import _conv_gemm, _weight_matrix
    from n2n_core.nn.functional.conv_phases import conv2d_phases, is_phase_buffer, phase_buffer

    torch.manual_seed(0)
    height, n = 11, 2
    padded = torch.randn(n, height, width, channels, dtype=torch.float64)
    weight = torch.randn(out_channels, channels, kernel, kernel + 1 if kernel > 1 else 1, dtype=torch.float64)
    bias = torch.randn(out_channels, dtype=torch.float64)
    kw = weight.shape[3]
    buffer = phase_buffer(padded, n, height, width, channels, kw)
    assert is_phase_buffer(buffer, kw) and buffer.shape[2] % kw == 0
    buffer[:, :, :width] = padded
    buffer[:, :, width:] = float("nan")  # the columns past the input feed only discarded outputs
    out = (height - kernel + 1, width - kw + 1)
    phases = conv2d_phases(buffer, weight, bias, out[0])[:, :, : out[1]]
    columns = _conv_gemm(padded, _weight_matrix(weight).t(), bias, (kernel, kw), (1, 1), (1, 1), out)
    torch.testing.assert_close(phases, columns, atol=1e-12, rtol=0)


def test_a_buffer_without_slack_is_refused():
    from n2n_core.nn.functional.conv_phases import conv2d_phases

    plain = torch.zeros(1, 6, 9, 2)
    with pytest.raises(ValueError, match=r"conv2d_phases: buffer of shape \(1, 6, 9, 2\) is not a phase_buffer"):
        conv2d_phases(plain, torch.zeros(3, 2, 3, 3), None, 4)
