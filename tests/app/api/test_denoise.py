"""POST /denoise: formats, modes, limits, errors, concurrency."""

import io
import threading
import zlib
from concurrent.futures import ThreadPoolExecutor

import cv2
import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from app.main import create_app

from tests.helpers import make_settings, png_bytes, poll_until, rgb


def _decode(content: bytes) -> Image.Image:
    return Image.open(io.BytesIO(content))


def test_multipart_and_raw_body_keep_size(client):
    data = png_bytes(rgb(37, 53))
    r = client.post("/denoise", files={"file": ("x.png", data, "image/png")})
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    assert _decode(r.content).size == (53, 37) and _decode(r.content).mode == "RGB"
    r2 = client.post("/denoise", content=data, headers={"content-type": "image/png"})
    assert r2.status_code == 200 and r2.content == r.content
    assert r.headers["x-model-id"] == "tiny"


@pytest.mark.parametrize("mode", ["L", "RGBA", "LA"])
def test_modes_are_kept_and_alpha_untouched(client, mode):
    arr = np.random.default_rng(1).integers(0, 256, (20, 30, len(mode)), dtype=np.uint8)
    im = Image.fromarray(arr.squeeze() if mode == "L" else arr, mode=mode if mode != "L" else None)
    buf = io.BytesIO()
    im.convert(mode).save(buf, format="PNG")
    out = _decode(client.post("/denoise", content=buf.getvalue(), headers={"content-type": "image/png"}).content)
    assert out.mode == mode and out.size == (30, 20)
    if "A" in mode:
        assert np.array_equal(np.asarray(out)[..., -1], np.asarray(im.convert(mode))[..., -1])


@pytest.mark.parametrize("channels", [1, 3])
def test_16_bit_stays_16_bit(client, channels):
    shape = (24, 32) if channels == 1 else (24, 32, 3)
    arr = np.random.default_rng(2).integers(0, 65536, shape, dtype=np.uint16)
    ok, buf = cv2.imencode(".png", arr)
    r = client.post("/denoise", content=buf.tobytes(), headers={"content-type": "image/png"})
    assert r.status_code == 200
    out = cv2.imdecode(np.frombuffer(r.content, np.uint8), cv2.IMREAD_UNCHANGED)
    assert out.dtype == np.uint16 and out.shape == shape


def test_exif_orientation_is_applied_first(client):
    im = Image.fromarray(rgb(20, 40))
    exif = Image.Exif()
    exif[274] = 6  # rotate 90 degrees clockwise on display
    buf = io.BytesIO()
    im.save(buf, format="JPEG", exif=exif)
    r = client.post("/denoise", files={"file": ("x.jpg", buf.getvalue(), "image/jpeg")})
    assert _decode(r.content).size == (20, 40)


@pytest.mark.parametrize("fmt,media", [("jpeg", "image/jpeg"), ("webp", "image/webp"), ("png", "image/png")])
def test_output_formats(client, fmt, media):
    r = client.post(f"/denoise?format={fmt}", content=png_bytes(rgb()), headers={"content-type": "image/png"})
    assert r.status_code == 200 and r.headers["content-type"] == media
    assert _decode(r.content).size == (64, 48)


@pytest.mark.parametrize("fmt", ["TIFF", "BMP", "WEBP", "JPEG"])
def test_input_formats(client, fmt):
    r = client.post("/denoise", files={"file": ("x", png_bytes(rgb(), fmt), "application/octet-stream")})
    assert r.status_code == 200, r.text


def _huge_png(w: int, h: int) -> bytes:
    """A valid PNG header claiming w x h pixels, with a tiny (truncated) body: decoding it would be a bomb."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return len(body).to_bytes(4, "big") + kind + body + zlib.crc32(kind + body).to_bytes(4, "big")

    ihdr = w.to_bytes(4, "big") + h.to_bytes(4, "big") + bytes([8, 2, 0, 0, 0])
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 1000)) + chunk(b"IEND", b"")


def test_errors_are_4xx_with_a_message(client):
    cases = [
        (b"not an image at all", "image/png", 400),
        (b"", "image/png", 400),
        (png_bytes(rgb(), "GIF"), "image/gif", 415),
        (_huge_png(20000, 20000), "image/png", 413),
        (png_bytes(rgb()), "text/plain", 415),
    ]
    for body, ctype, status in cases:
        r = client.post("/denoise", content=body, headers={"content-type": ctype})
        assert r.status_code == status, (ctype, status, r.text)
        assert r.json()["detail"]
    r = client.post("/denoise", files={"wrong": ("x.png", png_bytes(rgb()), "image/png")})
    assert r.status_code == 400
    r = client.post("/denoise?model=nope", content=png_bytes(rgb()), headers={"content-type": "image/png"})
    assert r.status_code == 404
    r = client.post("/denoise?format=gif", content=png_bytes(rgb()), headers={"content-type": "image/png"})
    assert r.status_code == 422


def test_body_over_the_limit_is_413(tmp_path, tiny_weights):
    s = make_settings(tmp_path / "d", tiny_weights, max_upload_bytes=10_000)
    with TestClient(create_app(s)) as c:
        big = png_bytes(np.random.default_rng(0).integers(0, 256, (100, 100, 3), dtype=np.uint8))
        assert len(big) > 10_000
        for r in (c.post("/denoise", content=big, headers={"content-type": "image/png"}),
                  c.post("/denoise", files={"file": ("big.png", big, "image/png")}),
                  c.post("/denoise", content=iter([big[:6000], big[6000:]]),  # chunked: no Content-Length
                         headers={"content-type": "image/png"})):
            assert r.status_code == 413 and r.headers["content-type"] == "application/json"
            assert "N2N_MAX_UPLOAD_BYTES" in r.json()["detail"] and "10000 bytes" in r.json()["detail"]
        assert c.get("/healthz").status_code == 200


def test_dataset_body_over_its_limit_is_a_json_413_naming_the_setting(tmp_path, tiny_weights):
    from tests.helpers import AUTH

    s = make_settings(tmp_path / "d", tiny_weights, max_dataset_bytes=1000)
    with TestClient(create_app(s)) as c:
        r = c.post("/datasets", content=b"PK" + b"0" * 5000, headers={**AUTH, "content-type": "application/zip"})
        assert r.status_code == 413 and "N2N_MAX_DATASET_BYTES" in r.json()["detail"]


def test_the_default_upload_limit_admits_a_40_megapixel_16_bit_photo():
    from app.core.config import Settings

    assert Settings().max_upload_bytes >= 40_000_000 * 3 * 2 + 1_000_000  # raw 16-bit RGB, plus headers


def test_pixel_limit(tmp_path, tiny_weights):
    s = make_settings(tmp_path / "d", tiny_weights, max_pixels=1000)
    with TestClient(create_app(s)) as c:
        r = c.post("/denoise", content=png_bytes(rgb(40, 40)), headers={"content-type": "image/png"})
        assert r.status_code == 413 and "1000" in r.json()["detail"]


def test_32_concurrent_512px_requests_are_all_served(client):
    data = png_bytes(rgb(512, 512))
    with ThreadPoolExecutor(32) as pool:
        codes = list(pool.map(lambda _: client.post("/denoise", content=data,
                                                    headers={"content-type": "image/png"}).status_code, range(32)))
    assert codes == [200] * 32


def test_beyond_the_queue_limit_requests_get_503_with_retry_after(tmp_path, tiny_weights, monkeypatch):
    from app.services.denoiser import DenoiseQueue

    prepare = DenoiseQueue._prepare
    overflowed = threading.Event()

    def held_prepare(self, *a):  # admitted work is held until the line has overflowed: no race with a sleep
        overflowed.wait(600)  # a hang guard only
        return prepare(self, *a)

    monkeypatch.setattr(DenoiseQueue, "_prepare", held_prepare)
    s = make_settings(tmp_path / "d", tiny_weights, queue_limit=2)
    with TestClient(create_app(s)) as c:
        data = png_bytes(rgb())
        barrier = threading.Barrier(8)

        def send(_):
            barrier.wait()
            r = c.post("/denoise", content=data, headers={"content-type": "image/png"})
            if r.status_code == 503:
                overflowed.set()
            return r

        with ThreadPoolExecutor(8) as pool:
            responses = list(pool.map(send, range(8)))
        codes = sorted(r.status_code for r in responses)
        assert 200 in codes and 503 in codes and set(codes) <= {200, 503}
        assert all(r.headers.get("retry-after") for r in responses if r.status_code == 503)
        assert c.get("/healthz").status_code == 200


@pytest.mark.parametrize(("fmt", "shape"), [("webp", (20, 17000)), ("webp", (17000, 20)), ("jpeg", (70, 65501))])
def test_unencodable_output_is_refused_before_any_work(client, fmt, shape):
    def no_work(*args):
        raise AssertionError("the denoise worker was given an image its output format cannot hold")

    client.app.state.queue._prepare = no_work
    wide = png_bytes(np.zeros((*shape, 3), np.uint8))
    r = client.post(f"/denoise?format={fmt}", content=wide, headers={"content-type": "image/png"})
    assert r.status_code == 400 and "png" in r.json()["detail"]
    assert client.app.state.queue.waiting == 0


@pytest.mark.parametrize("shape", [(1, 40_000), (40_000, 1), (7, 100_001), (2, 2001)])
def test_absurd_aspect_ratios_are_refused(client, shape):
    def no_work(*args):
        raise AssertionError("the denoise worker was given a sliver")

    client.app.state.queue._prepare = no_work
    r = client.post("/denoise", content=png_bytes(np.zeros((*shape, 3), np.uint8)),
                    headers={"content-type": "image/png"})
    assert r.status_code == 422 and "short side" in r.json()["detail"]


def test_thin_but_sane_images_are_denoised(client):
    r = client.post("/denoise", content=png_bytes(rgb(3, 2000)), headers={"content-type": "image/png"})
    assert r.status_code == 200 and _decode(r.content).size == (2000, 3)


def test_a_small_photo_is_not_held_behind_a_large_one(tmp_path, tiny_weights):
    """Tiles go round-robin: a small request sent while a large photo is in its tiles finishes while the
    large one still has tiles to go (one worker, no head-of-line blocking)."""
    s = make_settings(tmp_path / "d", tiny_weights, tile=64)
    with TestClient(create_app(s)) as c, ThreadPoolExecutor(2) as pool:
        queue = c.app.state.queue
        large_tiles = []
        real_submit = queue.scheduler.submit

        def watching_submit(steps, should_stop, progress=None):
            def tile_done(done, total):
                if total > 1:
                    large_tiles.append(done)
                if progress is not None:
                    progress(done, total)
            return real_submit(steps, should_stop, tile_done)

        queue.scheduler.submit = watching_submit
        large = pool.submit(c.post, "/denoise", content=png_bytes(rgb(1024, 1024)),
                            headers={"content-type": "image/png"})
        poll_until(lambda: len(large_tiles) >= 2 or large.done(), "the large photo's first tiles", every=0.01)
        assert not large.done(), "the large photo ended before the small one was sent"
        small = c.post("/denoise", content=png_bytes(rgb(32, 32)), headers={"content-type": "image/png"})
        tiles_when_small_done = len(large_tiles)
        assert small.status_code == 200
        assert large.result(timeout=300).status_code == 200
        assert tiles_when_small_done < len(large_tiles), "the small photo waited for the whole large one"


def test_the_tile_thread_outlives_cancelled_and_failing_work():
    from concurrent.futures import CancelledError

    from app.services.denoiser import TileScheduler

    def stream(n, fail=False):
        for i in range(n):
            if fail:
                raise ValueError("broken tile")
            yield i + 1, n
        return "done"

    scheduler = TileScheduler()
    try:
        first = scheduler.submit(stream(3), lambda: False)
        assert not first.cancel()  # running from submission on: only the scheduler ends it
        broken = scheduler.submit(stream(3, fail=True), lambda: False)
        with pytest.raises(ValueError, match="^broken tile$"):
            broken.result(timeout=300)
        assert first.result(timeout=300) == "done"
        assert scheduler.submit(stream(2), lambda: False).result(timeout=300) == "done"
    finally:
        scheduler.close()
    with pytest.raises((CancelledError, Exception)):
        scheduler.submit(stream(2), lambda: False).result(timeout=300)


def test_pixels_in_flight_are_bounded(tmp_path, tiny_weights, monkeypatch):
    """Memory follows pixels: beyond N2N_MAX_INFLIGHT_PIXELS a request gets 503, but one alone always runs."""
    from app.services.denoiser import DenoiseQueue

    prepare = DenoiseQueue._prepare
    release, admitted = threading.Event(), threading.Event()

    def held_prepare(self, *a):
        admitted.set()
        release.wait(300)
        return prepare(self, *a)

    monkeypatch.setattr(DenoiseQueue, "_prepare", held_prepare)
    s = make_settings(tmp_path / "d", tiny_weights, max_inflight_pixels=3000)
    with TestClient(create_app(s)) as c, ThreadPoolExecutor(1) as pool:
        first = pool.submit(c.post, "/denoise", content=png_bytes(rgb(60, 60)),  # 3600 px: over, but alone
                            headers={"content-type": "image/png"})
        assert admitted.wait(300)
        r = c.post("/denoise", content=png_bytes(rgb(10, 10)), headers={"content-type": "image/png"})
        assert r.status_code == 503 and r.headers["retry-after"]
        release.set()
        assert first.result(timeout=300).status_code == 200
        assert c.post("/denoise", content=png_bytes(rgb(10, 10)),
                      headers={"content-type": "image/png"}).status_code == 200


def test_strength_blends_with_the_input_and_the_noise_level_is_reported(client):
    flat = np.full((64, 64, 3), 128, np.uint8)
    noisy = np.clip(flat + np.random.default_rng(0).normal(0, 20, flat.shape), 0, 255).astype(np.uint8)
    body = png_bytes(noisy)
    untouched = client.post("/denoise?strength=0", content=body, headers={"content-type": "image/png"})
    assert untouched.status_code == 200
    assert np.array_equal(np.asarray(_decode(untouched.content)), noisy)
    full = client.post("/denoise", content=body, headers={"content-type": "image/png"})
    half = client.post("/denoise?strength=0.5", content=body, headers={"content-type": "image/png"})
    out_full, out_half = (np.asarray(_decode(r.content)).astype(int) for r in (full, half))
    assert np.abs(out_half - (noisy.astype(int) + out_full) / 2).max() <= 1  # rounding to 8 bits
    assert 15 < float(full.headers["x-noise-sigma"]) < 25  # N(0, 20), slightly clipped
    clean = client.post("/denoise", content=png_bytes(flat), headers={"content-type": "image/png"})
    assert float(clean.headers["x-noise-sigma"]) == 0.0
    for bad in ("1.5", "-0.1", "nan", "inf", "x"):
        r = client.post(f"/denoise?strength={bad}", content=body, headers={"content-type": "image/png"})
        assert r.status_code == 422 and "strength" in r.text, (bad, r.text)
