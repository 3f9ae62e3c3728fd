"""The training half of the page: jobs that survive a reload, a chart readable on a phone, and model names that
say what the model is."""

from __future__ import annotations

import json

import numpy as np

from ..helpers import HANG_GUARD_MS, TOKEN, opened


# ------------------------------------------------------------------------------------ defect 7: jobs on reload
def test_a_running_job_is_listed_after_a_reload_and_can_be_cancelled(server, browser):
    with opened(browser, server, 360, 800) as (page, log):
        page.fill("#token", TOKEN)
        page.fill("#steps", "100000")
        with page.expect_response(lambda r: r.request.method == "POST" and r.url.endswith("/train"),
                                  timeout=HANG_GUARD_MS) as started:
            page.click("#start")
        job_id = started.value.json()["id"]
        page.wait_for_function(
            """id => { const li = document.querySelector(`#jobs li[data-job="${id}"]`);
                       return li && li.querySelector('progress').value > 0; }""", arg=job_id, timeout=HANG_GUARD_MS)
        page.reload()
        item = page.locator(f'#jobs li[data-job="{job_id}"]')
        item.wait_for(timeout=HANG_GUARD_MS)
        page.wait_for_function(
            """id => { const li = document.querySelector(`#jobs li[data-job="${id}"]`);
                       return li && li.dataset.status === 'running' && li.querySelector('progress').value > 0; }""",
            arg=job_id, timeout=HANG_GUARD_MS)
        assert job_id in page.locator("#train-status").inner_text(), "the status names the running job"
        assert page.locator("#cancel").is_enabled(), "Cancel works after a reload"
        assert page.evaluate("document.getElementById('progress').value") > 0
        cancel = item.locator("button.cancel")
        assert cancel.is_enabled()
        cancel.click()  # the token is kept in this tab's sessionStorage
        page.wait_for_function(
            """id => document.querySelector(`#jobs li[data-job="${id}"]`).dataset.status === 'cancelled'""",
            arg=job_id, timeout=HANG_GUARD_MS)
        page.wait_for_function("document.getElementById('train-status').innerText.includes('cancelled')",
                               timeout=HANG_GUARD_MS)
        assert item.locator("button.cancel").count() == 0
        assert page.evaluate("document.documentElement.scrollWidth") <= 360


# ------------------------------------------------------------------------------------ defect 11: the chart
def test_the_chart_is_readable_on_a_phone(server, browser):
    with opened(browser, server, 360, 740) as (page, log):
        size = page.evaluate("""() => { const c = document.getElementById('chart');
            return [c.width, c.height, c.clientWidth, c.clientHeight, window.devicePixelRatio]; }""")
        width, height, css_w, css_h, dpr = size
        assert abs(width - css_w * dpr) <= 1 and abs(height - css_h * dpr) <= 1, \
            f"the canvas bitmap ({width}x{height}) is scaled to {css_w}x{css_h}: its text shrinks"
        assert css_h >= 150
        loss = [{"step": s, "loss": 0.0123 * 0.9 ** (s / 50)} for s in range(0, 1001, 50)]
        flat = [{"step": s, "val_psnr": 30.0} for s in range(100, 1001, 100)]
        pixels = page.evaluate("""([loss, psnr]) => { drawChart(loss, psnr, 1000);
            const c = document.getElementById('chart');
            return [c.dataset.plot, c.width, c.height,
                    Array.from(c.getContext('2d').getImageData(0, 0, c.width, c.height).data)]; }""", [loss, flat])
        plot, w, h, flat_rgba = json.loads(pixels[0]), pixels[1], pixels[2], pixels[3]
        rgba = np.asarray(flat_rgba, dtype=np.int32).reshape(h, w, 4)
        x0, y0 = round(plot["x"] * dpr), round(plot["y"] * dpr)
        x1, y1 = round((plot["x"] + plot["w"]) * dpr), round((plot["y"] + plot["h"]) * dpr)
        r, g, b, a = (rgba[:, :, i] for i in range(4))
        orange = (a > 200) & (r > 150) & (g > 40) & (g < 120) & (b < 60)
        ys, xs = np.nonzero(orange)
        assert len(ys), "the PSNR line is not drawn"
        inside = (xs >= x0) & (xs <= x1)
        assert ys[inside].min() > y0 + 4 and ys[inside].max() < y1 - 4, "a flat PSNR line sits on the frame"
        text = (a > 120) & (r < 170) & (abs(r - g) < 25) & (abs(g - b) < 40)  # dark grey: label text
        assert not text[y0 + 2:y1 - 2, x0 + 2:x1 - 2].any(), "axis labels overlap the plot"
        assert text[:, :x0].any() and text[:, x1:].any(), "the axes are labelled on both sides"


# ------------------------------------------------------------------------------------ model names
def test_model_names_show_date_and_validation_psnr(server, browser):
    with opened(browser, server, go=False) as (page, log):
        def models(route):
            resp = route.fetch()
            body = resp.json()
            body["models"].append({"id": "m-320fda03b5", "shipped": False, "active": False,
                                   "card": {"architecture": "fast", "metrics": []}})
            route.fulfill(response=resp, json=body)

        def jobs(route):
            if route.request.method != "GET":
                route.continue_()
                return
            job = {"id": "j1", "status": "succeeded", "params": {}, "model_id": "m-320fda03b5",
                   "progress": {"step": 10, "total": 10, "fraction": 1.0}, "created_at": 1767225000.0,
                   "finished_at": 1767225600.0, "metrics": {"val_psnr": 29.873, "loss": 0.01, "history": []}}
            route.fulfill(json=[job])

        page.route("**/models", models)
        page.route("**/train", jobs)
        page.goto(server)
        page.wait_for_function("""() => [...document.getElementById('model').options]
            .some(o => o.value === 'm-320fda03b5' && o.text === 'm-320fda03b5 · 29.87 dB'
                       && o.title.includes('2026-01-01'))""",  # issue 22: short labels, details in the title
                               timeout=HANG_GUARD_MS)
        default = page.evaluate("[...document.getElementById('model').options].find(o => o.value === 'default').text")
        assert "dB" in default, default


# ------------------------------------------------------------------------------------ issue 16: names and ETA
def test_the_model_menu_leads_with_the_name_and_a_running_job_shows_its_eta(server, browser):
    with opened(browser, server, 1280, 900) as (page, log):
        def models(route):
            resp = route.fetch()
            body = resp.json()
            body["models"].append({"id": "m-0a1b2c3d4e", "name": "garden photos", "shipped": False, "active": False,
                                   "created_at": 1767225600.0, "card": {"architecture": "fast", "metrics": [
                                       {"name": "validation PSNR (final)", "psnr": 28.456}]}})
            route.fulfill(response=resp, json=body)

        def jobs(route):
            if route.request.method != "GET":
                route.continue_()
                return
            job = {"id": "j2", "status": "running", "params": {}, "model_id": None, "eta_seconds": 150,
                   "progress": {"step": 40, "total": 100, "fraction": 0.4}, "created_at": 1767225000.0,
                   "metrics": {"loss": 0.01, "history": []}}
            route.fulfill(json=[job])

        page.route("**/models", models)
        page.route("**/train", jobs)
        page.goto(server)
        page.wait_for_function("""() => [...document.getElementById('model').options].some(o =>
            o.value === 'm-0a1b2c3d4e' && o.text === 'garden photos · 28.46 dB'
            && o.title.startsWith('garden photos (m-0a1b2c3d4e)') && o.title.includes('2026-01-01'))""",
                               timeout=HANG_GUARD_MS)  # issue 22: short labels "name · dB", details in the title
        page.wait_for_function("""() => { const li = document.querySelector('#jobs li[data-job="j2"]');
            return li && li.innerText.includes('step 40 of 100, about 3 min left'); }""", timeout=HANG_GUARD_MS)
