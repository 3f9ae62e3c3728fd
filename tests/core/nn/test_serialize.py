"""save/load: safetensors + architecture JSON, rebuilt from the file alone."""

import json
import re

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

import n2n_core
import n2n_core.nn.layers
from n2n_core import Conv2d, LeakyReLU, Module, NearestUpsampling, ReLU, Sequential, TransposeConv2d


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
    _, meta = n2n_core.nn.serialize.load_with_metadata(path)
    assert meta == {"note": "hi"}


def test_load_rejects_non_model_files(tmp_path):
    bad = tmp_path / "x.safetensors"
    bad.write_bytes(b"not a safetensors file")
    with pytest.raises(ValueError, match=r"x\.safetensors is not a safetensors file: "):
        n2n_core.load(bad)
    with pytest.raises(ValueError, match="no weights file"):
        n2n_core.load(tmp_path / "missing.safetensors")


def _file_with_header(path, architecture: str, metadata: str | None = None, tensors=None):
    """A safetensors file whose header holds the given (possibly broken) JSON texts."""
    header = {"n2n_architecture": architecture}
    if metadata is not None:
        header["n2n_metadata"] = metadata
    save_file(tensors if tensors is not None else {"x": torch.zeros(1)}, str(path), metadata=header)
    return path


def _nested_sequentials(depth: int) -> str:
    return '{"type": "Sequential", "children": [' * depth + '{"type": "ReLU"}' + "]}" * depth


@pytest.mark.parametrize("architecture", [
    "[" * 5000 + "]" * 5000,  # the JSON parser's recursion limit
    _nested_sequentials(5000),
    _nested_sequentials(400),  # valid JSON, but Module.from_config would exhaust the recursion limit
    "{not json",
    '{"type": "Sequential", "children": []',
    "",
    '"Sequential"',
    "[]",
    "null",
])
def test_invalid_or_too_deep_architecture_json_is_a_value_error_naming_the_file(tmp_path, architecture):
    path = _file_with_header(tmp_path / "deep.safetensors", architecture)
    for read in (n2n_core.load, n2n_core.nn.serialize.read_metadata):
        with pytest.raises(ValueError, match=re.escape(str(path))):
            read(path)


@pytest.mark.parametrize("metadata", ["{broken", "[" * 5000 + "]" * 5000, "[1, 2]", "3"])
def test_invalid_metadata_json_is_a_value_error_naming_the_file(tmp_path, metadata):
    path = _file_with_header(tmp_path / "meta.safetensors", json.dumps(ReLU().config()), metadata)
    with pytest.raises(ValueError, match=re.escape(str(path)) + ".*metadata"):
        n2n_core.nn.serialize.load_with_metadata(path)


def test_architectures_nested_as_deep_as_allowed_still_load(tmp_path):
    path = _file_with_header(tmp_path / "ok.safetensors", _nested_sequentials(99), "{}", {})
    model = n2n_core.load(path)
    x = torch.randn(1, 3, 4, 4)
    assert torch.equal(model(x), x.clamp_min(0))


@pytest.mark.parametrize("config", [
    {"type": "Conv2d", "in_channels": 0, "out_channels": 2, "kernel_size": 3},  # the layer's own ValueError
    {"type": "Conv2d", "in_channels": 2},  # missing arguments
    {"type": "Conv2d", "in_channels": 2, "out_channels": 2, "kernel_size": 1, "colour": "red"},
    {"type": "Sequential", "children": "abc"},
    {"type": "Sequential", "children": [3]},
    {"type": "Residual"},
    {"type": 5},
])
def test_broken_architectures_are_value_errors_naming_the_file(tmp_path, config):
    path = _file_with_header(tmp_path / "broken.safetensors", json.dumps(config), "{}")
    with pytest.raises(ValueError, match=re.escape(str(path))):
        n2n_core.load(path)


def test_private_module_types_are_not_loadable(tmp_path):
    assert "_ConvBase" not in Module.registry
    assert all(not name.startswith("_") for name in Module.registry)
    assert set(n2n_core.nn.layers.__all__) <= set(Module.registry)
    config = {"type": "_ConvBase", "in_channels": 2, "out_channels": 2, "kernel_size": 1, "stride": 1,
              "padding": 0, "dilation": 1, "bias": True}
    with pytest.raises(ValueError, match="unknown module type '_ConvBase'"):
        Module.from_config(config)
    path = _file_with_header(tmp_path / "private.safetensors", json.dumps(config), "{}")
    with pytest.raises(ValueError, match=re.escape(str(path)) + ".*unknown module type '_ConvBase'"):
        n2n_core.load(path)


def test_private_subclasses_stay_out_of_the_registry():
    class _Helper(Module):
        pass

    class PublicProbe(Module):
        pass

    try:
        assert "_Helper" not in Module.registry
        assert Module.registry["PublicProbe"] is PublicProbe
    finally:
        Module.registry.pop("PublicProbe", None)


def test_a_model_with_a_shared_module_saves_and_loads(tmp_path):
    c = Conv2d(2, 2, 3, padding=1)
    model = Sequential(c, LeakyReLU(0.1), c)
    path = n2n_core.save(model, tmp_path / "shared.safetensors")
    loaded = n2n_core.load(path)
    x = torch.randn(1, 2, 5, 5)
    assert torch.equal(loaded(x), model(x))
    assert list(loaded.state_dict()) == ["0.weight", "0.bias", "2.weight", "2.bias"]


def test_load_takes_a_shipped_models_name_as_the_cli_does(tmp_path, monkeypatch):
    from n2n_core import weights

    monkeypatch.setattr(weights, "WEIGHTS_DIR", tmp_path)
    model = Sequential(Conv2d(3, 3, 3, padding=1))
    n2n_core.save(model, tmp_path / "default.safetensors")
    n2n_core.save(model, tmp_path / "mine.safetensors")
    x = torch.rand(1, 3, 8, 8)
    for spec in ("default", "mine", tmp_path / "mine.safetensors", str(tmp_path / "mine.safetensors")):
        assert torch.equal(n2n_core.load(spec)(x), model(x)), spec
    assert torch.equal(n2n_core.load()(x), model(x))  # no name: the default model
    with pytest.raises(ValueError, match=r"no weights file at nope, and no shipped model of that name \(shipped: "
                                         r"default, mine\)"):
        n2n_core.load("nope")


def test_the_three_line_python_use_of_the_readme_keeps_a_jpeg_a_jpeg(tmp_path, monkeypatch):
    from PIL import Image

    from n2n_core import weights
    from n2n_core.data import images

    monkeypatch.setattr(weights, "WEIGHTS_DIR", tmp_path)
    n2n_core.save(Sequential(Conv2d(3, 3, 3, padding=1)), tmp_path / "default.safetensors")
    Image.effect_noise((32, 24), 40).convert("RGB").save(tmp_path / "IMG_1000.jpg", quality=85)
    model = n2n_core.load("default")
    images.write(tmp_path / "IMG_1000-denoised.jpg",
                 n2n_core.denoise_picture(model, images.read(tmp_path / "IMG_1000.jpg")))
    out = images.read(tmp_path / "IMG_1000-denoised.jpg")
    assert (out.format, out.quality, out.size) == ("JPEG", 85, (32, 24))
