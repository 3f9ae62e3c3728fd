"""One architecture trained with n2n_core and with torch.nn + autograd, side by side.

Both frameworks see identical batches (``CleanImages.batch(step, seed)``), noise, initial weights
(same torch seed) and optimizer (Adam, lr 1e-3, cosine tail); each is trained for ``--steps`` steps
with ``--seeds`` seeds. Both trained networks are then run by the same ``n2n_core.denoise`` (the
torch.nn weights are copied back) on CBSD68 at sigma=25 (8-bit noisy PNG protocol), so only the
training differs.

    python benchmarks/seed_table.py [--arch seed] [--steps 2000] [--seeds 3]
    python benchmarks/seed_table.py --arch unet-s --steps 600 --batch 16 --patch 64
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "core"))

from benchmarks.common import machine, save_results  # noqa: E402
from n2n_core import MSE, Adam  # noqa: E402
from n2n_core.data.datasets import CleanImages, list_images, load_rgb8, synthetic_val  # noqa: E402
from n2n_core.inference.infer import denoise  # noqa: E402
from n2n_core.training.metrics import psnr  # noqa: E402
from n2n_core.models import build  # noqa: E402
from n2n_core.data.noise import Gaussian  # noqa: E402
from n2n_core.training.train import TrainConfig, learning_rate  # noqa: E402
from mirror import torch_mirror  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    ap.add_argument("--arch", default="seed", help="seed | fast | unet-s | ... (n2n_core.models)")
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--patch", type=int, default=32)
    ap.add_argument("--limit", type=int, default=None, help="evaluate on the first N CBSD68 images")
    args = ap.parse_args()
    data = Path(args.data)
    noise = Gaussian(25)
    train = CleanImages([load_rgb8(f) for f in list_images(data / "CBSD432")], noise)
    test = synthetic_val([load_rgb8(f) for f in list_images(data / "CBSD68")[: args.limit]], noise)
    cfg = TrainConfig(steps=args.steps, learning_rate=1e-3)
    rows: dict[str, list[float]] = {"n2n_core": [], "torch.nn": []}
    times: dict[str, list[float]] = {"n2n_core": [], "torch.nn": []}
    for s in range(args.seeds):
        torch.manual_seed(s)
        ours = build(args.arch)
        ref = torch_mirror(ours)
        opt, opt_ref, loss = Adam(ours, 1e-3), torch.optim.Adam(ref.parameters(), 1e-3), MSE()
        t_ours = t_ref = 0.0
        for step in range(args.steps):
            x, y = train.batch(step, s, args.batch, args.patch)
            lr = learning_rate(cfg, step)
            t0 = time.perf_counter()
            opt.lr = lr
            ours.forward_and_backward(x, lambda out: loss.vjp(out, y))
            opt.step()
            t1 = time.perf_counter()
            for g in opt_ref.param_groups:
                g["lr"] = lr
            with torch.enable_grad():
                opt_ref.zero_grad()
                torch.nn.functional.mse_loss(ref(x), y).backward()
                opt_ref.step()
            t2 = time.perf_counter()
            t_ours, t_ref = t_ours + t1 - t0, t_ref + t2 - t1
        trained_ref = build(args.arch)
        trained_ref.load_state_dict(dict(zip(trained_ref.state_dict(), (p.detach() for p in ref.parameters()))))
        p_ref = statistics.mean(psnr(denoise(trained_ref, n), c) for n, c in test)
        p_ours = statistics.mean(psnr(denoise(ours, n), c) for n, c in test)
        rows["n2n_core"].append(p_ours)
        rows["torch.nn"].append(p_ref)
        times["n2n_core"].append(t_ours)
        times["torch.nn"].append(t_ref)
        print(f"seed {s}: n2n_core {p_ours:.2f} dB ({t_ours:.0f} s)   torch.nn {p_ref:.2f} dB ({t_ref:.0f} s)",
              flush=True)
    summary = {k: {"mean": statistics.mean(v), "std": statistics.stdev(v) if len(v) > 1 else 0.0, "runs": v,
                   "train_seconds": times[k]} for k, v in rows.items()}
    for k, v in summary.items():
        print(f"{k:9s} {args.arch} CBSD68 sigma=25 (8-bit): {v['mean']:.2f} +- {v['std']:.2f} dB "
              f"over {args.seeds} seeds")
    name = "seed_table" if args.arch == "seed" else f"parity_{args.arch}"
    save_results(name, {"machine": machine(), "arch": args.arch, "images": len(test), "steps": args.steps,
                        "batch": args.batch, "patch": args.patch, "optimizer": "Adam 1e-3, cosine tail 30%",
                        "protocol": "CBSD68, sigma 25, 8-bit noisy", "results": summary})


if __name__ == "__main__":
    main()
