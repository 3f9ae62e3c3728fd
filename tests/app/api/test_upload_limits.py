"""Uploads: spooled past 1 MiB as they arrive, and dropped with 408 when they trickle (issue 22, Memory).

The pace check is driven by a fake clock (no sleeping decides a result): each fake ``receive`` says how
long the client took to send its chunk.
"""

from __future__ import annotations

import asyncio
import io

import numpy as np
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from fastapi.testclient import TestClient
from PIL import Image

from app.api.limits import MinUploadRate
from app.main import create_app
from app.api.uploads import SPOOL_MEMORY, spool_body

from tests.helpers import make_settings, png_bytes, rgb


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def chunks_receive(clock: FakeClock, chunks: list[tuple[float, bytes]]):
    """A receive that hands out ``chunks`` as (seconds the client took, bytes), then waits forever."""
    pending = list(chunks)

    async def receive():
        if not pending:
            await asyncio.Event().wait()
        seconds, body = pending.pop(0)
        clock.now += seconds
        return {"type": "http.request", "body": body, "more_body": bool(pending)}

    return receive


def scope(path: str = "/upload", content_type: bytes = b"application/octet-stream") -> dict:
    return {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
            "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "",
            "headers": [(b"content-type", content_type), (b"host", b"test")], "client": ("127.0.0.1", 1),
            "server": ("test", 80)}


def echo_app(**pace) -> FastAPI:
    """An app that spools its body; with ``pace`` (rate, grace, clock), behind ``MinUploadRate`` (inside
    Starlette's error middleware, as in the service)."""
    app = FastAPI()
    if pace:
        app.add_middleware(MinUploadRate, **pace)

    @app.post("/upload")
    async def upload(request: Request):
        spool = await spool_body(request)
        try:
            size = len(spool.read())
            return JSONResponse({"size": size, "on_disk": bool(spool._rolled)})
        finally:
            spool.close()

    return app


def call(app, receive, path: str = "/upload", content_type: bytes = b"application/octet-stream"):
    sent: list[dict] = []

    async def send(message):
        sent.append(message)

    async def run():
        await asyncio.wait_for(app(scope(path, content_type), receive, send), timeout=120)  # hang guard only

    asyncio.run(run())
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], dict(start["headers"]), body


def test_a_body_at_the_minimum_pace_is_read():
    clock = FakeClock()
    app = echo_app(rate=1000, grace=2.0, clock=clock)
    chunks = [(1.0, b"x" * 1000)] * 20  # exactly the minimum, 20 s long
    status, _, body = call(app, chunks_receive(clock, chunks))
    assert status == 200 and b'"size":20000' in body


def test_a_pause_within_the_grace_is_forgiven():
    clock = FakeClock()
    app = echo_app(rate=1000, grace=2.0, clock=clock)
    chunks = [(0.1, b"x" * 5000), (1.9, b"x" * 10), (0.1, b"x" * 5000)]
    status, _, _ = call(app, chunks_receive(clock, chunks))
    assert status == 200


def test_a_trickling_body_is_dropped_with_408_naming_the_setting():
    clock = FakeClock()
    app = echo_app(rate=1000, grace=2.0, clock=clock)
    chunks = [(1.0, b"x" * 500)] * 30  # half the minimum: the 2 s credit runs out after about 4 s
    status, headers, body = call(app, chunks_receive(clock, chunks))
    assert status == 408
    assert headers[b"connection"] == b"close"
    assert b"N2N_MIN_UPLOAD_BYTES_PER_SECOND" in body and b"1000 bytes per second" in body
    assert clock.now < 10  # refused as soon as the credit ran out, not at the end of the body


def test_a_fast_start_buys_no_long_stall():
    clock = FakeClock()
    app = echo_app(rate=1000, grace=2.0, clock=clock)
    chunks = [(0.1, b"x" * 1_000_000), (3.0, b"x")]  # a megabyte at once, then a 3 s pause
    assert call(app, chunks_receive(clock, chunks))[0] == 408


def test_a_stalled_body_is_dropped_without_waiting_for_its_next_chunk():
    # the client sends one chunk and then nothing: the wait itself is bounded by the credit (here 0.05 s)
    app = echo_app(rate=1000, grace=0.05)
    pending = [{"type": "http.request", "body": b"x" * 10, "more_body": True}]

    async def receive():
        if pending:
            return pending.pop()
        await asyncio.Event().wait()

    status, _, body = call(app, receive)
    assert status == 408 and b"N2N_MIN_UPLOAD_BYTES_PER_SECOND" in body


def test_rate_zero_turns_the_check_off():
    clock = FakeClock()
    app = echo_app(rate=0, grace=1.0, clock=clock)
    assert call(app, chunks_receive(clock, [(100.0, b"x")] * 3))[0] == 200


def test_a_body_past_the_spool_memory_goes_to_a_temporary_file():
    clock = FakeClock()
    chunk = b"x" * 65536
    chunks = [(0.0, chunk)] * (SPOOL_MEMORY // len(chunk) + 2)
    status, _, body = call(echo_app(), chunks_receive(clock, chunks))
    assert status == 200 and b'"on_disk":true' in body
    status, _, body = call(echo_app(), chunks_receive(clock, [(0.0, chunk)]))
    assert status == 200 and b'"on_disk":false' in body


@pytest.fixture
def slow_client(tmp_path, tiny_weights):
    settings = make_settings(tmp_path / "data", tiny_weights, min_upload_bytes_per_second=1000,
                             upload_grace_seconds=2.0)
    with TestClient(create_app(settings)) as c:
        yield c


@pytest.mark.parametrize("path", ["/denoise", "/denoise/jobs", "/preview"])
def test_the_service_drops_a_trickling_upload_with_408(slow_client, path):
    clock = FakeClock()
    app = slow_client.app
    stack = app.middleware_stack
    # the real stack, with its MinUploadRate given the fake clock
    layer = stack
    while not isinstance(layer, MinUploadRate):
        layer = layer.app
    layer.clock = clock
    chunks = [(1.0, b"\x89PNG" + b"x" * 100)] * 30
    sent: list[dict] = []

    async def send(message):
        sent.append(message)

    slow_client.portal.call(app, scope(path, b"image/png"), chunks_receive(clock, chunks), send)
    start = next(m for m in sent if m["type"] == "http.response.start")
    assert start["status"] == 408
    assert b"N2N_MIN_UPLOAD_BYTES_PER_SECOND" in b"".join(m.get("body", b"") for m in sent)


def big_png() -> bytes:
    data = png_bytes(rgb(640, 640, seed=3))
    assert len(data) > SPOOL_MEMORY
    return data


def test_uploads_past_the_spool_memory_keep_their_contracts(client):
    data = big_png()
    for kwargs in ({"content": data, "headers": {"Content-Type": "image/png"}},
                   {"files": {"file": ("big.png", data, "image/png")}}):
        r = client.post("/denoise", **kwargs)
        assert r.status_code == 200, r.text
        assert Image.open(io.BytesIO(r.content)).size == (640, 640)
        r = client.post("/preview", **kwargs)
        assert r.status_code == 200, r.text
        assert np.asarray(Image.open(io.BytesIO(r.content))).shape == (640, 640, 3)
    r = client.post("/denoise/jobs", content=data, headers={"Content-Type": "image/png"})
    assert r.status_code == 202, r.text


def test_refusals_are_unchanged_with_a_spool(client):
    r = client.post("/denoise", content=b"", headers={"Content-Type": "image/png"})
    assert r.status_code == 400 and "empty body" in r.json()["detail"]
    r = client.post("/denoise", content=b"not an image" * 100_000, headers={"Content-Type": "image/png"})
    assert 400 <= r.status_code < 500
    r = client.post("/denoise", files={"other": ("a.png", png_bytes(rgb()), "image/png")})
    assert r.status_code == 400 and "field 'file'" in r.json()["detail"]
    r = client.post("/preview", content=b"x", headers={"Content-Type": "text/plain"})
    assert r.status_code == 415


def test_every_upload_route_of_the_nginx_config_limits_connections_and_time():
    import re
    from pathlib import Path

    text = re.sub(r"#.*", "", (Path(__file__).resolve().parents[3] / "deploy/nginx/n2n.conf").read_text())
    assert re.search(r"limit_conn_zone \$binary_remote_addr zone=n2n_uploads:\d+m;", text)
    assert re.search(r"client_header_timeout \d+s;", text) and re.search(r"limit_conn_status 429;", text)
    for route in ("location = /denoise {", "location = /preview {", "location /denoise/jobs {",
                  "location = /datasets {"):
        block = text[text.index(route):].split("}", 1)[0]
        assert re.search(r"limit_conn n2n_uploads \d+;", block), route
        assert re.search(r"client_body_timeout \d+s;", block) and re.search(r"send_timeout \d+s;", block), route


def test_a_tiff_only_tifffile_reads_is_probed_on_a_spool_past_memory(client):
    # 16-bit grey + alpha (Pillow has no mode for it): the header check opens the spooled file with tifffile
    import tifffile

    arr = np.random.default_rng(0).integers(0, 65536, (720, 720, 2), dtype=np.uint16)
    buf = io.BytesIO()
    tifffile.imwrite(buf, arr, photometric="minisblack", extrasamples=[2])
    assert len(buf.getvalue()) > SPOOL_MEMORY
    r = client.post("/preview", content=buf.getvalue(), headers={"Content-Type": "image/tiff"})
    assert r.status_code == 200, r.text
    assert Image.open(io.BytesIO(r.content)).size == (720, 720)
