"""Evaluate shipped models on a benchmark set and record the figures in results/ and the model cards.

Same noisy images as every other row of the tables: ``n2n_core.data.datasets.synthetic_val`` (8-bit
protocol: clean + N(0, sigma), rounded, clipped; seed = image index), or the float protocol with
--float (no rounding or clipping; for comparison with published tables).

    python benchmarks/evaluate.py --weights weights/default.safetensors --data ../shared/data/CBSD68 [--noise gaussian:25]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import benchmark_images, machine, save_results  # noqa: E402
from n2n_core.training.card import add_metric  # noqa: E402
from n2n_core.training.evaluate import evaluate  # noqa: E402
from n2n_core.data.datasets import synthetic_val, to_tensor  # noqa: E402
from n2n_core.inference.infer import denoise  # noqa: E402
from n2n_core.data.noise import parse_noise  # noqa: E402
from n2n_core.weights import load  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--noise", default="gaussian:25")
    ap.add_argument("--float", action="store_true", help="float protocol (no rounding/clipping of the noisy input)")
    ap.add_argument("--jpeg", type=int, default=None, metavar="QUALITY",
                    help="save each noisy input as JPEG of this quality (noisy photos as phones send them), e.g. 90")
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--no-card", action="store_true")
    args = ap.parse_args()
    torch.set_grad_enabled(False)
    model = load(args.weights)
    noise = parse_noise(args.noise)
    files, images = benchmark_images(args.data, args.limit)
    if args.float and args.jpeg:
        ap.error("--float and --jpeg exclude each other: a JPEG file holds 8-bit pixels")
    if args.float:
        pairs = []
        for i, img in enumerate(images):
            clean = to_tensor(img)
            pairs.append((noise(clean[None], torch.Generator().manual_seed(i))[0], clean))
    else:
        pairs = synthetic_val(images, noise, jpeg_quality=args.jpeg)
    res = evaluate(model, pairs, desc=Path(args.weights).stem)
    t0 = time.perf_counter()
    denoise(model, torch.rand(3, 512, 512))
    denoise(model, torch.rand(3, 512, 512))
    t512 = (time.perf_counter() - t0) / 2
    protocol = "float" if args.float else f"8-bit, JPEG q{args.jpeg}" if args.jpeg else "8-bit"
    name = f"{Path(args.data).name} {noise.spec()} ({protocol})"
    print(f"{Path(args.weights).stem}: {name}: noisy {res['noisy_psnr']:.2f} dB -> {res['psnr']:.2f} dB, "
          f"SSIM {res['ssim']:.4f}, {res['seconds']:.2f} s/image, 512x512 in {t512:.3f} s")
    cmd = (f"python benchmarks/evaluate.py --weights {args.weights} --data {args.data} --noise {args.noise}"
           + (" --float" if args.float else "") + (f" --jpeg {args.jpeg}" if args.jpeg else "") + (f" --limit {args.limit}" if args.limit else ""))
    out = {"machine": machine(), "weights": args.weights, "data": args.data, "noise": noise.spec(),
           "protocol": protocol, "seconds_512": t512, "command": cmd, **res,
           "per_image": {f.name: r for f, r in zip(files, res["per_image"])}}
    save_results(f"eval_{Path(args.weights).stem}_{Path(args.data).name}_{noise.spec().replace(':', '')}_{protocol.replace(', JPEG q', '-jpeg')}",
                 out)
    if not args.no_card:
        add_metric(Path(args.weights), {"name": f"PSNR {name}", "psnr": round(res["psnr"], 3),
                                        "ssim": round(res["ssim"], 4), "noisy_psnr": round(res["noisy_psnr"], 3),
                                        "images": res["images"], "command": cmd})
        add_metric(Path(args.weights), {"name": "CPU seconds for 512x512", "seconds": round(t512, 3),
                                        "command": cmd, "machine": machine()["cpu"]})


if __name__ == "__main__":
    main()
