"""The random neighbour sub-sampler of Neighbor2Neighbor (Huang et al., CVPR 2021): a gather and its vjp, a scatter.

An image (B, C, H, W) is cut into cells of ``cell`` x ``cell`` pixels (H and W multiples of ``cell``).
In every cell two pixels are drawn: the first uniformly among the cell's cell^2 pixels, the second
``cell / 2`` pixels away from it along a row or a column (chosen at random), wrapping inside the cell:

    first  = (a, b),   a, b ~ U{0 .. cell-1}
    second = ((a + cell/2) mod cell, b)   or   (a, (b + cell/2) mod cell)

With ``cell = 2`` the two are 4-neighbours, as in the paper; a wider cell puts them further apart,
which breaks noise that is correlated between adjacent pixels (demosaicing, JPEG). Each choice of
pixels gives one image of size (B, C, H/cell, W/cell): ``subsample(x, first)`` and ``subsample(x, second)``.

An index is a long tensor (B, H/cell, W/cell) of flat positions ``row * W + column`` into H x W, the
same for every channel. ``subsample`` is y[b, c, i, j] = x[b, c, index[b, i, j]]; its vjp scatters dy
back to those positions (every position is drawn at most once, so nothing is summed over).
"""

from __future__ import annotations

import torch
from torch import Tensor


def check_cell(cell: int, height: int, width: int, where: str = "neighbour sub-sampler") -> None:
    """ValueError unless ``cell`` is even and >= 2 and divides both sides."""
    if cell < 2 or cell % 2:
        raise ValueError(f"{where}: the cell must be an even number of pixels >= 2, got {cell}")
    if height % cell or width % cell:
        raise ValueError(f"{where}: an image of {height}x{width} pixels does not split into cells of {cell}x{cell}")


def neighbour_indices(batch: int, height: int, width: int, cell: int,
                      generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """(first, second): two long tensors (batch, height/cell, width/cell) of flat positions into height x width.

    Drawn on the CPU from ``generator``, so that they depend on its seed alone (a resumed or a
    multi-process run draws the same ones); move them to the image's device to use them.
    """
    check_cell(cell, height, width)
    rows, cols = height // cell, width // cell
    shape = (batch, rows, cols)
    first_row = torch.randint(cell, shape, generator=generator)
    first_col = torch.randint(cell, shape, generator=generator)
    along_column = torch.randint(2, shape, generator=generator).bool()  # True: the partner is in another row
    half = cell // 2
    second_row = torch.where(along_column, (first_row + half) % cell, first_row)
    second_col = torch.where(along_column, first_col, (first_col + half) % cell)
    cell_top = (torch.arange(rows) * cell).view(1, rows, 1)
    cell_left = (torch.arange(cols) * cell).view(1, 1, cols)
    first = (cell_top + first_row) * width + cell_left + first_col
    second = (cell_top + second_row) * width + cell_left + second_col
    return first, second


def _expanded(index: Tensor, channels: int) -> Tensor:
    """(B, h, w) -> (B, C, h*w), the same positions for every channel."""
    batch = index.shape[0]
    return index.reshape(batch, 1, -1).expand(batch, channels, index[0].numel())


def _check_index(x_shape: tuple[int, ...], index: Tensor, what: str) -> None:
    if index.dim() != 3 or index.shape[0] != x_shape[0]:
        raise ValueError(f"subsample: {what} of shape {tuple(x_shape)} needs an index (B, h, w) with B = {x_shape[0]}, "
                         f"got {tuple(index.shape)}")


def subsample(x: Tensor, index: Tensor) -> Tensor:
    """y[b, c, i, j] = x[b, c, index[b, i, j]]: (B, C, H, W) -> (B, C, h, w), a gather."""
    if x.dim() != 4:
        raise ValueError(f"subsample: expected an image batch (B, C, H, W), got shape {tuple(x.shape)}")
    _check_index(tuple(x.shape), index, "an input")
    batch, channels = x.shape[:2]
    index = index.to(x.device)
    flat = x.reshape(batch, channels, -1)
    if int(index.max()) >= flat.shape[2] or int(index.min()) < 0:
        raise ValueError(f"subsample: index positions fall outside an input of shape {tuple(x.shape)}")
    picked = torch.gather(flat, 2, _expanded(index, channels))
    return picked.view(batch, channels, *index.shape[1:])


def subsample_vjp(dy: Tensor, index: Tensor, height: int, width: int) -> Tensor:
    """dx = the vjp of ``subsample``: dy (B, C, h, w) scattered to ``index`` in zeros (B, C, height, width)."""
    if dy.dim() != 4 or tuple(dy.shape[2:]) != tuple(index.shape[1:]):
        raise ValueError(f"subsample vjp: dy of shape {tuple(dy.shape)} does not match an index of shape "
                         f"{tuple(index.shape)}")
    _check_index(tuple(dy.shape), index, "dy")
    batch, channels = dy.shape[:2]
    dx = dy.new_zeros(batch, channels, height * width)
    dx.scatter_add_(2, _expanded(index.to(dy.device), channels), dy.reshape(batch, channels, -1))
    return dx.view(batch, channels, height, width)
