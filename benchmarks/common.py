"""Shared helpers of the benchmark scripts: timing, results files, machine description."""

from __future__ import annotations

import json
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch

RESULTS = Path(__file__).resolve().parent / "results"
LOGS = RESULTS / "logs"  # logs of failed runs, kept after their temporary folders are gone (git-ignored)


def kept_logs_folder(name: str) -> Path:
    """A new folder under benchmarks/results/logs for the logs of a failed run named ``name`` (not created)."""
    return LOGS / f"{name}-{time.strftime('%Y%m%dT%H%M%S')}-{time.perf_counter_ns() % 10**6:06d}"


def machine() -> dict:
    return {
        "cpu": platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


def benchmark_images(data: str, limit: int | None = None) -> tuple[list[Path], list]:
    """(file names, RGB uint8 arrays) of a folder of clean photographs, or of ``skimage``: scikit-image's
    photographs, held out for every model trained on CBSD432."""
    from n2n_core.data.datasets import BUILTIN_TRAIN, BUILTIN_VAL, builtin_images, list_images, load_rgb8

    if data == "skimage":
        names = (BUILTIN_TRAIN + BUILTIN_VAL)[:limit]
        return [Path(n + ".png") for n in names], builtin_images(names)
    files = list_images(data)[:limit]
    return files, [load_rgb8(f) for f in files]


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def interleaved(fns: dict[str, Callable[[], object]], repeats: int, device: torch.device) -> dict[str, list[float]]:
    """Time each function ``repeats`` times, alternating between them so that machine noise hits all alike."""
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            sync(device)
            t0 = time.perf_counter()
            fn()
            sync(device)
            times[k].append(time.perf_counter() - t0)
    return times


def median(xs: list[float]) -> float:
    return statistics.median(xs)


def save_results(name: str, payload: dict) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(payload, indent=2) + "\n")
    return path


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(data_dir: Path, port: int, token: str = "bench-token", extra_env: dict | None = None,
                 log: Path | None = None):
    """Start ``n2n serve`` on 127.0.0.1:port in a subprocess and wait until /readyz answers 200. Its output
    goes to this process's own (the terminal), or to the file ``log``, which a start-up error then names
    (keep it out of a temporary ``data_dir``: see ``kept_logs_folder``)."""
    import os
    import subprocess
    import sys
    import urllib.request

    env = {**os.environ, "N2N_DATA_DIR": str(data_dir), "N2N_API_TOKEN": token, **(extra_env or {})}
    out = None
    if log is not None:
        log.parent.mkdir(parents=True, exist_ok=True)
        out = open(log, "ab")  # noqa: SIM115 - the child keeps its own descriptor; ours is closed below
    try:
        proc = subprocess.Popen([sys.executable, "-m", "n2n_core.cli", "serve", "--host", "127.0.0.1", "--port",
                                 str(port), "--log-level", "warning"], env=env, stdout=out,
                                stderr=subprocess.STDOUT if out else None)
    finally:
        if out is not None:
            out.close()
    where = f"its output is in {log}" if log is not None else "its output is above"
    deadline = time.monotonic() + 600  # a hang guard: a loaded machine starts the service many times slower
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with code {proc.returncode} ({where})")
        try:
            if urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2).status == 200:
                return proc
        except OSError:
            time.sleep(0.3)
    proc.terminate()
    raise RuntimeError(f"server did not become ready within 600 s ({where})")


def stop_server(proc) -> None:
    proc.terminate()
    try:
        proc.wait(15)
    except Exception:  # noqa: BLE001
        proc.kill()
