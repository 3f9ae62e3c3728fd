"""The public names, imported from their documented places, and 0.1's flat module paths kept working.

The documented places are the import lines of README.md's code blocks, the exports of ``n2n_core`` and
``n2n_core.compat``, the `n2n` command and ``app.main:app``. A module that moved into a room of n2n_core
(``n2n_core/_moved.py``) is the same module object under its old name and its new one.
"""

import importlib
import re
import subprocess
import sys

import pytest

import n2n_core
from n2n_core._moved import MOVED, new_name
from tests.helpers import ROOT

README_IMPORTS = sorted({line.split("#")[0].strip() for line in (ROOT / "README.md").read_text().splitlines()
                         if re.match(r"\s*(from (n2n_core|app)[\w.]* import |import (n2n_core|app)\b)", line)})


def test_the_readme_shows_imports():
    assert len(README_IMPORTS) >= 3, README_IMPORTS


@pytest.mark.parametrize("statement", README_IMPORTS)
def test_each_import_the_readme_shows_works(statement):
    exec(statement, {})  # noqa: S102 - the README's own lines


def test_every_exported_name_resolves_from_the_package():
    for name in n2n_core.__all__:
        assert getattr(n2n_core, name) is not None, name
    for name in ("load", "denoise", "denoise_picture", "Module", "Conv2d", "NoiseAdaptive", "Adam", "MSE", "psnr"):
        assert name in n2n_core.__all__
    assert callable(n2n_core.load) and callable(n2n_core.denoise)


def test_compat_exports_the_course_api():
    compat = importlib.import_module("n2n_core.compat")
    for name in ("Model", "Conv2d", "TransposeConv2d", "NearestUpsampling", "ReLU", "Sigmoid", "Sequential", "MSE",
                 "SGD"):
        assert hasattr(compat, name), name


def test_the_service_and_the_command_are_where_they_were():
    from app.main import app

    assert app.title
    out = subprocess.run([sys.executable, "-m", "n2n_core.cli", "--help"], capture_output=True, text=True,
                         timeout=120, cwd=ROOT)
    assert out.returncode == 0 and "train" in out.stdout and "denoise" in out.stdout, out.stderr


@pytest.mark.parametrize("old", sorted(MOVED))
def test_a_moved_module_is_the_same_object_under_its_old_path(old):
    moved = importlib.import_module(f"n2n_core.{old}")
    new = importlib.import_module(new_name(f"n2n_core.{old}", "n2n_core"))
    assert moved is new
    assert new.__spec__.name == new.__name__  # the alias did not take the module's own spec


def test_old_from_imports_give_the_same_classes():
    from n2n_core.data import open_dataset as datasets_open
    from n2n_core.data.datasets import open_dataset
    from n2n_core.layers import Conv2d as old_conv
    from n2n_core.nn.layers import Conv2d
    from n2n_core.train import Trainer as old_trainer
    from n2n_core.training.train import Trainer

    assert old_conv is Conv2d and old_trainer is Trainer and datasets_open is open_dataset


def test_an_unknown_old_path_is_still_an_import_error():
    with pytest.raises(ModuleNotFoundError, match=r"n2n_core\.no_such_module"):
        importlib.import_module("n2n_core.no_such_module")
