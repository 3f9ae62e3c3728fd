"""POST /train with method neighbor2neighbor: single noisy photos (an uploaded dataset of images, or 'builtin'
with one fixed noise draw each), its options and refusals, and fine-tuning a wrapped shipped model ('blind')."""

import io
import zipfile

import pytest

from tests.helpers import AUTH, png_bytes, rgb, wait_for

TINY = {"arch": "tiny", "steps": 2, "batch_size": 2, "patch_size": 16}


def _upload(client, files: dict[str, bytes]) -> dict:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, data in files.items():
            z.writestr(name, data)
    r = client.post("/datasets", files={"file": ("data.zip", buf.getvalue(), "application/zip")}, headers=AUTH)
    assert r.status_code == 201, r.text
    return r.json()


def _photos(client, count: int = 5) -> str:
    """An uploaded dataset of ``count`` noisy photos (a flat folder of images: kind 'clean')."""
    info = _upload(client, {f"photo{i}.png": png_bytes(rgb(40, 48, i)) for i in range(count)})
    assert info["kind"] == "clean" and info["images"] == count
    return info["id"]


def _pairs(client) -> str:
    info = _upload(client, {f"{side}/{i}.png": png_bytes(rgb(40, 40, i)) for side in "AB" for i in range(2)})
    assert info["kind"] == "pairs"
    return info["id"]


def _card(client, model_id: str) -> dict:
    r = client.get(f"/models/{model_id}")
    assert r.status_code == 200, r.text
    return r.json()["card"]


def test_neighbor2neighbor_on_builtin_draws_the_noise_once_and_the_card_records_the_method(client):
    r = client.post("/train", json={"dataset": "builtin", "method": "neighbor2neighbor", "gamma": 1.5,
                                    "noise": "gaussian:15", **TINY}, headers=AUTH)
    assert r.status_code == 202, r.text
    params = r.json()["params"]
    assert (params["method"], params["gamma"], params["cell"]) == ("neighbor2neighbor", 1.5, 2)
    assert params["data_kind"] == "singles" and params["noise_spec"] == "gaussian:15"
    assert "neighbor2neighbor" in params["data"] and "gaussian:15" in params["data"]
    job = wait_for(client, r.json()["id"])
    assert job["status"] == "succeeded", job
    assert client.get(f"/train/{job['id']}").json()["params"]["method"] == "neighbor2neighbor"
    training = _card(client, job["model_id"])["training"]
    assert (training["method"], training["gamma"], training["cell"], training["data_kind"]) == (
        "neighbor2neighbor", 1.5, 2, "singles")
    assert training["noise"] == "gaussian:15"  # the one draw made on each builtin photograph


def test_neighbor2neighbor_on_an_uploaded_dataset_of_noisy_photos(client):
    dataset = _photos(client)
    r = client.post("/train", json={"dataset": dataset, "method": "neighbor2neighbor", **TINY}, headers=AUTH)
    assert r.status_code == 202, r.text
    params = r.json()["params"]
    assert params["method"] == "neighbor2neighbor" and (params["gamma"], params["cell"]) == (2.0, 2)
    assert params["noise"] is None and params["noise_spec"] is None and params["data_kind"] == "singles"
    assert "single noisy photos" in params["data"] and "no noise added" in params["data"]
    job = wait_for(client, r.json()["id"])
    assert job["status"] == "succeeded", job
    card = _card(client, job["model_id"])
    assert card["job_id"] == job["id"]
    training = card["training"]
    assert (training["method"], training["data_kind"], training["noise"]) == ("neighbor2neighbor", "singles", None)


def test_noise2noise_stays_the_default_and_records_its_method(client):
    r = client.post("/train", json={"dataset": "builtin", "steps": 1_000_000}, headers=AUTH)
    assert r.status_code == 202, r.text
    params = r.json()["params"]
    assert params["method"] == "noise2noise" and params["gamma"] is None and params["cell"] is None
    assert params["data_kind"] == "clean" and params["noise_spec"] == "gaussian:25"
    assert client.post(f"/train/{r.json()['id']}/cancel", headers=AUTH).status_code == 202
    assert wait_for(client, r.json()["id"])["status"] == "cancelled"


def test_a_dataset_of_pairs_is_refused_for_neighbor2neighbor(client):
    dataset = _pairs(client)
    r = client.post("/train", json={"dataset": dataset, "method": "neighbor2neighbor", **TINY}, headers=AUTH)
    assert r.status_code == 422
    detail = r.json()["detail"]
    assert "noisy pairs (A/ and B/)" in detail and "single noisy photos" in detail and "noise2noise" in detail


@pytest.mark.parametrize("extra, message", [
    ({"noise": "gaussian:25"}, "noise does not apply to method neighbor2neighbor"),
    ({"jpeg": "70-95"}, "jpeg does not apply to method neighbor2neighbor"),
])
def test_noise_and_jpeg_are_refused_for_uploaded_noisy_photos(client, extra, message):
    dataset = _photos(client)
    r = client.post("/train", json={"dataset": dataset, "method": "neighbor2neighbor", **TINY, **extra},
                    headers=AUTH)
    assert r.status_code == 422 and message in r.json()["detail"], r.text


@pytest.mark.parametrize("body, message", [
    ({"method": "neighbor2neighbor", "cell": 3}, "multiple of 2"),
    ({"method": "neighbor2neighbor", "cell": 0}, "greater than or equal to 2"),
    ({"method": "neighbor2neighbor", "gamma": -1}, "greater than or equal to 0"),
    ({"method": "neighbor2neighbor", "cell": 4, "arch": "tiny", "patch_size": 20},
     "multiple of 8 for neighbor2neighbor"),
    ({"method": "neighbor2vec"}, "method"),
    ({"cell": 4}, "apply to method 'neighbor2neighbor' only"),
    ({"gamma": 1.0}, "apply to method 'neighbor2neighbor' only"),
    ({"method": "neighbor2neighbor", "jpeg": "90"}, "jpeg does not apply"),
])
def test_bad_neighbor2neighbor_options_are_422(client, body, message):
    r = client.post("/train", json={"dataset": "builtin", **body}, headers=AUTH)
    assert r.status_code == 422 and message in r.text, r.text


def test_a_wider_cell_is_accepted_with_a_patch_that_fits(client):
    r = client.post("/train", json={"dataset": "builtin", "method": "neighbor2neighbor", "cell": 4, "arch": "tiny",
                                    "steps": 1_000_000, "patch_size": 32}, headers=AUTH)
    assert r.status_code == 202, r.text
    assert r.json()["params"]["cell"] == 4
    assert client.post(f"/train/{r.json()['id']}/cancel", headers=AUTH).status_code == 202
    assert wait_for(client, r.json()["id"])["status"] == "cancelled"


def test_the_blind_model_is_fine_tuned_through_its_noise_adaptive_wrapper(client):
    """'blind' wraps unet-l: the route finds the architecture inside it (n2n_core.training.train.arch_of_weights)."""
    r = client.post("/train", json={"dataset": "builtin", "init_model": "blind", "arch": "fast"}, headers=AUTH)
    assert r.status_code == 422 and "is a 'unet-l' network, not 'fast'" in r.text, r.text
    r = client.post("/train", json={"dataset": "builtin", "init_model": "blind", "method": "neighbor2neighbor",
                                    "steps": 1, "batch_size": 1, "patch_size": 32}, headers=AUTH)
    assert r.status_code == 202, r.text
    assert r.json()["params"]["arch"] == "unet-l" and r.json()["params"]["init_model"] == "blind"
    job = wait_for(client, r.json()["id"], statuses=("running", "succeeded", "failed", "cancelled"))
    assert job["status"] in ("running", "succeeded"), job  # it started: the worker read the wrapped weights
    job = wait_for(client, r.json()["id"])
    assert job["status"] == "succeeded", job
    card = _card(client, job["model_id"])
    assert card["training"]["init"] == "blind" and card["training"]["method"] == "neighbor2neighbor"
