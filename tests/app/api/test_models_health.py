"""Models, health, readiness and metrics."""

from fastapi.testclient import TestClient

from app.main import create_app

from tests.helpers import AUTH, make_settings, png_bytes, rgb


def test_models_list_cards_and_activation(client):
    body = client.get("/models").json()
    ids = {m["id"] for m in body["models"]}
    assert body["active"] == "tiny" and "tiny" in ids
    assert all(isinstance(m["card"], dict) for m in body["models"])
    shipped = [m["id"] for m in body["models"] if m["shipped"] and m["id"] != "tiny"]
    assert client.post(f"/models/{shipped[0]}/activate").status_code == 401
    r = client.post(f"/models/{shipped[0]}/activate", headers=AUTH)
    assert r.status_code == 200 and r.json()["active"]
    r = client.post("/denoise", content=png_bytes(rgb()), headers={"content-type": "image/png"})
    assert r.headers["x-model-id"] == shipped[0]
    assert client.post("/models/nope/activate", headers=AUTH).status_code == 404
    assert client.get("/models/nope").status_code == 404


def test_health_ready_metrics(client):
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").json()["status"] == "ready"
    client.post("/denoise", content=png_bytes(rgb()), headers={"content-type": "image/png"})
    text = client.get("/metrics").text
    assert 'n2n_requests_total{endpoint="/denoise",method="POST",status="200"} 1' in text
    assert "n2n_request_duration_seconds_bucket" in text and "n2n_images_denoised_total 1" in text
    assert 'n2n_jobs{status="queued"}' in text
    assert client.get("/openapi.json").json()["paths"]["/denoise"]
    assert client.get("/docs").status_code == 200


def test_not_ready_without_a_model(tmp_path):
    s = make_settings(tmp_path / "d", tmp_path / "missing.safetensors")
    with TestClient(create_app(s)) as c:
        assert c.get("/healthz").status_code == 200
        r = c.get("/readyz")
        assert r.status_code == 503 and "missing.safetensors" in r.json()["error"]
        assert str(tmp_path) not in r.json()["error"]  # no server path in what the service says,
        assert r.json()["data_dir"] == str(tmp_path / "d")  # but the one field that says where the data lives
