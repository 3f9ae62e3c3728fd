"""Load test of POST /denoise on loopback: throughput, p50/p99 latency, server peak memory.

Starts its own server (or uses --url, which must be a loopback address), then for each image
size sends --requests requests with --concurrency in flight, bounded by --timeout seconds.

    python benchmarks/load.py [--sizes 256,512] [--requests 64] [--concurrency 16]
    python benchmarks/load.py --sizes 512 --requests 16 --concurrency 4 --compare-inprocess
    python benchmarks/load.py --sizes 512 --requests 0 --head-of-line --with-training

--compare-inprocess  the same images denoised in this process, one after another, with n2n_core
                     (decoded pixels -> denoise_picture; and decode -> denoise -> encode), same
                     threads as the server: the service's throughput as a share of that.
--head-of-line       a 512² request's latency alone (median of 5), then while a 6000x4000 photo
                     is being denoised (each of 5 sent after the previous answered).
--with-training      a 512² request's latency alone, then while a training job runs on the host.
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


def latency(url: str, data: bytes, timeout: float) -> float:
    t0 = time.perf_counter()
    r = httpx.post(f"{url}/denoise", content=data, headers={"content-type": "image/png"}, timeout=timeout)
    r.raise_for_status()
    return time.perf_counter() - t0


def median_latency(url: str, data: bytes, n: int, timeout: float) -> float:
    latency(url, data, timeout)  # warm-up
    return statistics.median(latency(url, data, timeout) for _ in range(n))


def inprocess(data: bytes, n: int) -> dict:
    """Images per second of n2n_core alone on the same PNG, one after another, with torch's default threads:
    denoise of decoded pixels, and decode -> denoise -> encode."""
    import torch

    from n2n_core.data import images
    from n2n_core.inference.infer import denoise_picture
    from n2n_core.weights import load
    from n2n_core.weights import resolve

    torch.set_grad_enabled(False)
    model = load(resolve("default"))
    pic = images.decode(data)
    denoise_picture(model, pic)
    t0 = time.perf_counter()
    for _ in range(n):
        denoise_picture(model, pic)
    pixels_only = n / (time.perf_counter() - t0)
    t0 = time.perf_counter()
    for _ in range(n):
        images.encode(denoise_picture(model, images.decode(data)), "png")
    whole = n / (time.perf_counter() - t0)
    return {"denoise_images_per_second": pixels_only, "decode_denoise_encode_images_per_second": whole,
            "threads": torch.get_num_threads()}


def head_of_line(url: str, timeout: float) -> dict:
    """512² latency alone, and while a 6000x4000 PNG is being denoised."""
    import threading

    small, large = png(512), noisy_png(4000, 6000)
    solo = median_latency(url, small, 5, timeout)
    big: dict = {}

    def send_large() -> None:
        t0 = time.perf_counter()
        r = httpx.post(f"{url}/denoise", content=large, headers={"content-type": "image/png"}, timeout=timeout)
        big.update(status=r.status_code, seconds=time.perf_counter() - t0)

    thread = threading.Thread(target=send_large)
    thread.start()
    time.sleep(5)  # the large photo is decoded and its first tiles run
    during = [latency(url, small, timeout) for _ in range(5)]
    still_running = thread.is_alive()
    thread.join()
    return {"solo_512_seconds": solo, "during_large_512_seconds": during, "median_during": statistics.median(during),
            "ratio": statistics.median(during) / solo, "large_photo": big, "large_still_running_after": still_running}


def with_training(url: str, token: str, timeout: float) -> dict:
    """512² latency alone, then while a training job (unet-s on the built-in photos) runs on the same host."""
    small = png(512)
    solo = median_latency(url, small, 5, timeout)
    auth = {"authorization": f"Bearer {token}"}
    job = httpx.post(f"{url}/train", json={"dataset": "builtin", "arch": "unet-s", "steps": 100000, "batch_size": 16,
                                           "patch_size": 64}, headers=auth, timeout=timeout).json()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:  # running, with steps done
        info = httpx.get(f"{url}/train/{job['id']}", timeout=timeout).json()
        if info["status"] == "running" and (info.get("progress") or {}).get("step", 0) > 5:
            break
        time.sleep(0.5)
    try:
        during = median_latency(url, small, 5, timeout)
        step_before = httpx.get(f"{url}/train/{job['id']}", timeout=timeout).json()["progress"]["step"]
    finally:
        httpx.post(f"{url}/train/{job['id']}/cancel", headers=auth, timeout=timeout)
    return {"solo_512_seconds": solo, "with_training_512_seconds": during, "ratio": during / solo,
            "training_steps_done": step_before}


def noisy_png(h: int, w: int) -> bytes:
    rng = np.random.default_rng(0)
    ramp = np.linspace(0, 255, w, dtype=np.float32)[None, :, None]
    noisy = np.clip(ramp + rng.normal(0, 25, (h, w, 3)).astype(np.float32), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(noisy).save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


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
    ap.add_argument("--compare-inprocess", action="store_true")
    ap.add_argument("--head-of-line", action="store_true")
    ap.add_argument("--with-training", action="store_true")
    ap.add_argument("--token", default="bench-token", help="API token of --url (for --with-training)")
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
        results: dict = {}
        for size in (int(s) for s in args.sizes.split(",")) if args.requests else ():
            res = asyncio.run(run(url, png(size), args.requests, args.concurrency, args.timeout))
            results[f"{size}x{size}"] = res
            print(f"{size}x{size}: {res['images_per_second']:.2f} images/s  p50 {res['p50_seconds']:.2f} s  "
                  f"p99 {res['p99_seconds']:.2f} s  codes {res['status_codes']}", flush=True)
            if args.compare_inprocess:
                local = inprocess(png(size), args.requests)
                res["inprocess"] = local
                res["share_of_inprocess_denoise"] = res["images_per_second"] / local["denoise_images_per_second"]
                res["share_of_inprocess_decode_denoise_encode"] = (
                    res["images_per_second"] / local["decode_denoise_encode_images_per_second"])
                print(f"  in-process: denoise {local['denoise_images_per_second']:.2f} images/s, decode+denoise+encode "
                      f"{local['decode_denoise_encode_images_per_second']:.2f} images/s; the service reaches "
                      f"{res['share_of_inprocess_denoise']:.0%} and {res['share_of_inprocess_decode_denoise_encode']:.0%}",
                      flush=True)
        if args.head_of_line:
            results["head_of_line"] = hol = head_of_line(url, args.timeout)
            print(f"head of line: 512² alone {hol['solo_512_seconds']:.2f} s, during a 24 MP photo "
                  f"{hol['median_during']:.2f} s (x{hol['ratio']:.2f}); the photo took {hol['large_photo']}", flush=True)
        if args.with_training:
            results["with_training"] = tr = with_training(url, args.token, args.timeout)
            print(f"512² alone {tr['solo_512_seconds']:.2f} s, with a training job running "
                  f"{tr['with_training_512_seconds']:.2f} s (x{tr['ratio']:.2f})", flush=True)
        peak = peak_memory(url)
        print(f"server peak memory: {peak / 2**20:.0f} MiB" if peak else "server peak memory: unknown")
        name = "load" if not (args.compare_inprocess or args.head_of_line or args.with_training) else "load_figures"
        save_results(name, {"machine": machine(), "url": url, "concurrency": args.concurrency, "results": results,
                            "server_peak_resident_bytes": peak})
    finally:
        if proc is not None:
            stop_server(proc)


if __name__ == "__main__":
    main()
