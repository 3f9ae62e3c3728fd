"""The course interface's figures: pretrained PSNR on held-out 32x32 patches, and one epoch's time.

    python benchmarks/compat_check.py [--data ../shared/data] [--patches 2000] [--pairs 50000]

PSNR: random 32x32 crops of CBSD68 (never trained on), sigma=25 Gaussian noise stored as 8-bit
(rounded, clipped), denoised by ``Model().load_pretrained_model()`` and ``predict``.
Timing: ``Model().train`` for one epoch over ``--pairs`` noisy pairs of 32x32 crops of CBSD432.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import machine, save_results  # noqa: E402
from n2n_core.compat import Model  # noqa: E402
from n2n_core.data.datasets import builtin_images, list_images, load_rgb8  # noqa: E402
from n2n_core.training.metrics import psnr  # noqa: E402


def crops(images, n: int, size: int, gen: torch.Generator) -> torch.Tensor:
    out = []
    for _ in range(n):
        img = images[int(torch.randint(len(images), (1,), generator=gen))]
        h, w = img.shape[:2]
        t, l = int(torch.randint(h - size + 1, (1,), generator=gen)), int(torch.randint(w - size + 1, (1,), generator=gen))
        out.append(torch.from_numpy(img[t : t + size, l : l + size].copy()).permute(2, 0, 1))
    return torch.stack(out)


def noisy8(clean: torch.Tensor, gen: torch.Generator, sigma: float = 25) -> torch.Tensor:
    return (clean.float() + sigma * torch.randn(clean.shape, generator=gen)).round().clamp(0, 255).to(torch.uint8)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    ap.add_argument("--patches", type=int, default=2000)
    ap.add_argument("--pairs", type=int, default=50000)
    args = ap.parse_args()
    data = Path(args.data)
    if (data / "CBSD68").is_dir():
        test_imgs = [load_rgb8(f) for f in list_images(data / "CBSD68")]
        train_imgs = [load_rgb8(f) for f in list_images(data / "CBSD432")]
        source = "CBSD68 (test) / CBSD432 (train)"
    else:
        test_imgs, train_imgs = builtin_images(["chelsea"]), builtin_images(["astronaut", "coffee"])
        source = "builtin"
    gen = torch.Generator().manual_seed(0)
    clean = crops(test_imgs, args.patches, 32, gen)
    noisy = noisy8(clean, gen)
    m = Model()
    m.load_pretrained_model()
    out = m.predict(noisy)
    p_noisy = sum(psnr(n.float() / 255, c.float() / 255) for n, c in zip(noisy, clean)) / len(clean)
    p_out = sum(psnr(o / 255, c.float() / 255) for o, c in zip(out, clean)) / len(clean)
    print(f"pretrained seed model on {args.patches} held-out 32x32 patches: noisy {p_noisy:.2f} dB -> {p_out:.2f} dB")

    train_clean = crops(train_imgs, args.pairs, 32, gen)
    a, b = noisy8(train_clean, gen), noisy8(train_clean, gen)
    fresh = Model()
    t0 = time.perf_counter()
    fresh.train(a, b, num_epochs=1)
    epoch = time.perf_counter() - t0
    print(f"one epoch over {args.pairs} pairs of 32x32: {epoch:.1f} s")
    path = save_results("compat", {"machine": machine(), "source": source, "patches": args.patches,
                                   "noisy_psnr": p_noisy, "pretrained_psnr": p_out, "pairs": args.pairs,
                                   "epoch_seconds": epoch, "protocol": "8-bit noisy input, sigma 25"})
    print(f"saved {path}")


if __name__ == "__main__":
    main()
