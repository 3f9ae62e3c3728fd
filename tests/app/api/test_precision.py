"""The service's precision setting: N2N_PRECISION, /readyz and the X-Precision header."""

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from app.main import create_app

from tests.helpers import make_settings, png_bytes, poll_until, rgb


@pytest.mark.parametrize("precision", ["float32", "bfloat16"])
def test_readyz_and_each_answer_say_which_precision_ran(tmp_path, tiny_weights, precision):
    with TestClient(create_app(make_settings(tmp_path / "data", tiny_weights, precision=precision))) as client:
        assert client.get("/readyz").json()["precision"] == precision
        r = client.post("/denoise", content=png_bytes(rgb()), headers={"Content-Type": "image/png"})
        assert r.status_code == 200, r.text
        assert r.headers["X-Precision"] == precision
        job_id = client.post("/denoise/jobs", content=png_bytes(rgb()), headers={"Content-Type": "image/png"}).json()["id"]
        poll_until(lambda: client.get(f"/denoise/jobs/{job_id}").json()["status"] == "succeeded", "the job's success")
        assert client.get(f"/denoise/jobs/{job_id}/result").headers["X-Precision"] == precision


def test_auto_is_resolved_for_the_device(tmp_path, tiny_weights):
    from n2n_core.inference.precision import resolve_precision

    with TestClient(create_app(make_settings(tmp_path / "data", tiny_weights, precision="auto"))) as client:
        assert client.get("/readyz").json()["precision"] == resolve_precision("auto", "cpu")


def test_an_unknown_precision_is_refused_at_start(tmp_path, tiny_weights):
    with pytest.raises(ValidationError, match="precision"):
        make_settings(tmp_path / "data", tiny_weights, precision="half")
