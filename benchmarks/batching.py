"""Would batching the tiles of different requests pay? Two 512x512 images denoised one after another
against the same two in one batch (N=2), interleaved, same model and threads.

    python benchmarks/batching.py [--weights default] [--repeats 7]

Prints the median time of each and their ratio; writes benchmarks/results/batching.json. Measured on
2 cores: 0.94 (6 % of throughput). The service does not batch requests together: the gain holds only
for images of the same width (a row stream's band), and a small request would wait for its partner's
work (twice its latency).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import machine, save_results  # noqa: E402
from n2n_core.inference.infer import denoise  # noqa: E402
from n2n_core.inference.runtime import tune_allocator  # noqa: E402
from n2n_core.weights import load  # noqa: E402
from n2n_core.weights import resolve  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", default="default")
    ap.add_argument("--repeats", type=int, default=7)
    args = ap.parse_args()
    torch.set_grad_enabled(False)
    tune_allocator()
    model = load(resolve(args.weights))
    first, second = torch.rand(3, 512, 512), torch.rand(3, 512, 512)
    pair = torch.stack([first, second])
    denoise(model, pair)
    apart, together = [], []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        denoise(model, first)
        denoise(model, second)
        apart.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        denoise(model, pair)
        together.append(time.perf_counter() - t0)
    one_by_one, batched = statistics.median(apart), statistics.median(together)
    print(f"{args.weights}, {torch.get_num_threads()} threads: two 512x512 one after another {one_by_one:.3f} s, "
          f"as one batch {batched:.3f} s; batched / apart {batched / one_by_one:.2f}")
    save_results("batching", {"machine": machine(), "weights": args.weights, "threads": torch.get_num_threads(),
                              "apart_seconds": one_by_one, "batched_seconds": batched,
                              "ratio": batched / one_by_one, "command": "python benchmarks/batching.py"})


if __name__ == "__main__":
    main()
