"""Load test of POST /denoise on loopback: throughput, p50/p99 latency, server peak memory.

Starts its own server (or uses --url, which must be a loopback address), then for each image
size sends --requests requests with --concurrency in flight, bounded by --timeout seconds.

    python benchmarks/load.py [--sizes 256,512] [--requests 64] [--concurrency 16]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlparse

import httpx
import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import free_port, machine, save_results, start_server, stop_server  # noqa: E402

LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def png(size: int) -> bytes:
    rng = np.random.default_rng(size)
    clean = np.linspace(0, 255, size * size * 3).reshape(size, size, 3)
    noisy = np.clip(clean + rng.normal(0, 25, clean.shape), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(noisy).save(buf, format="PNG")
    return buf.getvalue()


async def run(url: str, data: bytes, n: int, concurrency: int, timeout: float) -> dict:
    sem = asyncio.Semaphore(concurrency)
    latencies: list[float] = []
    codes: dict[int, int] = {}
    deadline = time.monotonic() + timeout

    async with httpx.AsyncClient(base_url=url, timeout=timeout) as client:
        async def one() -> None:
            async with sem:
                if time.monotonic() > deadline:
                    return
                t0 = time.perf_counter()
                r = await client.post("/denoise", content=data, headers={"content-type": "image/png"})
                latencies.append(time.perf_counter() - t0)
                codes[r.status_code] = codes.get(r.status_code, 0) + 1

        t0 = time.perf_counter()
        await asyncio.gather(*(one() for _ in range(n)))
        wall = time.perf_counter() - t0
    ok = codes.get(200, 0)
    q = statistics.quantiles(latencies, n=100) if len(latencies) > 1 else latencies * 99
    return {"requests": len(latencies), "status_codes": codes, "seconds": wall, "images_per_second": ok / wall,
            "p50_seconds": q[49], "p99_seconds": q[98]}


def peak_memory(url: str) -> float | None:
    text = httpx.get(f"{url}/metrics", timeout=10).text
    m = re.search(r"^n2n_process_peak_resident_bytes (\S+)", text, re.M)
    return float(m.group(1)) if m else None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", default=None, help="a running server on loopback (default: start one)")
    ap.add_argument("--sizes", default="256,512")
    ap.add_argument("--requests", type=int, default=64)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--timeout", type=float, default=300)
    args = ap.parse_args()
    proc = None
    url = args.url
    if url is None:
        port = free_port()
        proc = start_server(Path(tempfile.mkdtemp(prefix="n2n-load-")), port)
        url = f"http://127.0.0.1:{port}"
    if urlparse(url).hostname not in LOOPBACK:
        raise SystemExit("load tests only target loopback addresses")
    try:
        results = {}
        for size in (int(s) for s in args.sizes.split(",")):
            res = asyncio.run(run(url, png(size), args.requests, args.concurrency, args.timeout))
            results[f"{size}x{size}"] = res
            print(f"{size}x{size}: {res['images_per_second']:.2f} images/s  p50 {res['p50_seconds']:.2f} s  "
                  f"p99 {res['p99_seconds']:.2f} s  codes {res['status_codes']}", flush=True)
        peak = peak_memory(url)
        print(f"server peak memory: {peak / 2**20:.0f} MiB" if peak else "server peak memory: unknown")
        save_results("load", {"machine": machine(), "url": url, "concurrency": args.concurrency, "results": results,
                              "server_peak_resident_bytes": peak})
    finally:
        if proc is not None:
            stop_server(proc)


if __name__ == "__main__":
    main()
