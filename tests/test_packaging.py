"""The wheel of a plain `pip install .`: it holds every package of the source tree and the shipped models (the
top-level weights/, package n2n_weights), and n2n_core finds those models where the wheel installs them.

The wheel is built offline (pip, --no-build-isolation --no-index: the build backend installed here) from a copy
of the sources, so the checkout's build/ and egg-info are neither used nor touched."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ("pyproject.toml", "README.md", "n2n_core", "app", "weights")
SKIPPED = shutil.ignore_patterns("__pycache__", "*.pyc", "*.ckpt.safetensors")


def _shipped_models() -> list[str]:
    return sorted(p.name[: -len(".safetensors")] for p in (ROOT / "weights").glob("*.safetensors")
                  if not p.name.endswith(".ckpt.safetensors"))


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    for module, why in (("pip", "pip builds the wheel"), ("setuptools", "setuptools is the build backend")):
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"{module} is not installed in this environment: {why} (no network build here)")
    backend = Path(importlib.util.find_spec("setuptools").origin).parent
    if not (backend / "command" / "bdist_wheel.py").is_file() and importlib.util.find_spec("wheel") is None:
        pytest.skip("this setuptools (< 70.1) needs the wheel package to build a wheel, and it is not installed")
    src = tmp_path_factory.mktemp("src")
    for name in SOURCES:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, src / name, ignore=SKIPPED)
        else:
            shutil.copy2(ROOT / name, src / name)
    # a training checkpoint beside a model: never shipped
    (src / "weights" / "default.ckpt.safetensors").write_bytes(b"checkpoint")
    out = tmp_path_factory.mktemp("wheel")
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
                        "--disable-pip-version-check", "-q", "-w", str(out), str(src)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    (path,) = out.glob("n2n-*.whl")
    return path


def test_the_wheel_ships_every_model_with_its_card(wheel):
    models = _shipped_models()
    assert "default" in models
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        for model in models:
            for suffix in (".safetensors", ".json", ".history.png"):
                source = ROOT / "weights" / f"{model}{suffix}"
                if suffix == ".history.png" and not source.exists():
                    continue
                assert f"n2n_weights/{model}{suffix}" in names, f"{model}{suffix} is not in {wheel.name}"
                assert z.getinfo(f"n2n_weights/{model}{suffix}").file_size == source.stat().st_size
            card = json.loads(z.read(f"n2n_weights/{model}.json"))
            assert card == json.loads((ROOT / "weights" / f"{model}.json").read_text())
    assert "n2n_weights/default.ckpt.safetensors" not in names


def test_the_wheel_holds_every_module_and_data_file_of_the_packages(wheel):
    """pyproject.toml lists the packages (the weights/ mapping needs the list): a package left off it is caught."""
    expected = {p.relative_to(ROOT).as_posix() for top in ("n2n_core", "app") for p in (ROOT / top).rglob("*.py")
                if "__pycache__" not in p.parts}
    expected |= {p.relative_to(ROOT).as_posix() for p in (ROOT / "app" / "static").iterdir() if p.is_file()}
    expected |= {p.relative_to(ROOT).as_posix() for p in (ROOT / "app" / "store" / "migrations").glob("*.mako")}
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
    assert sorted(expected - names) == []


def test_an_installed_wheel_finds_its_shipped_models(wheel, tmp_path):
    """Unpacked as pip installs it (site-packages first on the path, no checkout around), n2n_core lists the
    wheel's models and loads the default one."""
    site = tmp_path / "site-packages"
    with zipfile.ZipFile(wheel) as z:
        z.extractall(site)
    code = ("import json, n2n_core, n2n_core.weights as w; m = n2n_core.load('default'); "
            "print(json.dumps([n2n_core.__file__, str(w.WEIGHTS_DIR), sorted(w.shipped()), type(m).__name__]))")
    env = {k: v for k, v in os.environ.items() if k != "N2N_WEIGHTS_DIR"}
    env["PYTHONPATH"] = str(site)
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    module, weights_dir, models, model = json.loads(r.stdout.strip().splitlines()[-1])
    assert Path(module).is_relative_to(site), module
    assert Path(weights_dir) == site / "n2n_weights"
    assert models == _shipped_models() and model
