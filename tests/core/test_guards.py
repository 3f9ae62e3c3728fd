"""Guards of the core's ground rules: no autograd, no torch.nn layers, grad mode left alone."""

import ast
from pathlib import Path

import pytest
import torch

import n2n_core
from n2n_core import MSE, SGD, Adam, Conv2d, LeakyReLU, NearestUpsampling, ReLU, Sequential, Sigmoid, TransposeConv2d

CORE = Path(n2n_core.__file__).parent
ALLOWED_FUNCTIONAL = {"fold", "unfold", "pad"}
FORBIDDEN_MODULES = ("torch.autograd", "torch.func", "torch.optim", "torch.nn", "functorch")
FORBIDDEN_ATTRS = {
    "backward", "requires_grad", "requires_grad_", "no_grad", "enable_grad", "set_grad_enabled", "inference_mode",
    "conv2d", "conv_transpose2d", "convolution", "conv1d", "conv3d", "_convolution", "mkldnn_convolution",
}


def _dotted(node: ast.AST) -> str:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
    return ".".join(reversed(parts))


def _violations(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), str(path))
    bad = []
    functional_aliases = set()
    for node in ast.walk(tree):
        where = f"{path.name}:{getattr(node, 'lineno', '?')}"
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name == "torch.nn.functional":
                    functional_aliases.add(a.asname or a.name)
                elif a.name.startswith(FORBIDDEN_MODULES):
                    bad.append(f"{where}: import {a.name}")
        elif isinstance(node, ast.ImportFrom) and node.module:
            mod = node.module
            names = {a.name for a in node.names}
            if mod == "torch.nn.functional":
                if names - ALLOWED_FUNCTIONAL:
                    bad.append(f"{where}: from torch.nn.functional import {sorted(names - ALLOWED_FUNCTIONAL)}")
            elif mod == "torch.nn" and names == {"functional"}:
                functional_aliases.update(a.asname or a.name for a in node.names)
            elif mod.startswith(FORBIDDEN_MODULES):
                bad.append(f"{where}: from {mod} import ...")
            elif mod == "torch" and names & {"nn", "autograd", "optim", "func"}:
                bad.append(f"{where}: from torch import {sorted(names & {'nn', 'autograd', 'optim', 'func'})}")
        elif isinstance(node, ast.Attribute):
            dotted = _dotted(node)
            if node.attr in FORBIDDEN_ATTRS:
                bad.append(f"{where}: uses .{node.attr}")
            if dotted.startswith(("torch.autograd", "torch.func", "torch.optim")):
                bad.append(f"{where}: uses {dotted}")
            if dotted.startswith("torch.nn.") and dotted != "torch.nn.functional" and not any(
                dotted == f"torch.nn.functional.{n}" for n in ALLOWED_FUNCTIONAL
            ):
                bad.append(f"{where}: uses {dotted}")
            head = dotted.split(".")[0]
            if head in functional_aliases and dotted.count(".") == 1 and node.attr not in ALLOWED_FUNCTIONAL:
                bad.append(f"{where}: uses {dotted}")
    return bad


def test_core_imports_nothing_forbidden():
    files = sorted(CORE.rglob("*.py"))
    assert len(files) > 5
    bad = [v for f in files for v in _violations(f)]
    assert not bad, "\n".join(bad)


def test_the_guard_catches_violations(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text("import torch\nimport torch.nn.functional as F\nfrom torch import nn\ny = F.relu(1)\n"
                     "torch.autograd.grad\nx.backward()\nF.unfold(x, 3)\n")
    lines = {int(v.split(":")[1]) for v in _violations(probe)}
    assert lines == {3, 4, 5, 6}


def _every_layer_and_a_step() -> list[torch.Tensor]:
    torch.manual_seed(0)
    model = Sequential(Conv2d(3, 4, 3, stride=2, padding=1), ReLU(), TransposeConv2d(4, 4, 3, 2, 1, 1),
                       LeakyReLU(0.1), NearestUpsampling(2), Conv2d(4, 3, 3, stride=2, padding=1), Sigmoid())
    x, t = torch.rand(2, 3, 8, 8), torch.rand(2, 3, 8, 8)
    outs = [model(x)]
    for opt in (SGD(model, lr=0.1, momentum=0.9), Adam(model, lr=1e-3)):
        y = model.forward_and_vjp(x, lambda y: MSE().vjp(y, t))
        opt.step()
        outs += [y, MSE()(y, t)] + model.parameters()
    return outs


@pytest.mark.parametrize("mode", [False, True])
def test_grad_mode_is_irrelevant_and_untouched(mode):
    with torch.set_grad_enabled(mode):
        outs = _every_layer_and_a_step()
        assert torch.is_grad_enabled() is mode
    assert not any(o.requires_grad for o in outs)
    with torch.set_grad_enabled(not mode):
        other = _every_layer_and_a_step()
    for a, b in zip(outs, other):
        assert torch.equal(a, b)
