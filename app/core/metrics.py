"""Prometheus text metrics: request counts and latencies per endpoint, images denoised, jobs by status."""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Callable

BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class Metrics:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests: dict[tuple[str, str, int], int] = defaultdict(int)
        self.latency_counts: dict[str, list[int]] = defaultdict(lambda: [0] * len(BUCKETS))
        self.latency_sum: dict[str, float] = defaultdict(float)
        self.latency_n: dict[str, int] = defaultdict(int)
        self.images_denoised = 0
        self.denoise_rejected = 0
        self.denoise_jobs_finished: dict[str, int] = defaultdict(int)

    def observe(self, endpoint: str, method: str, status: int, seconds: float) -> None:
        with self._lock:
            self.requests[(endpoint, method, status)] += 1
            counts = self.latency_counts[endpoint]
            for i, b in enumerate(BUCKETS):
                if seconds <= b:
                    counts[i] += 1
            self.latency_sum[endpoint] += seconds
            self.latency_n[endpoint] += 1

    def count_image(self) -> None:
        with self._lock:
            self.images_denoised += 1

    def count_rejected(self) -> None:
        with self._lock:
            self.denoise_rejected += 1

    def count_denoise_job(self, status: str) -> None:
        """A denoise job ended (succeeded, failed, or cancelled by DELETE)."""
        with self._lock:
            self.denoise_jobs_finished[status] += 1

    def render(self, job_counts: Callable[[], dict[str, int]], queue_waiting: int, abandoned: int = 0,
               loaded_models: int = 0, denoise_jobs: dict[str, int] | None = None) -> str:
        lines = ["# HELP n2n_requests_total HTTP requests by endpoint, method and status.",
                 "# TYPE n2n_requests_total counter"]
        with self._lock:
            for (ep, method, status), n in sorted(self.requests.items()):
                lines.append(f'n2n_requests_total{{endpoint="{ep}",method="{method}",status="{status}"}} {n}')
            lines += ["# HELP n2n_request_duration_seconds Request latency by endpoint.",
                      "# TYPE n2n_request_duration_seconds histogram"]
            for ep, counts in sorted(self.latency_counts.items()):
                for b, c in zip(BUCKETS, counts):
                    lines.append(f'n2n_request_duration_seconds_bucket{{endpoint="{ep}",le="{b}"}} {c}')
                lines.append(f'n2n_request_duration_seconds_bucket{{endpoint="{ep}",le="+Inf"}} {self.latency_n[ep]}')
                lines.append(f'n2n_request_duration_seconds_sum{{endpoint="{ep}"}} {self.latency_sum[ep]:.6f}')
                lines.append(f'n2n_request_duration_seconds_count{{endpoint="{ep}"}} {self.latency_n[ep]}')
            lines += ["# HELP n2n_images_denoised_total Images denoised.", "# TYPE n2n_images_denoised_total counter",
                      f"n2n_images_denoised_total {self.images_denoised}",
                      "# HELP n2n_denoise_rejected_total Denoise requests refused because the queue was full.",
                      "# TYPE n2n_denoise_rejected_total counter", f"n2n_denoise_rejected_total {self.denoise_rejected}",
                      "# HELP n2n_denoise_jobs_total Denoise jobs (POST /denoise/jobs) ended, by status.",
                      "# TYPE n2n_denoise_jobs_total counter"]
            for status in ("succeeded", "failed", "cancelled"):
                lines.append(f'n2n_denoise_jobs_total{{status="{status}"}} {self.denoise_jobs_finished[status]}')
        lines += ["# HELP n2n_denoise_queue_waiting Denoise requests waiting or running.",
                  "# TYPE n2n_denoise_queue_waiting gauge", f"n2n_denoise_queue_waiting {queue_waiting}",
                  "# HELP n2n_denoise_abandoned_total Denoise requests cancelled because their client went away.",
                  "# TYPE n2n_denoise_abandoned_total counter", f"n2n_denoise_abandoned_total {abandoned}",
                  "# HELP n2n_models_loaded Models held in memory.",
                  "# TYPE n2n_models_loaded gauge", f"n2n_models_loaded {loaded_models}",
                  "# HELP n2n_denoise_jobs Denoise jobs held now (until their result expires), by status.",
                  "# TYPE n2n_denoise_jobs gauge"]
        for status, n in (denoise_jobs or {}).items():
            lines.append(f'n2n_denoise_jobs{{status="{status}"}} {n}')
        lines += ["# HELP n2n_jobs Training jobs by status.", "# TYPE n2n_jobs gauge"]
        for status, n in job_counts().items():
            lines.append(f'n2n_jobs{{status="{status}"}} {n}')
        current, peak = process_memory()
        lines += ["# HELP n2n_process_resident_bytes Resident memory of the API process.",
                  "# TYPE n2n_process_resident_bytes gauge", f"n2n_process_resident_bytes {current}",
                  "# HELP n2n_process_peak_resident_bytes Peak resident memory of the API process.",
                  "# TYPE n2n_process_peak_resident_bytes gauge", f"n2n_process_peak_resident_bytes {peak}"]
        return "\n".join(lines) + "\n"


def process_memory() -> tuple[int, int]:
    """(current, peak) resident set size in bytes."""
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
    try:
        with open("/proc/self/statm") as f:
            current = int(f.read().split()[1]) * resource.getpagesize()
    except OSError:
        current = peak
    return current, peak
