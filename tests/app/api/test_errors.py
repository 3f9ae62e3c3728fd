"""422s are valid JSON, whatever the body held (NaN, Infinity, 1e400, undecodable bytes)."""

import json

import pytest

from app.api.errors import json_safe

from tests.helpers import AUTH


def _strict_json(text: str):
    """json.loads that refuses NaN / Infinity / -Infinity, as browsers and most JSON parsers do."""
    def refuse(name):
        raise ValueError(f"non-standard JSON constant {name}")
    return json.loads(text, parse_constant=refuse)


NON_FINITE = ["NaN", "Infinity", "-Infinity", "1e400", "-1e400"]
BODIES = [
    '{{"dataset": "builtin", "learning_rate": {v}}}',
    '{{"dataset": "builtin", "steps": {v}}}',
    '{{"dataset": "builtin", "noise": {{"kind": "gaussian", "sigma": {v}}}}}',
    '{{"dataset": "builtin", "noise": {{"kind": "gaussian", "sigma_range": [0, {v}]}}}}',
    '{{"dataset": "builtin", "noise": {{"kind": "poisson", "lam": {v}}}}}',
    '{{"dataset": {v}}}',
    '{{"dataset": "builtin", "unknown_field": {v}}}',
]


@pytest.mark.parametrize("value", NON_FINITE)
@pytest.mark.parametrize("template", BODIES)
def test_non_finite_numbers_in_a_train_body_are_a_valid_json_422(client, template, value):
    body = template.format(v=value)
    r = client.post("/train", content=body, headers={**AUTH, "content-type": "application/json"})
    assert r.status_code == 422, r.text
    detail = _strict_json(r.text)["detail"]
    assert detail and all(e["msg"] for e in detail)


@pytest.mark.parametrize("value", ["NaN", "Infinity", "1e400"])
def test_non_finite_numbers_fail_as_not_finite(client, value):
    body = f'{{"dataset": "builtin", "learning_rate": {value}}}'
    r = client.post("/train", content=body, headers={**AUTH, "content-type": "application/json"})
    assert r.status_code == 422
    assert [e["type"] for e in _strict_json(r.text)["detail"]] == ["finite_number"]


def test_a_non_finite_number_echoed_in_input_is_written_as_text(client):
    body = '{"dataset": "builtin", "noise": {"kind": "gaussian", "sigma_range": [NaN, Infinity]}}'
    r = client.post("/train", content=body, headers={**AUTH, "content-type": "application/json"})
    assert r.status_code == 422
    assert {"NaN", "Infinity"} <= {e["input"] for e in _strict_json(r.text)["detail"]}
    r = client.post("/train", content="[NaN, -Infinity]", headers={**AUTH, "content-type": "application/json"})
    assert r.status_code == 422
    assert ["NaN", "-Infinity"] in [e.get("input") for e in _strict_json(r.text)["detail"]]


def test_malformed_and_undecodable_json_bodies_are_a_valid_json_422(client):
    for body in [b'{"dataset": ', b'\xff\xfe{"dataset": "builtin"}', b'{"dataset": "\xff"}']:
        r = client.post("/train", content=body, headers={**AUTH, "content-type": "application/json"})
        assert 400 <= r.status_code < 500, (body, r.text)
        _strict_json(r.text)


def test_json_safe():
    out = json_safe([{"a": float("nan"), "b": (float("inf"), -float("inf"), 1.5)}, b"\xff", ValueError("bad")])
    assert out == [{"a": "NaN", "b": ["Infinity", "-Infinity", 1.5]}, "\ufffd", "bad"]
    _strict_json(json.dumps(out, allow_nan=False))


def test_a_database_that_is_away_is_a_503_not_a_500(client, monkeypatch):
    from sqlalchemy.exc import OperationalError

    def away(*args, **kwargs):
        raise OperationalError("SELECT 1", {}, Exception("connection refused"))

    monkeypatch.setattr(client.app.state.registry, "describe", away)
    r = client.get("/models")
    assert r.status_code == 503 and r.headers["retry-after"] and "database" in r.json()["detail"]


def test_a_relative_data_dir_is_made_absolute_so_messages_can_be_scrubbed(tmp_path, monkeypatch):
    from app.core.config import Settings

    monkeypatch.chdir(tmp_path)
    assert Settings(data_dir="n2n_data").data_dir == tmp_path / "n2n_data"


def test_a_heartbeat_as_long_as_the_lease_is_refused_at_configuration():
    from pydantic import ValidationError

    from app.core.config import Settings

    with pytest.raises(ValidationError, match="N2N_JOB_HEARTBEAT_SECONDS"):
        Settings(job_heartbeat_seconds=15, job_lease_seconds=15)
