"""Service fixtures: an app on a temporary data directory with a tiny model."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest
import torch
from fastapi.testclient import TestClient

import n2n_core
from app.core.config import Settings
from app.main import create_app
from n2n_core import models

from ..helpers import make_settings


@pytest.fixture(scope="session")
def tiny_weights(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("weights") / "tiny.safetensors"
    n2n_core.save(models.build("tiny"), path, metadata={"note": "test model"})
    return path


@pytest.fixture
def settings(tmp_path, tiny_weights) -> Settings:
    return make_settings(tmp_path / "data", tiny_weights)


@pytest.fixture
def client(settings):
    with TestClient(create_app(settings)) as c:
        yield c


# -- PostgreSQL: a fresh database per test on the server of N2N_TEST_DATABASE_URL ----------------------
PG_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


def _pg_admin_url() -> str:
    return os.environ.get("N2N_TEST_DATABASE_URL") or PG_ADMIN_URL


@pytest.fixture(scope="session")
def pg_server() -> str:
    """The admin URL of a PostgreSQL server that answers. Skips, saying why, when none does; with
    N2N_REQUIRE_POSTGRES=1 (CI) that is a failure instead."""
    import psycopg

    url = _pg_admin_url()
    try:
        psycopg.connect(url, connect_timeout=5, autocommit=True).close()
    except psycopg.Error as e:
        why = (f"no PostgreSQL server answers at {url.split('@')[-1]} (set N2N_TEST_DATABASE_URL): "
               f"{str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__}")
        if os.environ.get("N2N_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"N2N_REQUIRE_POSTGRES=1 but {why}", pytrace=False)
        pytest.skip(why)
    return url


@pytest.fixture
def pg_url(pg_server) -> str:
    """N2N_DATABASE_URL of a fresh, empty database, dropped after the test."""
    import psycopg
    from psycopg import sql

    name = f"n2n_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_server, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    base, _, _ = pg_server.rpartition("/")
    yield f"{base}/{name}"
    with psycopg.connect(pg_server, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
