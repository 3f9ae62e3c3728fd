"""A short schemathesis run against a real server on loopback: no 5xx for any generated request."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]


@pytest.mark.slow
def test_schemathesis_finds_no_server_errors():
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "fuzz.py"), "--max-examples", "8"],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
    assert "passed" in r.stdout
