"""Issue 22, the page: the photo first on every screen (a rail of controls beside a viewer that fills the window on
a desktop; the viewer right under "Choose a photo" and as wide as a phone), a Cancel that stops the job on the
server, an ETA, the photographers' formats, a collapsible training panel that shows a job once, confirms a model
switch and deletes models, short model labels, a chart with real ticks, and a page that works under a strict CSP."""

from __future__ import annotations

import json

from ..helpers import HANG_GUARD_MS, TOKEN, opened, photo, pump, release, rects, wait_done

CSP = "default-src 'self'; img-src 'self' blob: data:; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"


def _show(page, path, size):
    page.locator("#photo").set_input_files(str(path))
    wait_done(page, size=size)
    page.wait_for_function("document.getElementById('after').getBoundingClientRect().width > 0", timeout=HANG_GUARD_MS)


def _box(page, selector):
    return page.evaluate("""s => { const b = document.querySelector(s).getBoundingClientRect();
        return {l: b.left, t: b.top, r: b.right, b: b.bottom, w: b.width, h: b.height}; }""", selector)


# ------------------------------------------------------------------------------------ desktop: rail + view
def test_desktop_the_view_fills_the_window_beside_a_rail(server, browser, tmp_path):
    path = photo(tmp_path, 1200, 800, "desk.jpg", "JPEG", quality=92)
    for width, height in ((1440, 900), (1280, 720)):
        with opened(browser, server, width, height) as (page, log):
            pick, drop = _box(page, "label[for=photo]"), _box(page, "#drop")
            assert page.locator("#empty").is_visible(), "the empty view is the drop zone"
            assert pick["r"] <= drop["l"], f"{width}: the controls are not in a rail beside the view"
            assert drop["b"] <= height + 0.5 and drop["h"] >= 0.6 * height and drop["w"] >= 0.55 * width, \
                f"{width}x{height}: the empty view does not fill the window: {drop}"
            _show(page, path, (1200, 800))
            rc = rects(page)
            s, a = rc["stage"], rc["after"]
            assert page.evaluate("window.scrollY") == 0
            assert s["t"] >= 0 and s["b"] <= height and s["l"] >= 0 and s["r"] <= width, \
                f"{width}x{height}: the comparison is not fully visible: {s}"
            assert pick["r"] <= s["l"], "the viewer sits beside the rail"
            assert a["w"] >= 0.55 * width or a["h"] >= 0.6 * height, f"{width}x{height}: the photo is small: {a}"
            assert abs(a["t"] - s["t"]) <= 1 and abs(a["b"] - s["b"]) <= 1, "a band above or below the photo"
            assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
            if width == 1440:
                page.screenshot(path="/tmp/page_desktop.png")
            # the help is folded behind "?", and on a desktop it speaks of the wheel and the keys
            assert page.locator("#split-help").is_hidden()
            page.get_by_role("button", name="Help").click()
            assert page.get_attribute("#help-toggle", "aria-expanded") == "true"
            help_text = page.locator("#split-help").inner_text()
            assert "wheel" in help_text and "keys" in help_text
            rc = rects(page)
            assert rc["stage"]["b"] <= height, "the open help pushes the comparison out of view"


# ------------------------------------------------------------------------------------ phone: photo first
def test_phone_the_viewer_comes_first_and_fit_fills_the_width(server, browser, tmp_path):
    path = photo(tmp_path, 500, 375, "phone.jpg", "JPEG", quality=92)
    with opened(browser, server, 390, 844, scale=3, has_touch=True, is_mobile=True) as (page, log):
        assert page.evaluate("matchMedia('(pointer: coarse)').matches")
        _show(page, path, (500, 375))
        rc = rects(page)
        a, s = rc["after"], rc["stage"]
        assert rc["dpr"] == 3
        assert a["w"] >= 385, f"fit shows a 500x375 photo {a['w']:.0f} CSS px wide on a 390-px phone"
        pick, viewer = _box(page, "label[for=photo]"), _box(page, "#viewer")
        assert 0 <= viewer["t"] - pick["b"] <= 24, f"the viewer is not right under Choose a photo: {pick}, {viewer}"
        assert s["b"] <= 844, "the photo is below the fold"
        settings = _box(page, "#model")
        assert settings["t"] >= s["b"], "the settings come after the photo"
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
        page.screenshot(path="/tmp/page_phone.png")
        toggle = page.get_by_role("button", name="Help")
        assert toggle.inner_text().strip() == "?" and toggle.get_attribute("aria-expanded") == "false"
        assert page.locator("#split-help").is_hidden()
        toggle.click()
        words = page.locator("#split-help").inner_text().lower()
        assert page.locator("#split-help").is_visible() and "pinch" in words
        assert "wheel" not in words and "key" not in words, f"mouse help on a touch screen: {words}"


# ------------------------------------------------------------------------------------ Cancel is real
def _job_routes(page, held, deletes, fake=None):
    def handle(route):
        req = route.request
        if req.method == "DELETE":
            deletes.append(req.url)
            route.continue_()
        elif req.method == "GET" and not req.url.endswith("/result") and fake is not None:
            fake(route)
        elif req.method == "GET" and not req.url.endswith("/result"):
            held.append(route)
        else:
            route.continue_()
    page.route("**/denoise/jobs/**", handle)


def _started_job(page, big):
    with page.expect_response(lambda r: r.request.method == "POST" and "/denoise/jobs?" in r.url,
                              timeout=HANG_GUARD_MS) as started:
        page.locator("#photo").set_input_files(str(big))
    return started.value.json()["id"]


def test_cancel_a_newer_pick_and_leaving_delete_the_job_on_the_server(server, browser, tmp_path):
    big = photo(tmp_path, 1600, 1000, "stop-me.png")
    small = photo(tmp_path, 320, 240, "instead.png", seed=3)
    with opened(browser, server) as (page, log):
        held, deletes = [], []
        _job_routes(page, held, deletes)
        statuses = []
        page.on("response", lambda r: statuses.append(r.status) if r.request.method == "DELETE" else None)
        # Cancel
        job = _started_job(page, big)
        pump(page, lambda: held, "the first poll")
        page.click("#denoise-cancel")
        pump(page, lambda: any(u.endswith(f"/denoise/jobs/{job}") for u in deletes), "DELETE after Cancel")
        release(held.pop())
        pump(page, lambda: statuses, "the server's answer to DELETE")
        assert statuses[0] in (204, 404, 405), statuses  # 405 until the server has DELETE /denoise/jobs/{id}
        # a newer pick replaces a running job
        job = _started_job(page, big)
        pump(page, lambda: held, "the first poll of the second job")
        page.locator("#photo").set_input_files(str(small))
        pump(page, lambda: any(u.endswith(f"/denoise/jobs/{job}") for u in deletes), "DELETE after a newer pick")
        release(held.pop())
        wait_done(page, "instead.png")
        # leaving the page: pagehide sends the DELETE (a keepalive fetch, which outlives the page)
        job = _started_job(page, big)
        pump(page, lambda: held, "the first poll of the third job")
        page.evaluate("window.dispatchEvent(new PageTransitionEvent('pagehide', {persisted: false}))")
        pump(page, lambda: any(u.endswith(f"/denoise/jobs/{job}") for u in deletes), "DELETE on pagehide")
        for r in held:
            release(r)
        if statuses[0] != 405:  # the server has DELETE /denoise/jobs/{id}: a real navigation away forgets the job
            page.unroute_all(behavior="ignoreErrors")
            job = _started_job(page, big)
            page.goto("about:blank")
            pump(page, lambda: page.request.get(f"{server}/denoise/jobs/{job}").status == 404,
                 "the job forgotten after leaving the page")


def test_a_large_photo_shows_an_eta_and_never_0_of_0_tiles(server, browser, tmp_path):
    big = photo(tmp_path, 1600, 1000, "eta.png")
    with opened(browser, server) as (page, log):
        seen = []

        def fake(route):
            resp = route.fetch()
            body = resp.json()
            if len(seen) < 3:
                body = {**body, "status": "running", "eta_seconds": None,
                        "progress": {"done": 0, "total": 0, "fraction": 0.0}}
            elif len(seen) < 8:
                body = {**body, "status": "running", "eta_seconds": 42,
                        "progress": {"done": 3, "total": 10, "fraction": 0.3}}
            seen.append(body)
            route.fulfill(response=resp, json=body)

        _job_routes(page, [], [], fake)
        page.locator("#photo").set_input_files(str(big))
        page.wait_for_function("document.getElementById('work-text').innerText.includes('starting…')",
                               timeout=HANG_GUARD_MS)
        assert "0 of 0" not in page.locator("#work-text").inner_text()
        page.wait_for_function("document.getElementById('work-text').innerText.includes('3 of 10 tiles, about 42 s left')",
                               timeout=HANG_GUARD_MS)
        wait_done(page, "eta.png")


# ------------------------------------------------------------------------------------ formats
def _ftyp(major: bytes, *compat: bytes) -> bytes:
    body = major + b"\0\0\0\0" + b"".join(compat)
    return (8 + len(body)).to_bytes(4, "big") + b"ftyp" + body + b"\0" * 64


def test_heic_avif_and_camera_raw_pass_the_page_check(server, browser, tmp_path):
    files = {
        "iphone.heic": _ftyp(b"heic", b"mif1", b"heic"), "still.heif": _ftyp(b"mif1", b"heic"),
        "photo.avif": _ftyp(b"avif", b"mif1", b"miaf"), "canon.cr3": _ftyp(b"crx ", b"isom"),
        "fuji.raf": b"FUJIFILMCCD-RAW 0201FF383501" + b"\0" * 64, "olympus.orf": b"IIRO\x08\0\0\0" + b"\0" * 64,
        "panasonic.rw2": b"IIU\0\x08\0\0\0" + b"\0" * 64, "nikon.nef": b"II*\0\x08\0\0\0" + b"\0" * 64,
        "canon.cr2": b"II*\0\x10\0\0\0CR\x02\0" + b"\0" * 64,
    }
    with opened(browser, server) as (page, log):
        accept = page.get_attribute("#photo", "accept")
        for token in ("image/heic", "image/avif", ".heic", ".avif", ".dng", ".cr3", ".nef", ".raf"):
            assert token in accept, f"the file picker does not accept {token}"
        formats = page.evaluate("[...document.getElementById('format').options].map(o => o.value)")
        assert {"auto", "heic", "avif", "png", "jpeg"} <= set(formats) and formats[0] == "auto", formats
        sent = []

        def refuse(route):
            sent.append(route.request.url)
            route.fulfill(status=415, json={"detail": "test: not decoded here"})

        page.route("**/denoise?*", refuse)
        for name, data in files.items():
            path = tmp_path / name
            path.write_bytes(data)
            before = len(sent)
            page.locator("#photo").set_input_files(str(path))
            page.wait_for_function("document.getElementById('status').classList.contains('error')", timeout=HANG_GUARD_MS)
            text = page.locator("#status").inner_text()
            assert "is not a readable image: choose" not in text, f"{name} was refused by the page: {text}"
            assert len(sent) == before + 1, f"{name} was not sent"
        junk = tmp_path / "notes.heic"
        junk.write_bytes(b"just some text, no image at all" * 4)
        page.locator("#photo").set_input_files(str(junk))
        page.wait_for_function("document.getElementById('status').innerText.includes('not a readable image')",
                               timeout=HANG_GUARD_MS)
        assert "HEIC" in page.locator("#status").inner_text()


def test_a_real_heic_photo_is_denoised_and_shown(server, browser, tmp_path):
    import pytest

    heif = pytest.importorskip("pillow_heif")
    heif.register_heif_opener()
    limits = None
    with opened(browser, server) as (page, log):
        limits = page.evaluate("fetch('/limits').then(r => r.json())")
        if "heif" not in limits.get("input_formats", []):
            pytest.skip("this server does not read HEIF")
        path = photo(tmp_path, 320, 240, "IMG_0001.heic", "HEIF", quality=90)
        _show(page, path, (320, 240))
        assert page.locator("#download").get_attribute("download").endswith(".heic"), \
            "a HEIC gives a HEIC (format: same as the photo)"


# ------------------------------------------------------------------------------------ training panel and models
def _fake_training(page, deletes, activations):
    def models(route):
        req = route.request
        if req.method == "DELETE":
            deletes.append((req.url, req.headers.get("authorization")))
            route.fulfill(status=204, body="")
            return
        if req.method == "POST":
            activations.append(req.url)
            route.fulfill(json={"id": "m-low", "active": True, "shipped": False})
            return
        resp = route.fetch()
        body = resp.json()
        if not any(m["id"] == "m-low" for m in body["models"]):
            body["models"].append({"id": "m-low", "name": "garden", "shipped": False, "active": False,
                                   "created_at": 1767225600.0,
                                   "card": {"architecture": "fast", "metrics": {"val_psnr": 20.4}}})
        for m in body["models"]:
            if m.get("active"):
                m.setdefault("card", {})["metrics"] = {"val_psnr": 30.25}
        route.fulfill(response=resp, json=body)

    def jobs(route):
        if route.request.method != "GET":
            route.continue_()
            return
        job = {"id": "j-low", "status": "succeeded", "params": {}, "model_id": "m-low",
               "progress": {"step": 10, "total": 10, "fraction": 1.0}, "created_at": "2026-01-01T00:00:00Z",
               "finished_at": "2026-01-01T00:10:00Z",
               "metrics": {"val_psnr": 20.4, "loss": 0.01,
                           "history": [{"step": s, "loss": 0.02 / (1 + s), "val_psnr": 18 + s * 0.24}
                                       for s in range(0, 11, 2)]}}
        route.fulfill(json=[job])

    page.route("**/models**", models)
    page.route("**/train", jobs)


def test_training_panel_folds_shows_a_job_once_confirms_and_deletes(server, browser):
    with opened(browser, server, 1440, 900, go=False) as (page, log):
        deletes, activations = [], []
        _fake_training(page, deletes, activations)
        page.goto(server)
        page.fill("#token", TOKEN)
        page.wait_for_selector('#jobs li[data-job="j-low"]', timeout=HANG_GUARD_MS)
        page.wait_for_selector('#models li[data-model="m-low"]', timeout=HANG_GUARD_MS)
        # collapsible, below the viewer
        panel = page.locator("#training-panel")
        assert page.evaluate("document.getElementById('training-panel').tagName") == "DETAILS"
        assert _box(page, "#training")["t"] >= _box(page, "#drop")["b"]
        page.click("#training-panel > summary")
        assert not panel.evaluate("d => d.open") and page.locator("#token").is_hidden()
        page.click("#training-panel > summary")
        assert panel.evaluate("d => d.open")
        # the followed job once
        text = page.locator("#training").inner_text()
        assert text.count("step 10 of 10") == 1, f"the followed job is shown {text.count('step 10 of 10')} times"
        # short labels, the active one marked
        options = page.evaluate("[...document.getElementById('model').options].map(o => [o.value, o.text])")
        labels = dict(options)
        assert labels["m-low"] == "garden · 20.40 dB", labels
        assert any(t.endswith("✓ active") and "30.25 dB" in t for t in labels.values()), labels
        # "Use this model" asks first, comparing validation PSNRs, and warns when the new one is lower
        page.locator('#jobs li[data-job="j-low"] button.activate').click()
        dialog = page.locator("#confirm-model")
        dialog.wait_for(state="visible", timeout=HANG_GUARD_MS)
        words = dialog.inner_text()
        assert "20.40 dB" in words and "30.25 dB" in words, words
        assert page.locator("#confirm-warning").is_visible() and "lower" in page.locator("#confirm-warning").inner_text()
        page.click("#confirm-no")
        assert dialog.is_hidden() and not activations, "the model was switched without a yes"
        page.locator('#jobs li[data-job="j-low"] button.activate').click()
        page.click("#confirm-yes")
        pump(page, lambda: activations, "POST /models/m-low/activate")
        # Delete, with the token
        page.once("dialog", lambda d: d.accept())
        page.locator('#models li[data-model="m-low"] button.delete').click()
        pump(page, lambda: deletes, "DELETE /models/m-low")
        assert deletes[0][0].endswith("/models/m-low") and deletes[0][1] == f"Bearer {TOKEN}"
        # each button's visible text is part of its accessible name (axe: label-content-name-mismatch)
        mismatched = page.evaluate("""() => [...document.querySelectorAll('button, a.button, summary')]
            .filter(b => b.getClientRects().length)
            .map(b => [b.innerText.trim().toLowerCase(), (b.getAttribute('aria-label') || b.innerText).trim().toLowerCase()])
            .filter(([text, name]) => text.length > 1 && !name.includes(text))""")
        assert mismatched == [], mismatched


def test_the_chart_uses_the_cards_width_and_has_ticks(server, browser):
    with opened(browser, server, 1440, 900) as (page, log):
        widths = page.evaluate("""() => { const c = document.getElementById('chart'), card = c.parentElement;
            const cs = getComputedStyle(card);
            return [c.clientWidth, card.clientWidth - parseFloat(cs.paddingLeft) - parseFloat(cs.paddingRight)]; }""")
        assert widths[0] >= widths[1] - 2, f"the chart is {widths[0]} px wide in a {widths[1]}-px card"
        loss = [{"step": s, "loss": 0.05 * 0.8 ** (s / 50)} for s in range(0, 1001, 50)]
        psnr = [{"step": s, "val_psnr": 24 + s / 200} for s in range(100, 1001, 100)]
        ticks = json.loads(page.evaluate("""([loss, psnr]) => { drawChart(loss, psnr, 1000);
            return document.getElementById('chart').dataset.ticks; }""", [loss, psnr]))
        assert len(ticks["x"]) >= 3 and ticks["x"][0] == 0 and ticks["x"][-1] <= 1000
        assert len(ticks["loss"]) >= 2 and len(ticks["psnr"]) >= 3, ticks
        steps = [b - a for a, b in zip(ticks["psnr"], ticks["psnr"][1:])]
        assert max(steps) - min(steps) < 1e-6 and all(round(t, 6) == round(t) or round(t * 2, 6) == round(t * 2)
                                                       for t in ticks["psnr"]), ticks["psnr"]


# ------------------------------------------------------------------------------------ CSP
def test_the_page_works_under_a_strict_content_security_policy(server, browser, tmp_path):
    path = photo(tmp_path, 320, 240, "csp.png")
    with opened(browser, server, go=False) as (page, log):
        violations = []
        page.on("console", lambda m: violations.append(m.text) if "Content Security Policy" in m.text else None)

        def with_csp(route):
            resp = route.fetch()
            route.fulfill(response=resp, headers={**resp.headers, "content-security-policy": CSP})

        page.route(server + "/", with_csp)
        page.goto(server + "/")
        _show(page, path, (320, 240))
        page.get_by_role("button", name="Help").click()
        page.evaluate("drawChart([{step: 0, loss: 0.1}, {step: 5, loss: 0.05}], [], 10)")
        assert not violations, violations
        assert not log["page_errors"], log["page_errors"]
