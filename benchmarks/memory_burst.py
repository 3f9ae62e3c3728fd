"""The server's memory after a burst: RSS before, at the peak of, right after, and an idle time after a
burst of concurrent POST /denoise requests (issue 22: within 1.5x of the RSS before, after 5 idle minutes).

Starts its own server (uvicorn on ``app.main:app``, as ``n2n serve`` runs it, with the shipped default model)
and reads its VmRSS from /proc (Linux): the uvicorn process itself, so that no wrapper's memory counts.

    .venv/bin/python benchmarks/memory_burst.py                    # 64 concurrent 512x512 requests, 60 s idle
    .venv/bin/python benchmarks/memory_burst.py --five-minutes     # the issue's 5 idle minutes
    .venv/bin/python benchmarks/memory_burst.py --env N2N_MEMORY_RELEASE_SECONDS=0   # never give memory back

Writes benchmarks/results/memory_burst.json and prints one line a phase.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import free_port, machine, save_results, stop_server  # noqa: E402

MiB = 1024 * 1024


def rss(pid: int) -> int:
    """Resident bytes of process ``pid`` (VmRSS)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


def start(data_dir: Path, port: int, env: dict[str, str]):
    """uvicorn serving the app on 127.0.0.1:port, once /readyz answers 200 (a 600 s hang guard)."""
    import functools
    import os
    import subprocess

    from n2n_core.inference.runtime import die_with_parent

    proc = subprocess.Popen([sys.executable, "-m", "uvicorn", "app.main:app", "--host", "127.0.0.1", "--port",
                             str(port), "--log-level", "warning"],
                            env={**os.environ, "N2N_DATA_DIR": str(data_dir), "N2N_API_TOKEN": "bench", **env},
                            cwd=Path(__file__).resolve().parents[1],
                            preexec_fn=functools.partial(die_with_parent, os.getpid()))  # dies with this one
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with code {proc.returncode} (its output is above)")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    stop_server(proc)
    raise RuntimeError("server did not become ready within 600 s")


def image(size: int, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    base = np.linspace(0, 200, size * size * 3).reshape(size, size, 3)
    pixels = np.clip(base + rng.normal(0, 25, base.shape), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue()


async def burst(url: str, bodies: list[bytes], concurrency: int) -> list[int]:
    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(timeout=1800, limits=limits) as client:
        gate = asyncio.Semaphore(concurrency)

        async def one(body: bytes) -> int:
            async with gate:
                r = await client.post(f"{url}/denoise", content=body, headers={"Content-Type": "image/png"})
                return r.status_code

        return await asyncio.gather(*(one(b) for b in bodies))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--requests", type=int, default=64)
    p.add_argument("--concurrency", type=int, default=64)
    p.add_argument("--size", type=int, default=512)
    p.add_argument("--idle", type=float, default=60.0, help="seconds idle after the burst (default 60)")
    p.add_argument("--five-minutes", action="store_true", help="idle 300 s, as the issue asks")
    p.add_argument("--warm", type=int, default=2, help="requests, one at a time, before the 'before' figure")
    p.add_argument("--env", action="append", default=[], help="KEY=VALUE for the server (repeatable)")
    p.add_argument("--out", default="memory_burst", help="results/<out>.json")
    args = p.parse_args()
    idle = 300.0 if args.five_minutes else args.idle
    env = dict(e.split("=", 1) for e in args.env)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory() as tmp:
        proc = start(Path(tmp) / "data", port, env)
        try:
            pid = proc.pid
            bodies = [image(args.size, i) for i in range(args.requests)]
            with httpx.Client(timeout=600) as client:  # warm: the model loaded, the allocator used once
                for body in bodies[: args.warm]:
                    client.post(f"{url}/denoise", content=body, headers={"Content-Type": "image/png"})
            time.sleep(2)
            before = rss(pid)
            peak, stop = [before], threading.Event()

            def sample() -> None:
                while not stop.is_set():
                    peak[0] = max(peak[0], rss(pid))
                    time.sleep(0.1)

            sampler = threading.Thread(target=sample, daemon=True)
            sampler.start()
            t0 = time.perf_counter()
            statuses = asyncio.run(burst(url, bodies, args.concurrency))
            seconds = time.perf_counter() - t0
            stop.set()
            sampler.join()
            after = rss(pid)
            print(f"before {before / MiB:.0f} MiB; peak {peak[0] / MiB:.0f} MiB; right after {after / MiB:.0f} MiB "
                  f"({args.requests} x {args.size}^2 in {seconds:.1f} s, statuses {sorted(set(statuses))})",
                  flush=True)
            trace = []
            end = time.monotonic() + idle
            while time.monotonic() < end:
                time.sleep(min(5.0, max(0.0, end - time.monotonic())))
                trace.append(round(rss(pid) / MiB))
            idle_rss = rss(pid)
            ratio = idle_rss / before
            print(f"after {idle:.0f} s idle: {idle_rss / MiB:.0f} MiB = {ratio:.2f}x the RSS before "
                  f"({'within' if ratio <= 1.5 else 'OVER'} 1.5x); every 5 s: {trace}", flush=True)
        finally:
            stop_server(proc)
    path = save_results(args.out, {
        "machine": machine(), "requests": args.requests, "concurrency": args.concurrency, "size": args.size,
        "idle_seconds": idle, "server_env": env, "statuses": sorted(set(statuses)), "burst_seconds": seconds,
        "rss_mib": {"before": before / MiB, "peak": peak[0] / MiB, "right_after": after / MiB,
                    "after_idle": idle_rss / MiB, "idle_trace": trace},
        "after_idle_over_before": ratio, "peak_over_before_per_pixel": (peak[0] - before) / (args.requests
                                                                                               * args.size ** 2),
    })
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
