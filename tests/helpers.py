"""Helpers shared by the test files: hang guards and polling, the service's test settings and images, and the
browser tests' page helpers. Fixtures and hooks stay in the conftest.py files; every helper is defined here once
and imported from here (``from ..helpers import ...``)."""

from __future__ import annotations

import io
import re
import shutil
import struct
import time
import zlib
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

if TYPE_CHECKING:
    from fastapi.testclient import TestClient

    from app.core.config import Settings

ROOT = Path(__file__).resolve().parents[1]  # the repository

# -- hang guards --------------------------------------------------------------------------------------------------
# Waits poll for a state. Their timeouts are hang guards only, never speed requirements: the suite must pass on a
# machine whose cores are all busy (training there runs many times slower than when quiet).
HANG_GUARD = 300.0  # seconds; below pytest-timeout (600 s a test) so that a hang reports what it waited for
HANG_GUARD_MS = int(HANG_GUARD * 1000)  # the same guard in milliseconds, for Playwright's timeout= arguments


def poll_until(predicate, what: str, timeout: float = HANG_GUARD, every: float = 0.1):
    """predicate()'s first truthy value, polled every ``every`` seconds; AssertionError after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"hang guard: {what} not reached after {timeout:.0f}s")
        time.sleep(every)


# -- the service ------------------------------------------------------------------------------------------------
TOKEN = "test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def make_settings(data_dir: Path, weights: Path | None, **kw) -> Settings:
    from app.core.config import Settings

    return Settings(data_dir=data_dir, weights=str(weights) if weights else None, api_token=TOKEN, **kw)


def png_bytes(arr: np.ndarray, fmt: str = "PNG", **save) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format=fmt, **save)
    return buf.getvalue()


def rgb(h: int = 48, w: int = 64, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def wait_for(client: TestClient, job_id: str, statuses=("succeeded", "failed", "cancelled"),
             timeout: float = HANG_GUARD) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get(f"/train/{job_id}").json()
        if job["status"] in statuses:
            return job
        time.sleep(0.2)
    raise AssertionError(f"hang guard: job {job_id} still {job['status']} after {timeout}s: {job}")


# -- the browser tests (tests/e2e): Debian's chromium driven by Playwright -----------------------------------------
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
NO_CHROMIUM = "Debian's chromium is not installed (apt-get install chromium); the browser tests need it"


@contextmanager
def opened(browser, server: str, width: int = 1280, height: int = 900, scale: float = 1.0, go: bool = True,
           **options):
    """A fresh page (own context) on the server; yields (page, log) where log records requests, failed requests,
    responses with status >= 400 and requests that left the host. Closed afterwards. ``options``: more
    browser-context options (has_touch=True, is_mobile=True for a phone)."""
    context = browser.new_context(viewport={"width": width, "height": height}, device_scale_factor=scale, **options)
    page = context.new_page()
    log = {"requests": [], "failed": [], "errors": [], "external": [], "page_errors": []}
    page.on("request", lambda r: log["requests"].append(r))
    page.on("request", lambda r: log["external"].append(r.url)
            if not r.url.startswith((server, "blob:", "data:")) else None)
    page.on("requestfailed", lambda r: log["failed"].append(r))
    page.on("response", lambda r: log["errors"].append((r.status, r.url)) if r.status >= 400 else None)
    page.on("pageerror", lambda e: log["page_errors"].append(str(e)))
    try:
        if go:
            page.goto(server)
        yield page, log
    finally:
        # Route handlers still running when the page goes away would raise into the next test's calls
        # ("Response has been disposed"): drop them, ignoring the errors of those in flight, first.
        page.unroute_all(behavior="ignoreErrors")
        context.close()


def pump(page, predicate, what: str, timeout_ms: int = HANG_GUARD_MS):
    """Poll ``predicate()`` (Python side: route and request events arrive while Playwright waits) until truthy."""
    deadline = time.monotonic() + timeout_ms / 1000
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"hang guard: {what} not reached after {timeout_ms / 1000:.0f} s")
        page.wait_for_timeout(50)


def release(route) -> None:
    """Let a held request go on; the page may have aborted it meanwhile."""
    from playwright.sync_api import Error

    try:
        route.continue_()
    except Error:
        pass


def status_is(page, prefix: str) -> None:
    page.wait_for_function("p => document.getElementById('status').innerText.startsWith(p)", arg=prefix,
                           timeout=HANG_GUARD_MS)


def wait_done(page, name: str | None = None, size: tuple[int, int] | None = None) -> str:
    """Wait until the status says Done (naming ``name``, when given) with a result of ``size`` (when given)."""
    page.wait_for_function(
        """([n, size]) => { const s = document.getElementById('status'), a = document.getElementById('after');
                  return s.innerText.startsWith('Done') && (!n || s.innerText.includes(n)) &&
                         (!size || (a.naturalWidth === size[0] && a.naturalHeight === size[1])); }""",
        arg=[name, list(size) if size else None], timeout=HANG_GUARD_MS)
    return page.locator("#status").inner_text()


def wait_error(page) -> str:
    page.wait_for_function("document.getElementById('status').classList.contains('error')", timeout=HANG_GUARD_MS)
    return page.locator("#status").inner_text()


def photo(tmp_path: Path, w: int, h: int, name: str, fmt: str | None = None, seed: int = 0, **save) -> Path:
    """A noisy test photo of w x h: smooth gradients (so the output differs visibly from the noisy input)."""
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([xx * 255.0 / max(1, w - 1), yy * 255.0 / max(1, h - 1), (xx + yy) % 256], -1)
    noisy = np.clip(base + np.random.default_rng(seed).normal(0, 25, base.shape), 0, 255).astype(np.uint8)
    path = tmp_path / name
    Image.fromarray(noisy).save(path, format=fmt, **save)
    return path


def png_header_only(path: Path, w: int, h: int) -> Path:
    """A PNG whose header declares w x h, with a broken body: enough for the page's own header check."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
                     + chunk(b"IDAT", b"not deflate data") + chunk(b"IEND", b""))
    return path


def image_pixels(page, element_id: str) -> np.ndarray:
    """The pixels an <img> of the page holds, at its natural size, as (H, W, 4) uint8."""
    data = page.evaluate("""id => { const img = document.getElementById(id);
        const c = document.createElement('canvas'); c.width = img.naturalWidth; c.height = img.naturalHeight;
        const ctx = c.getContext('2d'); ctx.drawImage(img, 0, 0);
        return [c.width, c.height, Array.from(ctx.getImageData(0, 0, c.width, c.height).data)]; }""", element_id)
    w, h, flat = data
    return np.asarray(flat, dtype=np.uint8).reshape(h, w, 4)


def denoise_posts(log) -> list:
    return [r for r in log["requests"] if r.method == "POST" and "/denoise" in r.url]


def rects(page) -> dict:
    """Bounding rectangles (CSS px) of the stage's inside, the photo, the split line, and the stage's numbers."""
    return page.evaluate("""() => {
        const r = (el) => { const b = el.getBoundingClientRect(); return {l: b.left, t: b.top, r: b.right, b: b.bottom,
                                                                          w: b.width, h: b.height}; };
        const st = document.getElementById('stage'), sb = st.getBoundingClientRect();
        const inner = {l: sb.left + st.clientLeft, t: sb.top + st.clientTop, w: st.clientWidth, h: st.clientHeight};
        inner.r = inner.l + inner.w; inner.b = inner.t + inner.h;
        const after = document.getElementById('after');
        const clip = getComputedStyle(document.getElementById('before')).clipPath;
        return {stage: inner, after: r(after), line: r(document.getElementById('line')),
                handle: r(document.getElementById('handle')), nw: after.naturalWidth, nh: after.naturalHeight,
                clip, split: Number(document.getElementById('split').value), dpr: window.devicePixelRatio,
                rendering: getComputedStyle(after).imageRendering};
    }""")


def image_point_at(rc: dict, x: float, y: float) -> tuple[float, float]:
    """The photo's pixel coordinates under the screen point (x, y)."""
    a = rc["after"]
    return (x - a["l"]) * rc["nw"] / a["w"], (y - a["t"]) * rc["nh"] / a["h"]


def before_edge(rc: dict) -> float:
    """Screen x where the "before" image's clip ends (its visible right edge)."""
    m = re.match(r"inset\(\s*[-\d.]+px\s+([-\d.]+)px", rc["clip"] or "")
    right = float(m.group(1)) if m else 0.0
    return rc["after"]["r"] - right


def random_images(n: int = 3, h: int = 40, w: int = 50) -> list[np.ndarray]:
    """``n`` uint8 (h, w, 3) images of uniform noise, the same on every call (seed 0)."""
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for _ in range(n)]
