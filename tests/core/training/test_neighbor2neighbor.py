"""Neighbor2Neighbor: the neighbour sub-sampler (a gather) and its vjp (a scatter), the loss and its vjp,
one training step's gradients, single-photo data and the `n2n train --method neighbor2neighbor` flow.

Gradients are checked in float64 against central finite differences, and the whole step against torch's
autograd on the same network rebuilt in torch.nn (tests only)."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from n2n_core.cli import METHOD_CHOICES, main
from n2n_core.data.datasets import NoisyPhotos, neighbour_val, open_dataset
from n2n_core.nn.functional.neighbor import neighbour_indices, subsample, subsample_vjp
from n2n_core.nn.loss import Neighbor2NeighborLoss
from n2n_core.training.methods import METHODS, Neighbor2Neighbor, StepContext, make_method
from n2n_core.models import build
from n2n_core.data.noise import Gaussian
from n2n_core.training.train import TrainConfig, Trainer

from tests.core.mirror import torch_mirror


def _finite_difference_vjp(f, x: torch.Tensor, dy: torch.Tensor, eps: float = 1e-4) -> torch.Tensor:
    """<dy, df/dx_i> for every i, by central differences (float64)."""
    grad = torch.zeros_like(x)
    flat = x.view(-1)
    for i in range(flat.numel()):
        old = flat[i].item()
        flat[i] = old + eps
        plus = (f(x) * dy).sum()
        flat[i] = old - eps
        minus = (f(x) * dy).sum()
        flat[i] = old
        grad.view(-1)[i] = (plus - minus) / (2 * eps)
    return grad


@pytest.mark.parametrize("cell", [2, 4])
def test_the_two_pixels_of_a_cell_are_half_a_cell_apart_along_a_row_or_a_column(cell):
    first, second = neighbour_indices(40, 8, 12, cell, torch.Generator().manual_seed(0))
    assert first.shape == second.shape == (40, 8 // cell, 12 // cell)
    rows1, cols1, rows2, cols2 = first // 12, first % 12, second // 12, second % 12
    # both inside cell (i, j)
    cell_rows = torch.arange(8 // cell).view(1, -1, 1)
    cell_cols = torch.arange(12 // cell).view(1, 1, -1)
    for rows, cols in ((rows1, cols1), (rows2, cols2)):
        assert torch.equal(rows // cell, cell_rows.expand_as(rows)) and torch.equal(cols // cell, cell_cols.expand_as(cols))
    distance = (rows1 - rows2).abs() + (cols1 - cols2).abs()
    assert torch.equal(distance, torch.full_like(distance, cell // 2))
    assert bool(((rows1 == rows2) | (cols1 == cols2)).all())
    # every position of a cell is drawn as the first pixel somewhere, and both directions occur
    assert len(set(((rows1 % cell) * cell + cols1 % cell).view(-1).tolist())) == cell * cell
    assert bool((rows1 == rows2).any()) and bool((cols1 == cols2).any())


def test_the_draws_depend_on_the_generator_seed_alone():
    a = neighbour_indices(2, 8, 8, 2, torch.Generator().manual_seed(5))
    b = neighbour_indices(2, 8, 8, 2, torch.Generator().manual_seed(5))
    c = neighbour_indices(2, 8, 8, 2, torch.Generator().manual_seed(6))
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not torch.equal(a[0], c[0])


def test_subsample_picks_the_indexed_pixels_of_every_channel():
    x = torch.arange(2 * 3 * 4 * 4, dtype=torch.float64).view(2, 3, 4, 4)
    first, _ = neighbour_indices(2, 4, 4, 2, torch.Generator().manual_seed(1))
    y = subsample(x, first)
    assert y.shape == (2, 3, 2, 2)
    for b in range(2):
        for c in range(3):
            assert torch.equal(y[b, c].reshape(-1), x[b, c].reshape(-1)[first[b].reshape(-1)])


@pytest.mark.parametrize("cell", [2, 4])
def test_subsample_vjp_is_the_scatter_of_dy_and_matches_finite_differences(cell):
    gen = torch.Generator().manual_seed(3)
    x = torch.rand(2, 3, 8, 8, generator=gen, dtype=torch.float64)
    index, _ = neighbour_indices(2, 8, 8, cell, gen)
    dy = torch.rand(2, 3, 8 // cell, 8 // cell, generator=gen, dtype=torch.float64)
    dx = subsample_vjp(dy, index, 8, 8)
    torch.testing.assert_close(dx, _finite_difference_vjp(lambda t: subsample(t, index), x.clone(), dy),
                               rtol=0, atol=1e-10)
    # the adjoint identity <dy, S x> = <S^T dy, x>, and S^T scatters: each drawn position gets its dy, others 0
    torch.testing.assert_close((dy * subsample(x, index)).sum(), (dx * x).sum(), rtol=1e-12, atol=0)
    assert int((dx != 0).sum()) == dy.numel()


def test_subsampler_errors_name_the_shapes():
    with pytest.raises(ValueError, match=r"cells of 2x2"):
        neighbour_indices(1, 5, 4, 2)
    with pytest.raises(ValueError, match=r"even number of pixels >= 2, got 3"):
        neighbour_indices(1, 6, 6, 3)
    first, _ = neighbour_indices(1, 4, 4, 2)
    with pytest.raises(ValueError, match=r"subsample: .*\(2, 3, 4, 4\).*B = 2"):
        subsample(torch.zeros(2, 3, 4, 4), first)
    with pytest.raises(ValueError, match=r"subsample vjp: dy of shape \(1, 3, 3, 3\)"):
        subsample_vjp(torch.zeros(1, 3, 3, 3), first, 4, 4)
    with pytest.raises(ValueError, match=r"outside an input of shape \(1, 3, 2, 2\)"):
        subsample(torch.zeros(1, 3, 2, 2), first)


def test_the_loss_and_its_vjp_against_finite_differences():
    gen = torch.Generator().manual_seed(0)
    y, target, reg = (torch.rand(2, 3, 4, 4, generator=gen, dtype=torch.float64) for _ in range(3))
    loss = Neighbor2NeighborLoss(gamma=1.5)
    want = ((y - target) ** 2).mean() + 1.5 * ((y - target - reg) ** 2).mean()
    torch.testing.assert_close(loss(y, target, reg), want, rtol=1e-14, atol=0)
    dy = torch.ones(())
    fd = _finite_difference_vjp(lambda t: loss(t, target, reg), y.clone(), dy)
    torch.testing.assert_close(loss.vjp(y, target, reg), fd, rtol=0, atol=1e-10)
    with pytest.raises(ValueError, match=r"Neighbor2NeighborLoss: prediction and regulariser target shapes differ"):
        loss(y, target, reg[:1])
    with pytest.raises(ValueError, match=r"gamma must be >= 0"):
        Neighbor2NeighborLoss(-1)


def test_a_training_step_stores_the_gradients_torch_autograd_computes():
    """The whole objective, with f(x) in the regulariser taken as a constant (torch: under no_grad)."""
    torch.manual_seed(0)
    model = build("tiny").to(dtype=torch.float64)
    reference = torch_mirror(model)
    inputs = torch.rand(3, 3, 16, 16, dtype=torch.float64)
    method = Neighbor2Neighbor(gamma=2.0, cell=2)
    context = StepContext(step=5, steps=10, seed=7, batch_size=3, rows=(0, 3))
    loss = method.train_step(model, inputs, inputs, context)

    generator = torch.Generator().manual_seed(7 * 1_000_003 + 5 + 0x4E32_4E42)
    first, second = neighbour_indices(3, 16, 16, 2, generator)
    with torch.no_grad():  # f(x) is a constant
        whole = reference(inputs)
        regulariser = subsample(whole, first) - subsample(whole, second)
    target = subsample(inputs, second)
    gamma = method.gamma_at(5, 10)
    assert gamma == 1.0
    with torch.enable_grad():
        out = reference(subsample(inputs, first))
        want = ((out - target) ** 2).mean() + gamma * ((out - target - regulariser) ** 2).mean()
        want.backward()
    torch.testing.assert_close(loss, want.detach(), rtol=1e-12, atol=0)
    ours = [getattr(m, "d_" + a) for _, m in model.named_modules() for a in ("weight", "bias")
            if getattr(m, a) is not None]
    theirs = list(reference.parameters())
    assert len(ours) == len(theirs) > 0
    for g, p in zip(ours, theirs):
        torch.testing.assert_close(g, p.grad, rtol=1e-9, atol=1e-12)


def test_methods_and_the_cli_choices_agree_and_unknown_methods_are_refused():
    assert tuple(METHOD_CHOICES) == tuple(METHODS)
    assert make_method("noise2noise").settings() == {"method": "noise2noise"}
    assert make_method("neighbor2neighbor", 1.0, 4).settings()["cell"] == 4
    with pytest.raises(ValueError, match=r"unknown training method 'n2v'"):
        make_method("n2v")
    with pytest.raises(ValueError, match=r"multiple of 16 for neighbor2neighbor with cell 2 and arch 'unet-s'"):
        TrainConfig(arch="unet-s", method="neighbor2neighbor", patch_size=40).validate()


def _photos(folder, count, size=48, seed=0):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(count):
        Image.fromarray(rng.integers(0, 256, (size, size + 8, 3), dtype=np.uint8)).save(folder / f"p{i}.png")
    return folder


def test_a_folder_of_single_photos_holds_some_out_as_neighbour_pairs(tmp_path):
    data = open_dataset(str(_photos(tmp_path / "mine", 6)), singles=True, cell=2)
    assert isinstance(data.train, NoisyPhotos) and len(data.train.photos) == 5
    assert "single noisy photos" in data.train.describe()
    assert len(data.val) == 1 and data.val[0][0].shape == (3, 24, 28) and "neighbour" in data.val_against
    inputs, targets = data.train.batch(0, 0, 4, 32)
    assert inputs.shape == (4, 3, 32, 32) and inputs is targets
    again, _ = data.train.batch(0, 0, 4, 32)
    assert torch.equal(inputs, again)
    # a clean validation folder replaces the held-out photos, and is compared with as clean
    with_val = open_dataset(str(tmp_path / "mine"), Gaussian(25), val_spec=str(tmp_path / "mine"), singles=True)
    assert len(with_val.train.photos) == 6 and with_val.val_against is None


def test_single_photo_data_refuses_pairs_and_empty_folders(tmp_path):
    _photos(tmp_path / "pairs" / "A", 2)
    _photos(tmp_path / "pairs" / "B", 2)
    with pytest.raises(ValueError, match=r"holds noisy pairs \(A/ and B/\)"):
        open_dataset(str(tmp_path / "pairs"), singles=True)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match=r"empty holds no images"):
        open_dataset(str(tmp_path / "empty"), singles=True)
    with pytest.raises(ValueError, match=r"no folder of noisy photos"):
        open_dataset(str(tmp_path / "nowhere"), singles=True)
    with pytest.raises(ValueError, match=r"smaller than the patch size 64"):
        NoisyPhotos([np.zeros((32, 32, 3), np.uint8)]).batch(0, 0, 1, 64)


def test_neighbour_val_crops_to_whole_cells():
    photo = np.zeros((11, 9, 3), np.uint8)
    (noisy, reference), = neighbour_val([photo], cell=4)
    assert noisy.shape == reference.shape == (3, 2, 2)


def test_cli_trains_on_single_photos_and_the_card_records_the_method(tmp_path, capsys):
    folder = _photos(tmp_path / "camera", 5, size=40)
    out = tmp_path / "mine.safetensors"
    code = main(["train", "--method", "neighbor2neighbor", "--gamma", "1", "--cell", "2", "--arch", "tiny",
                 "--data", str(folder), "--steps", "3", "--batch-size", "2", "--patch-size", "16",
                 "--val-every", "3", "--device", "cpu", "--out", str(out)])
    assert code == 0
    err = capsys.readouterr().err
    assert "(neighbor2neighbor)" in err and "1 held-out photos for validation (PSNR of the output against a second neighbour" in err
    card = json.loads(out.with_suffix(".json").read_text())
    training = card["training"]
    assert (training["method"], training["gamma"], training["cell"], training["data_kind"]) == (
        "neighbor2neighbor", 1.0, 2, "singles")
    assert training["noise"] is None and "Neighbor2Neighbor" in training["targets"]
    assert "neighbour sub-sampling" in card["metrics"][0]["measured"]


def test_a_checkpoint_of_another_method_is_not_resumed(tmp_path):
    data = open_dataset(str(_photos(tmp_path / "p", 5, size=40)), singles=True)
    base = dict(arch="tiny", steps=2, batch_size=2, patch_size=16, device="cpu", checkpoint_every=1)
    Trainer(TrainConfig(method="neighbor2neighbor", **base), data, tmp_path / "w.safetensors").run()
    trainer = Trainer(TrainConfig(**base), data, tmp_path / "w.safetensors")
    with pytest.raises(ValueError, match=r"made with method='neighbor2neighbor', not 'noise2noise'"):
        trainer.run()
