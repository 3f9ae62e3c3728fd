"""Scaling benchmarks, one part at a time (``--part``); each part prints its figures and writes
``benchmarks/results/scale_<part>.json``.

  training  data-parallel training step time for 1 and 2 processes (gloo on the CPU, each process
            limited to one torch thread), and their ratio. The global batch is the same for both, so
            the ideal ratio (2 processes / 1 process) is 0.5. Runs are interleaved (1, 2, 1, 2, ...)
            so that load from other programs hits both alike; the step time of a run is taken from
            the trainer's own clock between the end of the warm-up steps and the last step, so it
            covers data, forward + vjp, the all_reduce and the optimizer step, not process start-up.
            The all_reduce of the gradients alone is timed too, and the load average is recorded:
            on a machine whose cores are busy with other work, the 2 processes cannot run in parallel.

Other parts (e.g. ``http``: service throughput) plug into ``PARTS``.

    python benchmarks/scale.py --part training [--arch unet-s] [--batch-size 8] [--patch-size 64]
                               [--steps 12] [--warmup 3] [--repeats 2] [--procs 1 2]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import machine, save_results  # noqa: E402
from n2n_core import distributed  # noqa: E402
from n2n_core.distributed import DistContext  # noqa: E402


# ----------------------------------------------------------------------------- part: training


def _timed_training(ctx: DistContext, arch: str, batch_size: int, patch_size: int, warmup: int,
                    steps: int) -> tuple[float, float]:
    """Runs in every rank: ``warmup + steps`` training steps with one torch thread. Rank 0 returns the
    mean seconds per step over the last ``steps`` (from the history the trainer writes) and the median
    seconds of the step's collective alone (``reduce_step`` on the model's gradients, 20 times)."""
    import tempfile

    from n2n_core.data import BUILTIN_TRAIN, CleanImages, Dataset, builtin_images
    from n2n_core.noise import Gaussian
    from n2n_core.train import TrainConfig, Trainer

    torch.set_num_threads(1)
    cfg = TrainConfig(arch=arch, steps=warmup + steps, batch_size=batch_size, patch_size=patch_size,
                      val_every=warmup, checkpoint_every=10**9, device="cpu", schedule="constant")
    data = Dataset(CleanImages(builtin_images(BUILTIN_TRAIN[:3]), Gaussian(25)), [])
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(cfg, data, Path(tmp) / "bench.safetensors", dist=ctx)
        result = trainer.run(resume=False)
    marks = {h["step"]: h["seconds"] for h in result.history}
    comm = []
    for _ in range(20):
        distributed.barrier(ctx)
        t0 = time.perf_counter()
        distributed.reduce_step(trainer.model, torch.zeros(()), False, 1 / ctx.world_size, ctx)
        comm.append(time.perf_counter() - t0)
    return (marks[warmup + steps] - marks[warmup]) / steps, statistics.median(comm)


def part_training(args: argparse.Namespace) -> dict:
    runs: dict[int, list[float]] = {n: [] for n in args.procs}
    comm: dict[int, list[float]] = {n: [] for n in args.procs}
    load_before = os.getloadavg()[0]
    for _ in range(args.repeats):
        for n in args.procs:
            t0 = time.perf_counter()
            per_step, reduce_s = distributed.launch(_timed_training, n, (args.arch, args.batch_size,
                                                                         args.patch_size, args.warmup, args.steps))
            runs[n].append(per_step)
            comm[n].append(reduce_s)
            print(f"  {n} process(es): {per_step * 1000:.0f} ms/step, all_reduce {reduce_s * 1000:.2f} ms  "
                  f"(run {time.perf_counter() - t0:.1f} s, load {os.getloadavg()[0]:.1f})", flush=True)
    step = {n: statistics.median(v) for n, v in runs.items()}
    out = {"arch": args.arch, "global_batch": args.batch_size, "patch": args.patch_size, "steps": args.steps,
           "warmup": args.warmup, "repeats": args.repeats, "threads_per_process": 1, "backend": "gloo",
           "step_seconds": {str(n): round(s, 4) for n, s in step.items()},
           "runs": {str(n): [round(s, 4) for s in v] for n, v in runs.items()},
           "allreduce_seconds": {str(n): round(statistics.median(v), 6) for n, v in comm.items()},
           "load_average_1min": {"before": round(load_before, 2), "after": round(os.getloadavg()[0], 2)},
           "cores": os.cpu_count()}
    if 1 in step:
        out["ratio_to_1"] = {str(n): round(s / step[1], 3) for n, s in step.items() if n != 1}
    for n, s in step.items():
        ratio = f"  ratio {s / step[1]:.2f} (ideal {1 / n:.2f})" if 1 in step and n != 1 else ""
        print(f"{n} process(es): {s * 1000:.0f} ms per training step{ratio}")
    return out


def _training_args(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--arch", default="unet-s")
    ap.add_argument("--batch-size", type=int, default=8, help="global batch")
    ap.add_argument("--patch-size", type=int, default=64)
    ap.add_argument("--steps", type=int, default=12, help="timed steps per run")
    ap.add_argument("--warmup", type=int, default=3, help="untimed steps per run")
    ap.add_argument("--repeats", type=int, default=2, help="runs per process count, interleaved")
    ap.add_argument("--procs", type=int, nargs="+", default=[1, 2], help="process counts to time")


# ----------------------------------------------------------------------------- parts


PARTS: dict[str, tuple[Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], dict]]] = {
    "training": (_training_args, part_training),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--part", choices=sorted(PARTS), default="training")
    for add_args, _ in PARTS.values():
        add_args(ap)
    args = ap.parse_args()
    torch.set_grad_enabled(False)
    print(f"scale: {args.part}", flush=True)
    payload = {"part": args.part, "machine": {**machine(), "threads": 1}, **PARTS[args.part][1](args)}
    print(f"wrote {save_results(f'scale_{args.part}', payload)}")


if __name__ == "__main__":
    main()
