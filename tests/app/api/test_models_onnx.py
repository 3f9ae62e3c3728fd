"""GET /models/{id}/onnx: a registered model as a downloadable ONNX file; 404 for an unknown id."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from n2n_core.inference.infer import denoise
from n2n_core.weights import load

onnx = pytest.importorskip("onnx")


def test_the_active_model_downloads_as_a_loadable_onnx_file_with_its_card(client, tiny_weights):
    r = client.get("/models/tiny/onnx")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] in ("application/octet-stream", "application/onnx")
    assert r.headers["content-disposition"] == 'attachment; filename="tiny.onnx"'
    proto = onnx.load_from_string(r.content)
    onnx.checker.check_model(proto)
    assert [i.name for i in proto.graph.input] == ["input"] and [o.name for o in proto.graph.output] == ["output"]
    props = {p.key: p.value for p in proto.metadata_props}
    card = client.get("/models/tiny").json()["card"]
    assert json.loads(props["n2n_card"]) == card

    ort = pytest.importorskip("onnxruntime")
    x = torch.rand(1, 3, 21, 30, generator=torch.Generator().manual_seed(0))
    got = ort.InferenceSession(r.content, providers=["CPUExecutionProvider"]).run(None, {"input": x.numpy()})[0]
    want = denoise(load(tiny_weights), x, precision="float32").numpy()
    assert got.shape == want.shape and np.abs(got - want).max() <= 1e-4


def test_a_shipped_model_downloads_with_its_card(client):
    r = client.get("/models/fast/onnx")
    assert r.status_code == 200
    assert r.headers["content-disposition"] == 'attachment; filename="fast.onnx"'
    props = {p.key: p.value for p in onnx.load_from_string(r.content).metadata_props}
    assert json.loads(props["n2n_card"])["name"] == "fast"


def test_an_unknown_model_is_404_like_the_other_model_routes(client):
    r = client.get("/models/m-doesnotexist/onnx")
    assert r.status_code == 404
    assert r.json() == client.get("/models/m-doesnotexist").json()
    assert "m-doesnotexist" in r.json()["detail"]
