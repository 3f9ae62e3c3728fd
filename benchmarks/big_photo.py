"""Real photo sizes: the per-pixel cost of a 6000x4000 photo against a 512x512 one, and peak memory.

    python benchmarks/big_photo.py [--weights default] [--threads 2] [--repeats 5] [--precision float32]

1. Model time, in this process, same model and threads: the median of ``--repeats`` 512x512 denoises
   and one 6000x4000 denoise (both through ``n2n_core.denoise`` with its defaults: row streams in
   bands for the U-Nets, tiles for the rest); prints both,
   the time per megapixel of each, and their ratio (goal: at most 1.2).
2. Peak resident memory of the whole path for the 24 MP photo: ``n2n denoise big.png`` in a child
   process (decode, bands, encode), its VmHWM (goal: at most 1.5 GB).
Everything runs at ``--precision`` (default float32, the figures recorded before precision existed; auto
and bfloat16 as n2n_core.inference.precision says). Writes benchmarks/results/big_photo.json (big_photo_bfloat16.json
and so on for another precision).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import machine, save_results  # noqa: E402
from n2n_core.inference.infer import DEFAULT_TILE_MEMORY, denoise, plan_bands  # noqa: E402
from n2n_core.models import size_multiple  # noqa: E402
from n2n_core.inference.precision import resolve_precision  # noqa: E402
from n2n_core.analysis import receptive_radius  # noqa: E402
from n2n_core.inference.streaming import streamable  # noqa: E402
from n2n_core.inference.runtime import set_threads, tune_allocator  # noqa: E402
from n2n_core.weights import load  # noqa: E402
from n2n_core.weights import resolve  # noqa: E402


#: ``n2n`` run in a child that reports its own peak resident memory (VmHWM, counted from its exec: the
#: rusage of a child forked from this large process would include the pages it shared before exec).
CLI_WITH_PEAK = """
import sys
from n2n_core.cli import main
try:
    code = main(sys.argv[1:])
finally:
    hwm = next(line for line in open("/proc/self/status") if line.startswith("VmHWM"))
    print("peak_kib=" + hwm.split()[1], file=sys.stderr)
sys.exit(code)
"""


def photo(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A smooth colour scene with sigma-25 noise, as uint8 (H, W, 3)."""
    rng = np.random.default_rng(seed)
    rows = np.linspace(0, 1, height, dtype=np.float32)[:, None]
    cols = np.linspace(0, 1, width, dtype=np.float32)[None, :]
    scene = np.stack([0.5 + 0.4 * np.sin(6 * rows + 3 * cols), 0.5 + 0.3 * np.cos(4 * cols - 2 * rows),
                      0.3 + 0.4 * rows * cols], axis=-1) * 255
    noisy = scene + rng.normal(0, 25, scene.shape).astype(np.float32)
    return np.clip(np.round(noisy), 0, 255).astype(np.uint8)


def to_tensor(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(a).permute(2, 0, 1).float().div_(255)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", default="default")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--height", type=int, default=4000)
    ap.add_argument("--width", type=int, default=6000)
    ap.add_argument("--precision", default="float32", choices=["auto", "float32", "bfloat16", "float16"])
    args = ap.parse_args()
    torch.set_grad_enabled(False)
    tune_allocator()
    threads = set_threads(args.threads)
    model = load(resolve(args.weights))
    precision = resolve_precision(args.precision, "cpu")
    small, big = to_tensor(photo(512, 512, 1)), to_tensor(photo(args.height, args.width, 2))

    denoise(model, small, precision=precision)  # warm-up
    small_times = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        denoise(model, small, precision=precision)
        small_times.append(time.perf_counter() - t0)
    t0 = time.perf_counter()
    denoise(model, big, precision=precision)
    big_seconds = time.perf_counter() - t0
    small_seconds = statistics.median(small_times)
    per_mp_small = small_seconds / (512 * 512 / 1e6)
    per_mp_big = big_seconds / (args.height * args.width / 1e6)
    mult = size_multiple(model)
    plan = plan_bands(model, args.height, args.width, DEFAULT_TILE_MEMORY)
    how = (f"row streams: {len(plan.strips)} strip(s), bands of {plan.rows} rows "
           f"({plan.steps(args.height, mult)} steps for the big photo)" if streamable(model) else "tiles")
    print(f"{args.weights}: {threads} threads, {precision}; {how}; receptive radius {receptive_radius(model)} px")
    print(f"512x512: {small_seconds:.3f} s ({per_mp_small:.3f} s/MP, median of {args.repeats})")
    print(f"{args.width}x{args.height}: {big_seconds:.1f} s ({per_mp_big:.3f} s/MP)")
    print(f"per-pixel ratio, big / small: {per_mp_big / per_mp_small:.2f}")

    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "big.png"
        Image.fromarray(photo(args.height, args.width, 2)).save(src, compress_level=1)
        env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
        t0 = time.perf_counter()
        child = subprocess.run([sys.executable, "-c", CLI_WITH_PEAK, "denoise", str(src), "-o", str(Path(tmp) / "out"),
                                "--weights", str(args.weights), "--no-progress", "--precision", precision],
                               check=True, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        cli_seconds = time.perf_counter() - t0
        peak_mb = int(child.stderr.split("peak_kib=")[-1].split()[0]) / 1024
    print(f"n2n denoise of the {args.width}x{args.height} PNG: {cli_seconds:.1f} s, peak resident {peak_mb:.0f} MB")
    name = "big_photo" if precision == "float32" else f"big_photo_{precision}"
    save_results(name, {"machine": machine(), "weights": args.weights, "threads": threads, "precision": precision,
                               "small_seconds": small_seconds, "small_times": small_times, "big_seconds": big_seconds,
                               "seconds_per_mp_small": per_mp_small, "seconds_per_mp_big": per_mp_big,
                               "ratio": per_mp_big / per_mp_small, "streamed": streamable(model),
                               "band_rows": plan.rows, "strips": len(plan.strips), "cli_seconds": cli_seconds, "cli_peak_mb": peak_mb,
                               "command": "python benchmarks/big_photo.py " + " ".join(sys.argv[1:])})


if __name__ == "__main__":
    main()
