"""Denoising off the event loop: one worker thread, a bounded waiting line, 503 beyond it.

Every request holds a slot from the moment it is admitted until its work ends. Work is cancelled
between tiles when its client has gone away or the service is stopping, so an abandoned request
gives its slot back within about one tile. The worker's last progress is kept for the liveness
watchdog (``stalled``).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from fastapi import HTTPException

from n2n_core.infer import Cancelled, denoise_picture

from . import imaging
from .registry import ModelRegistry

DISCONNECT_POLL_SECONDS = 0.25


class QueueFull(Exception):
    pass


class Stopping(Exception):
    """The service is shutting down: no new work, and running work ends at its next tile."""


class Abandoned(Exception):
    """The client went away before its work finished."""


@dataclass
class DenoiseResult:
    content: bytes
    media_type: str
    model_id: str
    width: int
    height: int


class DenoiseQueue:
    """Runs decode -> denoise -> encode for one request at a time; at most ``limit`` are admitted."""

    def __init__(self, registry: ModelRegistry, limit: int, max_pixels: int, tile: int,
                 max_aspect_ratio: float = 1000.0, stopping: threading.Event | None = None) -> None:
        self.registry, self.limit, self.max_pixels, self.tile = registry, limit, max_pixels, tile
        self.max_aspect_ratio = max_aspect_ratio
        self.stopping = stopping or threading.Event()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="n2n-denoise")
        self.waiting = 0  # admitted requests, queued or running
        self.abandoned = 0  # requests whose client left before the result
        self._busy_since: float | None = None  # monotonic start of the running request's work
        self._last_progress = time.monotonic()

    # -- the worker thread ----------------------------------------------------------------------
    def _work(self, data: bytes, fmt: str, model_id: str | None, gone: threading.Event) -> DenoiseResult:
        import torch

        def should_stop() -> bool:
            return gone.is_set() or self.stopping.is_set()

        if should_stop():  # left while waiting in line: no work at all
            raise Cancelled("before it started")
        self._busy_since = self._last_progress = time.monotonic()
        try:
            with torch.inference_mode():
                pic = imaging.decode(data, self.max_pixels, self.max_aspect_ratio)
                mid, model = self.registry.get(model_id)
                self._last_progress = time.monotonic()
                out = denoise_picture(model, pic, tile=self.tile, should_stop=should_stop, progress=self._progress)
            content, media = imaging.encode(out, fmt)
        finally:
            self._busy_since, self._last_progress = None, time.monotonic()
        w, h = out.size
        return DenoiseResult(content, media, mid, w, h)

    def _progress(self, done: int, total: int) -> None:
        self._last_progress = time.monotonic()

    def stalled(self, seconds: float) -> float | None:
        """How long the worker has been on one tile, when that is more than ``seconds``; else None."""
        if self._busy_since is None:
            return None
        idle = time.monotonic() - self._last_progress
        return idle if idle > seconds else None

    # -- the event loop side -------------------------------------------------------------------
    async def submit(self, data: bytes, fmt: str, model_id: str | None,
                     disconnected: Callable[[], Awaitable[bool]] | None = None) -> DenoiseResult:
        """The result; QueueFull when ``limit`` requests are admitted, Stopping during shutdown,
        Abandoned when ``disconnected()`` turned true before the result."""
        if self.stopping.is_set():
            raise Stopping
        if self.waiting >= self.limit:
            raise QueueFull
        self.waiting += 1
        gone = threading.Event()
        watcher = asyncio.create_task(_watch(disconnected, gone)) if disconnected is not None else None
        try:
            work = self._executor.submit(self._work, data, fmt, model_id, gone)
        except RuntimeError:  # the executor was shut down
            self.waiting -= 1
            raise Stopping from None
        try:
            return await asyncio.wrap_future(work)
        except asyncio.CancelledError:
            if work.cancelled():  # dropped from the line by close()
                raise Stopping from None
            work.cancel()
            gone.set()  # our own task was cancelled: nobody waits for this result any more
            raise
        except Cancelled:
            if gone.is_set():
                self.abandoned += 1
                raise Abandoned from None
            raise Stopping from None
        except HTTPException:
            raise
        finally:
            self.waiting -= 1
            if watcher is not None:
                watcher.cancel()

    def close(self) -> None:
        """Stop: queued work is dropped, running work ends at its next tile."""
        self.stopping.set()
        self._executor.shutdown(wait=False, cancel_futures=True)


async def _watch(disconnected: Callable[[], Awaitable[bool]], gone: threading.Event) -> None:
    """Set ``gone`` as soon as the client has disconnected (polled)."""
    while not await disconnected():
        await asyncio.sleep(DISCONNECT_POLL_SECONDS)
    gone.set()
