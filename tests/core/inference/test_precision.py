"""Reduced precision: the choice (auto and the environment), what stays float32, and results within tolerance.

These run on every machine: torch emulates bfloat16 products where the CPU has no native ones, so only
the speed differs (benchmarks/engines.py measures it), never the correctness checked here.
"""

import math

import pytest
import torch

import n2n_core
from n2n_core import Cast, Conv2d, LeakyReLU, NoiseAdaptive, Residual, SelfEnsemble, Sequential, models
from n2n_core.inference import precision
from n2n_core.inference.infer import denoise
from n2n_core.inference.precision import at_precision, model_precision, resolve_precision
from n2n_core.inference.streaming import row_stream
from n2n_core.weights import resolve

SHIPPED = ["default", "fast", "best", "blind", "seed"]


def noisy_photo(h: int = 64, w: int = 80, seed: int = 0) -> torch.Tensor:
    """A smooth colour image with sigma-25 Gaussian noise, in [0, 1]."""
    g = torch.Generator().manual_seed(seed)
    ys, xs = torch.meshgrid(torch.linspace(0, 1, h), torch.linspace(0, 1, w), indexing="ij")
    clean = torch.stack([0.5 + 0.4 * torch.sin(6 * xs + 2 * ys), 0.3 + 0.5 * ys * xs, 0.6 - 0.3 * xs])
    return (clean + 25 / 255 * torch.randn(clean.shape, generator=g)).clamp(0, 1)


def psnr_between(a: torch.Tensor, b: torch.Tensor) -> float:
    """PSNR of a against b (peak 1), infinite when they are equal."""
    mse = float((a.double() - b.double()).pow(2).mean())
    return math.inf if mse == 0 else -10 * math.log10(mse)


# -- the choice --------------------------------------------------------------------------------


def test_explicit_precisions_are_kept():
    for name in ("float32", "bfloat16", "float16"):
        assert resolve_precision(name, "cpu") == name


def test_none_reads_the_environment(monkeypatch):
    monkeypatch.setenv("N2N_PRECISION", "bfloat16")
    assert resolve_precision(None, "cpu") == "bfloat16"
    monkeypatch.setenv("N2N_PRECISION", "float32")
    assert resolve_precision(None, "cpu") == "float32"
    monkeypatch.delenv("N2N_PRECISION")
    assert resolve_precision(None, "cpu") in ("float32", "bfloat16")  # auto


def test_an_unknown_precision_is_a_clear_error(monkeypatch):
    with pytest.raises(ValueError, match=r"precision must be one of auto, float32, bfloat16, float16; got 'half'"):
        resolve_precision("half", "cpu")
    monkeypatch.setenv("N2N_PRECISION", "fp8")
    with pytest.raises(ValueError, match=r"got 'fp8'"):
        denoise(models.build("tiny"), torch.rand(3, 8, 8))


@pytest.mark.parametrize("flags, expected", [
    ({"fpu", "avx2", "avx512f"}, "float32"),
    ({"avx512f", "avx512_bf16"}, "bfloat16"),
    ({"amx_tile", "amx_bf16", "avx512f"}, "bfloat16"),
])
def test_auto_picks_bfloat16_only_where_the_cpu_multiplies_it(monkeypatch, flags, expected):
    monkeypatch.setattr(precision, "cpu_flags", lambda: frozenset(flags))
    assert resolve_precision("auto", "cpu") == expected


def test_this_machine_auto_follows_its_flags():
    expected = "bfloat16" if precision.cpu_has_bfloat16() else "float32"
    assert resolve_precision("auto", torch.device("cpu")) == expected


# -- what stays float32 --------------------------------------------------------------------------


def test_a_residual_network_keeps_its_sum_in_float32():
    model = models.build("unet-s")
    reduced = at_precision(model, torch.bfloat16)
    assert isinstance(reduced, Residual) and isinstance(reduced.body, Cast)
    assert {p.dtype for p in reduced.parameters()} == {torch.bfloat16}
    assert {p.dtype for p in model.parameters()} == {torch.float32}  # the original is untouched
    x = torch.rand(1, 3, 16, 16)
    assert reduced(x).dtype == torch.float32
    # the input passes through the float32 sum exactly: a body that outputs zeros gives x back bit for bit
    for p in reduced.body.parameters():
        p.zero_()
    assert torch.equal(reduced(x), x)


def test_ensembles_and_adaptive_models_reduce_their_bodies_only():
    body = Residual(Sequential(Conv2d(3, 3, 3, padding=1), LeakyReLU(0.1)))
    ensemble = at_precision(SelfEnsemble(body, 8), torch.bfloat16)
    assert isinstance(ensemble, SelfEnsemble) and isinstance(ensemble.body.body, Cast)
    adaptive = at_precision(NoiseAdaptive(body, 25, 2), torch.bfloat16)
    assert isinstance(adaptive, NoiseAdaptive) and adaptive.threshold == 25 and isinstance(adaptive.body.body, Cast)


def test_a_network_without_a_float32_part_is_wrapped_whole():
    model = models.build("seed")
    reduced = at_precision(model, torch.bfloat16)
    assert isinstance(reduced, Cast) and reduced.dtype == torch.bfloat16
    assert reduced(torch.rand(1, 3, 16, 16)).dtype == torch.float32


def test_float64_networks_and_float32_precision_are_left_alone():
    model = models.build("tiny").to(dtype=torch.float64)
    assert model_precision(model, "bfloat16") == "float64"
    x = torch.rand(3, 12, 12, dtype=torch.float64)
    torch.testing.assert_close(denoise(model, x, precision="bfloat16"), denoise(model, x, precision="float32"),
                               atol=0, rtol=0)
    float32 = models.build("tiny")
    assert at_precision(float32, torch.float32) is float32
    assert model_precision(float32, "float32") == "float32" and model_precision(float32, "bfloat16") == "bfloat16"


def test_cast_round_trips_through_its_config():
    torch.manual_seed(0)
    cast = Cast(Sequential(Conv2d(3, 4, 3, padding=1), LeakyReLU(0.1)).to(dtype=torch.bfloat16), "bfloat16")
    rebuilt = n2n_core.Module.from_config(cast.config())
    assert isinstance(rebuilt, Cast) and rebuilt.dtype == torch.bfloat16
    assert {p.dtype for p in rebuilt.parameters()} == {torch.bfloat16}
    with pytest.raises(ValueError, match=r"Cast: dtype must be one of .*got 'int8'"):
        Cast(Sequential(), "int8")


def test_cast_vjp_is_the_body_vjp_in_the_body_type():
    torch.manual_seed(0)
    body = Sequential(Conv2d(3, 4, 3, padding=1), LeakyReLU(0.1), Conv2d(4, 2, 1)).to(dtype=torch.float64)
    cast = Cast(body, "float64")
    x = torch.randn(2, 3, 7, 5)
    dy = torch.randn(2, 2, 7, 5)
    y, vjp = cast.forward_and_vjp(x)
    dx, _, _ = vjp(dy)
    y64, vjp64 = body.forward_and_vjp(x.double())
    dx64, _, _ = vjp64(dy.double())
    assert y.dtype == dx.dtype == torch.float32
    torch.testing.assert_close(y, y64.float(), atol=0, rtol=0)
    torch.testing.assert_close(dx, dx64.float(), atol=0, rtol=0)
    assert body[0].d_weight.dtype == torch.float64


# -- results within tolerance -------------------------------------------------------------------


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_models_in_bfloat16_stay_close_to_float32(name):
    model = n2n_core.load(resolve(name))
    photo = noisy_photo()
    exact = denoise(model, photo, precision="float32")
    reduced = denoise(model, photo, precision="bfloat16")
    assert reduced.dtype == torch.float32 and reduced.shape == photo.shape
    # measured: 55-62 dB between the two on this image; the denoising error itself is ~30 dB
    assert psnr_between(reduced, exact) > 48
    assert (reduced - exact).abs().max() < 0.03


def test_float16_runs_and_stays_close():
    model = n2n_core.load(resolve("fast"))
    photo = noisy_photo(32, 48)
    assert psnr_between(denoise(model, photo, precision="float16"), denoise(model, photo, precision="float32")) > 48


def test_row_streams_run_reduced_networks():
    model = at_precision(n2n_core.load(resolve("default")), torch.bfloat16)
    x = noisy_photo(64, 72)[None]
    whole = model(x)
    stream = row_stream(model)
    bands = [stream.push(x[:, :, top : top + 16], last=top + 16 >= 64) for top in range(0, 64, 16)]
    streamed = torch.cat([b for b in bands if b is not None], dim=2)
    assert streamed.dtype == torch.float32 and streamed.shape == whole.shape
    # each output row is computed from the same values in both; only the GEMM blocking may differ
    torch.testing.assert_close(streamed, whole, atol=1e-2, rtol=0)


def test_the_environment_reaches_denoise(monkeypatch):
    model = n2n_core.load(resolve("fast"))
    photo = noisy_photo(32, 32)
    monkeypatch.setenv("N2N_PRECISION", "bfloat16")
    from_env = denoise(model, photo)
    torch.testing.assert_close(from_env, denoise(model, photo, precision="bfloat16"), atol=0, rtol=0)
    assert not torch.equal(from_env, denoise(model, photo, precision="float32"))
