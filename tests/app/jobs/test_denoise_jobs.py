"""POST /denoise/jobs: accepted at once, polled for progress, the result fetched, then expired."""

import os
import re
import secrets
import threading
import time
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from app.main import create_app

from tests.helpers import make_settings, png_bytes, poll_until, rgb
from tests.app.api.test_denoise import _huge_png

PNG = {"content-type": "image/png"}


def _finished(c: TestClient, job_id: str) -> dict:
    """The job once it has ended (polled; the timeout is a hang guard only)."""
    return poll_until(lambda: (j := c.get(f"/denoise/jobs/{job_id}").json())["status"] in ("succeeded", "failed")
                      and j, f"job {job_id} ended")


def _metric(c: TestClient, line_start: str) -> float:
    line = next(x for x in c.get("/metrics").text.splitlines() if x.startswith(line_start + " "))
    return float(line.rsplit(" ", 1)[1])


@pytest.fixture
def hold(monkeypatch):
    """Admitted work waits (before decoding) until ``hold.set()``: jobs stay queued/running meanwhile."""
    from app.services.denoiser import DenoiseQueue

    release = threading.Event()
    prepare = DenoiseQueue._prepare

    def held_prepare(self, *a):
        release.wait(600)  # a hang guard only
        return prepare(self, *a)

    monkeypatch.setattr(DenoiseQueue, "_prepare", held_prepare)
    yield release
    release.set()


def test_a_job_is_accepted_polled_and_its_result_equals_denoise(tmp_path, tiny_weights):
    s = make_settings(tmp_path / "d", tiny_weights, tile=64)  # several tiles: progress to follow
    data = png_bytes(rgb(150, 170))
    with TestClient(create_app(s)) as c:
        for query in ("", "?format=webp&model=tiny"):
            r = c.post(f"/denoise/jobs{query}", content=data, headers=PNG)
            assert r.status_code == 202, r.text
            body = r.json()
            assert set(body) == {"id", "status"} and body["status"] == "queued"
            assert r.headers["location"] == f"/denoise/jobs/{body['id']}"
            job = _finished(c, body["id"])
            assert job["status"] == "succeeded" and job["error"] is None, job
            progress = job["progress"]
            assert progress["done"] == progress["total"] > 1 and progress["fraction"] == 1.0
            created, started, finished = (datetime.fromisoformat(job[k].replace("Z", "+00:00"))
                                          for k in ("created_at", "started_at", "finished_at"))
            assert created <= started <= finished
            result = c.get(f"/denoise/jobs/{body['id']}/result")
            direct = c.post(f"/denoise{query}", content=data, headers=PNG)
            assert result.status_code == direct.status_code == 200
            assert result.content == direct.content
            for header in ("content-type", "x-model-id", "content-disposition"):
                assert result.headers[header] == direct.headers[header], header
            assert result.headers["x-model-id"] == "tiny"
        multipart = c.post("/denoise/jobs", files={"file": ("x.png", data, "image/png")})
        assert multipart.status_code == 202
        assert _finished(c, multipart.json()["id"])["status"] == "succeeded"
        assert _metric(c, 'n2n_denoise_jobs{status="succeeded"}') == 3
        assert _metric(c, 'n2n_denoise_jobs_total{status="succeeded"}') == 3


def test_the_result_is_409_before_success(client, hold):
    r = client.post("/denoise/jobs", content=png_bytes(rgb()), headers=PNG)
    job_id = r.json()["id"]
    job = client.get(f"/denoise/jobs/{job_id}").json()
    assert job["status"] in ("queued", "running") and job["finished_at"] is None
    assert job["progress"] == {"done": 0, "total": 0, "fraction": 0.0}
    early = client.get(f"/denoise/jobs/{job_id}/result")
    assert early.status_code == 409 and "poll" in early.json()["detail"]
    hold.set()
    assert _finished(client, job_id)["status"] == "succeeded"
    assert client.get(f"/denoise/jobs/{job_id}/result").status_code == 200


@pytest.mark.parametrize("job_id", [secrets.token_urlsafe(16), "x", "a" * 200, "..%2F..%2Fetc%2Fpasswd",
                                    "%2E%2E", ".." + "a" * 20])
def test_unknown_or_malformed_ids_are_404(client, job_id):
    for path in (f"/denoise/jobs/{job_id}", f"/denoise/jobs/{job_id}/result"):
        r = client.get(path)
        assert r.status_code == 404 and r.json()["detail"], path


def test_ids_are_distinct_and_unguessable(tmp_path, tiny_weights):
    data = png_bytes(rgb(8, 8))
    with TestClient(create_app(make_settings(tmp_path / "d", tiny_weights, max_jobs_per_client=16))) as client:
        ids = [client.post("/denoise/jobs", content=data, headers=PNG).json()["id"] for _ in range(16)]
        assert len(set(ids)) == len(ids)
        assert all(re.fullmatch(r"[A-Za-z0-9_-]{22,}", i) for i in ids)  # >= 128 bits of URL-safe base64
        for i in ids:
            _finished(client, i)


def test_results_expire_files_included(tmp_path, tiny_weights, monkeypatch):
    import app.jobs.denoise as jobs_module

    written: list[Path] = []
    real_write = jobs_module.atomic_write_bytes

    def recording_write(path, data):
        written.append(Path(path))
        return real_write(path, data)

    monkeypatch.setattr(jobs_module, "atomic_write_bytes", recording_write)
    s = make_settings(tmp_path / "d", tiny_weights, result_ttl_seconds=0.3)
    results = s.data_dir / "results"
    with TestClient(create_app(s)) as c:
        stale = results / "left-by-a-crash.png"
        stale.write_bytes(b"old")
        os.utime(stale, (time.time() - 60, time.time() - 60))
        job_id = c.post("/denoise/jobs", content=png_bytes(rgb()), headers=PNG).json()["id"]
        poll_until(lambda: _metric(c, 'n2n_denoise_jobs_total{status="succeeded"}') == 1, "the job succeeded")
        assert [p.name for p in written] == [f"{job_id}.png"]
        # the periodic sweep deletes the file, without any request for it
        poll_until(lambda: not written[0].exists(), "the expired result file deleted")
        assert c.get(f"/denoise/jobs/{job_id}").status_code == 404
        assert c.get(f"/denoise/jobs/{job_id}/result").status_code == 404
        poll_until(lambda: not stale.exists(), "an orphaned old result file deleted")
        assert _metric(c, 'n2n_denoise_jobs{status="succeeded"}') == 0


def test_an_expired_job_is_404_on_access_even_before_the_sweep(tmp_path, tiny_weights):
    s = make_settings(tmp_path / "d", tiny_weights)
    with TestClient(create_app(s)) as c:
        job_id = c.post("/denoise/jobs", content=png_bytes(rgb()), headers=PNG).json()["id"]
        _finished(c, job_id)
        job = c.app.state.denoise_jobs.get(job_id)
        assert job.path.exists()
        job.expires_at = time.time() - 1  # as if an hour had passed; the periodic sweep would wait a minute
        path = job.path
        assert c.get(f"/denoise/jobs/{job_id}/result").status_code == 404
        assert not path.exists()


def test_a_deleted_result_is_404(client):
    job_id = client.post("/denoise/jobs", content=png_bytes(rgb()), headers=PNG).json()["id"]
    _finished(client, job_id)
    client.app.state.denoise_jobs.get(job_id).path.unlink()
    assert client.get(f"/denoise/jobs/{job_id}/result").status_code == 404


def test_refusals_before_accepting_are_those_of_denoise(client):
    cases = [
        ("", b"not an image at all", "image/png"),
        ("", b"", "image/png"),
        ("", png_bytes(rgb(), "GIF"), "image/gif"),
        ("", _huge_png(20000, 20000), "image/png"),
        ("", png_bytes(rgb()), "text/plain"),
        ("?model=nope", png_bytes(rgb()), "image/png"),
        ("?format=gif", png_bytes(rgb()), "image/png"),
        ("?format=webp", png_bytes(np.zeros((20, 17000, 3), np.uint8)), "image/png"),
        ("", png_bytes(np.zeros((1, 40_000, 3), np.uint8)), "image/png"),
    ]
    for query, body, ctype in cases:
        job = client.post(f"/denoise/jobs{query}", content=body, headers={"content-type": ctype})
        direct = client.post(f"/denoise{query}", content=body, headers={"content-type": ctype})
        assert 400 <= job.status_code < 500 and job.status_code == direct.status_code, (query, ctype, job.text)
        assert job.json()["detail"]
    assert client.app.state.denoise_jobs.counts() == dict.fromkeys(("queued", "running", "succeeded", "failed"), 0)
    assert client.app.state.queue.waiting == 0


def test_a_failure_while_processing_ends_the_job_failed_with_a_message(client, settings):
    whole = png_bytes(rgb())
    truncated = whole[: len(whole) // 2]  # its header is fine: the damage shows only when decoding
    job_id = client.post("/denoise/jobs", content=truncated, headers=PNG).json()["id"]
    job = _finished(client, job_id)
    assert job["status"] == "failed" and "truncated" in job["error"]
    assert str(settings.data_dir) not in job["error"] and job["finished_at"] and job["result"] is None
    r = client.get(f"/denoise/jobs/{job_id}/result")
    assert r.status_code == 409 and "truncated" in r.json()["detail"]
    assert _metric(client, 'n2n_denoise_jobs_total{status="failed"}') == 1
    assert client.app.state.queue.waiting == 0


def test_jobs_share_the_queue_limit_of_denoise(tmp_path, tiny_weights, hold):
    s = make_settings(tmp_path / "d", tiny_weights, queue_limit=2)
    data = png_bytes(rgb())
    with TestClient(create_app(s)) as c:
        accepted = [c.post("/denoise/jobs", content=data, headers=PNG) for _ in range(2)]
        assert [r.status_code for r in accepted] == [202, 202]
        for path in ("/denoise/jobs", "/denoise"):
            r = c.post(path, content=data, headers=PNG)
            assert r.status_code == 503 and r.headers["retry-after"], path
        hold.set()
        assert [_finished(c, r.json()["id"])["status"] for r in accepted] == ["succeeded"] * 2
        assert c.post("/denoise/jobs", content=data, headers=PNG).status_code == 202
        assert _metric(c, "n2n_denoise_rejected_total") == 2


def test_shutdown_ends_running_jobs_at_their_next_tile(tmp_path, tiny_weights):
    s = make_settings(tmp_path / "d", tiny_weights, tile=64)
    with TestClient(create_app(s)) as c:
        done_id = c.post("/denoise/jobs", content=png_bytes(rgb()), headers=PNG).json()["id"]
        assert _finished(c, done_id)["status"] == "succeeded"
        assert any((s.data_dir / "results").iterdir())
        queue = c.app.state.queue
        first_tile, go_on = threading.Event(), threading.Event()
        real_submit = queue.scheduler.submit

        def pausing_submit(steps, should_stop, progress=None):
            def tile_done(done, total):
                if progress is not None:
                    progress(done, total)
                first_tile.set()
                go_on.wait(600)  # a hang guard only

            return real_submit(steps, should_stop, tile_done)

        queue.scheduler.submit = pausing_submit
        try:
            job_id = c.post("/denoise/jobs", content=png_bytes(rgb(300, 300)), headers=PNG).json()["id"]
            assert first_tile.wait(300)
            queue.stopping.set()  # what SIGTERM does
        finally:
            go_on.set()
        job = _finished(c, job_id)
        assert job["status"] == "failed" and "shutting down" in job["error"]
        assert job["progress"]["done"] < job["progress"]["total"]
        r = c.post("/denoise/jobs", content=png_bytes(rgb()), headers=PNG)
        assert r.status_code == 503 and r.headers["retry-after"]
    assert not any((s.data_dir / "results").iterdir()), "results no one can ask for once the service has gone"
