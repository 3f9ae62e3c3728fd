"""Fine-tune a shipped model to one camera from single noisy photos (Neighbor2Neighbor), and measure it (issue 24).

    python benchmarks/finetune_camera.py --init blind --photos 20 --steps 300 --cell 2
    python benchmarks/finetune_camera.py --init blind --photos 20 --steps 300 --cell 4 --demosaic

A synthetic "camera" with a fixed noise level stands in for a photographer's own: per colour channel,
signal-dependent noise x + sqrt(a_c x + b_c^2) N(0, 1) with fixed gains a_c and read noise b_c (not drawn
per image, as in the training noise model ``poisson-gaussian``), optionally on a Bayer mosaic that is then
demosaiced bilinearly (``--demosaic``: noise correlated between neighbouring pixels and across channels, as
in real sRGB photos), and saved as JPEG of ``--quality`` (also correlated). Then:

1. ``--photos`` CBSD432 photos (the last ones by name: the shipped models' validation never used them for
   selection) go through the camera once and are written as JPEG files to OUT/photos: single shots, no clean
   image. The model is fine-tuned on that folder exactly as a user would:
       n2n train --init blind --method neighbor2neighbor --data OUT/photos --cell C --steps S ...
2. CBSD68 (the benchmark: never trained or selected on) goes through the same camera with fixed seeds, and
   the PSNR of the model before and after fine-tuning is measured on it (8-bit protocol, full images).

Prints and saves (benchmarks/results/finetune_camera*.json) the PSNRs, the gain, and the minutes taken.
"""

from __future__ import annotations

import argparse
import io
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.common import benchmark_images, machine, save_results  # noqa: E402
from n2n_core.data.datasets import list_images, load_rgb8, to_tensor  # noqa: E402
from n2n_core.training.evaluate import evaluate  # noqa: E402
from n2n_core.weights import load  # noqa: E402

SHARED = ROOT.parent / "shared" / "data"
GAINS = (0.010, 0.006, 0.014)  # per channel (R, G, B): variance per unit of intensity
READS = (4.0, 3.0, 6.0)  # per channel, read noise sigma on the 0..255 scale


def bayer_masks(height: int, width: int) -> torch.Tensor:
    """(3, H, W) 0/1 masks of an RGGB Bayer mosaic."""
    masks = torch.zeros(3, height, width)
    masks[0, 0::2, 0::2] = 1
    masks[1, 0::2, 1::2] = 1
    masks[1, 1::2, 0::2] = 1
    masks[2, 1::2, 1::2] = 1
    return masks


def demosaic_bilinear(mosaic: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Bilinear demosaicing of (3, H, W) sampled planes (zeros where a channel was not sampled)."""
    kernel = torch.tensor([[0.25, 0.5, 0.25], [0.5, 1.0, 0.5], [0.25, 0.5, 0.25]])
    padded = torch.nn.functional.pad((mosaic * masks)[None], (1, 1, 1, 1), mode="reflect")  # benchmark, not product
    weights = torch.nn.functional.pad(masks[None], (1, 1, 1, 1), mode="reflect")
    conv = lambda t: torch.nn.functional.conv2d(t, kernel.expand(3, 1, 3, 3).contiguous(), groups=3)  # noqa: E731
    return (conv(padded) / conv(weights).clamp(min=1e-6))[0]


def camera(clean: np.ndarray, seed: int, quality: int, demosaic: bool) -> bytes:
    """uint8 (H, W, 3) photo -> the JPEG file the camera writes of a noisy shot of it."""
    x = to_tensor(clean)
    gen = torch.Generator().manual_seed(seed)
    gain = torch.tensor(GAINS).view(3, 1, 1)
    read = torch.tensor(READS).view(3, 1, 1) / 255
    noisy = x + (gain * x + read**2).sqrt() * torch.randn(x.shape, generator=gen)
    if demosaic:
        noisy = demosaic_bilinear(noisy, bayer_masks(*x.shape[1:]))
    pixels = noisy.clamp(0, 1).mul(255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    buffer = io.BytesIO()
    if quality:
        Image.fromarray(pixels).save(buffer, format="JPEG", quality=quality)
    else:  # a camera writing lossless files: the noise stays independent from pixel to pixel
        Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def decoded(jpeg: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(jpeg)).convert("RGB")).copy()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--init", default="blind")
    ap.add_argument("--photos", type=int, default=20)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--patch-size", type=int, default=128)
    ap.add_argument("--lr", type=float, default=5e-5)
    ap.add_argument("--warmup", type=int, default=50, help="learning-rate warm-up steps (Adam's first steps are large)")
    ap.add_argument("--cell", type=int, default=2)
    ap.add_argument("--gamma", type=float, default=2.0)
    ap.add_argument("--quality", type=int, default=90, help="the camera's JPEG quality; 0: lossless PNG files")
    ap.add_argument("--demosaic", action="store_true")
    ap.add_argument("--eval-limit", type=int, default=None, help="evaluate on the first N CBSD68 images only")
    ap.add_argument("--out", type=Path, default=ROOT / "data" / "camera")
    args = ap.parse_args()
    torch.set_grad_enabled(False)

    tag = f"{f'q{args.quality}' if args.quality else 'png'}{'-demosaic' if args.demosaic else ''}"
    photos = args.out / tag / "photos"
    photos.mkdir(parents=True, exist_ok=True)
    sources = list_images(SHARED / "CBSD432")[-args.photos:]
    for k, path in enumerate(sources):
        (photos / f"{path.stem}.{'jpg' if args.quality else 'png'}").write_bytes(camera(load_rgb8(path), 10_000 + k, args.quality, args.demosaic))
    _, images = benchmark_images(str(SHARED / "CBSD68"), args.eval_limit)
    held_out = [(to_tensor(decoded(camera(img, i, args.quality, args.demosaic))), to_tensor(img))
                for i, img in enumerate(images)]

    before = evaluate(load(args.init), held_out, desc=f"{args.init} before")
    weights = args.out / tag / f"{args.init}-cell{args.cell}.safetensors"
    command = [sys.executable, "-m", "n2n_core.cli", "train", "--init", args.init, "--method", "neighbor2neighbor",
               "--data", str(photos), "--cell", str(args.cell), "--gamma", str(args.gamma), "--steps", str(args.steps),
               "--batch-size", str(args.batch_size), "--patch-size", str(args.patch_size), "--lr", str(args.lr),
               "--schedule", "cosine", "--warmup", str(args.warmup), "--val-every", str(args.steps), "--checkpoint-every", str(args.steps),
               "--device", "cpu", "--no-resume", "--out", str(weights)]
    started = time.perf_counter()
    subprocess.run(command, check=True, cwd=ROOT)
    minutes = (time.perf_counter() - started) / 60
    after = evaluate(load(weights), held_out, desc=f"{args.init} fine-tuned")
    summary = {
        "camera": {"gains": GAINS, "read_noise": READS, "jpeg_quality": args.quality, "demosaic": args.demosaic},
        "init": args.init, "photos": args.photos, "steps": args.steps, "batch_size": args.batch_size,
        "patch_size": args.patch_size, "learning_rate": args.lr, "warmup": args.warmup, "cell": args.cell, "gamma": args.gamma,
        "held_out": f"CBSD68 ({len(held_out)} images) through the same camera, 8-bit, full images",
        "noisy_psnr": round(before["noisy_psnr"], 3), "psnr_before": round(before["psnr"], 3),
        "psnr_after": round(after["psnr"], 3), "gain_db": round(after["psnr"] - before["psnr"], 3),
        "fine_tune_minutes": round(minutes, 2), "command": " ".join(command[2:]).replace(str(ROOT) + "/", ""),
        "machine": machine(),
    }
    print(json.dumps({k: v for k, v in summary.items() if k != "machine"}, indent=1))
    save_results(f"finetune_camera_{tag}_cell{args.cell}", summary)


if __name__ == "__main__":
    main()
