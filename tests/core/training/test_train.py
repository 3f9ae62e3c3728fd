"""Trainer: resume reproduces the loss curve, cancel stops within a step, outputs are written."""

import json

import pytest
import torch

from n2n_core import load
from n2n_core.data.datasets import CleanImages, Dataset, synthetic_val
from n2n_core.data.noise import Gaussian
from n2n_core.training.train import TrainConfig, Trainer, learning_rate

from tests.helpers import random_images as _images


def _data(val=False):
    imgs = _images(4, 48, 48)
    return Dataset(CleanImages(imgs, Gaussian(25)), synthetic_val(imgs[:1], Gaussian(25)) if val else [])


def _cfg(**kw):
    base = dict(arch="tiny", steps=6, batch_size=2, patch_size=16, val_every=1, checkpoint_every=1000, device="cpu")
    return TrainConfig(**{**base, **kw})


def test_resume_reproduces_the_same_loss_curve(tmp_path):
    full = Trainer(_cfg(), _data(), tmp_path / "a.safetensors").run(resume=False)
    calls = {"n": 0}

    def stop_after_three():
        calls["n"] += 1
        return calls["n"] > 3

    part = Trainer(_cfg(), _data(), tmp_path / "b.safetensors", should_stop=stop_after_three).run()
    assert part.status == "cancelled" and part.step == 3
    resumed = Trainer(_cfg(), _data(), tmp_path / "b.safetensors").run(resume=True)
    assert resumed.status == "succeeded" and resumed.step == 6
    a = [h["loss"] for h in full.history]
    b = [h["loss"] for h in resumed.history]
    assert len(a) == len(b) == 6
    torch.testing.assert_close(torch.tensor(b), torch.tensor(a), rtol=1e-6, atol=0)
    wa, wb = load(tmp_path / "a.safetensors"), load(tmp_path / "b.safetensors")
    for (k, pa), pb in zip(wa.state_dict().items(), wb.parameters()):
        torch.testing.assert_close(pb, pa, rtol=1e-6, atol=1e-7, msg=k)


def test_cancel_stops_within_one_step_and_reports_progress(tmp_path):
    seen = []
    stop = {"flag": False}

    def progress(info):
        seen.append(info)
        if info["step"] >= 2:
            stop["flag"] = True

    res = Trainer(_cfg(steps=50), _data(), tmp_path / "c.safetensors", progress=progress,
                  should_stop=lambda: stop["flag"], progress_seconds=0).run()
    assert res.status == "cancelled" and res.step == 2
    assert seen[0]["step"] == 1 and {"step", "total", "fraction", "loss"} <= set(seen[0])
    assert (tmp_path / "c.ckpt.safetensors").exists() and not (tmp_path / "c.safetensors").exists()


def test_outputs_history_and_plot(tmp_path):
    out = tmp_path / "m.safetensors"
    res = Trainer(_cfg(steps=4, val_every=2), _data(val=True), out).run()
    assert res.weights == str(out)
    hist = json.loads(out.with_suffix(".history.json").read_text())
    assert [h["step"] for h in hist["history"]] == [2, 4]
    assert all(h["val_psnr"] > 10 for h in hist["history"])
    assert out.with_suffix(".history.png").read_bytes()[:4] == b"\x89PNG"
    assert not list(tmp_path.glob("*.tmp"))


def test_learning_rate_schedule():
    cfg = _cfg(steps=100, learning_rate=1.0, tail=0.3)
    assert learning_rate(cfg, 0) == 1.0 and learning_rate(cfg, 69) == 1.0
    assert learning_rate(cfg, 85) < 0.6 and abs(learning_rate(cfg, 100) - 0.01) < 1e-9


def test_a_non_finite_loss_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path):
    from safetensors import safe_open

    from n2n_core.training.train import TrainingDiverged

    out = tmp_path / "d.safetensors"
    with pytest.raises(TrainingDiverged, match="diverged.*step 2"):
        Trainer(_cfg(steps=20, learning_rate=1e6, checkpoint_every=1), _data(), out).run()
    assert not out.exists()  # no weights from a broken run
    with safe_open(str(out.with_suffix(".ckpt.safetensors")), framework="pt") as f:
        assert f.metadata()["step"] == "1"  # the checkpoint before the loss broke, not the broken weights


def test_a_float64_model_trains_on_the_float32_batches_and_checkpoints_in_float64(tmp_path):
    from safetensors.torch import load_file

    from n2n_core.models import build

    out = tmp_path / "f64.safetensors"
    trainer = Trainer(_cfg(steps=2, ema=0.9), _data(), out, model=build("tiny").to(dtype=torch.float64))
    assert trainer.run().status == "succeeded"
    ckpt = load_file(str(out.with_suffix(".ckpt.safetensors")))
    # the format a resumed run reads: model., optim. (with Adam's per-parameter step) and ema. tensors
    assert {k.split(".")[0] for k in ckpt} == {"model", "optim", "ema"}
    assert any(k.startswith("optim.") and k.endswith(".step") for k in ckpt)
    assert all(v.dtype == torch.float64 for k, v in ckpt.items() if not k.endswith(".step"))
