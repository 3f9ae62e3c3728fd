"""The data folder (issue 22): N2N_DATA_DIR defaults to the user's own data folder (platformdirs), the
same whatever the working directory, so that a service started from another folder never opens an empty
store by surprise; N2N_DATA_DIR still overrides it; the service logs it at start and /readyz shows it."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import platformdirs
import pytest
from fastapi.testclient import TestClient

from app.core.config import Settings
from app.main import create_app

from tests.helpers import make_settings

ROOT = Path(__file__).resolve().parents[3]


def test_the_default_is_the_users_data_folder_whatever_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.delenv("N2N_DATA_DIR", raising=False)
    seen = []
    for cwd in (tmp_path / "a", tmp_path / "b"):
        cwd.mkdir()
        monkeypatch.chdir(cwd)
        seen.append(Settings().data_dir)
    assert seen[0] == seen[1] == Path(platformdirs.user_data_dir("n2n", appauthor=False)).absolute()
    assert seen[0].is_absolute() and tmp_path not in seen[0].parents


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="XDG_DATA_HOME is the Linux convention")
def test_a_fresh_process_started_elsewhere_finds_the_same_folder_and_n2n_data_dir_overrides_it(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "N2N_DATA_DIR"}
    env.update(XDG_DATA_HOME=str(tmp_path / "xdg"), PYTHONPATH=str(ROOT))
    show = "from app.core.config import Settings; print(Settings().data_dir)"
    folders = []
    for cwd in (ROOT, tmp_path):
        r = subprocess.run([sys.executable, "-c", show], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        folders.append(r.stdout.strip())
    assert folders == [str(tmp_path / "xdg" / "n2n")] * 2
    r = subprocess.run([sys.executable, "-c", show], cwd=tmp_path, env={**env, "N2N_DATA_DIR": "here"},
                       capture_output=True, text=True, timeout=120)
    assert r.stdout.strip() == str(tmp_path / "here")  # relative: made absolute against the working directory


def test_the_service_logs_its_data_folder_at_start_and_readyz_shows_it(tmp_path, tiny_weights, caplog):
    settings = make_settings(tmp_path / "data", tiny_weights)
    with caplog.at_level(logging.INFO, logger="uvicorn.error"), TestClient(create_app(settings)) as c:
        body = c.get("/readyz").json()
    assert body["status"] == "ready" and body["data_dir"] == str(tmp_path / "data")
    assert any(f"data dir {tmp_path / 'data'}" in r.getMessage() for r in caplog.records), caplog.text


def test_a_store_left_in_the_old_default_folder_is_pointed_at(tmp_path, monkeypatch):
    from app.core.config import default_data_dir, old_default_data_dir_note

    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    monkeypatch.chdir(tmp_path)
    assert old_default_data_dir_note(default_data_dir()) is None  # nothing there
    (tmp_path / "n2n_data").mkdir()
    (tmp_path / "n2n_data" / "jobs.sqlite3").write_bytes(b"")
    note = old_default_data_dir_note(default_data_dir())
    assert note and f"N2N_DATA_DIR={tmp_path / 'n2n_data'}" in note
    assert old_default_data_dir_note(tmp_path / "elsewhere") is None  # N2N_DATA_DIR set: nothing to say
