"""Browser-test fixtures: one loopback n2n server and one headless Debian chromium (driven by Playwright) for
all of tests/e2e, and helpers that wait by polling for a state, never for a fixed time."""

from __future__ import annotations

import io
import shutil
import struct
import sys
import tempfile
import time
import zlib
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from benchmarks.common import free_port, start_server, stop_server  # noqa: E402

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
NO_CHROMIUM = "Debian's chromium is not installed (apt-get install chromium); the browser tests need it"
TOKEN = "e2e-token"
HANG_GUARD = 300_000  # ms: waits are hang guards, never speed requirements (the machine may be fully loaded)
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
# Photos above this many pixels go through POST /denoise/jobs (N2N_PAGE_JOB_PIXELS): 1200x800 stays a plain
# request, 1600x1000 becomes a job.
JOB_PIXELS = 1_500_000


@pytest.fixture(scope="session")
def server():
    if CHROMIUM is None:
        pytest.skip(NO_CHROMIUM)
    port = free_port()
    proc = start_server(Path(tempfile.mkdtemp(prefix="n2n-e2e-")), port, TOKEN,
                        {"N2N_PAGE_JOB_PIXELS": str(JOB_PIXELS),
                         # every test's jobs come from 127.0.0.1 and are kept an hour: no per-client cap here
                         "N2N_MAX_JOBS_PER_CLIENT": "10000"})
    yield f"http://127.0.0.1:{port}"
    stop_server(proc)


@pytest.fixture(scope="session")
def browser():
    if CHROMIUM is None:
        pytest.skip(NO_CHROMIUM)
    pytest.importorskip("playwright", reason="playwright is not installed (pip install -e '.[test]')")
    from playwright.sync_api import sync_playwright

    _csp_safe_waits()
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        yield b
        b.close()


def _csp_safe_waits() -> None:
    """The page's Content-Security-Policy (script-src 'self', no 'unsafe-eval') blocks a ``wait_for_function``
    *expression*, which Playwright compiles inside the page with eval; a function is called through the DevTools
    protocol, which the CSP allows. Every expression becomes an arrow function, so the tests run under the CSP."""
    from playwright.sync_api import Page

    if getattr(Page.wait_for_function, "csp_safe", False):
        return
    original = Page.wait_for_function

    def wait_for_function(self, expression, *args, **kwargs):
        body = expression.strip()
        if not (body.startswith(("function", "async ")) or "=>" in body):
            expression = f"() => ({expression})"
        return original(self, expression, *args, **kwargs)

    wait_for_function.csp_safe = True
    Page.wait_for_function = wait_for_function


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


def pump(page, predicate, what: str, timeout_ms: int = HANG_GUARD):
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
                           timeout=HANG_GUARD)


def wait_done(page, name: str | None = None, size: tuple[int, int] | None = None) -> str:
    """Wait until the status says Done (naming ``name``, when given) with a result of ``size`` (when given)."""
    page.wait_for_function(
        """([n, size]) => { const s = document.getElementById('status'), a = document.getElementById('after');
                  return s.innerText.startsWith('Done') && (!n || s.innerText.includes(n)) &&
                         (!size || (a.naturalWidth === size[0] && a.naturalHeight === size[1])); }""",
        arg=[name, list(size) if size else None], timeout=HANG_GUARD)
    return page.locator("#status").inner_text()


def wait_error(page) -> str:
    page.wait_for_function("document.getElementById('status').classList.contains('error')", timeout=HANG_GUARD)
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
    import re

    m = re.match(r"inset\(\s*[-\d.]+px\s+([-\d.]+)px", rc["clip"] or "")
    right = float(m.group(1)) if m else 0.0
    return rc["after"]["r"] - right


def png_bytes(arr) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()
