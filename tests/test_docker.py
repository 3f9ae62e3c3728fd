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


def _pins(lines: list[str]) -> dict[str, str]:
    """{normalised name (extras dropped): version} of ``name[extras]==version`` requirement lines."""
    pins = {}
    for line in lines:
        m = re.match(r"\s*([A-Za-z0-9_.-]+)(?:\[[^]]*\])?==([^\s;#]+)", line)
        if m:
            pins[re.sub(r"[-_.]+", "-", m.group(1)).lower()] = m.group(2)
    return pins


def test_the_image_has_the_projects_dependencies_at_the_pinned_versions():
    """The image installs n2n with --no-deps over requirements-docker.txt and the base image's torch: a
    dependency missing there, or at another version, would only show in the container (issue 22: the
    base image had torch 2.11 while the project pins 2.13)."""
    import tomllib

    project = _pins(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"])
    image = _pins((ROOT / "requirements-docker.txt").read_text().splitlines())
    torch = project.pop("torch")
    assert project == image, {k: (project.get(k), image.get(k)) for k in set(project) | set(image)
                              if project.get(k) != image.get(k)}
    base = re.search(r"^FROM\s+pytorch/pytorch:(\S+)", (ROOT / "Dockerfile").read_text(), re.M)
    assert base and base.group(1).split("-")[0] == torch, (base and base.group(0), torch)
    assert {"pillow-heif", "rawpy", "platformdirs"} <= set(image)


def test_compose_gives_every_n2n_service_the_env_file_the_gpu_and_the_services_limits():
    from app.core.config import Settings

    text = (ROOT / "docker-compose.yml").read_text()
    services = yaml.safe_load(text)["services"]
    n2n = {name: s for name, s in services.items() if s.get("image", "").startswith("n2n:")}
    assert set(n2n) == {"n2n", "n2n-cpu", "api-1", "api-2", "worker", "worker-cpu"}
    for name, service in n2n.items():  # the N2N_* settings of .env reach every n2n container (.env optional)
        assert {"path": ".env", "required": False} in service["env_file"], name
        assert service["environment"]["N2N_DATA_DIR"] == "/data", name
    for name in ("api-1", "api-2"):  # the replicas denoise on the GPU, as the single-machine service does
        api = n2n[name]
        assert api["environment"]["N2N_DEVICE"] in ("auto", "${N2N_DEVICE:-auto}"), name
        assert api["deploy"] == n2n["n2n"]["deploy"] == n2n["worker"]["deploy"], name
    # One default everywhere: compose overrides no limit of the service (.env still may), and nginx's body
    # limit is the service's (tests/app/api/test_nginx.py checks that one against Settings).
    assert not [(name, k) for name, service in n2n.items() for k in service["environment"] if k.startswith("N2N_MAX_")]
    nginx = (ROOT / "deploy/nginx/n2n.conf").read_text()
    limit = Settings.model_fields["max_upload_bytes"].default
    assert f"client_max_body_size {limit // 2**20}m;" in nginx

    # deploy/compose.cpu.yml, for hosts without a GPU: it only drops the replicas' reservation
    class Loader(yaml.SafeLoader):
        pass

    Loader.add_constructor("!reset", lambda loader, node: "!reset")
    cpu = yaml.load((ROOT / "deploy/compose.cpu.yml").read_text(), Loader=Loader)["services"]
    assert cpu == {name: {"deploy": "!reset", "environment": {"N2N_DEVICE": "cpu"}} for name in ("api-1", "api-2")}


IMPORTS = ["numpy", "PIL", "safetensors", "skimage", "imageio", "tifffile", "cv2", "matplotlib", "tqdm", "fastapi",
           "uvicorn", "pydantic", "pydantic_settings", "multipart", "onnx", "pillow_heif", "rawpy", "platformdirs"]


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
