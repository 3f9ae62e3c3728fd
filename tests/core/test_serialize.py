"""save/load: safetensors + architecture JSON, rebuilt from the file alone."""

import json

import pytest
import torch
from safetensors import safe_open

import n2n_core
from n2n_core import Conv2d, LeakyReLU, NearestUpsampling, Sequential, TransposeConv2d


def test_save_load_roundtrip(tmp_path):
    model = Sequential(Conv2d(3, 4, (3, 1), stride=(2, 1), padding=1, bias=False), LeakyReLU(0.2),
                       Sequential(NearestUpsampling((2, 1)), TransposeConv2d(4, 3, 3, 2, 1, 1, dilation=2)))
    path = n2n_core.save(model, tmp_path / "m.safetensors", metadata={"note": "hi"})
    assert not [p for p in tmp_path.iterdir() if p.name != "m.safetensors"], "temp files left behind"
    with safe_open(str(path), framework="pt") as f:
        assert json.loads(f.metadata()["n2n_architecture"])["type"] == "Sequential"
    loaded = n2n_core.load(path)
    x = torch.randn(1, 3, 9, 7)
    assert torch.equal(loaded(x), model(x))
    assert repr(loaded) == repr(model)
    _, meta = n2n_core.serialize.load_with_metadata(path)
    assert meta == {"note": "hi"}


def test_load_rejects_non_model_files(tmp_path):
    bad = tmp_path / "x.safetensors"
    bad.write_bytes(b"not a safetensors file")
    with pytest.raises(ValueError):
        n2n_core.load(bad)
    with pytest.raises(ValueError, match="no weights file"):
        n2n_core.load(tmp_path / "missing.safetensors")
