"""POST /train: a memory estimate over N2N_TRAIN_MEMORY is a 422, and at most N2N_MAX_QUEUED_JOBS jobs
wait (issue 22)."""

from __future__ import annotations

from fastapi.testclient import TestClient

from app.core.config import Settings
from app.main import create_app
from app.api.routes.train import train_memory_limit
from n2n_core.training.memory import machine_memory, training_memory

from tests.helpers import AUTH, make_settings


def test_a_job_over_the_memory_limit_is_422_with_its_estimate(tmp_path, tiny_weights):
    limit = training_memory("fast", 8, 48) + 1  # the default job fits, a bigger one does not
    settings = make_settings(tmp_path / "data", tiny_weights, train_memory=limit, embedded_worker=False)
    with TestClient(create_app(settings)) as c:
        r = c.post("/train", json={"dataset": "builtin", "batch_size": 64, "patch_size": 256}, headers=AUTH)
        assert r.status_code == 422
        detail = r.json()["detail"]
        assert "N2N_TRAIN_MEMORY" in detail and "batch_size 64" in detail and "patch_size 256" in detail
        assert "MiB" in detail and str(tmp_path) not in detail
        r = c.post("/train", json={"dataset": "builtin", "batch_size": 8, "patch_size": 48}, headers=AUTH)
        assert r.status_code == 202, r.text
        r = c.post("/train", json={"dataset": "builtin", "batch_size": 8, "patch_size": 48, "nproc_per_node": 2},
                   headers=AUTH)
        assert r.status_code == 422 and "2 processes" in r.json()["detail"]


def test_the_default_memory_limit_is_half_the_machine(tmp_path):
    total = machine_memory()
    expected = total // 2 if total else None
    assert train_memory_limit(Settings(data_dir=tmp_path)) == expected
    assert train_memory_limit(Settings(data_dir=tmp_path, train_memory=123)) == 123


def test_queued_jobs_are_capped_with_429_and_retry_after(tmp_path, tiny_weights):
    # no embedded worker: the jobs stay queued
    settings = make_settings(tmp_path / "data", tiny_weights, max_queued_jobs=2, embedded_worker=False)
    with TestClient(create_app(settings)) as c:
        ids = [c.post("/train", json={"dataset": "builtin"}, headers=AUTH).json()["id"] for _ in range(2)]
        r = c.post("/train", json={"dataset": "builtin"}, headers=AUTH)
        assert r.status_code == 429
        assert int(r.headers["Retry-After"]) > 0
        assert "N2N_MAX_QUEUED_JOBS" in r.json()["detail"]
        assert c.post(f"/train/{ids[0]}/cancel", headers=AUTH).json()["status"] == "cancelled"
        assert c.post("/train", json={"dataset": "builtin"}, headers=AUTH).status_code == 202
