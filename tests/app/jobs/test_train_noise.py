"""POST /train takes every noise `n2n train --noise` takes (Poisson-Gaussian, impulse, Bernoulli, mixtures joined
by '+'), as a spec string or structured, and `--jpeg`'s JPEG inputs; bad values are 422 saying why; the job and
the model card record them."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from n2n_core.data.noise import noise_from_dict, parse_noise

from tests.helpers import AUTH, make_settings, wait_for

JOB = {"dataset": "builtin", "arch": "tiny", "steps": 1_000_000, "batch_size": 2, "patch_size": 16}
MIXTURE = "gaussian:0-50+poisson-gaussian:0.04,25"


@pytest.fixture
def api(tmp_path, tiny_weights):
    """The service without its embedded worker: jobs stay queued, only what they record matters here."""
    with TestClient(create_app(make_settings(tmp_path / "data", tiny_weights, embedded_worker=False))) as c:
        yield c


def queued(client, **body) -> dict:
    """Queue a job with ``body`` and cancel it."""
    r = client.post("/train", json={**JOB, **body}, headers=AUTH)
    assert r.status_code == 202, r.text
    assert client.post(f"/train/{r.json()['id']}/cancel", headers=AUTH).json()["status"] == "cancelled"
    return r.json()


@pytest.mark.parametrize("spec", [MIXTURE, "poisson-gaussian:0.04,25", "poisson-gaussian:0.01,5", "gaussian:25",
                                  "gaussian:0-50", "poisson:30", "impulse:0.2", "bernoulli:0.5",
                                  "Gaussian:15+impulse:0.1+bernoulli:0.3"])
def test_spec_strings_mean_what_they_mean_to_the_cli(api, spec):
    params = queued(api, noise=spec)["params"]
    assert params["noise_spec"] == parse_noise(spec).spec()
    assert noise_from_dict(params["noise"]) == parse_noise(spec)  # the structured form the job records
    assert params["data_kind"] == "clean" and params["noise_spec"] in params["data"]


def test_structured_forms_of_the_new_kinds(api):
    params = queued(api, noise={"kind": "poisson-gaussian", "gain_max": 0.02, "read_max": 10})["params"]
    assert params["noise"] == {"kind": "poisson-gaussian", "gain_max": 0.02, "read_max": 10}
    assert params["noise_spec"] == "poisson-gaussian:0.02,10"
    mixture = {"kind": "mixture", "components": [{"kind": "gaussian", "sigma_range": [0, 50]},
                                                 {"kind": "poisson-gaussian"}]}
    params = queued(api, noise=mixture)["params"]
    assert params["noise_spec"] == MIXTURE
    assert params["noise"]["components"][1] == {"kind": "poisson-gaussian", "gain_max": 0.04, "read_max": 25}


@pytest.mark.parametrize("noise, expected", [
    (None, {"kind": "gaussian", "sigma": 25}),
    ({"kind": "gaussian", "sigma": 10}, {"kind": "gaussian", "sigma": 10}),
    ({"kind": "gaussian", "sigma_range": [0, 50]}, {"kind": "gaussian", "sigma_range": [0, 50]}),
    ({"kind": "poisson", "lam": 12}, {"kind": "poisson", "lam": 12}),
    ({"kind": "poisson"}, {"kind": "poisson", "lam": 30}),
])
def test_the_existing_forms_are_recorded_as_before(api, noise, expected):
    params = queued(api, **({} if noise is None else {"noise": noise}))["params"]
    assert params["noise"] == expected


@pytest.mark.parametrize("noise, says", [
    ("gaussian:300", "less than or equal to 255"),
    ("gaussian:50-10", "lo <= hi"),
    ("gaussian:nan", "finite"),
    ("gaussian:1e400", "finite"),
    ("poisson:0", "lam"),
    ("poisson-gaussian:-0.1,25", ">= 0"),
    ("poisson-gaussian:0.04,300", "read_max"),
    ("poisson-gaussian:x,1", "bad noise spec"),
    ("impulse:1.5", "impulse"),
    ("bernoulli:1", "bernoulli"),
    ("salt:3", "unknown noise"),
    ("gaussian:25+", "unknown noise"),
    ("", "empty"),
    ("gaussian:1" + "+gaussian:1" * 8, "at most 8"),
    ("g" * 201, "at most 200"),
    ({"kind": "poisson-gaussian", "gain_max": 2}, "less than or equal to 1"),
    ({"kind": "poisson-gaussian", "gain": 0.1}, "Extra inputs"),
    ({"kind": "mixture", "components": [{"kind": "gaussian", "sigma": 5}]}, "at least 2"),
    ({"kind": "mixture", "components": [{"kind": "mixture", "components": []}, {"kind": "poisson"}]}, "mixture"),
])
def test_bad_noise_is_422_saying_why(api, noise, says):
    r = api.post("/train", json={**JOB, "noise": noise}, headers=AUTH)
    assert r.status_code == 422, r.text
    assert says in r.text, r.text


@pytest.mark.parametrize("jpeg, recorded", [("70-95", "70-95"), ("90", "90-90"), ("1-100", "1-100")])
def test_jpeg_inputs_are_accepted_as_the_cli_takes_them(api, jpeg, recorded):
    params = queued(api, jpeg=jpeg)["params"]
    assert params["jpeg"] == recorded and "JPEG" in params["data"]


@pytest.mark.parametrize("jpeg", ["95-70", "0-90", "90-101", "abc", "70-", "-5", "70 - 95", 90])
def test_bad_jpeg_is_422(api, jpeg):
    r = api.post("/train", json={**JOB, "jpeg": jpeg}, headers=AUTH)
    assert r.status_code == 422 and "jpeg" in r.text, r.text


def test_a_job_with_a_mixture_and_jpeg_inputs_trains_and_its_card_records_them(client):
    r = client.post("/train", json={**JOB, "steps": 3, "noise": MIXTURE, "jpeg": "70-95"}, headers=AUTH)
    assert r.status_code == 202, r.text
    job = wait_for(client, r.json()["id"])
    assert job["status"] == "succeeded", job
    card = client.get(f"/models/{job['model_id']}").json()["card"]
    assert card["training"]["noise"] == MIXTURE and card["training"]["jpeg"] == "70-95"
    assert "JPEG" in card["training"]["data_description"]
    assert MIXTURE in card["metrics"][0]["measured"]


def test_the_default_architecture_is_the_cli_s_and_documented(api):
    """The CLI's side: tests/core/test_cli.py."""
    from n2n_core.models import DEFAULT_ARCH

    assert queued(api, arch=None)["params"]["arch"] == DEFAULT_ARCH
    schema = api.get("/openapi.json").json()["components"]["schemas"]["TrainRequest"]["properties"]
    assert f"else {DEFAULT_ARCH!r}, as for `n2n train`" in schema["arch"]["description"]
    assert "poisson-gaussian" in str(schema["noise"]) and "70-95" in str(schema["jpeg"])
