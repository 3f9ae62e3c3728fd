"""A real server (uvicorn in a subprocess): abandoned requests give their slot back, SIGTERM stops
running work at its next tile, and shutdown has a deadline."""

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import HANG_GUARD, png_bytes

ROOT = Path(__file__).resolve().parents[3]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=30) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def _poll(predicate, what: str, guard: float = HANG_GUARD):
    deadline = time.monotonic() + guard
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"{what}: not seen within {guard:.0f} s")


def _metric(port: int, name: str) -> float:
    for line in _get(port, "/metrics")[1].splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"metric {name} missing")


@pytest.fixture
def server(tmp_path, tiny_weights):
    """(port, process) of `uvicorn app.main:app` with the tiny model and 64-px tiles (many tiles per photo)."""
    port = _free_port()
    env = {**os.environ, "N2N_DATA_DIR": str(tmp_path / "data"), "N2N_WEIGHTS": str(tiny_weights),
           "N2N_TILE": "64", "N2N_QUEUE_LIMIT": "2", "N2N_API_TOKEN": "t", "N2N_SHUTDOWN_SECONDS": "60"}
    proc = subprocess.Popen([sys.executable, "-m", "uvicorn", "app.main:app", "--host", "127.0.0.1",
                             "--port", str(port)], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        _poll(lambda: proc.poll() is not None or _ready(port), "server start")
        assert proc.poll() is None, proc.stdout.read()
        yield port, proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(HANG_GUARD)


def _ready(port: int) -> bool:
    try:
        return _get(port, "/readyz")[0] == 200
    except OSError:
        return False


def _big_photo() -> bytes:
    """A 1536x1536 PNG that compresses well: hundreds of 64-px tiles, seconds of work for the tiny model."""
    ramp = np.linspace(0, 255, 1536, dtype=np.float32)
    return png_bytes(np.stack([np.add.outer(ramp, ramp) / 2] * 3, axis=-1).astype(np.uint8))


def _send(port: int, body: bytes) -> socket.socket:
    """POST /denoise with the whole body sent; the answer is left unread."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=HANG_GUARD)
    sock.sendall(b"POST /denoise HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"
                 + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
    return sock


def _status_line(sock: socket.socket) -> str:
    data = b""
    while b"\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    return data.split(b"\r\n")[0].decode()


def test_abandoned_requests_are_cancelled_and_give_their_slots_back(server):
    port, _ = server
    photo = _big_photo()
    socks = [_send(port, photo), _send(port, photo)]  # the whole line (N2N_QUEUE_LIMIT=2)...
    _poll(lambda: _metric(port, "n2n_denoise_queue_waiting") == 2, "both requests admitted")
    for sock in socks:
        sock.close()  # ...walks away
    _poll(lambda: _metric(port, "n2n_denoise_abandoned_total") == 2, "both abandoned requests cancelled")
    assert _metric(port, "n2n_denoise_queue_waiting") == 0
    assert _metric(port, "n2n_images_denoised_total") == 0  # neither was worked to the end
    small = png_bytes(np.full((32, 32, 3), 128, np.uint8))
    with _send(port, small) as sock:
        assert _status_line(sock) == "HTTP/1.1 200 OK"


def test_sigterm_cancels_running_work_at_its_next_tile_and_exits(server):
    port, proc = server
    sock = _send(port, _big_photo())
    _poll(lambda: _metric(port, "n2n_denoise_queue_waiting") == 1, "request admitted")
    proc.send_signal(signal.SIGTERM)
    status = _status_line(sock)
    sock.close()
    assert status.startswith("HTTP/1.1 503"), status  # stopped between tiles, not worked to the end
    proc.wait(HANG_GUARD)
    output = proc.stdout.read()
    assert "no new work" in output and "Traceback" not in output


def test_shutdown_deadline_ends_a_process_that_will_not_stop(tmp_path):
    """Whatever hangs (a stuck worker thread, a slow request), the process is gone N2N_SHUTDOWN_SECONDS
    after the signal, with a log line saying so."""
    script = textwrap.dedent("""
        import logging, threading, time
        from app.core.shutdown import stop_on_signals
        logging.basicConfig()
        stopping = threading.Event()
        with stop_on_signals(stopping, 0.5):
            print("ready", flush=True)
            while True:  # ignores the stop request
                time.sleep(0.05)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(HANG_GUARD) == 1
    assert "N2N_SHUTDOWN_SECONDS" in proc.stderr.read()
