"""nginx in front of two API replicas on one PostgreSQL database, with one `n2n worker`: the repository's
own nginx configuration (deploy/nginx/n2n.conf, only its addresses rendered for loopback ports; see
benchmarks/cluster.py), real uvicorn replicas and TLS with a self-signed certificate.

Without nginx (Debian: apt-get install nginx) or PostgreSQL these tests skip and say why; CI sets
N2N_REQUIRE_NGINX=1 and N2N_REQUIRE_POSTGRES=1, which turn those skips into failures. Every process
started here dies with the test process. Waits poll for a state; their timeouts are hang guards only."""

from __future__ import annotations

import os
import re
import signal
import socket
import sys
import time
from pathlib import Path

import httpx
import pytest
import yaml

from app.core.config import Settings
from n2n_core.inference.runtime import cores

from tests.helpers import png_bytes, poll_until, rgb

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT))

from benchmarks.cluster import (  # noqa: E402
    NGINX_CONF, LocalCluster, nginx_binary, nginx_check, render_nginx, self_signed)

MiB = 1024 * 1024
LONG = {"dataset": "builtin", "arch": "tiny", "steps": 1_000_000, "batch_size": 2, "patch_size": 32,
        "nproc_per_node": min(2, cores())}


@pytest.fixture(scope="module")
def nginx() -> str:
    """The nginx binary; skips, saying why, when there is none (a failure with N2N_REQUIRE_NGINX=1)."""
    found = nginx_binary()
    if found is None:
        why = "nginx is not installed (Debian: apt-get install nginx); .ci/run installs it"
        if os.environ.get("N2N_REQUIRE_NGINX") == "1":
            pytest.fail(f"N2N_REQUIRE_NGINX=1 but {why}", pytrace=False)
        pytest.skip(why)
    return found


def _size(value: str) -> int:
    number, unit = re.fullmatch(r"(\d+)([kKmMgG]?)", value).groups()
    return int(number) * {"": 1, "k": 1024, "m": MiB, "g": 1024 * MiB}[unit.lower()]


# -- the configuration as deployed ------------------------------------------------------------------
def test_the_nginx_config_passes_nginx_t_and_matches_the_service_limits(nginx, tmp_path):
    self_signed(tmp_path / "certs")
    conf = tmp_path / "nginx.conf"
    conf.write_text(render_nginx(["127.0.0.1:8001", "127.0.0.1:8002"], 8080, 8443, tmp_path / "certs", tmp_path))
    r = nginx_check(nginx, conf)
    assert r.returncode == 0, r.stderr

    text = re.sub(r"#.*", "", NGINX_CONF.read_text())
    sizes = re.findall(r"client_max_body_size\s+(\S+);", text)
    defaults = Settings()
    # The first is the server's (every image endpoint), the second that of /datasets.
    assert [_size(s) for s in sizes] == [defaults.max_upload_bytes, defaults.max_dataset_bytes]
    denoise = re.search(r"location = /denoise \{(.*?)\}", text, re.S).group(1)
    assert "proxy_buffering off" in denoise and int(re.search(r"proxy_read_timeout (\d+)s", denoise).group(1)) >= 600
    assert re.search(r"listen 443 ssl;", text) and "ssl_certificate /etc/nginx/certs/n2n.crt" in " ".join(text.split())
    assert len(re.findall(r"max_fails=\d+ fail_timeout=\d+s", text)) == 4  # passive health checks in both upstreams


def test_the_cluster_profile_runs_postgres_replicas_workers_and_nginx_on_one_volume():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = {k: v for k, v in compose["services"].items() if "cluster" in v.get("profiles", [])}
    assert {"postgres", "api-1", "api-2", "worker", "worker-cpu", "nginx"} <= services.keys()
    assert "healthcheck" in services["postgres"] and services["postgres"]["image"].startswith("postgres:")
    for name in ("api-1", "api-2"):
        assert services[name]["environment"]["N2N_EMBEDDED_WORKER"] == "0" and "ports" not in services[name]
    volumes = {s: services[s]["volumes"][0].split(":")[0] for s in ("api-1", "api-2", "worker", "worker-cpu")}
    assert len(set(volumes.values())) == 1  # one shared data volume
    for name in ("api-1", "worker", "worker-cpu"):
        assert services[name]["environment"]["N2N_DATABASE_URL"].startswith("${N2N_DATABASE_URL:-postgresql://")
        assert services[name]["env_file"] == [{"path": ".env", "required": False}]  # every N2N_* from .env
    devices = services["worker"]["deploy"]["resources"]["reservations"]["devices"]
    assert any(d["driver"] == "nvidia" for d in devices) and "deploy" not in services["worker-cpu"]
    mounts = services["nginx"]["volumes"]
    assert "./deploy/nginx/n2n.conf:/etc/nginx/conf.d/default.conf:ro" in mounts
    assert any(m.startswith("./deploy/nginx/certs:/etc/nginx/certs") for m in mounts)


# -- a running cluster ------------------------------------------------------------------------------
def _denoised(replica: str) -> int:
    for line in httpx.get(f"{replica}/metrics", timeout=60).text.splitlines():
        if line.startswith("n2n_images_denoised_total "):
            return int(float(line.split()[1]))
    raise AssertionError("n2n_images_denoised_total missing")


def _job(replica: str, job_id: str) -> dict:
    return httpx.get(f"{replica}/train/{job_id}", timeout=60).json()


@pytest.mark.timeout(1200)
def test_two_replicas_behind_nginx_share_jobs_models_and_fail_over(nginx, pg_url, tiny_weights, tmp_path):
    photo = png_bytes(rgb(48, 64))
    image = {"content-type": "image/png"}
    with LocalCluster(tmp_path, database_url=pg_url, replicas=2, workers=1, weights=str(tiny_weights),
                      env={"N2N_JOB_LEASE_SECONDS": "6", "N2N_JOB_HEARTBEAT_SECONDS": "0.5"}, nginx=nginx) as cluster:
        one, two = cluster.replica_url(0), cluster.replica_url(1)
        worker = cluster.workers[0]
        try:
            with cluster.client() as c:
                # Plain HTTP only answers the health check; everything else goes to HTTPS.
                r = httpx.get(f"http://127.0.0.1:{cluster.http_port}/readyz", follow_redirects=False, timeout=60)
                assert r.status_code == 301 and r.headers["location"].startswith("https://")
                assert httpx.get(f"http://127.0.0.1:{cluster.http_port}/healthz", timeout=60).status_code == 200

                # Requests through nginx are spread over both replicas.
                for _ in range(8):
                    r = c.post("/denoise", content=photo, headers=image)
                    assert r.status_code == 200 and r.headers["x-model-id"] == "tiny", r.text
                counts = [_denoised(one), _denoised(two)]
                assert sum(counts) == 8 and min(counts) >= 2, counts

                # A background denoise job lives on the replica that took it: nginx keeps a client there.
                r = c.post("/denoise/jobs", content=photo, headers=image)
                assert r.status_code == 202, r.text
                location = r.headers["location"]
                poll_until(lambda: c.get(location).json()["status"] == "succeeded", "the denoise job done")
                assert c.get(f"{location}/result").status_code == 200

                # A training job submitted through nginx is run by the worker, data-parallel, and seen by both
                # replicas; either replica cancels it.
                r = c.post("/train", json=LONG)
                assert r.status_code == 202, r.text
                job_id = r.json()["id"]
                job = poll_until(lambda: (j := _job(one, job_id))["status"] == "running" and j["progress"]["step"] >= 2
                                 and j, "the job training under the worker")
                assert job["worker"] == {"host": socket.gethostname(), "pid": worker.pid}
                assert _job(two, job_id)["worker"] == job["worker"]
                assert httpx.post(f"{two}/train/{job_id}/cancel", headers=c.headers, timeout=60).status_code == 202
                done = poll_until(lambda: (j := _job(one, job_id))["status"] in ("cancelled", "failed", "succeeded")
                                  and j, "the job cancelled")
                assert done["status"] == "cancelled" and done["worker"] is None, done

                # Activation through nginx reaches both replicas (the contract: within 5 s; the guard is generous).
                t0 = time.monotonic()
                assert c.post("/models/fast/activate").status_code == 200
                for replica in (one, two):
                    poll_until(lambda: httpx.get(f"{replica}/readyz", timeout=60).json().get("model") == "fast",
                               f"{replica} serving 'fast'", timeout=120, every=0.05)
                print(f"activation seen by both replicas after {time.monotonic() - t0:.2f} s")
                assert c.post("/denoise", content=photo, headers=image).headers["x-model-id"] == "fast"

                # A replica killed: every request goes to the other one, none fails.
                before = _denoised(two)
                cluster.replicas[0].send_signal(signal.SIGKILL)
                cluster.replicas[0].wait()
                for _ in range(6):
                    r = c.post("/denoise", content=photo, headers=image)
                    assert r.status_code == 200, r.text
                    assert c.get(f"/train/{job_id}").json()["status"] == "cancelled"
                assert _denoised(two) == before + 6
                r = c.post("/train", json={**LONG, "steps": 2})
                assert r.status_code == 202 and c.post(f"/train/{r.json()['id']}/cancel").status_code == 202
        except BaseException:
            print(cluster.logs())
            raise
