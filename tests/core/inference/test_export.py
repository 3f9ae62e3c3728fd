"""ONNX export: every shipped model against onnxruntime, the noise estimate of NoiseAdaptive bit for bit,
the self-ensemble's flips and turns, the whole-image padding, and the refusals."""

from __future__ import annotations

import io
import json

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper

from n2n_core import models
from n2n_core.inference import export
from n2n_core.data import noise_level
from n2n_core.nn import layers
from n2n_core.nn import serialize
from n2n_core.inference.infer import denoise
from n2n_core.nn.layers import Cast, Conv2d, SelfEnsemble, Sequential
from n2n_core.inference.noise_adaptive import NoiseAdaptive
from n2n_core.nn.module import Module
from n2n_core.weights import shipped

ort = pytest.importorskip("onnxruntime")

SHIPPED = ["default", "best", "blind", "fast", "seed"]
TOLERANCE = 1e-4
ODD_SIZES = {"best": (67, 93), "blind": (125, 203)}


def session(proto: onnx.ModelProto | bytes):
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    data = proto if isinstance(proto, bytes) else proto.SerializeToString()
    return ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])


def run(sess, x: torch.Tensor) -> np.ndarray:
    return sess.run(None, {"input": x.numpy()})[0]


def largest_difference(got: np.ndarray, want: torch.Tensor) -> float:
    assert got.shape == tuple(want.shape)
    return float(np.abs(got - want.numpy()).max())


def photo_like(h: int, w: int, sigma: float, seed: int = 0) -> torch.Tensor:
    """A smooth synthetic colour image (gradients, a sine pattern, a disc) with Gaussian noise of ``sigma``
    (0..255 scale), clipped to [0, 1]: (1, 3, h, w)."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, h), torch.linspace(0, 1, w), indexing="ij")
    disc = (((yy - 0.5) ** 2 + (xx - 0.4) ** 2) < 0.08).float()
    clean = torch.stack([0.5 + 0.3 * torch.sin(7 * xx + 3 * yy), 0.2 + 0.5 * yy * (1 - disc) + 0.2 * disc,
                         0.3 + 0.4 * xx * yy])
    return (clean + sigma / 255 * torch.randn(clean.shape, generator=g)).clamp(0, 1)[None]


@pytest.fixture(scope="module", params=SHIPPED)
def shipped_model(request):
    name = request.param
    path = shipped()[name]
    model = serialize.load(path)
    card = json.loads(path.with_suffix(".json").read_text())
    proto = export.build_onnx(model, metadata=card)
    return name, model, card, proto, session(proto)


# -- every shipped model ---------------------------------------------------------------------------------------
def test_shipped_model_exports_a_checked_graph_with_its_card(shipped_model):
    name, model, card, proto, _ = shipped_model
    onnx.checker.check_model(proto, full_check=True)
    assert proto.opset_import[0].version == export.DEFAULT_OPSET
    (inp,), (out,) = proto.graph.input, proto.graph.output
    assert (inp.name, out.name) == ("input", "output")
    assert inp.type.tensor_type.elem_type == TensorProto.FLOAT == out.type.tensor_type.elem_type
    dims = [d.dim_param or d.dim_value for d in inp.type.tensor_type.shape.dim]
    assert dims == ["batch", 3, "height", "width"]
    assert [d.dim_param or d.dim_value for d in out.type.tensor_type.shape.dim] == dims
    props = {p.key: p.value for p in proto.metadata_props}
    assert json.loads(props["n2n_card"]) == card
    assert json.loads(props["n2n_architecture"]) == model.config()
    assert props["n2n_size_multiple"] == str(models.size_multiple(model))
    ops = {n.op_type for n in proto.graph.node}
    assert "Conv" in ops and "If" in ops  # If: the padding's reflect-or-replicate choice


def test_shipped_model_matches_n2n_core_on_random_input(shipped_model):
    name, model, _, _, sess = shipped_model
    x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    assert largest_difference(run(sess, x), denoise(model, x, precision="float32")) <= TOLERANCE


def test_shipped_model_matches_n2n_core_on_a_noisy_photo_of_odd_size(shipped_model):
    """333 x 517 is a multiple of no size multiple: the graph pads it by reflection as n2n_core.denoise does.
    (best, 8 passes of a large U-Net, and blind, 2 passes of it at this noise, run on smaller odd sizes to keep
    the test short.)"""
    name, model, _, _, sess = shipped_model
    x = photo_like(*ODD_SIZES.get(name, (333, 517)), sigma=30)
    assert largest_difference(run(sess, x), denoise(model, x, precision="float32")) <= TOLERANCE


def test_shipped_network_alone_matches_the_module(shipped_model):
    name, model, _, _, _ = shipped_model
    sess = session(export.build_onnx(model, whole_image=False))
    x = photo_like(32, 48, sigma=40, seed=2) * 1.2 - 0.1  # unclamped values go through unclamped
    assert largest_difference(run(sess, x), model(x)) <= TOLERANCE


# -- NoiseAdaptive: the estimate and the passes ------------------------------------------------------------------
def sigma_session():
    """A graph whose output is export.noise_sigma of its input."""
    g = export.GraphBuilder()
    sigma = g.op("Identity", [export.noise_sigma(g, "input")])
    graph = helper.make_graph(g.nodes, "sigma", [helper.make_tensor_value_info("input", TensorProto.FLOAT,
                                                                               ["n", "c", "h", "w"])],
                              [helper.make_tensor_value_info(sigma, TensorProto.DOUBLE, ["n"])], g.initializers)
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.checker.check_model(proto, full_check=True)
    return session(proto)


@pytest.mark.parametrize("max_samples", [noise_level.MAX_SAMPLES, 7])  # 7: the strided subset of large photos
def test_the_noise_estimate_is_estimate_sigma_bit_for_bit(monkeypatch, max_samples):
    monkeypatch.setattr(noise_level, "MAX_SAMPLES", max_samples)
    sess = sigma_session()
    for shape in [(2, 3, 64, 64), (1, 3, 33, 51), (3, 3, 5, 7), (1, 1, 2, 2), (1, 3, 1, 9), (2, 3, 9, 1), (1, 3, 3, 6)]:
        x = torch.rand(shape, generator=torch.Generator().manual_seed(sum(shape)))
        want = [noise_level.estimate_sigma(image) for image in x]
        assert sess.run(None, {"input": x.numpy()})[0].tolist() == want, shape


def test_blind_takes_one_pass_on_light_noise_and_two_on_heavy_noise_per_image():
    model = serialize.load(shipped()["blind"])
    light, heavy = photo_like(48, 40, sigma=8, seed=3), photo_like(48, 40, sigma=60, seed=4)
    assert [model.passes_for(x[0]) for x in (light, heavy)] == [1, 2]
    once = model.body(light)
    assert torch.equal(denoise(model.body, light, precision="float32"), denoise(model, light, precision="float32"))
    sess = session(export.build_onnx(model))
    for x in (light, heavy, torch.cat([light, heavy]), torch.cat([heavy, light])):
        assert largest_difference(run(sess, x), denoise(model, x, precision="float32")) <= TOLERANCE
    network = session(export.build_onnx(model, whole_image=False))
    both = torch.cat([light, heavy])
    assert largest_difference(run(network, both), model(both)) <= TOLERANCE
    assert largest_difference(run(network, light), once) <= TOLERANCE


def test_noise_adaptive_with_more_passes_and_a_nested_one():
    torch.manual_seed(0)
    body = models.build("tiny")
    x = torch.cat([photo_like(16, 24, sigma=5), photo_like(16, 24, sigma=80, seed=1)])
    for model in (NoiseAdaptive(body, threshold=20, passes=3), Sequential(NoiseAdaptive(body, 20, 2), Conv2d(3, 3, 1)),
                  NoiseAdaptive(body, threshold=20, passes=1)):
        sess = session(export.build_onnx(model, whole_image=False))
        assert largest_difference(run(sess, x), model(x)) <= 1e-5


# -- the self-ensemble, padding, other layers -----------------------------------------------------------------
@pytest.mark.parametrize("transforms", [1, 2, 4, 8])
def test_self_ensemble_flips_and_turns_as_n2n_core_on_a_body_that_is_not_equivariant(transforms):
    torch.manual_seed(transforms)
    model = SelfEnsemble(models.build("tiny"), transforms)
    x = torch.rand(2, 3, 8, 14)  # not square: turned images are 14 x 8
    sess = session(export.build_onnx(model, whole_image=False))
    assert largest_difference(run(sess, x), model(x)) <= 1e-5


@pytest.mark.parametrize("h, w", [(3, 5), (1, 1), (9, 3), (17, 8), (8, 8)])
def test_whole_image_pads_tiny_and_odd_sizes_as_n2n_core(h, w):
    """Reflection where the pad is smaller than the side, replication elsewhere (multiple 8 here)."""
    torch.manual_seed(0)
    model = models.unet((8, 8, 8, 8))
    sess = session(export.build_onnx(model))
    x = torch.rand(1, 3, h, w)
    assert largest_difference(run(sess, x), denoise(model, x, precision="float32")) <= 1e-5


def test_n2n_unet_and_the_seed_architecture_fresh():
    torch.manual_seed(0)
    for name in ("n2n-unet", "seed"):
        model = models.build(name)
        x = torch.rand(1, 3, 32, 64)
        sess = session(export.build_onnx(model, whole_image=False))
        assert largest_difference(run(sess, x), model(x)) <= TOLERANCE, name


def test_cast_exports_float16_and_refuses_bfloat16_below_opset_22():
    torch.manual_seed(0)
    model = Cast(models.build("tiny").to(dtype=torch.float16), torch.float16)
    x = torch.rand(1, 3, 16, 16)
    sess = session(export.build_onnx(model, whole_image=False))
    assert largest_difference(run(sess, x), model(x)) <= 1e-2  # float16 arithmetic on both sides
    ensemble = Cast(SelfEnsemble(models.build("tiny"), 2).to(dtype=torch.float16), torch.float16)
    assert largest_difference(run(session(export.build_onnx(ensemble)), x),
                              denoise(ensemble, x, precision="float32")) <= 1e-2
    reduced = Cast(models.build("tiny").to(dtype=torch.bfloat16), torch.bfloat16)
    with pytest.raises(ValueError, match="export: Cast .*bfloat16.* opset 22"):
        export.build_onnx(reduced)
    proto = export.build_onnx(reduced, opset=22)
    assert any(t.data_type == TensorProto.BFLOAT16 for t in proto.graph.initializer)


@pytest.mark.parametrize("opset", [18, 21])
def test_later_opsets(opset):
    model = serialize.load(shipped()["fast"])
    proto = export.build_onnx(model, opset=opset)
    assert proto.opset_import[0].version == opset
    x = photo_like(20, 30, sigma=25)
    assert largest_difference(run(session(proto), x), denoise(model, x, precision="float32")) <= TOLERANCE


# -- refusals, files ------------------------------------------------------------------------------------------
class _Squarer(Module):  # private name: not registered as a loadable layer type
    def forward(self, x):
        return x * x


def test_a_layer_without_an_onnx_form_is_a_value_error_naming_it():
    with pytest.raises(ValueError, match=r"export: _Squarer cannot be exported to ONNX.*Conv2d"):
        export.build_onnx(Sequential(Conv2d(3, 3, 3, padding=1), _Squarer()))


@pytest.mark.parametrize("opset", [16, 10_000, 17.0, True])
def test_a_bad_opset_is_a_value_error(opset):
    with pytest.raises(ValueError, match="export: opset must be an integer from 17"):
        export.build_onnx(models.build("tiny"), opset=opset)


def test_every_layer_type_has_a_converter():
    """The framework's layers and the product's own (NoiseAdaptive)."""
    assert {getattr(layers, name) for name in layers.__all__} | {NoiseAdaptive} == set(export.CONVERTERS)


def test_export_writes_a_path_or_a_file_and_bytes(tmp_path):
    torch.manual_seed(0)
    model = models.build("tiny")
    proto = export.export_onnx(model, tmp_path / "sub" / "tiny.onnx", metadata={"name": "tiny"})
    assert onnx.load(tmp_path / "sub" / "tiny.onnx") == proto
    buffer = io.BytesIO()
    export.export_onnx(model, buffer, metadata={"name": "tiny"})
    assert buffer.getvalue() == proto.SerializeToString() == export.to_onnx_bytes(model, metadata={"name": "tiny"})
