"""Denoising off the event loop: one worker thread, a bounded waiting line, 503 beyond it."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from fastapi import HTTPException

from n2n_core.infer import denoise_picture

from . import imaging
from .registry import ModelRegistry


class QueueFull(Exception):
    pass


@dataclass
class DenoiseResult:
    content: bytes
    media_type: str
    model_id: str
    width: int
    height: int


class DenoiseQueue:
    """Runs decode -> denoise -> encode for one request at a time; at most ``limit`` wait."""

    def __init__(self, registry: ModelRegistry, limit: int, max_pixels: int, tile: int) -> None:
        self.registry, self.limit, self.max_pixels, self.tile = registry, limit, max_pixels, tile
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="n2n-denoise")
        self.waiting = 0

    def _work(self, data: bytes, fmt: str, model_id: str | None) -> DenoiseResult:
        import torch

        with torch.inference_mode():
            pic = imaging.decode(data, self.max_pixels)
            mid, model = self.registry.get(model_id)
            out = denoise_picture(model, pic, tile=self.tile)
        content, media = imaging.encode(out, fmt)
        w, h = out.size
        return DenoiseResult(content, media, mid, w, h)

    async def submit(self, data: bytes, fmt: str, model_id: str | None) -> DenoiseResult:
        if self.waiting >= self.limit:
            raise QueueFull
        self.waiting += 1
        try:
            return await asyncio.wrap_future(self._executor.submit(self._work, data, fmt, model_id))
        except HTTPException:
            raise
        finally:
            self.waiting -= 1

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
