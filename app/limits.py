"""Request body limits, answered as JSON that names the limit and the setting that changes it.

Starlette's own body limit answers a plain-text "Content Too Large"; this middleware takes its
place. A declared Content-Length over the limit is refused before anything is read; a body sent
without one (chunked) is counted as it arrives and refused as soon as it passes the limit.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

MiB = 1024 * 1024


class BodyTooLarge(Exception):
    pass


def too_large_message(limit: int, setting: str) -> str:
    size = f"{limit / MiB:g} MiB" if limit >= MiB else f"{limit} bytes"
    return f"the request body is over the {size} limit; the server's {setting} setting changes it"


class BodyLimit:
    """``limit_for(path) -> (bytes, setting name)``: the largest body a path accepts."""

    def __init__(self, app: ASGIApp, limit_for: Callable[[str], tuple[int, str]]) -> None:
        self.app, self.limit_for = app, limit_for

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit, setting = self.limit_for(scope["path"])
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await _refuse(send, limit, setting)
            return
        received, started = 0, False

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except BodyTooLarge:
            if started:
                raise
            await _refuse(send, limit, setting)


async def _refuse(send: Send, limit: int, setting: str) -> None:
    body = json.dumps({"detail": too_large_message(limit, setting)}).encode()
    await send({"type": "http.response.start", "status": 413,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})
