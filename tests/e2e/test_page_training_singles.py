"""The training panel's "my noisy photos (one of each scene)": a zip of single noisy photos trains with
neighbor2neighbor (no noise model sent, a shipped model suggested to start from), and the job list shows the
method. The page takes the job statuses (which are final) from GET /train/statuses, never from a list of its own."""

from __future__ import annotations

import io
import json
import zipfile

import numpy as np
from PIL import Image

from ..helpers import HANG_GUARD_MS, TOKEN, opened, pump

# what the test forwards to the server instead of the page's own settings: a job of seconds on a busy machine
TINY = {"arch": "tiny", "steps": 2, "batch_size": 2, "patch_size": 16}


def _noisy_photos_zip(tmp_path, count: int = 5):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for i in range(count):
            arr = np.random.default_rng(i).integers(0, 256, (40, 48, 3), dtype=np.uint8)
            png = io.BytesIO()
            Image.fromarray(arr).save(png, format="PNG")
            z.writestr(f"photo{i}.png", png.getvalue())
    path = tmp_path / "my-noisy-photos.zip"
    path.write_bytes(buf.getvalue())
    return path


def _visible(page, selector: str) -> bool:
    return page.locator(selector).is_visible()


def test_my_noisy_photos_train_with_neighbor2neighbor(server, browser, tmp_path):
    zip_path = _noisy_photos_zip(tmp_path)
    with opened(browser, server, 1280, 900, go=False) as (page, log):
        sent = []

        def train(route):
            if route.request.method != "POST":
                route.continue_()
                return
            body = json.loads(route.request.post_data)
            sent.append(body)
            tiny = {k: v for k, v in body.items() if k != "init_model"} | TINY
            route.continue_(post_data=json.dumps(tiny))

        page.route("**/train", train)
        page.goto(server)
        page.fill("#token", TOKEN)
        page.wait_for_function("() => [...document.getElementById('init').options].some(o => o.value === 'blind')",
                               timeout=HANG_GUARD_MS)
        assert _visible(page, "#noise") and page.locator("#init").input_value() == ""
        # the existing choices stay as they were; the new one is offered beside noisy pairs
        kinds = page.evaluate("[...document.getElementById('data-kind').options].map(o => [o.value, o.text])")
        assert [k for k, _ in kinds] == ["clean", "pairs", "singles"], kinds
        assert "my noisy photos (one of each scene)" in dict(kinds)["singles"]
        page.select_option("#data-kind", "singles")
        assert page.locator("#init").input_value() == "blind", "a shipped model is suggested to start from"
        page.locator("#zip").set_input_files(str(zip_path))
        assert not _visible(page, "#noise") and not _visible(page, "#noise-label"), \
            "the noise model does not apply to your noisy photos"
        page.fill("#steps", "2")
        with page.expect_response(lambda r: r.request.method == "POST" and r.url.endswith("/train"),
                                  timeout=HANG_GUARD_MS) as started:
            page.click("#start")
        assert started.value.status == 202, started.value.text()
        job = started.value.json()
        assert len(sent) == 1
        body = sent[0]
        assert body["method"] == "neighbor2neighbor", body
        assert "noise" not in body and "jpeg" not in body, body
        assert body["init_model"] == "blind" and body["dataset"].startswith("d-"), body
        assert job["params"]["method"] == "neighbor2neighbor" and job["params"]["data_kind"] == "singles"
        # the job appears with its method, and ends (a final status, as GET /train/statuses says)
        page.wait_for_function(
            """id => { const li = document.querySelector(`#jobs li[data-job="${id}"]`);
                       return li && li.dataset.method === 'neighbor2neighbor'
                              && li.innerText.includes('(neighbor2neighbor)'); }""",
            arg=job["id"], timeout=HANG_GUARD_MS)
        page.wait_for_function(
            """id => document.querySelector(`#jobs li[data-job="${id}"]`).dataset.status === 'succeeded'""",
            arg=job["id"], timeout=HANG_GUARD_MS)
        item = page.locator(f'#jobs li[data-job="{job["id"]}"]')
        assert item.locator("button.cancel").count() == 0
        assert item.locator("button.activate").count() == 1
        assert any(r.url.endswith("/train/statuses") for r in log["requests"])
        # back to clean photos: the noise model is offered again and the suggestion withdrawn
        page.select_option("#data-kind", "clean")
        assert _visible(page, "#noise") and page.locator("#init").input_value() == ""
        assert not log["page_errors"], log["page_errors"]


def _fake_jobs(page, statuses_body, status_code=200):
    """GET /train/statuses answers ``statuses_body``; GET /train two jobs: one "done", one "running"."""
    calls = {"statuses": 0, "train": 0}

    def statuses(route):
        calls["statuses"] += 1
        route.fulfill(status=status_code, json=statuses_body)

    def jobs(route):
        if route.request.method != "GET":
            route.continue_()
            return
        calls["train"] += 1
        common = {"params": {"method": "noise2noise"}, "metrics": {"loss": 0.01, "history": []},
                  "created_at": "2026-01-01T00:00:00Z"}
        route.fulfill(json=[
            {"id": "j-run", "status": "running", "model_id": None,
             "progress": {"step": 3, "total": 10, "fraction": 0.3}, **common},
            {"id": "j-done", "status": "done", "model_id": None,
             "progress": {"step": 10, "total": 10, "fraction": 1.0}, **common},
        ])

    page.route("**/train/statuses", statuses)
    page.route("**/train", jobs)
    return calls


def test_the_final_statuses_come_from_the_api(server, browser):
    with opened(browser, server, go=False) as (page, log):
        calls = _fake_jobs(page, {"statuses": ["queued", "running", "done", "failed", "cancelled"],
                                  "final": ["done", "failed", "cancelled"]})
        page.goto(server)
        page.wait_for_selector('#jobs li[data-job="j-done"]', timeout=HANG_GUARD_MS)
        page.wait_for_selector('#jobs li[data-job="j-run"] button.cancel', timeout=HANG_GUARD_MS)
        # "done" is final by the API's word: no Cancel; the running job is followed, and polled
        assert page.locator('#jobs li[data-job="j-done"] button.cancel').count() == 0
        assert "(noise2noise)" in page.locator('#jobs li[data-job="j-done"]').inner_text()
        assert "j-run" in page.locator("#train-status").inner_text()
        pump(page, lambda: calls["train"] >= 3, "the running job polled")
        assert calls["statuses"] == 1, "the statuses are read once"
        assert not log["page_errors"], log["page_errors"]


def test_statuses_that_cannot_be_read_are_reported(server, browser):
    with opened(browser, server, go=False) as (page, log):
        _fake_jobs(page, {"detail": "statuses unavailable"}, status_code=503)
        page.goto(server)
        page.wait_for_function("""() => { const s = document.getElementById('train-status');
            return s.classList.contains('error') && s.innerText.includes('statuses unavailable'); }""",
                               timeout=HANG_GUARD_MS)
        assert page.locator("#jobs li").count() == 0
        assert not log["page_errors"], log["page_errors"]
