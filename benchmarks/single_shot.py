"""Single-shot training sets (issue 24): each CBSD432 photo with ONE fixed noise draw, saved once as 8-bit PNG.

    python benchmarks/single_shot.py --noise gaussian:25 --out data/singles-g25
    python benchmarks/single_shot.py --noise poisson-gaussian:0.02,10 --out data/singles-camera

writes
    OUT/singles/NAME.png     one noisy shot of each training photo: what Neighbor2Neighbor trains on
    OUT/pairs/A/NAME.png     the same shot, and
    OUT/pairs/B/NAME.png     a second, independent one: what Noise2Noise needs for the comparison
    OUT/val/NAME.png         the clean photos held out for validation (never trained on)

The first ``--val`` photos of CBSD432 (sorted by name) are held out; CBSD68, the benchmark, is never read.
Draw i of photo k comes from a generator seeded with (seed, k, i) alone, so the files are reproducible.
Both training folders are then trained with the same budget:

    n2n train --method neighbor2neighbor --data OUT/singles --val OUT/val ...
    n2n train --data OUT/pairs --val OUT/val ...
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from n2n_core.data.datasets import list_images, load_rgb8, to_tensor  # noqa: E402
from n2n_core.data.noise import parse_noise, quantize8  # noqa: E402

DEFAULT_SOURCE = Path(__file__).resolve().parents[2] / "shared" / "data" / "CBSD432"


def noisy_shot(clean: np.ndarray, noise, seed: int) -> np.ndarray:
    """One 8-bit noisy draw of a uint8 (H, W, 3) photo: round(clip(clean + noise)), as a camera file holds it."""
    noisy = quantize8(noise(to_tensor(clean)[None], torch.Generator().manual_seed(seed)))[0]
    return noisy.mul(255).round_().to(torch.uint8).permute(1, 2, 0).contiguous().numpy()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--source", type=Path, default=DEFAULT_SOURCE, help="clean training photos (default: CBSD432)")
    ap.add_argument("--noise", default="gaussian:25")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--val", type=int, default=12, help="photos held out for validation (default: 12)")
    ap.add_argument("--seed", type=int, default=2024)
    args = ap.parse_args()

    if "CBSD68" in str(args.source.resolve()):
        raise SystemExit("CBSD68 is the benchmark: never train on it")
    noise = parse_noise(args.noise)
    files = list_images(args.source)
    if len(files) <= args.val:
        raise SystemExit(f"{args.source} holds {len(files)} photos, not more than --val {args.val}")
    if args.out.exists():
        shutil.rmtree(args.out)
    for sub in ("singles", "pairs/A", "pairs/B", "val"):
        (args.out / sub).mkdir(parents=True)
    for f in files[: args.val]:
        shutil.copyfile(f, args.out / "val" / f.name)
    for k, f in enumerate(tqdm(files[args.val:], desc="noisy shots")):
        clean = load_rgb8(f)
        first, second = (noisy_shot(clean, noise, (args.seed * 1_000_003 + k) * 2 + i) for i in (0, 1))
        name = f.with_suffix(".png").name
        Image.fromarray(first).save(args.out / "singles" / name)
        Image.fromarray(first).save(args.out / "pairs" / "A" / name)
        Image.fromarray(second).save(args.out / "pairs" / "B" / name)
    print(f"{len(files) - args.val} photos, noise {noise.spec()}: {args.out}/singles, {args.out}/pairs, "
          f"{args.val} held out in {args.out}/val")


if __name__ == "__main__":
    main()
