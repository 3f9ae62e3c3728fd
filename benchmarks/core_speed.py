"""n2n_core against torch.nn + autograd on the seed network, timed interleaved in one run.

Prints the median time of each and the ratio n2n_core / torch.nn for
  - one training step: forward_and_backward + optimizer step (SGD, momentum 0.9), batch 64 of 3x32x32;
  - inference on one 3x512x512 image (torch.nn under torch.inference_mode()).

    python benchmarks/core_speed.py [--device cpu|cuda] [--repeats 30]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "core"))

from benchmarks.common import interleaved, machine, median, save_results  # noqa: E402
from n2n_core import MSE, SGD  # noqa: E402
from mirror import seed_n2n, seed_torch_from  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--batch", type=int, default=64)
    args = ap.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)

    model = seed_n2n(48).to(device)
    ref = seed_torch_from(model).to(device)
    opt, opt_ref = SGD(model, lr=1e-3, momentum=0.9), torch.optim.SGD(ref.parameters(), lr=1e-3, momentum=0.9)
    loss = MSE()
    x = torch.rand(args.batch, 3, 32, 32, device=device)
    t = torch.rand(args.batch, 3, 32, 32, device=device)
    img = torch.rand(1, 3, 512, 512, device=device)

    def ours_train():
        model.forward_and_backward(x, lambda y: loss.vjp(y, t))
        opt.step()

    def torch_train():
        opt_ref.zero_grad()
        torch.nn.functional.mse_loss(ref(x), t).backward()
        opt_ref.step()

    def ours_infer():
        model(img)

    def torch_infer():
        with torch.inference_mode():
            ref(img)

    for fn in (ours_train, torch_train, ours_infer, torch_infer):  # warm-up
        for _ in range(3):
            fn()
    train = interleaved({"n2n_core": ours_train, "torch.nn": torch_train}, args.repeats, device)
    infer = interleaved({"n2n_core": ours_infer, "torch.nn": torch_infer}, args.repeats, device)

    result = {"machine": machine(), "device": str(device), "repeats": args.repeats}
    for name, times in (("train_step_b64_32x32", train), ("inference_512x512", infer)):
        ours, theirs = median(times["n2n_core"]), median(times["torch.nn"])
        result[name] = {"n2n_core_ms": ours * 1e3, "torch_nn_ms": theirs * 1e3, "ratio": ours / theirs}
        print(f"{name:24s} n2n_core {ours*1e3:8.2f} ms   torch.nn {theirs*1e3:8.2f} ms   ratio {ours/theirs:5.2f}")
    path = save_results(f"core_speed_{device.type}", result)
    print(f"saved {path}")


if __name__ == "__main__":
    main()
