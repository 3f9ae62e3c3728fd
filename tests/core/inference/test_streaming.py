"""Row streams: a network pushed band by band gives its whole-image forward pass, holding only its lag."""

import pytest
import torch

from n2n_core import models
from n2n_core.nn.layers import SelfEnsemble
from n2n_core.models import size_multiple
from n2n_core.inference.streaming import row_stream, state_per_column, streamable


def push_in_bands(model, x, heights, piece_pixels=None):
    """Push x (N, C, H, W) through a fresh row stream in bands of the given heights (cycled)."""
    stream, outputs, top, k = row_stream(model, piece_pixels=piece_pixels), [], 0, 0
    while top < x.shape[2]:
        bottom = min(x.shape[2], top + heights[k % len(heights)])
        rows = stream.push(x[:, :, top:bottom], last=bottom == x.shape[2])
        if rows is not None:
            outputs.append(rows)
        top, k = bottom, k + 1
    return torch.cat(outputs, dim=2)


@pytest.mark.parametrize("name", ["tiny", "fast", "unet-s", "unet-m", "unet-l", "n2n-unet"])
def test_bands_of_any_height_give_the_whole_forward_pass(name):
    torch.manual_seed(0)
    model = models.build(name).to(dtype=torch.float64)
    mult = size_multiple(model)
    x = torch.rand(2, 3, 5 * mult, 2 * mult, dtype=torch.float64)
    whole = model(x)
    for heights in ([1] if mult <= 8 else [5], [3, 7], [mult], [2 * mult + 5], [5 * mult]):
        streamed = push_in_bands(model, x, heights)
        assert streamed.shape == whole.shape
        torch.testing.assert_close(streamed, whole, atol=1e-12, rtol=0)
    pieces = push_in_bands(model, x, [2 * mult], piece_pixels=x.shape[3] * 3)  # layers see 3 rows at most
    torch.testing.assert_close(pieces, whole, atol=1e-12, rtol=0)


def test_float32_bands_match_the_whole_pass_to_float_rounding():
    torch.manual_seed(1)
    model = models.build("unet-s")
    x = torch.rand(1, 3, 96, 80)
    torch.testing.assert_close(push_in_bands(model, x, [5, 16]), model(x), atol=1e-6, rtol=0)


def test_what_a_stream_holds_does_not_grow_with_the_image_height():
    model = models.build("fast")
    mult = size_multiple(model)

    def most_held(height):
        stream, most = row_stream(model), 0
        for top in range(0, height, mult):
            stream.push(torch.zeros(1, 3, mult, 64), last=top + mult >= height)
            most = max(most, stream_held(stream))
        return most

    def stream_held(stream):
        return stream.held()

    assert 0 < most_held(40 * mult) == most_held(80 * mult)
    assert state_per_column(model) > 0


def test_layers_without_a_row_form_are_refused_by_name():
    assert not streamable(models.build("seed"))  # transposed convolutions
    assert not streamable(SelfEnsemble(models.build("tiny"), 4))
    with pytest.raises(ValueError, match="TransposeConv2d"):
        row_stream(models.build("seed"))
    assert streamable(models.build("unet-m"))
