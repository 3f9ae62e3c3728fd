"""Persistence across restarts: a second app instance on the same data directory."""

import json
import sqlite3
import time

from fastapi.testclient import TestClient

from app.main import create_app

from .conftest import AUTH, make_settings, wait_for


def test_jobs_and_models_survive_a_restart_and_orphans_resume(tmp_path, tiny_weights):
    data_dir = tmp_path / "data"
    s = make_settings(data_dir, tiny_weights)
    with TestClient(create_app(s)) as c:
        done = c.post("/train", json={"dataset": "builtin", "steps": 3, "arch": "tiny"}, headers=AUTH).json()["id"]
        job = wait_for(c, done)
        assert job["status"] == "succeeded"
        c.post(f"/models/{job['model_id']}/activate", headers=AUTH)

    # A job the dead service left "running" (its worker pid is gone).
    db = sqlite3.connect(data_dir / "jobs.sqlite3")
    params = {"dataset": "builtin", "noise": {"kind": "gaussian", "sigma": 25}, "arch": "tiny", "steps": 4,
              "batch_size": 2, "learning_rate": 1e-3, "patch_size": 32, "seed": 0, "activate_when_done": False}
    now = time.time() - 60  # its worker died a minute ago: no heartbeat since
    db.execute("INSERT INTO jobs (id, status, params, progress, metrics, worker_pid, created_at, started_at, updated_at)"
               " VALUES ('j-orphan', 'running', ?, ?, ?, 999999, ?, ?, ?)",
               (json.dumps(params), json.dumps({"step": 2, "total": 4, "fraction": 0.5}),
                json.dumps({"history": []}), now, now, now))
    db.commit()
    db.close()

    with TestClient(create_app(s)) as c2:
        assert c2.get(f"/train/{done}").json()["status"] == "succeeded"
        assert c2.get("/models").json()["active"] == job["model_id"]
        orphan = wait_for(c2, "j-orphan", timeout=30)
        assert orphan["status"] == "succeeded" and "restarted" in (orphan["note"] or "")
