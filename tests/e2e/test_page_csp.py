"""The security headers' Content-Security-Policy breaks neither the page (a photo denoised, shown and offered
for download) nor /docs: the browser reports no violation."""

from __future__ import annotations

import numpy as np
from PIL import Image

from ..helpers import HANG_GUARD_MS, opened, pump, wait_done

WATCH = """() => { window.__csp = []; document.addEventListener('securitypolicyviolation',
             e => window.__csp.push(e.violatedDirective + ' ' + e.blockedURI)); }"""


def _violations(page, console: list[str]) -> list[str]:
    return list(page.evaluate("() => window.__csp || []")) + [m for m in console if "Content Security Policy" in m]


def test_the_page_and_docs_run_under_their_policy(server, browser, tmp_path):
    photo = tmp_path / "csp.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (96, 128, 3), dtype=np.uint8)).save(photo)
    with opened(browser, server, go=False) as (page, log):
        console: list[str] = []
        page.on("console", lambda m: console.append(m.text))
        page.add_init_script(f"({WATCH})()")
        response = page.goto(server)
        assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
        page.locator("input[type=file]").first.set_input_files(str(photo))
        wait_done(page, size=(128, 96))
        assert _violations(page, console) == []
        assert not log["page_errors"], log["page_errors"]
        console.clear()
        page.goto(f"{server}/docs")
        page.wait_for_selector(".swagger-ui .opblock", timeout=HANG_GUARD_MS)
        assert _violations(page, console) == []
        # the control: an inline script is refused, and reported, so the checks above could see a violation
        page.goto(server)
        page.evaluate("() => { const s = document.createElement('script'); s.textContent = 'window.__ran = 1';"
                      " document.body.append(s); }")
        pump(page, lambda: _violations(page, console), "the inline script's violation reported")
        assert page.evaluate("() => window.__ran") is None
