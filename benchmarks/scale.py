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

  http      POST /denoise throughput on noisy 512x512 photos (--size) through nginx (the repository's
            deploy/nginx/n2n.conf with TLS, rendered for loopback ports: benchmarks/cluster.py), with 1
            and then 2 API replicas (--replicas), each limited to one torch thread (N2N_THREADS=1), the
            shipped default model, one store (SQLite in the cluster's data folder, or --database-url).
            Each run starts a fresh cluster, sends 2 untimed requests per replica, then --requests
            requests with --concurrency in flight; runs alternate (1, 2, 1, 2, ...). Prints images/s
            and the ratio 2 replicas / 1 replica (ideal 2.0), with the load average: on a machine whose
            cores are busy with other work, two replicas cannot run in parallel.

    python benchmarks/scale.py --part training [--arch unet-s] [--batch-size 8] [--patch-size 64]
                               [--steps 12] [--warmup 3] [--repeats 2] [--procs 1 2]
    python benchmarks/scale.py --part http [--size 512] [--requests 24] [--concurrency 4]
                               [--replicas 1 2] [--repeats 2] [--database-url URL]
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
from n2n_core.training import distributed  # noqa: E402
from n2n_core.training.distributed import DistContext  # noqa: E402


# ----------------------------------------------------------------------------- figures


def _figures(name: str, runs: dict[int, list[float]], digits: int, load_before: float) -> tuple[dict[int, float], dict]:
    """The median of each count's runs, and what every part records: those medians (as ``name``), every
    run, each median's ratio to that of 1 (process or replica), the load average and the cores."""
    median = {n: statistics.median(v) for n, v in runs.items()}
    out = {name: {str(n): round(m, digits) for n, m in median.items()},
           "runs": {str(n): [round(x, digits) for x in v] for n, v in runs.items()},
           "load_average_1min": {"before": round(load_before, 2), "after": round(os.getloadavg()[0], 2)},
           "cores": os.cpu_count()}
    if 1 in median:
        out["ratio_to_1"] = {str(n): round(m / median[1], 3) for n, m in median.items() if n != 1}
    return median, out


# ----------------------------------------------------------------------------- part: training


def _timed_training(ctx: DistContext, arch: str, batch_size: int, patch_size: int, warmup: int,
                    steps: int) -> tuple[float, float]:
    """Runs in every rank: ``warmup + steps`` training steps with one torch thread. Rank 0 returns the
    mean seconds per step over the last ``steps`` (from the history the trainer writes) and the median
    seconds of the step's collective alone (``reduce_step`` on the model's gradients, 20 times)."""
    import tempfile

    from n2n_core.data.datasets import BUILTIN_TRAIN, CleanImages, Dataset, builtin_images
    from n2n_core.data.noise import Gaussian
    from n2n_core.training.train import TrainConfig, Trainer

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
    step, figures = _figures("step_seconds", runs, 4, load_before)
    out = {"arch": args.arch, "global_batch": args.batch_size, "patch": args.patch_size, "steps": args.steps,
           "warmup": args.warmup, "repeats": args.repeats, "threads_per_process": 1, "backend": "gloo", **figures,
           "allreduce_seconds": {str(n): round(statistics.median(v), 6) for n, v in comm.items()}}
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
    ap.add_argument("--repeats", type=int, default=2, help="runs per process (or replica) count, interleaved")
    ap.add_argument("--procs", type=int, nargs="+", default=[1, 2], help="process counts to time")


# ----------------------------------------------------------------------------- part: http


async def _post_many(cluster, photo: bytes, n: int, concurrency: int) -> tuple[float, dict[int, int]]:
    """Send ``n`` POST /denoise with ``concurrency`` in flight through nginx; (wall seconds, status counts)."""
    import asyncio

    import httpx

    codes: dict[int, int] = {}
    sem = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(base_url=cluster.url, verify=cluster.tls(), timeout=900) as client:
        async def one() -> None:
            async with sem:
                r = await client.post("/denoise", content=photo, headers={"content-type": "image/png"})
                codes[r.status_code] = codes.get(r.status_code, 0) + 1

        t0 = time.perf_counter()
        await asyncio.gather(*(one() for _ in range(n)))
        return time.perf_counter() - t0, codes


def part_http(args: argparse.Namespace) -> dict:
    import asyncio
    import tempfile

    from benchmarks.cluster import LocalCluster
    from benchmarks.common import kept_logs_folder
    from benchmarks.load import png

    photo = png(args.size)
    runs: dict[int, list[float]] = {n: [] for n in args.replicas}
    load_before = os.getloadavg()[0]
    for _ in range(args.repeats):
        for n in args.replicas:
            # The cluster's folder is deleted after each run: on a failure its logs are copied to
            # benchmarks/results/logs/ first, and the error names that copy.
            kept = kept_logs_folder(f"scale_http-{n}replicas")
            with tempfile.TemporaryDirectory(prefix="n2n-scale-http-") as tmp:
                with LocalCluster(Path(tmp), database_url=args.database_url, replicas=n, keep_logs=kept) as cluster:
                    asyncio.run(_post_many(cluster, photo, 2 * n, n))  # warm-up: every replica has worked
                    wall, codes = asyncio.run(_post_many(cluster, photo, args.requests, args.concurrency))
                if codes != {200: args.requests}:
                    raise RuntimeError(f"{n} replica(s): answers {codes}, not all 200 (logs: "
                                       f"{cluster.save_logs(kept)})")
            runs[n].append(args.requests / wall)
            print(f"  {n} replica(s): {args.requests / wall:.2f} images/s ({wall:.1f} s for {args.requests}, "
                  f"load {os.getloadavg()[0]:.1f})", flush=True)
    rate, figures = _figures("images_per_second", runs, 3, load_before)
    out = {"size": args.size, "requests": args.requests, "concurrency": args.concurrency, "repeats": args.repeats,
           "threads_per_replica": 1, "model": "default", "proxy": "nginx (deploy/nginx/n2n.conf, TLS)",
           "store": "PostgreSQL" if args.database_url else "SQLite", **figures}
    for n, r in rate.items():
        ratio = f"  ratio {r / rate[1]:.2f} (ideal {n:.1f})" if 1 in rate and n != 1 else ""
        print(f"{n} replica(s): {r:.2f} images/s{ratio}")
    return out


def _http_args(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--size", type=int, default=512, help="photo side in pixels")
    ap.add_argument("--requests", type=int, default=24, help="timed requests per run")
    ap.add_argument("--concurrency", type=int, default=4, help="requests in flight")
    ap.add_argument("--replicas", type=int, nargs="+", default=[1, 2], help="replica counts to time")
    ap.add_argument("--database-url", default=None, help="N2N_DATABASE_URL of the replicas (default: SQLite)")


# ----------------------------------------------------------------------------- parts


PARTS: dict[str, tuple[Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], dict]]] = {
    "training": (_training_args, part_training),
    "http": (_http_args, part_http),
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
