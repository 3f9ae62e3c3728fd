"""Quality of reduced precision: every shipped model on the same noisy images in float32 and in bfloat16.

The goal (issue 21): each shipped model within 0.02 dB of its float32 PSNR on CBSD68, sigma 25, 8-bit
protocol. The bfloat16 figure goes into each model card as "PSNR ... (8-bit, bfloat16)", with the float32
figure of the same run beside it (the card's "PSNR ... (8-bit)" is the float32 one of benchmarks/evaluate.py);
results/precision_quality.json keeps every figure.

    python benchmarks/precision_quality.py --data ../shared/data/CBSD68 [--models default,fast] [--limit N]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import benchmark_images, machine, save_results  # noqa: E402
from n2n_core.training.card import add_metric  # noqa: E402
from n2n_core.data.datasets import synthetic_val  # noqa: E402
from n2n_core.training.evaluate import evaluate  # noqa: E402
from n2n_core.data.noise import parse_noise  # noqa: E402
from n2n_core.weights import load  # noqa: E402
from n2n_core.weights import resolve  # noqa: E402

SHIPPED = ("default", "fast", "best", "blind", "seed")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, help="a folder of clean photos (CBSD68), or skimage")
    ap.add_argument("--noise", default="gaussian:25")
    ap.add_argument("--models", default=",".join(SHIPPED))
    ap.add_argument("--precision", default="bfloat16", choices=["bfloat16", "float16"])
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--no-card", action="store_true")
    args = ap.parse_args()
    torch.set_grad_enabled(False)
    noise = parse_noise(args.noise)
    files, photos = benchmark_images(args.data, args.limit)
    pairs = synthetic_val(photos, noise)
    set_name = f"{Path(args.data).name} {noise.spec()} (8-bit)"
    command = (f"python benchmarks/precision_quality.py --data {args.data} --noise {args.noise} "
               f"--models {args.models} --precision {args.precision}" + (f" --limit {args.limit}" if args.limit else ""))
    rows = {}
    for name in args.models.split(","):
        weights = resolve(name)
        model = load(weights)
        figures = {p: evaluate(model, pairs, progress=False, precision=p) for p in ("float32", args.precision)}
        exact, reduced = figures["float32"], figures[args.precision]
        delta = reduced["psnr"] - exact["psnr"]
        worst = min(r["psnr"] - e["psnr"] for r, e in zip(reduced["per_image"], exact["per_image"]))
        rows[name] = {"float32_psnr": exact["psnr"], f"{args.precision}_psnr": reduced["psnr"], "delta_db": delta,
                      "worst_image_delta_db": worst, "float32_seconds": exact["seconds"],
                      f"{args.precision}_seconds": reduced["seconds"], "ran": reduced["precision"]}
        print(f"{name:8s} float32 {exact['psnr']:.3f} dB  {args.precision} {reduced['psnr']:.3f} dB  "
              f"delta {delta:+.4f} dB (worst image {worst:+.4f})  {exact['seconds']:.2f} -> "
              f"{reduced['seconds']:.2f} s/image", flush=True)
        if not args.no_card:  # the float32 figure is the card's "PSNR <set>" (benchmarks/evaluate.py)
            add_metric(weights, {"name": f"PSNR {set_name[:-1]}, {args.precision})", "psnr": round(reduced["psnr"], 3),
                                 "ssim": round(reduced["ssim"], 4), "float32_psnr_same_run": round(exact["psnr"], 3),
                                 "delta_db": round(delta, 4), "images": reduced["images"],
                                 "precision": reduced["precision"], "command": command})
    save_results("precision_quality", {"machine": machine(), "data": args.data, "noise": noise.spec(),
                                       "protocol": "8-bit", "images": len(files), "command": command, "models": rows})


if __name__ == "__main__":
    main()
