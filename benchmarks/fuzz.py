"""Schemathesis fuzz run of the OpenAPI schema against a local server (loopback), expecting no 5xx.

    python benchmarks/fuzz.py [--max-examples 30]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import RESULTS, free_port, start_server, stop_server  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--max-examples", type=int, default=30)
    args = ap.parse_args()
    port, token = free_port(), "fuzz-token"
    proc = start_server(Path(tempfile.mkdtemp(prefix="n2n-fuzz-")), port, token,
                        {"N2N_MAX_UPLOAD_BYTES": "2000000"})
    try:
        cmd = [str(Path(sys.executable).parent / "schemathesis"), "run", f"http://127.0.0.1:{port}/openapi.json",
               "--checks", "not_a_server_error", "-n", str(args.max_examples), "-H", f"Authorization: Bearer {token}",
               "--request-timeout", "60"]
        r = subprocess.run(cmd, capture_output=True, text=True)
        out = r.stdout + r.stderr
        print(out[-6000:])
        RESULTS.mkdir(parents=True, exist_ok=True)
        (RESULTS / "fuzz.txt").write_text(out)
        return r.returncode
    finally:
        stop_server(proc)


if __name__ == "__main__":
    sys.exit(main())
