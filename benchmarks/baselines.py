"""Classical baselines on the benchmark's noisy images: PSNR and seconds per image.

Every method sees the same 8-bit noisy PNG-equivalent images that ``n2n eval`` uses
(``n2n_core.data.datasets.synthetic_val``: clean + N(0, sigma), rounded and clipped, seed = image index).
Results are cached per image in benchmarks/results/baselines_<set>_sigma<S>.json, so the slow
BM3D run (about 40 s per image here) is done once and resumed if interrupted.

    python benchmarks/baselines.py --data ../shared/data/CBSD68 [--sigma 25] [--methods bm3d,opencv_nlm,skimage_nlm]
    python benchmarks/baselines.py --data skimage
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import RESULTS, benchmark_images, machine  # noqa: E402
from n2n_core.nn.atomic import atomic_write_text  # noqa: E402
from n2n_core.data.datasets import synthetic_val  # noqa: E402
from n2n_core.training.metrics import psnr  # noqa: E402
from n2n_core.data.noise import Gaussian  # noqa: E402


def run_method(name: str, noisy: np.ndarray, sigma: float) -> np.ndarray:
    """noisy: float (H, W, 3) in [0, 1] -> denoised float (H, W, 3)."""
    if name == "noisy":
        return noisy
    if name == "bm3d":
        import bm3d

        return bm3d.bm3d_rgb(noisy, sigma / 255.0)
    if name == "opencv_nlm":
        import cv2

        u8 = (noisy * 255).round().astype(np.uint8)
        h = 0.6 * sigma  # tuned on three CBSD432 images for sigma 25 (see --help)
        return cv2.fastNlMeansDenoisingColored(u8, None, h, h, 7, 21).astype(np.float64) / 255
    if name == "skimage_nlm":
        from skimage.restoration import denoise_nl_means

        s = sigma / 255.0
        return denoise_nl_means(noisy, h=0.8 * s, sigma=s, patch_size=5, patch_distance=6, fast_mode=True,
                                channel_axis=-1)
    raise ValueError(f"unknown method {name}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, help="folder of clean photographs, or skimage")
    ap.add_argument("--sigma", type=float, default=25)
    ap.add_argument("--methods", default="noisy,opencv_nlm,skimage_nlm,bm3d")
    ap.add_argument("--limit", type=int, default=None)
    args = ap.parse_args()
    import torch

    torch.set_num_threads(1)
    files, images = benchmark_images(args.data, args.limit)
    pairs = synthetic_val(images, Gaussian(args.sigma))
    out = RESULTS / f"baselines_{Path(args.data).name}_sigma{args.sigma:g}.json"
    res = json.loads(out.read_text()) if out.exists() else {"per_image": {}}
    res["protocol"] = "8-bit noisy input (clean + N(0, sigma), rounded, clipped), seed = image index"
    res["machine"] = machine()
    for method in args.methods.split(","):
        rows = res["per_image"].setdefault(method, {})
        for f, (noisy, clean) in zip(files, pairs):
            if f.name in rows:
                continue
            x = noisy.permute(1, 2, 0).double().numpy()
            t0 = time.perf_counter()
            y = np.clip(run_method(method, x, args.sigma), 0, 1)
            dt = time.perf_counter() - t0
            p = psnr(torch.from_numpy(np.ascontiguousarray(y)).permute(2, 0, 1), clean.double())
            rows[f.name] = {"psnr": p, "seconds": dt}
            print(f"{method:12s} {f.name:14s} {p:6.2f} dB {dt:7.2f} s", flush=True)
            atomic_write_text(out, json.dumps(res, indent=1))
        n = len(rows)
        res.setdefault("summary", {})[method] = {
            "images": n, "psnr": sum(r["psnr"] for r in rows.values()) / n,
            "seconds_per_image": sum(r["seconds"] for r in rows.values()) / n}
        atomic_write_text(out, json.dumps(res, indent=1))
    for m, s in res.get("summary", {}).items():
        print(f"{m:12s} {s['images']:3d} images  {s['psnr']:6.2f} dB  {s['seconds_per_image']:7.2f} s/image")


if __name__ == "__main__":
    main()
