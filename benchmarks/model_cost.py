"""What each shipped model costs per 512x512 image, against the unet-s architecture (the `default` before issue 14).

    python benchmarks/model_cost.py [--models default,best,blind,fast] [--repeats 7] [--threads 0]

Every model and the reference are timed interleaved in one run, with the same threads, so that the
ratios hold on any machine (absolute times here vary too much). The reference is a freshly
initialised unet-s: cost depends on the architecture, not on the weights. Prints the median seconds
and the ratio to the reference, and saves benchmarks/results/model_cost.json.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import interleaved, machine, median, save_results  # noqa: E402
from n2n_core.inference.infer import denoise  # noqa: E402
from n2n_core.models import build  # noqa: E402
from n2n_core.weights import load  # noqa: E402
from n2n_core.weights import resolve  # noqa: E402

REFERENCE = "unet-s (today's default architecture)"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="default,best,blind,fast")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = ap.parse_args()
    torch.set_grad_enabled(False)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    image = torch.rand(3, 512, 512)
    models = {REFERENCE: build("unet-s")}
    models.update({name: load(resolve(name)) for name in args.models.split(",")})
    calls = {name: (lambda m=model: denoise(m, image)) for name, model in models.items()}
    for call in calls.values():  # warm-up
        call()
    times = interleaved(calls, args.repeats, torch.device("cpu"))
    reference = median(times[REFERENCE])
    result = {"machine": machine(), "image": "512x512", "repeats": args.repeats, "reference": REFERENCE, "models": {}}
    for name, samples in times.items():
        seconds = median(samples)
        result["models"][name] = {"seconds": seconds, "ratio": seconds / reference}
        print(f"{name:40s} {seconds:7.3f} s   {seconds / reference:5.2f}x")
    print(f"saved {save_results('model_cost', result)}")


if __name__ == "__main__":
    main()
