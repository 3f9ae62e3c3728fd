"""A training job's estimated time to completion, from the step rate its training process measures.

The training process feeds every progress report's step to a ``StepRate``, which measures steps per
second over the last ``RATE_WINDOW_SECONDS`` of the run (validation pauses included, so the estimate
covers them); the rate is stored with the job's metrics (``steps_per_second``), and ``eta_seconds``
turns it into the seconds left whenever the job is read. Until two reports a step apart exist (a job
just started or resumed), there is no rate and no estimate.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from typing import Any

from app.store.status import JobStatus

RATE_WINDOW_SECONDS = 60.0


class StepRate:
    """Steps per second over a sliding window of (time, step) samples."""

    def __init__(self, window: float = RATE_WINDOW_SECONDS, clock: Callable[[], float] = time.monotonic) -> None:
        self.window, self.clock = window, clock
        self._samples: deque[tuple[float, int]] = deque()

    def add(self, step: int) -> float | None:
        """Record that the run is at ``step`` now; the rate so far (None until measurable)."""
        now = self.clock()
        if self._samples and step < self._samples[-1][1]:
            self._samples.clear()  # the run went back (resumed from a checkpoint): measure afresh
        self._samples.append((now, step))
        while len(self._samples) > 2 and now - self._samples[1][0] >= self.window:
            self._samples.popleft()  # keep the oldest sample that still spans the whole window
        (t0, s0), (t1, s1) = self._samples[0], self._samples[-1]
        if t1 <= t0 or s1 <= s0:
            return None
        return (s1 - s0) / (t1 - t0)


def eta_seconds(status: str | None, progress: dict[str, Any] | None, metrics: dict[str, Any] | None) -> int | None:
    """Seconds left for a running job at its measured step rate; None when it is not running or no rate
    was measured yet."""
    if status != JobStatus.RUNNING or not progress or not metrics:
        return None
    rate = metrics.get("steps_per_second")
    step, total = progress.get("step"), progress.get("total")
    if not isinstance(rate, (int, float)) or not rate > 0 or not isinstance(step, int) or not isinstance(total, int):
        return None
    return round(max(0, total - step) / rate)
