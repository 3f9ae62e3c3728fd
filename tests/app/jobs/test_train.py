"""Training jobs over HTTP: auth, validation, lifecycle, cancel, progress, activation."""

import io
import os
import re
import socket
import zipfile
from datetime import datetime, timedelta

import pytest
from fastapi.testclient import TestClient

from app.main import create_app

from tests.helpers import AUTH, png_bytes, poll_until, rgb, wait_for


def test_token_required_and_explained(client, tmp_path, tiny_weights):
    assert client.post("/train", json={"dataset": "builtin"}).status_code == 401
    r = client.post("/train", json={"dataset": "builtin"}, headers={"Authorization": "Bearer wrong"})
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
    from app.core.config import Settings

    s = Settings(data_dir=tmp_path / "notoken", weights=str(tiny_weights), api_token=None)
    with TestClient(create_app(s)) as c:
        r = c.post("/train", json={"dataset": "builtin"}, headers=AUTH)
        assert r.status_code == 401 and "N2N_API_TOKEN" in r.json()["detail"]
        assert c.get("/train").status_code == 200  # reading needs no token


@pytest.mark.parametrize("body", [
    {},
    {"dataset": "builtin", "steps": 0},
    {"dataset": "builtin", "arch": "resnet"},
    {"dataset": "builtin", "noise": {"kind": "gaussian"}},
    {"dataset": "builtin", "noise": {"kind": "gaussian", "sigma": 25, "sigma_range": [0, 50]}},
    {"dataset": "builtin", "noise": {"kind": "salt"}},
    {"dataset": "builtin", "noise": {"kind": "poisson", "lam": -1}},
    {"dataset": "builtin", "learning_rate": 0},
    {"dataset": "builtin", "unexpected": 1},
    {"dataset": "../etc"},
    {"dataset": "d-doesnotexist"},
])
def test_invalid_bodies_are_422(client, body):
    assert client.post("/train", json=body, headers=AUTH).status_code == 422


def test_large_step_counts_are_accepted(client):
    r = client.post("/train", json={"dataset": "builtin", "steps": 1_000_000}, headers=AUTH)
    assert r.status_code == 202
    assert client.post(f"/train/{r.json()['id']}/cancel", headers=AUTH).status_code == 202
    assert wait_for(client, r.json()["id"])["status"] == "cancelled"


def test_default_job_runs_reports_progress_and_registers_a_model(client):
    r = client.post("/train", json={"dataset": "builtin", "steps": 40, "batch_size": 8, "activate_when_done": True},
                    headers=AUTH)
    assert r.status_code == 202
    job = r.json()
    assert r.headers["location"] == f"/train/{job['id']}" and job["status"] == "queued" and isinstance(job["id"], str)
    seen_steps = set()

    def finished():  # no speed requirement: the hang guard only catches a job that never ends
        j = client.get(f"/train/{job['id']}").json()
        seen_steps.add(j["progress"]["step"])
        return j if j["status"] in ("succeeded", "failed", "cancelled") else None

    j = poll_until(finished, f"job {job['id']} finished", every=0.2)
    assert j["status"] == "succeeded", j
    assert j["progress"] == {"step": 40, "total": 40, "fraction": 1.0}
    assert j["metrics"]["loss"] > 0 and j["metrics"]["val_psnr"] > 10 and j["metrics"]["history"]
    times = [datetime.fromisoformat(j[k]) for k in ("created_at", "started_at", "finished_at")]  # ISO 8601
    assert all(t.utcoffset() == timedelta(0) for t in times) and times == sorted(times)
    assert len(seen_steps) > 2  # progress moved while it ran
    models = client.get("/models").json()
    assert models["active"] == j["model_id"]
    card = next(m for m in models["models"] if m["id"] == j["model_id"])["card"]
    assert card["training"]["steps"] == 40 and card["job_id"] == job["id"]
    r = client.post("/denoise", content=png_bytes(rgb()), headers={"content-type": "image/png"})
    assert r.headers["x-model-id"] == j["model_id"]
    assert any(x["id"] == job["id"] for x in client.get("/train").json())


def test_cancel_running_job_ends_it(client):
    r = client.post("/train", json={"dataset": "builtin", "steps": 100000}, headers=AUTH)
    jid = r.json()["id"]
    assert r.json()["worker"] is None
    wait_for(client, jid, statuses=("running",))
    running = poll_until(lambda: (j := client.get(f"/train/{jid}").json())["progress"]["step"] >= 1 and j,
                         "first step")
    # The embedded worker: the API process itself (here, this test's process), not its training child.
    assert running["worker"] == {"host": socket.gethostname(), "pid": os.getpid()}
    assert client.post(f"/train/{jid}/cancel", headers=AUTH).status_code == 202
    job = wait_for(client, jid)  # no speed requirement: the worker is killed after cancel_grace_seconds anyway
    assert job["status"] == "cancelled" and job["progress"]["step"] < 100000 and job["worker"] is None
    again = client.post(f"/train/{jid}/cancel", headers=AUTH)
    assert again.status_code == 202 and again.json()["status"] == "cancelled"


def test_unknown_job_is_404(client):
    assert client.get("/train/nope").status_code == 404
    assert client.post("/train/nope/cancel", headers=AUTH).status_code == 404


def test_patch_size_must_fit_the_architecture(client):
    r = client.post("/train", json={"dataset": "builtin", "arch": "n2n-unet", "patch_size": 48}, headers=AUTH)
    assert r.status_code == 422 and "multiple of 32" in r.text


def test_fine_tune_starts_from_a_registered_model(client):
    start_id = client.get("/models").json()["active"]
    for body, message in (({"init_model": "nope"}, "unknown init_model"),
                          ({"init_model": start_id, "arch": "fast"}, "not 'fast'"),
                          ({"init_model": start_id, "patch_size": 17}, "multiple of 2"),
                          ({"init_model": "../x"}, "init_model")):
        r = client.post("/train", json={"dataset": "builtin", **body}, headers=AUTH)
        assert r.status_code == 422 and message in r.text, (body, r.text)
    r = client.post("/train", json={"dataset": "builtin", "init_model": start_id, "steps": 4, "batch_size": 2,
                                    "patch_size": 32}, headers=AUTH)
    assert r.status_code == 202 and r.json()["params"]["arch"] == "tiny", r.text
    assert "init_weights" not in r.text  # no server paths in responses
    job = wait_for(client, r.json()["id"])
    assert job["status"] == "succeeded", job
    card = next(m for m in client.get("/models").json()["models"] if m["id"] == job["model_id"])["card"]
    assert card["architecture"] == "tiny" and card["training"]["init"] == start_id


def test_a_failed_fine_tune_names_the_model_not_its_server_path(client, settings, tiny_weights):
    models = settings.data_dir / "models"
    (models / "m-gone.safetensors").write_bytes(tiny_weights.read_bytes())
    (models / "m-gone.json").write_text("{}")
    first = client.post("/train", json={"dataset": "builtin", "steps": 100000}, headers=AUTH).json()["id"]
    r = client.post("/train", json={"dataset": "builtin", "init_model": "m-gone", "steps": 2, "patch_size": 32},
                    headers=AUTH)
    assert r.status_code == 202, r.text  # queued behind the first job
    (models / "m-gone.safetensors").unlink()  # the model disappears before its job starts
    client.post(f"/train/{first}/cancel", headers=AUTH)
    job = wait_for(client, r.json()["id"])
    assert job["status"] == "failed" and "m-gone" in job["error"], job
    told = job["error"] + (job.get("note") or "")
    assert str(settings.data_dir) not in told, job
    assert not re.search(r"(?<![\w.:])/[\w.-]+/", told), job  # no absolute path, not even of the source files


def test_a_diverged_job_fails_and_is_neither_registered_nor_activated(client):
    before = client.get("/models").json()
    r = client.post("/train", json={"dataset": "builtin", "arch": "tiny", "steps": 12, "batch_size": 4,
                                    "patch_size": 32, "learning_rate": 1.0, "activate_when_done": True},
                    headers=AUTH)
    assert r.status_code == 202, r.text
    job = wait_for(client, r.json()["id"])
    assert job["status"] == "failed" and "diverged" in job["error"], job
    assert job["model_id"] is None
    after = client.get("/models").json()
    assert after["active"] == before["active"]
    assert {m["id"] for m in after["models"]} == {m["id"] for m in before["models"]}


def test_a_job_without_validation_images_says_only_the_loss_was_checked(client):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for side in "AB":
            for i in range(2):
                z.writestr(f"{side}/{i}.png", png_bytes(rgb(40, 40, i)))
    r = client.post("/datasets", files={"file": ("pairs.zip", buf.getvalue(), "application/zip")}, headers=AUTH)
    assert r.status_code == 201 and r.json()["kind"] == "pairs", r.text
    r = client.post("/train", json={"dataset": r.json()["id"], "arch": "tiny", "steps": 2, "batch_size": 2,
                                    "patch_size": 16}, headers=AUTH)
    job = wait_for(client, r.json()["id"])
    assert job["status"] == "succeeded", job
    assert "no validation images" in job["note"] and "finite-loss" in job["note"], job


def test_a_cancelled_job_resumes_from_its_checkpoint(client):
    r = client.post("/train", json={"dataset": "builtin", "arch": "tiny", "steps": 800, "batch_size": 8,
                                    "patch_size": 16}, headers=AUTH)
    jid = r.json()["id"]
    assert client.post(f"/train/{jid}/resume", headers=AUTH).status_code == 409  # queued: nothing to resume
    poll_until(lambda: client.get(f"/train/{jid}").json()["progress"]["step"] >= 1, "first step")
    assert client.post(f"/train/{jid}/cancel", headers=AUTH).status_code == 202
    cancelled = wait_for(client, jid)
    assert cancelled["status"] == "cancelled", cancelled
    stopped_at = cancelled["progress"]["step"]  # where its checkpoint is
    assert 1 <= stopped_at < 800, stopped_at
    assert client.post(f"/train/{jid}/resume").status_code == 401  # a token is needed
    assert client.post("/train/nope/resume", headers=AUTH).status_code == 404
    resumed = client.post(f"/train/{jid}/resume", headers=AUTH)
    assert resumed.status_code == 202, resumed.text
    assert resumed.json()["status"] == "queued" and resumed.json()["finished_at"] is None
    again = client.post(f"/train/{jid}/resume", headers=AUTH)
    assert again.status_code == 409 and "only a cancelled job" in again.json()["detail"]
    seen = []

    def finished():
        j = client.get(f"/train/{jid}").json()
        seen.append(j["progress"]["step"])
        return j if j["status"] in ("succeeded", "failed", "cancelled") else None

    done = poll_until(finished, f"job {jid} finished", every=0.05)
    assert done["status"] == "succeeded" and done["progress"]["step"] == 800 and done["model_id"], done
    assert min(seen) >= stopped_at  # it went on from its checkpoint, never from step 0
    assert client.post(f"/train/{jid}/resume", headers=AUTH).status_code == 409  # succeeded


def test_the_statuses_a_job_can_have_are_listed_with_the_final_ones(client):
    r = client.get("/train/statuses")
    assert r.status_code == 200
    assert r.json() == {"statuses": ["queued", "running", "succeeded", "failed", "cancelled"],
                        "final": ["succeeded", "failed", "cancelled"]}
    assert client.get("/train/j-000000000000").status_code == 404  # /train/{id} is unchanged beside it
