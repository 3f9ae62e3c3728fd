"""The CUDA path: the same layers, gradients and training step on a GPU (skipped without one)."""

import pytest
import torch
import torch.nn.functional as F

from n2n_core import MSE, Adam, models
from n2n_core.inference.infer import denoise

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")


def test_unet_gradients_on_cuda_match_cpu():
    torch.manual_seed(0)
    cpu = models.build("fast").to(dtype=torch.float64)
    gpu = models.build("fast").to(dtype=torch.float64)
    gpu.load_state_dict(cpu.state_dict())
    gpu.to("cuda")
    x = torch.rand(2, 3, 32, 48, dtype=torch.float64)
    t = torch.rand_like(x)
    y_cpu = cpu.forward_and_backward(x, lambda y: MSE().vjp(y, t))
    y_gpu = gpu.forward_and_backward(x.cuda(), lambda y: MSE().vjp(y, t.cuda()))
    torch.testing.assert_close(y_gpu.cpu(), y_cpu, rtol=1e-10, atol=1e-12)
    for (_, a), (_, b) in zip(cpu.named_modules(), gpu.named_modules()):
        if a.weight is not None:
            torch.testing.assert_close(b.d_weight.cpu(), a.d_weight, rtol=1e-8, atol=1e-12)


def test_training_step_and_inference_on_cuda():
    model = models.build("fast").to("cuda")
    opt = Adam(model, 1e-3)
    x = torch.rand(4, 3, 64, 64, device="cuda")
    model.forward_and_backward(x, lambda y: MSE().vjp(y, x))
    opt.step()
    assert all(p.device.type == "cuda" for p in model.parameters())
    out = denoise(model, torch.rand(3, 100, 130, device="cuda"))
    assert out.device.type == "cuda" and out.shape == (3, 100, 130)
    assert F.mse_loss(out, out).item() == 0
