"""Managing trained models: names, DELETE /models/{id} (401, 404, 409, 204), its effect on other replicas,
the card's measured metrics, what a job on noisy pairs records, the ETA, and the names migration."""

from __future__ import annotations

import io
import json
import re
import zipfile
from datetime import datetime, timedelta

import pytest
from alembic import command
from fastapi.testclient import TestClient
from sqlalchemy import text

from app.main import create_app
from app.services.model_names import NAME_MAX, default_name
from app.services.registry import UnknownModel
from app.store import ModelGone, ModelRows, open_database
from app.store.migrate import alembic_config

from tests.helpers import AUTH, make_settings, png_bytes, poll_until, rgb, wait_for

TINY_JOB = {"dataset": "builtin", "arch": "tiny", "steps": 4, "batch_size": 2, "patch_size": 16}


def register(client: TestClient, weights, name: str | None = "hand made", **card) -> str:
    """A trained model registered as a finished job registers it (no training needed)."""
    return client.app.state.registry.register(weights, {"architecture": "tiny", **card}, name)


def model(client: TestClient, model_id: str) -> dict:
    return client.get(f"/models/{model_id}").json()


# -- names ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["", " leading space", "trailing ", "a/b", "x" * (NAME_MAX + 1), "tab\there",
                                  "<script>", "-dash first"])
def test_invalid_names_are_422_saying_why(client, name):
    r = client.post("/train", json={**TINY_JOB, "name": name}, headers=AUTH)
    assert r.status_code == 422, r.text
    assert "name" in r.text


def test_a_trained_model_carries_its_name_and_its_measured_metrics(client):
    r = client.post("/train", json={**TINY_JOB, "name": "Été 2024 (garden)"}, headers=AUTH)
    assert r.status_code == 202, r.text
    assert r.json()["params"]["name"] == "Été 2024 (garden)"
    job = wait_for(client, r.json()["id"])
    assert job["status"] == "succeeded", job
    assert job["metrics"]["best_val_psnr"] >= job["metrics"]["val_psnr"] > 0
    listed = {m["id"]: m for m in client.get("/models").json()["models"]}[job["model_id"]]
    assert listed["name"] == "Été 2024 (garden)" and listed["card"]["name"] == "Été 2024 (garden)"
    registered, created = (datetime.fromisoformat(t) for t in (listed["created_at"], job["created_at"]))  # ISO 8601
    assert registered >= created and registered.utcoffset() == timedelta(0) and listed["shipped"] is False
    assert model(client, job["model_id"])["name"] == "Été 2024 (garden)"
    card = listed["card"]
    final, best = card["metrics"][:2]
    assert final["name"] == "validation PSNR (final)" and best["name"] == "validation PSNR (best)"
    assert final["psnr"] == pytest.approx(job["metrics"]["val_psnr"], abs=1e-3)
    assert best["psnr"] == pytest.approx(job["metrics"]["best_val_psnr"], abs=1e-3)
    assert final["step"] == 4 and final["images"] >= 1 and final["noisy_psnr"] > 0 and "measured" in final
    assert "gaussian:25" in final["measured"]
    assert card["training"]["noise"] == "gaussian:25" and card["training"]["data_kind"] == "clean"


def test_the_default_name_says_architecture_dataset_and_date(tmp_path, tiny_weights):
    with TestClient(create_app(make_settings(tmp_path / "data", tiny_weights, embedded_worker=False))) as c:
        r = c.post("/train", json={**TINY_JOB, "steps": 1_000_000}, headers=AUTH)  # stays queued
        assert r.status_code == 202
        name = r.json()["params"]["name"]
        assert re.fullmatch(r"tiny builtin \d{4}-\d\d-\d\d \d\d:\d\d", name), name
        c.post(f"/train/{r.json()['id']}/cancel", headers=AUTH)
    assert default_name("tiny", "builtin", 0) == "tiny builtin 1970-01-01 00:00"
    assert default_name("n2n-unet", "d-" + "x" * 62, 0).endswith(" 1970-01-01 00:00")
    assert len(default_name("n2n-unet", "d-" + "x" * 62, 0)) == NAME_MAX


# -- DELETE /models/{id} -----------------------------------------------------------------------------
def test_delete_needs_the_token(client, tiny_weights):
    mid = register(client, tiny_weights)
    assert client.delete(f"/models/{mid}").status_code == 401
    assert client.delete(f"/models/{mid}", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert model(client, mid)["id"] == mid


def test_delete_unknown_is_404(client):
    r = client.delete("/models/m-doesnotexist", headers=AUTH)
    assert r.status_code == 404 and "m-doesnotexist" in r.json()["detail"]


def test_shipped_and_startup_models_cannot_be_deleted(client, settings):
    models = client.get("/models").json()["models"]
    shipped = [m["id"] for m in models if m["shipped"] and m["id"] != "tiny"]
    r = client.delete(f"/models/{shipped[0]}", headers=AUTH)
    assert r.status_code == 409 and "shipped" in r.json()["detail"], r.text
    r = client.delete("/models/tiny", headers=AUTH)  # N2N_WEIGHTS, and the active one too
    assert r.status_code == 409 and "N2N_WEIGHTS" in r.json()["detail"], r.text
    assert str(settings.data_dir) not in r.text
    assert {m["id"] for m in client.get("/models").json()["models"]} == {m["id"] for m in models}


def test_the_active_model_cannot_be_deleted(client, tiny_weights):
    mid = register(client, tiny_weights)
    assert client.post(f"/models/{mid}/activate", headers=AUTH).status_code == 200
    r = client.delete(f"/models/{mid}", headers=AUTH)
    assert r.status_code == 409 and "active" in r.json()["detail"] and "activate another" in r.json()["detail"]
    assert client.post("/models/tiny/activate", headers=AUTH).status_code == 200
    assert client.delete(f"/models/{mid}", headers=AUTH).status_code == 204


def test_a_model_an_unfinished_job_starts_from_cannot_be_deleted(tmp_path, tiny_weights):
    settings = make_settings(tmp_path / "data", tiny_weights, embedded_worker=False)  # the job stays queued
    with TestClient(create_app(settings)) as c:
        mid = register(c, tiny_weights)
        r = c.post("/train", json={**TINY_JOB, "init_model": mid}, headers=AUTH)
        assert r.status_code == 202, r.text
        refused = c.delete(f"/models/{mid}", headers=AUTH)
        assert refused.status_code == 409 and r.json()["id"] in refused.json()["detail"], refused.text
        assert c.post(f"/train/{r.json()['id']}/cancel", headers=AUTH).json()["status"] == "cancelled"
        assert c.delete(f"/models/{mid}", headers=AUTH).status_code == 204


def test_delete_removes_the_row_the_files_and_the_loaded_model(client, settings, tiny_weights):
    mid = register(client, tiny_weights, job_id="j-0123456789ab")
    job_dir = settings.data_dir / "jobs" / "j-0123456789ab"
    job_dir.mkdir(parents=True)
    (job_dir / "model.safetensors").write_bytes(tiny_weights.read_bytes())
    weights = settings.data_dir / "models" / f"{mid}.safetensors"
    (settings.data_dir / "models" / f"{mid}.json").write_text("{}")  # a card file, as an older n2n wrote them
    r = client.post(f"/denoise?model={mid}", content=png_bytes(rgb(16, 16)), headers={"content-type": "image/png"})
    assert r.status_code == 200 and mid in client.app.state.registry.loaded_ids()
    r = client.delete(f"/models/{mid}", headers=AUTH)
    assert r.status_code == 204 and r.content == b""
    assert not weights.exists() and not weights.with_suffix(".json").exists() and not job_dir.exists()
    assert mid not in client.app.state.registry.loaded_ids()
    assert mid not in {m["id"] for m in client.get("/models").json()["models"]}
    assert client.get(f"/models/{mid}").status_code == 404
    r = client.post(f"/denoise?model={mid}", content=png_bytes(rgb(16, 16)), headers={"content-type": "image/png"})
    assert r.status_code == 404
    assert client.delete(f"/models/{mid}", headers=AUTH).status_code == 404
    assert client.post(f"/models/{mid}/activate", headers=AUTH).status_code == 404


def test_a_model_deleted_meanwhile_cannot_become_active(client, tiny_weights):
    mid = register(client, tiny_weights)
    rows = ModelRows(client.app.state.store.db)
    rows.delete(mid)  # as another replica would, between this replica's load and its switch
    with pytest.raises(ModelGone):
        rows.set_active(mid, must_exist=True)
    with pytest.raises(UnknownModel):
        client.app.state.registry.get(mid)


def test_a_replica_answers_404_for_a_model_deleted_on_another(tmp_path, tiny_weights, pg_url):
    data_dir = tmp_path / "data"
    one = TestClient(create_app(make_settings(data_dir, tiny_weights, database_url=pg_url, embedded_worker=False)))
    two = TestClient(create_app(make_settings(data_dir, tiny_weights, database_url=pg_url, embedded_worker=False)))
    with one, two:
        mid = register(one, tiny_weights)
        r = two.post(f"/denoise?model={mid}", content=png_bytes(rgb(16, 16)), headers={"content-type": "image/png"})
        assert r.status_code == 200 and mid in two.app.state.registry.loaded_ids()  # in replica two's cache
        assert one.delete(f"/models/{mid}", headers=AUTH).status_code == 204
        r = two.post(f"/denoise?model={mid}", content=png_bytes(rgb(16, 16)), headers={"content-type": "image/png"})
        assert r.status_code == 404, r.text
        assert mid not in two.app.state.registry.loaded_ids()
        assert two.get(f"/models/{mid}").status_code == 404
        assert two.delete(f"/models/{mid}", headers=AUTH).status_code == 404


# -- noisy pairs -------------------------------------------------------------------------------------
def pairs_dataset(client: TestClient) -> str:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for side in "AB":
            for i in range(2):
                z.writestr(f"{side}/{i}.png", png_bytes(rgb(40, 40, i)))
    r = client.post("/datasets", files={"file": ("pairs.zip", buf.getvalue(), "application/zip")}, headers=AUTH)
    assert r.status_code == 201 and r.json()["kind"] == "pairs", r.text
    return r.json()["id"]


def test_a_job_on_noisy_pairs_records_the_pairs_not_a_noise(client):
    dataset = pairs_dataset(client)
    for extra, field in (({"noise": {"kind": "gaussian", "sigma": 25}}, "noise"), ({"noise": "poisson:30"}, "noise"),
                         ({"jpeg": "70-95"}, "jpeg")):
        r = client.post("/train", json={**TINY_JOB, "dataset": dataset, **extra}, headers=AUTH)
        assert r.status_code == 422 and "noisy pairs" in r.text and field in r.json()["detail"], r.text
    r = client.post("/train", json={**TINY_JOB, "dataset": dataset, "steps": 2}, headers=AUTH)
    assert r.status_code == 202, r.text
    params = r.json()["params"]
    assert params["noise"] is None and params["noise_spec"] is None and params["data_kind"] == "pairs"
    assert params["data"].startswith(f"pairs {dataset}")
    job = wait_for(client, r.json()["id"])
    assert job["status"] == "succeeded", job
    card = model(client, job["model_id"])["card"]
    assert card["training"]["noise"] is None and card["training"]["data_kind"] == "pairs"
    assert card["training"]["data"] == dataset and "noisy pairs" in card["training"]["data_description"]
    assert "gaussian" not in json.dumps(card["training"])
    assert not [m for m in card["metrics"] if "psnr" in m]  # no validation images: nothing measured


# -- ETA -------------------------------------------------------------------------------------------
def test_a_running_job_shows_an_eta_from_its_step_rate(client):
    r = client.post("/train", json={**TINY_JOB, "steps": 1_000_000}, headers=AUTH)
    assert r.json()["eta_seconds"] is None  # queued: nothing measured yet
    jid = r.json()["id"]
    job = poll_until(lambda: (j := client.get(f"/train/{jid}").json())["eta_seconds"] is not None and j,
                     "an ETA while running", every=0.2)
    assert job["status"] == "running" and isinstance(job["eta_seconds"], int) and job["eta_seconds"] > 0
    assert job["metrics"]["steps_per_second"] > 0
    client.post(f"/train/{jid}/cancel", headers=AUTH)
    assert wait_for(client, jid)["eta_seconds"] is None


# -- the names migration ---------------------------------------------------------------------------
@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_models_registered_before_names_get_one(backend, tmp_path, request):
    url = request.getfixturevalue("pg_url") if backend == "postgresql" else None
    db = open_database(url, tmp_path)
    cfg = alembic_config(db, tmp_path)
    command.upgrade(cfg, "0002")
    cards = {"m-old": {"name": "model", "architecture": "fast", "training": {"data": "builtin"}},
             "m-kept": {"name": "holiday", "architecture": "tiny"}}
    with db.engine.begin() as c:
        for mid, card in cards.items():
            c.execute(text("INSERT INTO models (id, path, card, created_at) VALUES (:id, :p, :c, 0)"),
                      {"id": mid, "p": f"models/{mid}.safetensors", "c": json.dumps(card)})
    command.upgrade(cfg, "head")
    rows = ModelRows(db).details()
    assert rows["m-old"]["name"] == "fast builtin 1970-01-01 00:00" == rows["m-old"]["card"]["name"]
    assert rows["m-kept"]["name"] == "holiday"
    command.downgrade(cfg, "0002")  # and back
    command.upgrade(cfg, "head")
    db.dispose()
