"""Model cards: the name, what the run trained on (noise, or noisy pairs without one), and the validation
PSNR it measured, with how it was measured."""

import json
import math

from n2n_core.training.card import VALIDATION_BEST, VALIDATION_FINAL, add_metric, validation_metrics, write_card
from n2n_core.data.datasets import CleanImages, Dataset, NoisyPairs, synthetic_val
from n2n_core.data.noise import PoissonGaussian
from n2n_core.training.train import TrainConfig, Trainer

from tests.helpers import random_images as _images

HISTORY = [{"step": 2, "loss": 0.1, "val_psnr": 20.0, "seconds": 1.0},
           {"step": 4, "loss": 0.05, "val_psnr": 24.5, "seconds": 2.0},
           {"step": 6, "loss": 0.06, "val_psnr": 23.0, "seconds": 3.0},
           {"step": 6, "loss": 0.06, "val_psnr": None, "seconds": 3.1}]


def _cfg(**kw):
    base = dict(arch="tiny", steps=4, batch_size=2, patch_size=16, val_every=2, checkpoint_every=1000, device="cpu")
    return TrainConfig(**{**base, **kw})


def test_validation_metrics_give_the_final_and_the_best_psnr_with_their_protocol():
    final, best = validation_metrics(HISTORY, 3, 18.2, "gaussian:25", 6)
    assert final["name"] == VALIDATION_FINAL and final["psnr"] == 23.0 and final["step"] == 6
    assert best["name"] == VALIDATION_BEST and best["psnr"] == 24.5 and best["step"] == 4
    assert final["images"] == best["images"] == 3 and final["noisy_psnr"] == 18.2 and final["steps"] == 6
    assert final["seconds"] == 3.0
    assert "3 held-out validation images" in final["measured"] and "gaussian:25" in final["measured"]
    assert "the weights written" in final["measured"] and "highest of the 3 validations" in best["measured"]


def test_validation_metrics_are_empty_without_validation_and_skip_non_finite_values():
    assert validation_metrics([], 3, None, "gaussian:25", 6) == []
    assert validation_metrics(HISTORY, 0, None, "gaussian:25", 6) == []
    final, best = validation_metrics([{"step": 1, "val_psnr": 21.0}, {"step": 2, "val_psnr": math.nan}], 1, None,
                                     "gaussian:25", 2)
    assert final["psnr"] == best["psnr"] == 21.0 and "noisy_psnr" not in final


def test_the_card_of_a_run_on_clean_images_records_name_noise_jpeg_and_metrics(tmp_path):
    imgs = _images(4, 48, 48)
    noise = PoissonGaussian(0.04, 25)
    data = Dataset(CleanImages(imgs, noise, name="mine"), synthetic_val(imgs[:2], noise))
    out = tmp_path / "m.safetensors"
    trainer = Trainer(_cfg(noise=noise.spec(), jpeg="70-95", data="mine"), data, out)
    trainer.run(resume=False)
    add_metric(out, {"name": "PSNR elsewhere", "psnr": 30.0})  # measured later: kept when the card is rewritten
    card = json.loads(write_card(out, trainer, name="my model").read_text())
    assert card["name"] == "my model" and card["architecture"] == "tiny"
    t = card["training"]
    assert t["noise"] == "poisson-gaussian:0.04,25" and t["data_kind"] == "clean" and t["jpeg"] == "70-95"
    assert t["data_description"].startswith("mine (4 clean images")
    names = [m["name"] for m in card["metrics"]]
    assert names == [VALIDATION_FINAL, VALIDATION_BEST, "PSNR elsewhere"]
    final = card["metrics"][0]
    assert final["psnr"] == round(trainer.last_val_psnr(), 3) and final["images"] == 2 and final["step"] == 4
    assert 0 < final["noisy_psnr"] < 40
    assert json.loads(write_card(out, trainer).read_text())["name"] == "m"  # default: the file's stem


def test_the_card_of_a_run_on_noisy_pairs_records_no_noise(tmp_path):
    a, b = _images(2, 32, 32), _images(2, 32, 32)
    data = Dataset(NoisyPairs(a, b, name="d-pairs"), [])
    out = tmp_path / "p.safetensors"
    trainer = Trainer(_cfg(steps=2, data="d-pairs"), data, out)  # cfg.noise keeps its default, unused
    trainer.run(resume=False)
    card = json.loads(write_card(out, trainer).read_text())
    t = card["training"]
    assert t["noise"] is None and t["data_kind"] == "pairs" and t["data"] == "d-pairs"
    assert "noisy pairs" in t["data_description"] and "jpeg" not in t
    assert card["metrics"] == []
