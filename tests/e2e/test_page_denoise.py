"""The denoise half of the page as a photographer uses it: picking photos one after another, formats the browser
cannot show, running again, the errors, and large photos (background jobs with a progress bar and Cancel).

Responses the tests need in a given order are held with Playwright's request routing and released by the test;
every wait polls for a state (hang guards only)."""

from __future__ import annotations

import io

import numpy as np
import tifffile
from PIL import Image

from ..helpers import (HANG_GUARD_MS, denoise_posts, image_pixels, opened, photo, png_header_only, pump, release,
                       wait_done, wait_error)

STATUS_DONE = "document.getElementById('status').innerText.startsWith('Done')"


def _failed(log, route) -> bool:
    return any(r is route.request for r in log["failed"])


# ------------------------------------------------------------------------------------ defect 1: stale results
def test_a_stale_result_never_replaces_the_newer_pick(server, browser, tmp_path):
    first = photo(tmp_path, 1200, 800, "first.jpg", "JPEG", quality=92)
    second = photo(tmp_path, 640, 480, "second.png", seed=1)
    with opened(browser, server) as (page, log):
        held = []
        page.route("**/denoise?*", lambda route: held.append(route))
        page.locator("#photo").set_input_files(str(first))
        pump(page, lambda: len(held) == 1, "the first upload")
        page.locator("#photo").set_input_files(str(second))
        pump(page, lambda: len(held) == 2, "the second upload")
        release(held[0])  # the first photo's answer arrives while the second one is being denoised
        pump(page, lambda: _failed(log, held[0]) or page.evaluate(STATUS_DONE),
             "the first request aborted, or its stale result shown")
        assert not page.evaluate(STATUS_DONE), f"a stale result was shown: {page.locator('#status').inner_text()}"
        assert page.locator("#viewer").is_hidden()
        release(held[1])
        status = wait_done(page, "second.png")
        assert "first" not in status
        sizes = page.evaluate("['before', 'after'].map(id => [document.getElementById(id).naturalWidth, "
                              "document.getElementById(id).naturalHeight])")
        assert sizes == [[640, 480], [640, 480]]
        assert page.locator("#download").get_attribute("download") == "second-denoised.png"
        src = np.asarray(Image.open(second).convert("RGB"))
        assert np.array_equal(image_pixels(page, "before")[:, :, :3], src), "the left side is not the second photo"


def test_an_error_for_a_newer_pick_is_not_overwritten(server, browser, tmp_path):
    good = photo(tmp_path, 1200, 800, "good.jpg", "JPEG")
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"this is not a png")
    with opened(browser, server) as (page, log):
        held = []
        page.route("**/denoise?*", lambda route: route.continue_() if held else held.append(route))
        page.locator("#photo").set_input_files(str(good))
        pump(page, lambda: len(held) == 1, "the upload of the good photo")
        page.locator("#photo").set_input_files(str(bad))
        message = wait_error(page)
        assert "bad.png" in message
        release(held[0])
        pump(page, lambda: _failed(log, held[0]) or page.evaluate(STATUS_DONE),
             "the good photo's request aborted, or its result shown")
        assert page.locator("#status").inner_text() == message, "the error was overwritten by a stale result"
        assert page.locator("#viewer").is_hidden()


def test_a_newer_pick_hides_the_previous_photo_and_result(server, browser, tmp_path):
    one = photo(tmp_path, 320, 240, "one.png")
    two = photo(tmp_path, 300, 200, "two.png", seed=3)
    with opened(browser, server) as (page, log):
        page.locator("#photo").set_input_files(str(one))
        wait_done(page, size=(320, 240))
        assert page.locator("#viewer").is_visible()
        held = []
        page.route("**/denoise?*", lambda route: held.append(route))
        page.locator("#photo").set_input_files(str(two))
        pump(page, lambda: len(held) == 1, "the second upload")
        assert page.locator("#viewer").is_hidden()
        assert page.evaluate("!document.getElementById('after').getAttribute('src')")
        assert not page.locator("#download").get_attribute("href")
        release(held[0])
        assert "two.png" in wait_done(page, size=(300, 200))


def test_a_newer_pick_abandons_a_background_job(server, browser, tmp_path):
    big = photo(tmp_path, 1600, 1000, "big.png")  # above N2N_PAGE_JOB_PIXELS: a background job
    small = photo(tmp_path, 320, 240, "small.png", seed=2)
    with opened(browser, server) as (page, log):
        polls, deletes = [], []
        page.route("**/denoise/jobs/**", lambda route: _hold_polls(route, polls, deletes))
        with page.expect_request(lambda r: r.method == "POST" and "/denoise" in r.url, timeout=HANG_GUARD_MS) as req:
            page.locator("#photo").set_input_files(str(big))
        assert "/denoise/jobs" in req.value.url, "a large photo must go through POST /denoise/jobs"
        pump(page, lambda: polls, "the first poll of the job")
        page.locator("#photo").set_input_files(str(small))
        wait_done(page, "small.png")
        pump(page, lambda: _failed(log, polls[0]), "the abandoned job's poll aborted")
        release(polls[0])
        assert len(polls) == 1, "the page went on polling the abandoned job"
        # issue 22: the page tells the server to stop the abandoned job (DELETE /denoise/jobs/{id})
        pump(page, lambda: deletes, "DELETE of the abandoned job")
        assert deletes[0].endswith(polls[0].request.url.rsplit("/", 1)[1])
        assert not [r for r in log["requests"] if r.url.endswith("/result")]
        assert page.evaluate("document.getElementById('after').naturalWidth") == 320


# ------------------------------------------------------------------------------------ defect 2: TIFF before
def _tiff(path, arr):
    tifffile.imwrite(path, arr, photometric="rgb")
    return path


def test_a_tiff_has_a_before_of_its_own_pixels(server, browser, tmp_path):
    rgb8 = np.asarray(Image.open(photo(tmp_path, 200, 120, "src.png")))
    low_bits = np.random.default_rng(5).integers(0, 100, rgb8.shape)  # 16 bits whose top 8 are rgb8
    rgb16 = np.minimum(rgb8.astype(np.int64) * 257 + low_bits, 65535).astype(np.uint16)
    cases = [(_tiff(tmp_path / "eight.tif", rgb8), rgb8),
             (_tiff(tmp_path / "sixteen.tiff", rgb16[:100, :180]), rgb8[:100, :180])]
    with opened(browser, server) as (page, log):
        for path, want in cases:
            h, w = want.shape[:2]
            page.locator("#photo").set_input_files(str(path))
            wait_done(page, size=(w, h))
            size = page.evaluate("['before', 'after'].map(id => document.getElementById(id).naturalWidth)")
            assert size == [w, w], f"{path.name}: the before is not shown ({size})"
            assert path.name in page.locator("#status").inner_text()
            got = image_pixels(page, "before")[:, :, :3].astype(int)
            assert np.abs(got - want.astype(int)).max() <= 1, f"{path.name}: the before is not the photo"
        assert any(r.url.endswith("/preview") for r in log["requests"])


def test_a_16bit_png_has_a_before(server, browser, tmp_path):
    """Debian's chromium displays 16-bit PNGs itself (this passed before the preview existed): a guard that the
    page keeps showing them, from the file or from /preview."""
    import cv2

    rgb16 = (np.random.default_rng(7).random((90, 130, 3)) * 65535).astype(np.uint16)
    path = tmp_path / "deep.png"
    cv2.imwrite(str(path), rgb16[:, :, ::-1])
    with opened(browser, server) as (page, log):
        page.locator("#photo").set_input_files(str(path))
        wait_done(page, size=(130, 90))
        assert page.evaluate("['before', 'after'].map(id => document.getElementById(id).naturalWidth)") == [130, 130]
        got = image_pixels(page, "before")[:, :, :3].astype(int)
        want = np.round(rgb16 / 257.0).astype(int)
        assert np.abs(got - want).max() <= 1


# ------------------------------------------------------------------------------------ defect 6: run again
def test_run_again_and_changing_format_rerun_the_same_photo(server, browser, tmp_path):
    path = photo(tmp_path, 320, 240, "again.png")
    with opened(browser, server) as (page, log):
        page.locator("#photo").set_input_files(str(path))
        wait_done(page, size=(320, 240))
        assert len(denoise_posts(log)) == 1
        page.click("#rerun")
        pump(page, lambda: len(denoise_posts(log)) == 2, "a second request from Run again")
        wait_done(page, "again.png")
        page.select_option("#format", "webp")
        pump(page, lambda: len(denoise_posts(log)) == 3, "a request after changing the format")
        assert "format=webp" in denoise_posts(log)[-1].url
        wait_done(page, "again.png")
        assert page.locator("#download").get_attribute("download") == "again-denoised.webp"
        page.locator("#photo").set_input_files(str(path))  # the same file picked again
        pump(page, lambda: len(denoise_posts(log)) == 4, "a request after picking the same file again")
        wait_done(page, "again.png")
        options = page.evaluate("[...document.getElementById('model').options].map(o => o.value)")
        other = next(o for o in options if o != page.locator("#model").input_value())
        page.select_option("#model", other)
        pump(page, lambda: len(denoise_posts(log)) == 5, "a request after changing the model")
        assert f"model={other}" in denoise_posts(log)[-1].url
        wait_done(page, "again.png")


# ------------------------------------------------------------------------------------ defect 9: messages
def test_error_messages_are_plain_and_checked_before_upload(server, browser, tmp_path):
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"this is not a png")
    huge = tmp_path / "huge.jpg"
    with huge.open("wb") as f:  # sparse: 300 MB on paper, nothing on disk
        f.truncate(300 * 1024 * 1024)
    many = png_header_only(tmp_path / "many.png", 8000, 6000)  # 48 megapixels
    with opened(browser, server) as (page, log):
        page.locator("#photo").set_input_files(str(broken))
        text = wait_error(page)
        assert text.lower().count("not a readable image") == 1, text
        page.locator("#photo").set_input_files(str(empty))
        page.wait_for_function("document.getElementById('status').innerText.includes('empty.jpg')", timeout=HANG_GUARD_MS)
        text = wait_error(page)
        assert "empty" in text and not any(w in text for w in ("multipart", "field", "body")), text
        page.locator("#photo").set_input_files(str(huge))
        page.wait_for_function("document.getElementById('status').innerText.includes('huge.jpg')", timeout=HANG_GUARD_MS)
        text = wait_error(page)
        assert "300 MB" in text and "256 MB" in text and "40 megapixels" in text, text
        page.locator("#photo").set_input_files(str(many))
        page.wait_for_function("document.getElementById('status').innerText.includes('many.png')", timeout=HANG_GUARD_MS)
        text = wait_error(page)
        assert "48 megapixels" in text and "40 megapixels" in text and "MB" in text, text
        assert not denoise_posts(log), "these files should have been refused before any upload"
        assert any(r.url.endswith("/limits") for r in log["requests"]), "the limits come from the server"


def test_a_server_refusal_reads_once_and_clears_the_previous_result(server, browser, tmp_path):
    good = photo(tmp_path, 320, 240, "good.png")
    bad = png_header_only(tmp_path / "damaged.png", 64, 64)  # passes the page's header check, not the server's
    with opened(browser, server) as (page, log):
        page.locator("#photo").set_input_files(str(good))
        wait_done(page, size=(320, 240))
        page.locator("#photo").set_input_files(str(bad))
        text = wait_error(page)
        assert len(denoise_posts(log)) == 2
        assert "damaged.png" in text
        words = text.lower().replace(":", " ").split()
        phrases = [" ".join(words[i:i + 3]) for i in range(len(words) - 2)]
        assert len(phrases) == len(set(phrases)), f"the message repeats itself: {text}"
        assert page.locator("#viewer").is_hidden(), "the previous result stays below the error"


def test_the_limits_shown_are_the_servers(server, browser, tmp_path):
    path = tmp_path / "three.jpg"
    with path.open("wb") as f:
        f.truncate(3 * 1024 * 1024)
    with opened(browser, server, go=False) as (page, log):
        def limits(route):
            resp = route.fetch()
            body = {**resp.json(), "max_upload_bytes": 2 * 1024 * 1024, "max_pixels": 12_000_000}
            route.fulfill(response=resp, json=body)

        page.route("**/limits", limits)
        page.goto(server)
        page.locator("#photo").set_input_files(str(path))
        text = wait_error(page)
        assert "2 MB" in text and "12 megapixels" in text, text


# ------------------------------------------------------------------------------------ defect 12: large photos
def test_a_large_photo_is_a_background_job_with_progress(server, browser, tmp_path):
    big = photo(tmp_path, 1600, 1000, "large.png")
    with opened(browser, server) as (page, log):
        faked = []

        def first_poll_running(route):
            if not faked and route.request.method == "GET" and not route.request.url.endswith("/result"):
                resp = route.fetch()
                body = {**resp.json(), "status": "running", "progress": {"done": 3, "total": 10, "fraction": 0.3}}
                faked.append(body)
                route.fulfill(response=resp, json=body)
            else:
                route.continue_()

        page.route("**/denoise/jobs/**", first_poll_running)
        page.locator("#photo").set_input_files(str(big))
        page.wait_for_function("document.getElementById('denoise-progress').value === 0.3 && "
                               "document.getElementById('work-text').innerText.includes('3 of 10 tiles')",
                               timeout=HANG_GUARD_MS)
        assert page.locator("#work").is_visible() and page.locator("#denoise-cancel").is_enabled()
        for sel in ("#photo", "#model", "#format", "#start", "#split", "#token"):  # nothing else is locked
            assert page.locator(sel).is_enabled(), sel
        text = wait_done(page, "large.png")
        assert "background job" in text
        assert page.locator("#work").is_hidden()
        assert page.evaluate("document.getElementById('after').naturalWidth") == 1600
        assert page.locator("#download").get_attribute("href").startswith("blob:")


def _hold_polls(route, polls, deletes) -> None:
    """Hold the page's polls of a background job (GET) in ``polls``; let a DELETE through, noted in ``deletes``."""
    if route.request.method == "DELETE":
        deletes.append(route.request.url)
        release(route)
    else:
        polls.append(route)


def _cancel(page, log, held) -> None:
    """Click Cancel while ``held`` (a routed request) waits: the page aborts it and says so."""
    page.click("#denoise-cancel")
    page.wait_for_function("document.getElementById('status').innerText.startsWith('Cancelled')", timeout=HANG_GUARD_MS)
    pump(page, lambda: _failed(log, held), "the request aborted")
    release(held)
    assert page.locator("#work").is_hidden() and page.locator("#viewer").is_hidden()


def test_cancel_stops_a_background_job(server, browser, tmp_path):
    big = photo(tmp_path, 1600, 1000, "cancel-me.png")
    with opened(browser, server) as (page, log):
        polls, deletes = [], []
        page.route("**/denoise/jobs/**", lambda route: _hold_polls(route, polls, deletes))
        page.locator("#photo").set_input_files(str(big))
        pump(page, lambda: polls, "the first poll of the job")
        _cancel(page, log, polls[0])
        assert len(polls) == 1
        # issue 22: Cancel stops the job on the server too (DELETE /denoise/jobs/{id})
        pump(page, lambda: deletes, "DELETE of the cancelled job")
        assert deletes[0] == polls[0].request.url


def test_a_plain_request_shows_elapsed_time_and_can_be_cancelled(server, browser, tmp_path):
    path = photo(tmp_path, 640, 480, "slow.png")
    with opened(browser, server) as (page, log):
        held = []
        page.route("**/denoise?*", lambda route: held.append(route))
        page.locator("#photo").set_input_files(str(path))
        pump(page, lambda: held, "the upload")
        page.wait_for_function("/\\d+ s/.test(document.getElementById('work-text').innerText)", timeout=HANG_GUARD_MS)
        first = page.locator("#work-text").inner_text()
        page.wait_for_function("t => document.getElementById('work-text').innerText !== t", arg=first,
                               timeout=HANG_GUARD_MS)  # the elapsed time moves
        assert page.evaluate("!document.getElementById('denoise-progress').hasAttribute('value')"), \
            "a single request has no measurable progress: the bar must be indeterminate"
        _cancel(page, log, held[0])
