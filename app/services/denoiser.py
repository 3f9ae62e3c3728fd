"""Denoising off the event loop, fair to every request: tiles round-robin across the requests in flight.

A request is decoded and its model looked up in a worker thread of the event loop's pool; its
tiles then go to the one ``TileScheduler`` thread, which steps every admitted picture one tile at
a time in turn, so a small photo that arrives during a 24 MP one waits for one tile, not for the
whole photo; the result is encoded back in the pool. Every request holds a slot from admission
until its work ends (``limit`` slots; QueueFull beyond). Work is dropped between tiles when its client
has gone away or the service is stopping. The scheduler's last progress feeds the liveness watchdog.

Failures are plain exceptions (QueueFull, Stopping, Abandoned, the registry's UnknownModel, NoActiveModel and
BrokenModel, ``imaging.ImageRefused``); their HTTP answers are ``app.api.errors``'s.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, Generator
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from n2n_core.data.images import Picture
from n2n_core.inference.infer import Cancelled, picture_steps
from n2n_core.data.noise_level import estimate_sigma
from n2n_core.inference.precision import model_precision
from n2n_core.inference.runtime import set_threads

from app.services import imaging
from app.services.registry import ModelRegistry

DISCONNECT_POLL_SECONDS = 0.25
log = logging.getLogger("n2n")


class QueueFull(Exception):
    """Every slot of the queue (or its pixel budget) is taken: retry shortly."""


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
    noise_sigma: float  # estimated noise of the input, 0..255 scale (n2n_core.data.noise_level)
    precision: str = "float32"  # the type the network's products ran in (n2n_core.inference.precision)


@dataclass
class Slot:
    """A place in a ``DenoiseQueue``, held from admission until its work ends."""
    pixels: int
    released: bool = False


@dataclass
class _Work:
    steps: Generator[tuple[int, int], None, Any]
    should_stop: Callable[[], bool]
    progress: Callable[[int, int], None] | None
    result: Future = field(default_factory=Future)


class TileScheduler:
    """One thread that runs the tiles of every submitted tile stream, one tile each in turn.

    ``threads()``, asked before each tile, is how many torch threads the tiles may use now (e.g. fewer
    while a training job shares the machine), so that the processes of a host never oversubscribe it.
    """

    def __init__(self, threads: Callable[[], int] | None = None) -> None:
        self._threads = threads
        self._incoming: queue.SimpleQueue[_Work | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._closed = False
        self._thread = threading.Thread(target=self._loop, daemon=True, name="n2n-tiles")
        self._thread.start()

    def submit(self, steps: Generator[tuple[int, int], None, Any], should_stop: Callable[[], bool],
               progress: Callable[[int, int], None] | None = None) -> Future:
        """A future of the stream's result; ``Cancelled`` when ``should_stop()`` turns true between tiles."""
        work = _Work(steps, should_stop, progress)
        work.result.set_running_or_notify_cancel()  # from now on only this scheduler ends it
        with self._lock:
            if self._closed:
                steps.close()
                work.result.set_exception(Cancelled("the service is stopping"))
            else:
                self._incoming.put(work)
        return work.result

    def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                self._incoming.put(None)

    def _loop(self) -> None:
        active: deque[_Work] = deque()
        while True:
            try:
                while True:  # take everything that arrived; wait only when there is nothing to do
                    work = self._incoming.get(block=not active)
                    if work is None:
                        self._drop(active)
                        return
                    active.append(work)
            except queue.Empty:
                pass
            work = active.popleft()
            try:
                if self._threads is not None:
                    set_threads(self._threads())
                if self._step(work):
                    active.append(work)
            except Exception:  # noqa: BLE001 - the thread serves every request: it must outlive any one
                log.exception("tile scheduler")
                if not work.result.done():
                    work.result.set_exception(RuntimeError("internal error while denoising"))

    @staticmethod
    def _step(work: _Work) -> bool:
        """Run one tile of ``work``; False when it has ended (result or error set)."""
        try:
            if work.should_stop():
                work.steps.close()
                work.result.set_exception(Cancelled("stopped between tiles"))
                return False
            done, total = next(work.steps)
            if work.progress is not None:
                work.progress(done, total)
            return True
        except StopIteration as finished:
            work.result.set_result(finished.value)
        except BaseException as e:  # noqa: BLE001 - handed to the request that owns the work
            work.result.set_exception(e)
        return False

    @staticmethod
    def _drop(active: deque[_Work]) -> None:
        for work in active:
            work.steps.close()
            work.result.set_exception(Cancelled("the service is stopping"))


class DenoiseQueue:
    """Admission (at most ``limit`` requests in flight), then decode -> tiles -> encode."""

    def __init__(self, registry: ModelRegistry, limit: int, max_pixels: int, tile_memory: int,
                 tile: int | None = None, max_aspect_ratio: float = 1000.0,
                 stopping: threading.Event | None = None, threads: Callable[[], int] | None = None,
                 max_inflight_pixels: int | None = None, precision: str = "float32",
                 release_after: float = 0.0, release: Callable[[], object] | None = None) -> None:
        self.registry, self.limit, self.max_pixels = registry, limit, max_pixels
        self.precision = precision  # resolved for the registry's device (n2n_core.inference.precision.resolve_precision)
        self.tile_memory, self.tile = tile_memory, tile
        self.max_aspect_ratio = max_aspect_ratio
        self.stopping = stopping or threading.Event()
        self.scheduler = TileScheduler(threads)
        self.max_inflight_pixels = max_inflight_pixels or 2 * max_pixels
        self.pixels = 0  # pixels of the admitted requests: what bounds the memory held for them
        self.waiting = 0  # admitted requests, in any phase
        self.abandoned = 0  # requests whose client left before the result
        self._last_progress = time.monotonic()  # of any request in flight: admitted, decoded, a tile, encoded
        # memory kept by the allocator for the next request goes back to the system once the queue has been
        # empty for ``release_after`` seconds (0: never): ``release`` (n2n_core.inference.runtime.release_memory) runs
        # then, off the event loop
        self.release_after, self._release = release_after, release
        self._admissions = 0  # counts admissions, so that a release planned before newer work is dropped
        self.memory_releases = 0

    def _progressed(self, *_: Any) -> None:
        self._last_progress = time.monotonic()

    def stalled(self, seconds: float) -> float | None:
        """How long no request in flight has moved (decoded, a tile, encoded), when over ``seconds``; else None."""
        if self.waiting == 0:
            return None
        idle = time.monotonic() - self._last_progress
        return idle if idle > seconds else None

    def _prepare(self, data: bytes | BinaryIO, model_id: str | None,
                 strength: float) -> tuple[str, float, str, Generator]:
        import torch

        with torch.inference_mode():
            pic = imaging.decode(data, self.max_pixels, self.max_aspect_ratio)
            mid, model = self.registry.get(model_id)
            sigma = estimate_sigma(pic.pixels)
        steps = picture_steps(model, pic, self.tile, tile_memory=self.tile_memory, strength=strength,
                              precision=self.precision)
        return mid, sigma, model_precision(model, self.precision), _inference(steps)

    def admit(self, pixels: int = 0) -> Slot:
        """A place in the line for work of ``pixels`` pixels (the header's width x height); QueueFull when
        ``limit`` requests, or ``max_inflight_pixels`` pixels (one request alone is always admitted), are
        in flight; Stopping during shutdown. Hand it to ``run``, which gives it back when the work ends."""
        if self.stopping.is_set():
            raise Stopping
        if self.waiting >= self.limit or (self.waiting and self.pixels + pixels > self.max_inflight_pixels):
            raise QueueFull
        if self.waiting == 0:
            self._progressed()
        self.waiting += 1
        self._admissions += 1
        self.pixels += pixels
        return Slot(pixels)

    def release(self, slot: Slot) -> None:
        """Give ``slot`` back (once; later calls do nothing)."""
        if not slot.released:
            slot.released = True
            self.waiting -= 1
            self.pixels -= slot.pixels
            if self.waiting == 0:
                self._plan_release()

    def _plan_release(self) -> None:
        """Once the queue has stayed empty ``release_after`` seconds, hand its memory back (``release``)."""
        if self._release is None or self.release_after <= 0:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # released outside the event loop (a test): nothing to plan on
            return
        planned = self._admissions

        def due() -> None:
            if self.waiting == 0 and self._admissions == planned and not self.stopping.is_set():
                try:
                    loop.run_in_executor(None, self._released)
                except RuntimeError:  # the pool is shutting down with the service
                    pass

        loop.call_later(self.release_after, due)

    def _released(self) -> None:
        self._release()  # type: ignore[misc]
        self.memory_releases += 1

    async def submit(self, data: bytes | BinaryIO, fmt: str, model_id: str | None,
                     disconnected: Callable[[], Awaitable[bool]] | None = None,
                     progress: Callable[[int, int], None] | None = None, pixels: int = 0,
                     strength: float = 1.0, output: imaging.OutputOptions | None = None) -> DenoiseResult:
        """``run`` in a slot admitted now (see ``admit`` for QueueFull and Stopping)."""
        return await self.run(self.admit(pixels), data, fmt, model_id, disconnected, progress, strength, output)

    async def run(self, slot: Slot, data: bytes | BinaryIO, fmt: str, model_id: str | None,
                  disconnected: Callable[[], Awaitable[bool]] | None = None,
                  progress: Callable[[int, int], None] | None = None, strength: float = 1.0,
                  output: imaging.OutputOptions | None = None) -> DenoiseResult:
        """The result of decode -> tiles -> encode, in an admitted ``slot`` (released whatever happens);
        Stopping when the service stops first; Abandoned when ``disconnected()`` turned true before the
        result. ``progress(done, total)`` is called from the tile thread after each tile. ``strength``
        blends the output with the input (``n2n_core.inference.infer.blend``); ``output`` says how the result is
        written (``imaging.OutputOptions``: quality, bits, strip_metadata)."""
        gone = threading.Event()
        watcher = asyncio.create_task(_watch(disconnected, gone)) if disconnected is not None else None

        def should_stop() -> bool:
            return gone.is_set() or self.stopping.is_set()

        def tile_done(done: int, total: int) -> None:
            self._progressed()
            if progress is not None:
                progress(done, total)

        try:
            mid, sigma, precision, steps = await asyncio.to_thread(self._prepare, data, model_id, strength)
            self._progressed()
            if should_stop():
                steps.close()
                raise Cancelled("before its first tile")
            out: Picture = await asyncio.wrap_future(self.scheduler.submit(steps, should_stop, tile_done))
            content, media = await asyncio.to_thread(imaging.encode, out, fmt, output)
            self._progressed()
            w, h = out.size
            return DenoiseResult(content, media, mid, w, h, sigma, precision)
        except Cancelled:
            if gone.is_set():
                self.abandoned += 1
                raise Abandoned from None
            raise Stopping from None
        finally:
            self.release(slot)
            gone.set()  # whatever ended this request, its tiles are no longer wanted
            if watcher is not None:
                watcher.cancel()

    def close(self) -> None:
        """Stop: work in flight ends at its next tile."""
        self.stopping.set()
        self.scheduler.close()


def _inference(steps: Generator) -> Generator:
    """The same stream with torch's inference mode on around each tile (it is thread-local)."""
    import torch

    while True:
        with torch.inference_mode():
            try:
                item = next(steps)
            except StopIteration as finished:
                return finished.value
        yield item


async def _watch(disconnected: Callable[[], Awaitable[bool]], gone: threading.Event) -> None:
    """Set ``gone`` as soon as the client has disconnected (polled)."""
    while not gone.is_set() and not await disconnected():
        await asyncio.sleep(DISCONNECT_POLL_SECONDS)
    gone.set()
