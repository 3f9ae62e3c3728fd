"""Denoising on a GPU through n2n_core's tiled inference: a 512x512 image and a 24 MP photo.

    python benchmarks/gpu_infer.py --device cuda --weights default --repeats 5

Prints (and saves as benchmarks/results/gpu_infer_<device>.json) the median seconds of each, the
per-pixel cost ratio of the large photo to the small one, and that the tiled result on the device
matches the untiled one on the CPU (float64, same weights) on a 600x400 crop.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import machine, save_results, sync  # noqa: E402
from n2n_core import load  # noqa: E402
from n2n_core.inference.infer import denoise  # noqa: E402
from n2n_core.weights import resolve  # noqa: E402


def timed(fn, repeats: int, device: torch.device) -> float:
    times = []
    for _ in range(repeats):
        sync(device)
        start = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--weights", default="default")
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    torch.set_grad_enabled(False)
    device = torch.device(args.device)
    model = load(resolve(args.weights)).to(device)
    rng = np.random.default_rng(0)
    small = torch.from_numpy(rng.random((3, 512, 512), dtype=np.float32)).to(device)
    large = torch.from_numpy(rng.random((3, 4000, 6000), dtype=np.float32)).to(device)
    denoise(model, small)
    denoise(model, large[:, :1000, :1000])
    t_small = timed(lambda: denoise(model, small), args.repeats, device)
    t_large = timed(lambda: denoise(model, large), max(1, args.repeats // 2), device)
    crop = large[:, :400, :600].double()
    reference = denoise(load(resolve(args.weights)).to(dtype=torch.float64), crop.cpu(), tile=10**6)
    tiled = denoise(model.to(dtype=torch.float64), crop, tile=128).cpu()
    result = {"machine": machine(), "device": str(device), "weights": args.weights,
              "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
              "seconds_512x512": t_small, "seconds_6000x4000": t_large,
              "per_pixel_ratio": (t_large / (6000 * 4000)) / (t_small / (512 * 512)),
              "max_abs_diff_tiled_device_vs_untiled_cpu_float64": (tiled - reference).abs().max().item()}
    print(json.dumps(result, indent=1))
    save_results(f"gpu_infer_{device.type}", result)


if __name__ == "__main__":
    main()
