"""Request body limits (size, and the pace a body arrives at), answered as JSON that names the limit and
the setting that changes it.

Starlette's own body limit answers a plain-text "Content Too Large"; this middleware takes its
place. A declared Content-Length over the limit is refused before anything is read; a body sent
without one (chunked) is counted as it arrives and refused as soon as it passes the limit.
"""

from __future__ import annotations

import asyncio
import json
import time
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
            await _answer_and_close(send, 413, too_large_message(limit, setting))
            return
        received = 0

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge
            return message

        await _refusing(self.app, scope, counting_receive, send, BodyTooLarge, 413, too_large_message(limit, setting))


async def _refusing(app: ASGIApp, scope: Scope, receive: Receive, send: Send, refusal: type[Exception],
                    status: int, detail: str) -> None:
    """Run ``app``; when ``receive`` raises ``refusal`` before the answer has started, answer ``status`` with
    ``detail`` instead (after it started, the exception goes on: the connection is dropped)."""
    started = False

    async def tracking_send(message: Message) -> None:
        nonlocal started
        started = started or message["type"] == "http.response.start"
        await send(message)

    try:
        await app(scope, receive, tracking_send)
    except refusal:
        if started:
            raise
        await _answer_and_close(send, status, detail)


async def _answer_and_close(send: Send, status: int, detail: str) -> None:
    """A JSON ``{"detail": ...}`` answer with ``status`` that closes the connection (the body is left unread)."""
    body = json.dumps({"detail": detail}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})


class BodyTooSlow(Exception):
    pass


def too_slow_message(rate: int, grace: float) -> str:
    return (f"the request body arrived slower than {rate} bytes per second (after a grace of {grace:g} s); send it "
            "faster, or raise the server's N2N_MIN_UPLOAD_BYTES_PER_SECOND setting")


class MinUploadRate:
    """Drops, with 408, a request body that arrives slower than ``rate`` bytes per second.

    A leaky bucket of credit, in bytes: it starts full at ``rate * grace`` (so a slow start, or a pause of
    up to ``grace`` seconds, is forgiven), drains at ``rate`` per second spent waiting for the client, and
    fills by the bytes received, capped at its starting level (a fast start buys no long stall later).
    When it runs dry the body is refused. Only time spent inside ``receive`` counts: a server slow to read
    never makes a client too slow. ``clock`` (seconds) is injectable for tests; ``rate`` 0 turns it off.
    """

    def __init__(self, app: ASGIApp, rate: int, grace: float, clock: Callable[[], float] | None = None) -> None:
        self.app, self.rate, self.grace = app, rate, grace
        self.clock = clock or time.monotonic

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self.rate <= 0:
            await self.app(scope, receive, send)
            return
        cap = self.rate * self.grace
        credit, done = cap, False

        async def timed_receive() -> Message:
            nonlocal credit, done
            if done:  # the body is in: later calls wait for a disconnect, which is not an upload
                return await receive()
            begin = self.clock()
            try:
                message = await asyncio.wait_for(receive(), timeout=max(0.0, credit / self.rate))
            except TimeoutError:
                raise BodyTooSlow from None
            credit -= (self.clock() - begin) * self.rate
            if message["type"] != "http.request":
                done = True
                return message
            if credit < 0:
                raise BodyTooSlow
            credit = min(cap, credit + len(message.get("body", b"")))
            done = not message.get("more_body", False)
            return message

        await _refusing(self.app, scope, timed_receive, send, BodyTooSlow, 408, too_slow_message(self.rate, self.grace))
