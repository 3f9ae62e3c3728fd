"""Guards of the core's ground rules: no autograd, nothing from torch.nn (not even F.pad), grad mode left alone."""

import ast
from pathlib import Path

import pytest
import torch

import n2n_core
from n2n_core import MSE, SGD, Adam, Conv2d, LeakyReLU, NearestUpsampling, ReLU, Sequential, Sigmoid, TransposeConv2d

CORE = Path(n2n_core.__file__).parent
FORBIDDEN_MODULES = ("torch.autograd", "torch.func", "torch.optim", "torch.nn", "functorch")
FORBIDDEN_TORCH_ATTRS = {"nn", "autograd", "optim", "func"}
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


def _is_forbidden_module(name: str) -> bool:
    return any(name == m or name.startswith(m + ".") for m in FORBIDDEN_MODULES)


def _violations(path: Path) -> list[str]:
    """Every import of torch.nn (torch.nn.functional included), autograd, func or optim, and every use
    of them through ``torch`` or an alias of it; also the autograd attributes of FORBIDDEN_ATTRS."""
    tree = ast.parse(path.read_text(), str(path))
    bad = []
    torch_aliases = {"torch"}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            torch_aliases.update(a.asname for a in node.names if a.name == "torch" and a.asname)
    for node in ast.walk(tree):
        where = f"{path.name}:{getattr(node, 'lineno', '?')}"
        if isinstance(node, ast.Import):
            bad += [f"{where}: import {a.name}" for a in node.names if _is_forbidden_module(a.name)]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = {a.name for a in node.names}
            if _is_forbidden_module(node.module):
                bad.append(f"{where}: from {node.module} import {sorted(names)}")
            elif node.module == "torch" and names & FORBIDDEN_TORCH_ATTRS:
                bad.append(f"{where}: from torch import {sorted(names & FORBIDDEN_TORCH_ATTRS)}")
        elif isinstance(node, ast.Attribute):
            parts = _dotted(node).split(".")
            if node.attr in FORBIDDEN_ATTRS:
                bad.append(f"{where}: uses .{node.attr}")
            if len(parts) == 2 and parts[0] in torch_aliases and parts[1] in FORBIDDEN_TORCH_ATTRS:
                bad.append(f"{where}: uses {'.'.join(parts)}")
        elif isinstance(node, ast.Call) and _dotted(node.func) in ("importlib.import_module", "__import__"):
            arg = node.args[0] if node.args else None
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str) and _is_forbidden_module(arg.value):
                bad.append(f"{where}: imports {arg.value} dynamically")
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
    assert lines == {2, 3, 5, 6}  # the uses of F on lines 4 and 7 are covered by the import on line 2


@pytest.mark.parametrize("source", [
    "import torch.nn",
    "import torch.nn.functional as F",
    "import torch.nn as nn",
    "from torch.nn import functional as F",
    "from torch.nn.functional import pad",
    "from torch.nn import Conv2d",
    "from torch import nn",
    "from torch import nn as tnn",
    "import torch\ny = torch.nn.functional.pad(x, (1, 1))",
    "import torch\ntorch.nn.Conv2d",
    "import torch as T\nT.nn.functional.relu(x)",
    "import importlib\nimportlib.import_module('torch.nn.functional')",
    "__import__('torch.nn')",
])
def test_the_guard_catches_any_use_of_torch_nn(tmp_path, source):
    probe = tmp_path / "probe.py"
    probe.write_text(source + "\n")
    assert _violations(probe), source


@pytest.mark.parametrize("source", [
    "import torch\ny = torch.nonzero(x)\nz = torch.nanmean(x)",
    "import torch\nfrom torch import Tensor",
    "from .functional.pad import pad\ny = pad(x, {1: (1, 1)})",
    "import numpy as np\nnp.nan",
])
def test_the_guard_lets_plain_tensor_code_through(tmp_path, source):
    probe = tmp_path / "probe.py"
    probe.write_text(source + "\n")
    assert not _violations(probe), source


def _every_layer_and_a_step() -> list[torch.Tensor]:
    torch.manual_seed(0)
    model = Sequential(Conv2d(3, 4, 3, stride=2, padding=1), ReLU(), TransposeConv2d(4, 4, 3, 2, 1, 1),
                       LeakyReLU(0.1), NearestUpsampling(2), Conv2d(4, 3, 3, stride=2, padding=1), Sigmoid())
    x, t = torch.rand(2, 3, 8, 8), torch.rand(2, 3, 8, 8)
    outs = [model(x)]
    for opt in (SGD(model, lr=0.1, momentum=0.9), Adam(model, lr=1e-3)):
        y = model.forward_and_backward(x, lambda y: MSE().vjp(y, t))
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
