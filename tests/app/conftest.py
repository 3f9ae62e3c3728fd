"""Service fixtures: an app on a temporary data directory with a tiny model."""

from __future__ import annotations

import io
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image

import n2n_core
from app.config import Settings
from app.main import create_app
from n2n_core import models

TOKEN = "test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="session")
def tiny_weights(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("weights") / "tiny.safetensors"
    n2n_core.save(models.build("tiny"), path, metadata={"note": "test model"})
    return path


def make_settings(data_dir: Path, weights: Path | None, **kw) -> Settings:
    return Settings(data_dir=data_dir, weights=str(weights) if weights else None, api_token=TOKEN, **kw)


@pytest.fixture
def settings(tmp_path, tiny_weights) -> Settings:
    return make_settings(tmp_path / "data", tiny_weights)


@pytest.fixture
def client(settings):
    with TestClient(create_app(settings)) as c:
        yield c


def png_bytes(arr: np.ndarray, fmt: str = "PNG", **save) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format=fmt, **save)
    return buf.getvalue()


def rgb(h: int = 48, w: int = 64, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


# Waits poll for a state. Their timeouts are hang guards only, never speed requirements: the suite must
# pass on a machine whose cores are all busy (training there runs many times slower than when quiet).
HANG_GUARD = 300.0  # below pytest-timeout (600 s a test) so that a hang reports what it waited for


def poll_until(predicate, what: str, timeout: float = HANG_GUARD, every: float = 0.1):
    """predicate()'s first truthy value, polled every ``every`` seconds; AssertionError after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"hang guard: {what} not reached after {timeout:.0f}s")
        time.sleep(every)


def wait_for(client: TestClient, job_id: str, statuses=("succeeded", "failed", "cancelled"),
             timeout: float = HANG_GUARD) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get(f"/train/{job_id}").json()
        if job["status"] in statuses:
            return job
        time.sleep(0.2)
    raise AssertionError(f"hang guard: job {job_id} still {job['status']} after {timeout}s: {job}")
