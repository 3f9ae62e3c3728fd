"""Browser-test fixtures: one loopback n2n server and one headless Debian chromium (driven by Playwright) for
all of tests/e2e. The helpers the tests use (pages, polling waits, photos) are in tests/helpers.py."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import pytest

from ..helpers import CHROMIUM, NO_CHROMIUM, ROOT, TOKEN

sys.path.insert(0, str(ROOT))

from benchmarks.common import free_port, start_server, stop_server  # noqa: E402

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
