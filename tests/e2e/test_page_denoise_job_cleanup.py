"""The page gives its background denoise jobs back to the server: a finished job is deleted once the page holds its
result (so that a session of many photos never reaches N2N_MAX_JOBS_PER_CLIENT nor fills the result store), and a
Cancel while the photo is still going up leaves no job behind.

These tests run their own server, where every photo is a background job (a low N2N_PAGE_JOB_PIXELS) and a client
may hold only two jobs (N2N_MAX_JOBS_PER_CLIENT=2): nothing else shares its counts."""

from __future__ import annotations

import json
import re
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from benchmarks.common import free_port, start_server, stop_server

from ..helpers import CHROMIUM, NO_CHROMIUM, TOKEN, opened, photo, pump, release, wait_done

MAX_JOBS = 2
UNFINISHED_OR_KEPT = ("queued", "running", "succeeded")


@pytest.fixture(scope="module")
def capped_server():
    if CHROMIUM is None:
        pytest.skip(NO_CHROMIUM)
    port = free_port()
    proc = start_server(Path(tempfile.mkdtemp(prefix="n2n-e2e-jobs-")), port, TOKEN,
                        {"N2N_PAGE_JOB_PIXELS": "20000", "N2N_MAX_JOBS_PER_CLIENT": str(MAX_JOBS)})
    yield f"http://127.0.0.1:{port}"
    stop_server(proc)


def held_jobs(server: str) -> dict[str, int]:
    """n2n_denoise_jobs{status}: the denoise jobs the server holds now, by status."""
    text = urllib.request.urlopen(f"{server}/metrics", timeout=30).read().decode()
    return {m.group(1): int(float(m.group(2)))
            for m in re.finditer(r'^n2n_denoise_jobs\{status="(\w+)"\} (\S+)$', text, re.M)}


def held(server: str) -> int:
    counts = held_jobs(server)
    return sum(counts.get(s, 0) for s in UNFINISHED_OR_KEPT)


def job_status(server: str, job_id: str) -> int:
    try:
        return urllib.request.urlopen(f"{server}/denoise/jobs/{job_id}", timeout=30).status
    except urllib.error.HTTPError as e:
        return e.code


def test_finished_jobs_are_deleted_so_many_photos_fit_under_the_cap(capped_server, browser, tmp_path):
    server = capped_server
    created: list[str] = []

    def note_job(response) -> None:
        if response.request.method == "POST" and "/denoise/jobs" in response.url and response.status == 202:
            created.append(json.loads(response.body())["id"])

    with opened(browser, server) as (page, log):
        page.on("response", note_job)
        photos = [photo(tmp_path, 240, 160, f"IMG_{1000 + i}.png", seed=i) for i in range(MAX_JOBS + 2)]
        for i, path in enumerate(photos):  # more photos than the cap: each job must be given back
            page.locator("#photo").set_input_files(str(path))
            status = wait_done(page, path.name, size=(240, 160))
            assert "background job" in status, status
            pump(page, lambda: len(created) == i + 1, f"the job of {path.name}")
            pump(page, lambda: job_status(server, created[i]) == 404, f"the finished job of {path.name} deleted")
            pump(page, lambda: held(server) == 0, "no job held by the server")
            assert page.locator("#download").get_attribute("download") == f"IMG_{1000 + i}-denoised.png"
        assert not [e for e in log["errors"] if e[0] == 429], f"the per-client cap was reached: {log['errors']}"
        assert not log["page_errors"], log["page_errors"]
        # Download still saves the result: the page holds its blob, the server's copy is gone
        href = page.locator("#download").get_attribute("href")
        assert href and href.startswith("blob:")
        with page.expect_download() as dl:
            page.click("#download")
        saved = tmp_path / "saved.png"
        dl.value.save_as(saved)
        assert dl.value.suggested_filename == f"IMG_{1000 + len(photos) - 1}-denoised.png"
        with Image.open(saved) as img:
            assert img.size == (240, 160)
            assert not np.array_equal(np.asarray(img.convert("RGB")),
                                      np.asarray(Image.open(photos[-1]).convert("RGB"))), "not denoised"


def _hold_the_upload(page, path):
    """Pick ``path`` with its POST /denoise/jobs held (never sent to the server yet); the held route."""
    uploads = []
    page.route("**/denoise/jobs?*", lambda route: uploads.append(route) if route.request.method == "POST"
               else route.continue_())
    page.locator("#photo").set_input_files(str(path))
    pump(page, lambda: uploads, "the upload of the job's photo")
    return uploads[0]


def _cancel(page) -> None:
    page.click("#denoise-cancel")
    page.wait_for_function("document.getElementById('status').innerText.startsWith('Cancelled')")
    assert page.locator("#work").is_hidden() and page.locator("#viewer").is_hidden()


def test_cancel_during_the_upload_leaves_no_job(capped_server, browser, tmp_path):
    server = capped_server
    small = photo(tmp_path, 240, 160, "cancel-me.png", seed=7)
    # incompressible: about 1.4 MB, which takes seconds to go up at the throttled rate below
    noise = np.random.default_rng(9).integers(0, 256, (600, 800, 3), dtype=np.uint8)
    large = tmp_path / "slow-upload.png"
    Image.fromarray(noise).save(large, compress_level=0)
    with opened(browser, server) as (page, log):
        # 1. Cancel while the request waits in the browser: the page drops it, the server never sees a photo
        held_upload = _hold_the_upload(page, small)
        _cancel(page)
        pump(page, lambda: any(r is held_upload.request for r in log["failed"]), "the upload aborted")
        release(held_upload)
        page.unroute("**/denoise/jobs?*")
        assert held(server) == 0
        # 2. Cancel while the photo is really going up (throttled): the upload is aborted, no job is made
        cdp = page.context.new_cdp_session(page)
        cdp.send("Network.enable")
        cdp.send("Network.emulateNetworkConditions", {"offline": False, "latency": 0, "downloadThroughput": -1,
                                                      "uploadThroughput": 100_000})
        with page.expect_request(lambda r: r.method == "POST" and "/denoise/jobs" in r.url) as req:
            page.locator("#photo").set_input_files(str(large))
        page.wait_for_function("document.getElementById('work-text').innerText.startsWith('uploading')")
        _cancel(page)
        pump(page, lambda: any(r is req.value for r in log["failed"]), "the upload aborted")
        cdp.send("Network.emulateNetworkConditions", {"offline": False, "latency": 0, "downloadThroughput": -1,
                                                      "uploadThroughput": -1})
        page.wait_for_timeout(1000)  # what the server would make of it, it makes at once
        assert held(server) == 0, held_jobs(server)
        # 3. Cancel once the photo has gone up and the server has made the job, before its answer arrives
        # (throttled): the page lets the answer come, then deletes the job it names
        cdp.send("Network.emulateNetworkConditions", {"offline": False, "latency": 3000, "downloadThroughput": 20,
                                                      "uploadThroughput": -1})
        page.locator("#photo").set_input_files(str(small))
        pump(page, lambda: held(server) == 1, "the job made by the server")
        # the browser reports the upload done (a little after the server has the photo): "queued", no more "uploading"
        page.wait_for_function("document.getElementById('work-text').innerText.startsWith('queued')")
        assert not [r for r in log["requests"] if r.method == "GET" and "/denoise/jobs/" in r.url], \
            "the page has the job's answer already"
        _cancel(page)
        pump(page, lambda: held(server) == 0, "the job made before the Cancel deleted")
        cdp.send("Network.emulateNetworkConditions", {"offline": False, "latency": 0, "downloadThroughput": -1,
                                                      "uploadThroughput": -1})
        # the page still works after all three, and gives that job back too
        page.locator("#photo").set_input_files(str(photo(tmp_path, 240, 160, "after.png", seed=8)))
        wait_done(page, "after.png")
        pump(page, lambda: held(server) == 0, "the finished job deleted")
        assert not log["page_errors"], log["page_errors"]
