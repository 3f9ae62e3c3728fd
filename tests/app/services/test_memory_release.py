"""The denoise queue hands the allocator's kept memory back once it has stayed empty a while (issue 22:
RSS after a burst). The release function is a fake here; n2n_core.inference.runtime.release_memory has its own test."""

from __future__ import annotations

import asyncio

from fastapi.testclient import TestClient

from app.services.denoiser import DenoiseQueue
from app.main import create_app
from n2n_core.inference.runtime import release_memory

from tests.helpers import make_settings, png_bytes, poll_until, rgb


def queue(calls: list[int], after: float) -> DenoiseQueue:
    return DenoiseQueue(None, 4, 10_000, 16 << 20, release_after=after,  # type: ignore[arg-type]
                        release=lambda: calls.append(1))


async def _until(predicate) -> None:
    for _ in range(20_000):  # a hang guard, not a speed requirement
        if predicate():
            return
        await asyncio.sleep(0.005)
    raise AssertionError("hang guard: no release")


def test_a_drained_queue_releases_once_it_stays_empty():
    calls: list[int] = []
    q = queue(calls, 0.01)

    async def run():
        q.release(q.admit(100))
        await _until(lambda: q.memory_releases == 1)
        await asyncio.sleep(0.05)
        assert calls == [1]  # once per drain, not again and again while idle

    try:
        asyncio.run(run())
    finally:
        q.close()


def test_work_arriving_before_the_release_cancels_it():
    calls: list[int] = []
    q = queue(calls, 0.05)

    async def run():
        q.release(q.admit(100))  # planned for 0.05 s from now ...
        slot = q.admit(100)  # ... but new work came: that plan is dropped
        await asyncio.sleep(0.2)
        assert calls == [] and q.memory_releases == 0
        q.release(slot)  # the queue drains again: a new plan
        await _until(lambda: q.memory_releases == 1)

    try:
        asyncio.run(run())
    finally:
        q.close()


def test_zero_never_releases():
    calls: list[int] = []
    q = queue(calls, 0.0)

    async def run():
        q.release(q.admit(100))
        await asyncio.sleep(0.05)

    try:
        asyncio.run(run())
    finally:
        q.close()
    assert calls == []


def test_the_service_releases_memory_after_its_requests(tmp_path, tiny_weights):
    settings = make_settings(tmp_path / "data", tiny_weights, memory_release_seconds=0.01)
    with TestClient(create_app(settings)) as c:
        q = c.app.state.queue
        assert q._release is release_memory
        for _ in range(2):
            r = c.post("/denoise", content=png_bytes(rgb()), headers={"Content-Type": "image/png"})
            assert r.status_code == 200
        poll_until(lambda: q.memory_releases >= 1, "a memory release after the queue drained")
