"""The shipped weights: they load, carry a card, and denoise held-out benchmark photos."""

import json
from pathlib import Path

import pytest

from n2n_core import load
from n2n_core.data.datasets import BUILTIN_VAL, builtin_images, list_images, load_rgb8, synthetic_val
from n2n_core.training.evaluate import evaluate
from n2n_core.data.noise import Gaussian
from n2n_core.weights import WEIGHTS_DIR, shipped


@pytest.mark.parametrize("name", ["default", "fast", "seed", "blind"])
def test_shipped_model_loads_with_a_card(name):
    path = shipped()[name]
    model = load(path)
    card = json.loads(Path(path).with_suffix(".json").read_text())
    assert card["parameters"] == model.num_parameters()
    assert card["training"]["noise"] and card["training"]["steps"] > 0 and card["architecture"]
    assert "noisy" in card["training"]["targets"]


def test_default_model_quality_on_cbsd68_sample(shared_data):
    files = list_images(shared_data / "CBSD68")[:4]
    pairs = synthetic_val([load_rgb8(f) for f in files], Gaussian(25))
    res = evaluate(load(WEIGHTS_DIR / "default.safetensors"), pairs, progress=False)
    assert res["psnr"] > res["noisy_psnr"] + 8  # about 20.5 dB in, about 30 dB out


@pytest.mark.parametrize("sigma, gain", [(15, 5), (50, 9)])
def test_blind_model_handles_noise_levels_it_is_not_told(sigma, gain):
    crop = builtin_images(BUILTIN_VAL[:1])[0][:96, :128]
    pairs = synthetic_val([crop], Gaussian(sigma))
    blind = evaluate(load(shipped()["blind"]), pairs, progress=False)
    default = evaluate(load(shipped()["default"]), pairs, progress=False)
    assert blind["psnr"] > blind["noisy_psnr"] + gain, blind
    if sigma == 50:  # far from its training level the sigma-25 model falls behind
        assert blind["psnr"] > default["psnr"] + 2, (blind, default)
