"""The model registry under load: no deadlock however many models are used, a cache bounded by memory,
activation off the event loop, and a liveness watchdog on the denoise worker."""

import json
import shutil
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch
from fastapi.testclient import TestClient

from app.main import create_app
from app.services.registry import ModelRegistry, model_bytes

from tests.helpers import AUTH, HANG_GUARD, make_settings, png_bytes, poll_until, rgb


def _register_copies(data_dir, weights, count):
    """``count`` registered models m-copy-i, copies of ``weights``."""
    models = data_dir / "models"
    models.mkdir(parents=True, exist_ok=True)
    ids = []
    for i in range(count):
        shutil.copyfile(weights, models / f"m-copy-{i}.safetensors")
        (models / f"m-copy-{i}.json").write_text(json.dumps({"name": f"copy {i}"}))
        ids.append(f"m-copy-{i}")
    return ids


def _post(client, model):
    query = f"?model={model}" if model else ""
    return client.post(f"/denoise{query}", content=png_bytes(rgb(16, 16)),
                       headers={"content-type": "image/png"})


def test_many_distinct_models_never_deadlock(tmp_path, tiny_weights):
    """Today's main hung on the fifth distinct model: get() held its lock while reading active_id."""
    data = tmp_path / "data"
    extra = _register_copies(data, tiny_weights, 6)
    with TestClient(create_app(make_settings(data, tiny_weights))) as c, ThreadPoolExecutor(1) as pool:
        shipped = [m["id"] for m in c.get("/models").json()["models"] if m["shipped"]]
        for model in shipped + extra + shipped[:2]:
            r = pool.submit(_post, c, model).result(timeout=HANG_GUARD)
            assert r.status_code == 200 and r.headers["x-model-id"] == model
        for path in ("/models", "/readyz", "/healthz"):
            assert pool.submit(c.get, path).result(timeout=HANG_GUARD).status_code == 200
        r = pool.submit(c.post, f"/models/{extra[0]}/activate", headers=AUTH).result(timeout=HANG_GUARD)
        assert r.status_code == 200 and c.get("/models").json()["active"] == extra[0]


def test_cache_is_bounded_by_memory_and_keeps_the_active_model(tmp_path, tiny_weights):
    data = tmp_path / "data"
    extra = _register_copies(data, tiny_weights, 5)
    one_model = model_bytes(ModelRegistry(data, torch.device("cpu")).get(extra[0])[1])
    settings = make_settings(data, tiny_weights, model_cache_bytes=2 * one_model)
    with TestClient(create_app(settings)) as c:
        registry = c.app.state.registry
        for model in extra:
            assert _post(c, model).status_code == 200
            loaded = registry.loaded_ids()
            assert "tiny" in loaded and model in loaded  # the active one and the one just used
            assert sum(model_bytes(registry.get(m)[1]) for m in loaded) <= 2 * one_model
        assert 'n2n_models_loaded 2' in c.get("/metrics").text
    with TestClient(create_app(make_settings(tmp_path / "big", tiny_weights))) as c:  # default: room for all
        _register_copies(tmp_path / "big", tiny_weights, 5)
        for model in extra:
            assert _post(c, model).status_code == 200
        assert set(extra) <= set(c.app.state.registry.loaded_ids())


def test_concurrent_first_use_loads_a_model_once(tmp_path, tiny_weights, monkeypatch):
    import app.services.registry as registry_module

    data = tmp_path / "data"
    (model,) = _register_copies(data, tiny_weights, 1)
    loads = []
    real_load = registry_module.load_with_metadata

    def counting_load(*args, **kwargs):
        loads.append(args[0])
        return real_load(*args, **kwargs)

    monkeypatch.setattr(registry_module, "load_with_metadata", counting_load)
    registry = ModelRegistry(data, torch.device("cpu"))
    with ThreadPoolExecutor(8) as pool:
        results = [f.result(timeout=HANG_GUARD) for f in [pool.submit(registry.get, model) for _ in range(16)]]
    assert len(loads) == 1 and all(m is results[0][1] for _, m in results)


def test_liveness_fails_while_the_denoise_worker_is_stuck(tmp_path, tiny_weights):
    settings = make_settings(tmp_path / "data", tiny_weights, watchdog_seconds=0.5)
    release = threading.Event()
    with TestClient(create_app(settings)) as c, ThreadPoolExecutor(1) as pool:
        registry = c.app.state.registry
        real_get = registry.get

        def stuck_get(model_id=None):
            release.wait(HANG_GUARD)
            return real_get(model_id)

        registry.get = stuck_get
        pending = pool.submit(_post, c, None)
        poll_until(lambda: c.get("/healthz").status_code != 200, "liveness noticing the stuck worker")
        body = c.get("/healthz").json()
        assert body["status"] == "stalled" and "no progress" in body["error"]
        release.set()
        assert pending.result(timeout=HANG_GUARD).status_code == 200
        assert c.get("/healthz").json() == {"status": "ok"}


@pytest.mark.parametrize("path", ["/models", "/readyz", "/metrics"])
def test_reads_answer_while_a_model_loads(tmp_path, tiny_weights, monkeypatch, path):
    """A slow model load (e.g. a big file on a network volume) blocks neither listing nor health."""
    import app.services.registry as registry_module

    data = tmp_path / "data"
    (model,) = _register_copies(data, tiny_weights, 1)
    release, started = threading.Event(), threading.Event()
    real_load = registry_module.load_with_metadata

    def slow_load(*args, **kwargs):
        if str(args[0]).endswith(f"{model}.safetensors"):
            started.set()
            release.wait(HANG_GUARD)
        return real_load(*args, **kwargs)

    monkeypatch.setattr(registry_module, "load_with_metadata", slow_load)
    with TestClient(create_app(make_settings(data, tiny_weights))) as c, ThreadPoolExecutor(2) as pool:
        activating = pool.submit(c.post, f"/models/{model}/activate", headers=AUTH)
        assert started.wait(HANG_GUARD)
        assert pool.submit(c.get, path).result(timeout=HANG_GUARD).status_code == 200
        release.set()
        assert activating.result(timeout=HANG_GUARD).status_code == 200
