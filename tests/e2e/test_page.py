"""The web page in headless Chromium (Debian's chromium, driven by Playwright) against a loopback server."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from ..helpers import HANG_GUARD_MS, ROOT, TOKEN


def noisy_photo(tmp_path: Path) -> Path:
    """A real noisy photograph: RNI15 when ../shared is there, else a built-in photo with sensor-like noise."""
    rni = ROOT.parent / "shared" / "data" / "RNI15" / "Dog.png"
    if rni.exists():
        return rni
    from n2n_core.data.datasets import builtin_images

    clean = builtin_images(["chelsea"])[0].astype(np.float64)
    noisy = np.clip(clean + np.random.default_rng(0).normal(0, 25, clean.shape), 0, 255).astype(np.uint8)
    path = tmp_path / "noisy-chelsea.png"
    Image.fromarray(noisy).save(path)
    return path


def test_upload_shows_a_result_of_the_same_size(server, browser, tmp_path):
    photo = noisy_photo(tmp_path)
    w, h = Image.open(photo).size
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    external = []
    page.on("request", lambda r: external.append(r.url) if not r.url.startswith((server, "blob:", "data:")) else None)
    page.goto(server)
    page.locator("input[type=file]").first.set_input_files(str(photo))
    page.wait_for_function("document.getElementById('status').innerText.startsWith('Done')", timeout=HANG_GUARD_MS)
    size = page.evaluate("[document.getElementById('after').naturalWidth, document.getElementById('after').naturalHeight]")
    assert size == [w, h]
    assert "Done" in page.locator("#status").inner_text()
    assert page.locator("#download").get_attribute("href").startswith("blob:")
    page.screenshot(path=str(tmp_path / "page.png"), full_page=True)
    assert not external, f"the page made external requests: {external}"


def test_errors_are_shown(server, browser, tmp_path):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"this is not a png")
    page = browser.new_page()
    page.goto(server)
    page.locator("input[type=file]").first.set_input_files(str(bad))
    page.wait_for_function("document.getElementById('status').classList.contains('error')", timeout=HANG_GUARD_MS)
    assert "not a readable image" in page.locator("#status").inner_text()


def test_training_progress_moves_and_cancel_ends_the_job(server, browser):
    page = browser.new_page(viewport={"width": 360, "height": 800})
    page.goto(server)
    page.fill("#token", TOKEN)
    page.fill("#steps", "100000")
    page.click("#start")
    page.wait_for_function("document.getElementById('progress').value > 0", timeout=HANG_GUARD_MS)
    first = page.evaluate("document.getElementById('progress').value")
    page.wait_for_function(f"document.getElementById('progress').value > {first}", timeout=HANG_GUARD_MS)
    page.click("#cancel")
    page.wait_for_function("document.getElementById('train-status').innerText.includes('cancelled')",
                           timeout=HANG_GUARD_MS)
    assert page.locator("#start").is_enabled()


def test_keyboard_and_labels(server, browser, tmp_path):
    page = browser.new_page(viewport={"width": 360, "height": 740})
    page.goto(server)
    unlabeled = page.evaluate("""() => [...document.querySelectorAll('input, select, button, textarea')]
        .filter(el => !(el.labels && el.labels.length) && !el.getAttribute('aria-label') && !el.textContent.trim())
        .map(el => el.id)""")
    assert unlabeled == []
    assert page.evaluate("document.documentElement.scrollWidth") <= 360  # no horizontal scrolling at 360 px
    for _ in range(5):  # the photo picker is among the first stops of the tab order
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.id") == "photo":
            break
    assert page.evaluate("document.activeElement.id") == "photo"
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    for attempt in range(3):  # headless chromium now and then drops the first key activation
        try:
            with page.expect_file_chooser(timeout=30_000) as chooser:
                page.keyboard.press(" " if attempt % 2 == 0 else "Enter")
            break
        except PlaywrightTimeout:
            page.focus("#photo")
    else:
        raise AssertionError("the photo picker did not open from the keyboard")
    chooser.value.set_files(str(noisy_photo(tmp_path)))
    page.wait_for_function("document.getElementById('after').naturalWidth > 0", timeout=HANG_GUARD_MS)
