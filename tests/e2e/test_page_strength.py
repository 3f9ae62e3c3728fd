"""The strength slider of the denoise panel: labelled and spoken, sent as ?strength with each request and job,
re-running the photo when it changes; and the noise level the service measured (X-Noise-Sigma) in the status."""

from __future__ import annotations

import re

import numpy as np
from PIL import Image

from ..helpers import HANG_GUARD_MS, denoise_posts, image_pixels, opened, photo, pump, wait_done

DENOISE_POST = "r => r.method === 'POST' && r.url.includes('/denoise')"


def _is_denoise_post(request) -> bool:
    return request.method == "POST" and "/denoise" in request.url


def _set_slider(page, percent: int) -> None:
    """Move the slider as a drag ends: its value, then the input and change events the browser fires."""
    page.evaluate("""p => { const s = document.getElementById('strength'); s.value = p;
                             s.dispatchEvent(new Event('input', {bubbles: true}));
                             s.dispatchEvent(new Event('change', {bubbles: true})); }""", percent)


def _strength_param(url: str) -> str | None:
    found = re.search(r"[?&]strength=([^&]+)", url)
    return found.group(1) if found else None


def _distance_from(page, source: np.ndarray) -> float:
    return float(np.abs(image_pixels(page, "after")[:, :, :3].astype(float) - source).mean())


def test_strength_is_sent_and_changing_it_reruns_the_photo(server, browser, tmp_path):
    path = photo(tmp_path, 320, 240, "grain.png")
    noisy = np.asarray(Image.open(path).convert("RGB")).astype(float)
    with opened(browser, server) as (page, log):
        slider = page.get_by_label("Strength")
        assert slider.get_attribute("type") == "range" and slider.input_value() == "100"
        assert slider.get_attribute("aria-valuetext") == "100 %: fully denoised"
        page.locator("#photo").set_input_files(str(path))
        status = wait_done(page, "grain.png", size=(320, 240))
        first = denoise_posts(log)[-1]
        assert _strength_param(first.url) == "1"
        sigma = first.response().header_value("X-Noise-Sigma")
        assert sigma and f"σ {sigma}" in status, status  # the measured noise level, as the service sent it
        full = _distance_from(page, noisy)

        with page.expect_request(_is_denoise_post, timeout=HANG_GUARD_MS) as sent:
            _set_slider(page, 30)
        assert _strength_param(sent.value.url) == "0.3"
        assert slider.get_attribute("aria-valuetext") == "30 %: 70 % of the photo's grain kept"
        assert page.locator("#strength-value").inner_text() == "30 %"
        status = wait_done(page, "grain.png", size=(320, 240))
        assert "30 % strength" in status and len(denoise_posts(log)) == 2, status
        blended = _distance_from(page, noisy)
        assert blended < 0.5 * full, (blended, full)  # the result moved towards the photo as sent

        slider.focus()
        with page.expect_request(_is_denoise_post, timeout=HANG_GUARD_MS) as sent:
            page.keyboard.press("ArrowRight")  # the keyboard moves it by one step (5 %) and re-runs too
        assert _strength_param(sent.value.url) == "0.35"
        assert "35 % strength" in wait_done(page, "grain.png")


def test_a_background_job_carries_the_strength(server, browser, tmp_path):
    big = photo(tmp_path, 1600, 1000, "big-grain.png")  # above N2N_PAGE_JOB_PIXELS: POST /denoise/jobs
    with opened(browser, server) as (page, log):
        page.evaluate("document.getElementById('strength').value = 50")
        with page.expect_request(_is_denoise_post, timeout=HANG_GUARD_MS) as sent:
            page.locator("#photo").set_input_files(str(big))
        assert "/denoise/jobs?" in sent.value.url and _strength_param(sent.value.url) == "0.5"
        pump(page, lambda: page.locator("#work").is_visible(), "the job's progress")
        page.click("#denoise-cancel")
        page.wait_for_function("document.getElementById('status').innerText.startsWith('Cancelled')",
                               timeout=HANG_GUARD_MS)
