"""DELETE /denoise/jobs/{id} stops the work at the next tile and deletes the result; denoise-job results are
held to a byte quota (507) and a per-client cap (429), both with Retry-After, in their own folder; ENOSPC is
named; jobs report their model from the start and an ETA once a tile is done."""

import errno
import threading

from fastapi.testclient import TestClient

from app.jobs.denoise import RETRY_UNFINISHED, reserve_bytes
from app.main import create_app

from tests.helpers import HANG_GUARD, make_settings, png_bytes, poll_until, rgb
from tests.app.jobs.test_denoise_jobs import _finished, _metric, hold  # noqa: F401 - hold is a fixture

PNG = {"content-type": "image/png"}


def _pause_after_first_tile(queue):
    """Make the next run stop after its first tile until ``go_on`` is set; its ``should_stop`` lands in ``stops``
    and each tile's (done, total) in ``tiles``."""
    first_tile, go_on = threading.Event(), threading.Event()
    stops, tiles = [], []
    real_submit = queue.scheduler.submit

    def pausing_submit(steps, should_stop, progress=None):
        stops.append(should_stop)

        def tile_done(done, total):
            tiles.append((done, total))
            if progress is not None:
                progress(done, total)
            first_tile.set()
            go_on.wait(HANG_GUARD)  # a hang guard only

        return real_submit(steps, should_stop, tile_done)

    queue.scheduler.submit = pausing_submit
    return first_tile, go_on, stops, tiles


def test_delete_stops_a_running_job_at_its_next_tile_and_forgets_it(tmp_path, tiny_weights):
    s = make_settings(tmp_path / "d", tiny_weights, tile=64)
    with TestClient(create_app(s)) as c:
        active = c.get("/readyz").json()["model"]
        queue = c.app.state.queue
        first_tile, go_on, stops, tiles = _pause_after_first_tile(queue)
        try:
            job_id = c.post("/denoise/jobs", content=png_bytes(rgb(300, 300)), headers=PNG).json()["id"]
            assert first_tile.wait(HANG_GUARD)
            job = c.get(f"/denoise/jobs/{job_id}").json()
            assert job["status"] == "running" and job["model_id"] == active  # resolved at submission
            assert 1 == job["progress"]["done"] < job["progress"]["total"]
            assert isinstance(job["eta_seconds"], (int, float)) and job["eta_seconds"] >= 0
            r = c.delete(f"/denoise/jobs/{job_id}")
            assert r.status_code == 204 and r.content == b""
            unknown = c.get(f"/denoise/jobs/{'A' * 22}")
            gone = c.get(f"/denoise/jobs/{job_id}")
            assert gone.status_code == 404 and gone.json() == unknown.json()
            assert c.get(f"/denoise/jobs/{job_id}/result").status_code == 404
            poll_until(lambda: stops[0](), "the cancel reached the tile loop")
        finally:
            go_on.set()
        poll_until(lambda: queue.waiting == 0, "the cancelled job's slot released")
        poll_until(lambda: _metric(c, 'n2n_denoise_jobs_total{status="cancelled"}') == 1, "the job counted cancelled")
        assert len(tiles) == 1, "no tile after the cancel"
        assert not any(s.results_dir.iterdir())
        r = c.delete(f"/denoise/jobs/{job_id}")
        assert r.status_code == 404 and r.json() == unknown.json()


def test_delete_of_a_queued_job_and_of_a_finished_one(client, hold):
    results = client.app.state.settings.results_dir
    queued = client.post("/denoise/jobs", content=png_bytes(rgb()), headers=PNG).json()["id"]
    job = client.get(f"/denoise/jobs/{queued}").json()
    assert job["model_id"] and job["eta_seconds"] is None  # known from the start; no pace yet
    early = client.get(f"/denoise/jobs/{queued}/result").json()["detail"]
    assert "not known yet" in early and "0 of 0" not in early
    assert client.delete(f"/denoise/jobs/{queued}").status_code == 204
    hold.set()
    poll_until(lambda: client.app.state.queue.waiting == 0, "the cancelled job's slot released")
    assert client.get(f"/denoise/jobs/{queued}").status_code == 404
    assert not any(results.iterdir())

    done = client.post("/denoise/jobs", content=png_bytes(rgb()), headers=PNG).json()["id"]
    assert _finished(client, done)["eta_seconds"] == 0
    assert [p.name for p in results.iterdir()] == [f"{done}.png"]
    assert client.delete(f"/denoise/jobs/{done}").status_code == 204
    assert not any(results.iterdir())
    assert client.get(f"/denoise/jobs/{done}/result").status_code == 404
    for bad in ("x", "a" * 200, "%2E%2E"):
        assert client.delete(f"/denoise/jobs/{bad}").status_code == 404


def test_per_client_cap_answers_429_with_retry_after(tmp_path, tiny_weights, hold):
    s = make_settings(tmp_path / "d", tiny_weights, max_jobs_per_client=2)
    data = png_bytes(rgb())
    with TestClient(create_app(s)) as c:
        ids = [c.post("/denoise/jobs", content=data, headers=PNG).json()["id"] for _ in range(2)]
        r = c.post("/denoise/jobs", content=data, headers=PNG)
        assert r.status_code == 429 and "N2N_MAX_JOBS_PER_CLIENT" in r.json()["detail"]
        assert int(r.headers["retry-after"]) == RETRY_UNFINISHED  # nothing has ended: they will, soon
        hold.set()
        for i in ids:
            assert _finished(c, i)["status"] == "succeeded"
        r = c.post("/denoise/jobs", content=data, headers=PNG)
        assert r.status_code == 429  # kept results count until they expire or are deleted
        assert 1 <= int(r.headers["retry-after"]) <= s.result_ttl_seconds
        assert all(c.get(f"/denoise/jobs/{i}/result").status_code == 200 for i in ids)  # nothing evicted
        assert c.delete(f"/denoise/jobs/{ids[0]}").status_code == 204
        assert c.post("/denoise/jobs", content=data, headers=PNG).status_code == 202


def test_byte_quota_answers_507_and_never_evicts_a_kept_result(tmp_path, tiny_weights, hold):
    data = png_bytes(rgb())  # 48x64
    quota = reserve_bytes(48 * 64) + 1000  # one job's reservation fits, not two; nor one kept result and one more
    results = tmp_path / "results-volume"
    s = make_settings(tmp_path / "d", tiny_weights, result_store_bytes=quota, result_dir=results)
    with TestClient(create_app(s)) as c:
        first = c.post("/denoise/jobs", content=data, headers=PNG)
        assert first.status_code == 202
        r = c.post("/denoise/jobs", content=data, headers=PNG)
        assert r.status_code == 507 and "N2N_RESULT_STORE_BYTES" in r.json()["detail"]
        assert int(r.headers["retry-after"]) == RETRY_UNFINISHED
        hold.set()
        job_id = first.json()["id"]
        assert _finished(c, job_id)["status"] == "succeeded"
        assert [p.name for p in results.iterdir()] == [f"{job_id}.png"]  # in N2N_RESULT_DIR, not the data dir
        assert not (s.data_dir / "results").exists()
        r = c.post("/denoise/jobs", content=data, headers=PNG)
        assert r.status_code == 507
        assert 1 <= int(r.headers["retry-after"]) <= s.result_ttl_seconds  # when the kept one expires
        assert str(results) not in r.json()["detail"] and str(s.data_dir) not in r.json()["detail"]
        assert c.get(f"/denoise/jobs/{job_id}/result").status_code == 200  # never evicted early
        assert c.delete(f"/denoise/jobs/{job_id}").status_code == 204
        assert c.post("/denoise/jobs", content=data, headers=PNG).status_code == 202


def test_a_full_disk_fails_the_job_saying_so(client, monkeypatch):
    import app.jobs.denoise as jobs_module

    def no_space(path, data):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(jobs_module, "atomic_write_bytes", no_space)
    job_id = client.post("/denoise/jobs", content=png_bytes(rgb()), headers=PNG).json()["id"]
    job = _finished(client, job_id)
    assert job["status"] == "failed" and "ENOSPC" in job["error"] and "full" in job["error"]
    assert str(client.app.state.settings.results_dir) not in job["error"]


def test_readyz_reports_free_disk_and_warns_when_low(tmp_path, tiny_weights):
    for threshold, low in ((0, False), (10 ** 18, True)):
        s = make_settings(tmp_path / f"d{threshold}", tiny_weights, min_free_disk_bytes=threshold)
        with TestClient(create_app(s)) as c:
            r = c.get("/readyz")
            assert r.status_code == 200 and r.json()["status"] == "ready"  # low disk warns, never unready
            body = r.json()
            assert all(isinstance(body["disk"][k], int) for k in ("data_dir_free_bytes", "result_dir_free_bytes"))
            if low:
                assert "N2N_DATA_DIR" in body["low_disk"] and "N2N_RESULT_DIR" in body["low_disk"]
            else:
                assert body["low_disk"] is None


def test_a_failed_job_keeps_nothing_and_does_not_count_against_the_cap(tmp_path, tiny_weights):
    s = make_settings(tmp_path / "d", tiny_weights, max_jobs_per_client=1)
    whole = png_bytes(rgb())
    with TestClient(create_app(s)) as c:
        failed = c.post("/denoise/jobs", content=whole[: len(whole) // 2], headers=PNG).json()["id"]
        assert _finished(c, failed)["status"] == "failed"
        assert c.app.state.denoise_jobs.held_bytes() == 0
        ok = c.post("/denoise/jobs", content=whole, headers=PNG)
        assert ok.status_code == 202
        assert c.post("/denoise/jobs", content=whole, headers=PNG).status_code == 429
