"""The service end to end on one device: readiness, /denoise latency, and a short training job.

Starts ``n2n serve`` with ``N2N_DEVICE`` (default cuda), checks that /readyz reports that device,
denoises a 512x512 noisy PNG (first request, then the median of --repeats), runs a training job
of --steps steps through POST /train and follows it to the end, then writes
benchmarks/results/service_<device>.json.

    python benchmarks/service_check.py [--device cuda] [--steps 300] [--repeats 10]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import free_port, machine, save_results, start_server, stop_server  # noqa: E402
from benchmarks.load import png  # noqa: E402

TOKEN = "service-check"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--arch", default="unet-s")
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--timeout", type=float, default=600, help="seconds to wait for the training job")
    args = ap.parse_args()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory() as tmp:
        proc = start_server(Path(tmp), port, TOKEN, {"N2N_DEVICE": args.device})
        try:
            with httpx.Client(base_url=url, timeout=600) as c:
                ready = c.get("/readyz").json()
                print("readyz:", ready, flush=True)
                data = png(512)
                times = []
                for _ in range(args.repeats + 1):
                    t0 = time.perf_counter()
                    r = c.post("/denoise", content=data, headers={"content-type": "image/png"})
                    times.append(time.perf_counter() - t0)
                    r.raise_for_status()
                denoise = {"status": r.status_code, "bytes_out": len(r.content), "first_seconds": times[0],
                           "median_seconds": statistics.median(times[1:]), "model": r.headers.get("x-model-id")}
                print("denoise 512x512:", denoise, flush=True)
                body = {"dataset": "builtin", "arch": args.arch, "steps": args.steps, "batch_size": 16,
                        "patch_size": 64}
                t0 = time.perf_counter()
                r = c.post("/train", json=body, headers={"Authorization": f"Bearer {TOKEN}"})
                if r.status_code != 202:
                    sys.exit(f"POST /train answered {r.status_code}: {r.text}")
                job = r.json()
                while job["status"] not in ("succeeded", "failed", "cancelled"):
                    if time.perf_counter() - t0 > args.timeout:
                        sys.exit(f"the training job did not finish within {args.timeout} s: {job}")
                    time.sleep(1)
                    job = c.get(f"/train/{job['id']}").json()
                    print(f"  job {job['status']} {job['progress']}", flush=True)
                wall = time.perf_counter() - t0
                metrics = job.get("metrics") or {}
                train = {"request": body, "status": job["status"], "wall_seconds": wall,
                         "train_seconds": metrics.get("elapsed_seconds"), "val_psnr": metrics.get("val_psnr"),
                         "steps_per_second": args.steps / metrics["elapsed_seconds"]
                         if metrics.get("elapsed_seconds") else None, "error": job.get("error")}
                print("train:", train, flush=True)
        finally:
            stop_server(proc)
    path = save_results(f"service_{args.device.split(':')[0]}", {"machine": machine(), "readyz": ready,
                                                                 "denoise_512": denoise, "train": train})
    print("wrote", path)
    if ready.get("device", "").split(":")[0] != args.device.split(":")[0] or train["status"] != "succeeded":
        sys.exit(1)


if __name__ == "__main__":
    main()
