"""A cluster on one machine, for the tests and the benchmarks: nginx, with the repository's own
``deploy/nginx/n2n.conf`` rendered for loopback ports, in front of API replicas (``n2n serve``) and
``n2n worker`` processes that share one store and one data directory.

Only the addresses change in the rendered configuration (the replicas' ``server`` lines, the
``listen`` ports, the certificate folder); every other directive is the one deployed. nginx runs as a
single foreground process (``master_process off``) under a working folder of its own.

Every process started here dies with the process that started it: each is started through a small
Python trampoline that asks the kernel for SIGKILL when its parent goes
(``n2n_core.inference.runtime.die_with_parent``), then ``exec``s the real program, which keeps that request.

    with LocalCluster(workdir, database_url=url, replicas=2, workers=1) as cluster:
        client = cluster.client()          # https through nginx, trusting the cluster's self-signed certificate
        cluster.replica_url(0)             # one replica directly (http)
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import ssl
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.common import free_port  # noqa: E402
NGINX_CONF = ROOT / "deploy" / "nginx" / "n2n.conf"
SELF_SIGNED = ROOT / "deploy" / "nginx" / "self-signed.sh"
HANG_GUARD = 600.0  # seconds to wait for a process to answer; only a hang takes this long

# Set PR_SET_PDEATHSIG, then become the real program (the pid stays the same).
_TRAMPOLINE = ("import os, sys; from n2n_core.inference.runtime import die_with_parent; die_with_parent(int(sys.argv[1])); "
               "os.execvp(sys.argv[2], sys.argv[2:])")
_SERVER_LINE = re.compile(  # the upstream's server lines, from api-1's on
    r"^(?P<indent>[ \t]*)server api-1:8000(?P<params>[^;]*);\n(?:[ \t]*server api-\d+:8000[^;]*;\n)*", re.M)


def nginx_binary() -> str | None:
    """The nginx executable (Debian puts it in /usr/sbin, often not on a user's PATH), or None."""
    return shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx")
                                          if os.access(p, os.X_OK)), None)


def self_signed(folder: Path) -> Path:
    """A self-signed certificate for 127.0.0.1 and localhost made by deploy/nginx/self-signed.sh (as the
    README says): ``folder``/n2n.crt and n2n.key. Returns the certificate's path."""
    subprocess.run(["sh", str(SELF_SIGNED), str(folder)], check=True, capture_output=True, timeout=120)
    return folder / "n2n.crt"


def render_nginx(replicas: list[str], http_port: int, https_port: int, cert_dir: Path, workdir: Path) -> str:
    """A complete nginx.conf: ``deploy/nginx/n2n.conf`` inside an http {} block, with ``replicas``
    (host:port) in its upstreams, the listen ports on 127.0.0.1, the certificates from ``cert_dir``, and
    the pid file, logs and temporary files under ``workdir``. The access log names the replica of each request."""
    site = NGINX_CONF.read_text()
    site, upstreams = _SERVER_LINE.subn(
        lambda m: "".join(f"{m['indent']}server {r}{m['params']};\n" for r in replicas), site)
    listens = (("listen 80;", f"listen 127.0.0.1:{http_port};"),
               ("listen 443 ssl;", f"listen 127.0.0.1:{https_port} ssl;"))
    for old, new in listens:
        if site.count(old) != 1:
            raise ValueError(f"{NGINX_CONF.name}: expected one '{old}'")
        site = site.replace(old, new)
    site = site.replace("/etc/nginx/certs/", f"{cert_dir}/")
    if upstreams != 2 or "api-" in re.sub(r"#.*", "", site):
        raise ValueError(f"{NGINX_CONF.name}: its upstreams no longer have the 'server api-N:8000' lines this renders")
    temp = "\n".join(f"    {kind}_temp_path {workdir}/{kind};" for kind in ("client_body", "proxy", "fastcgi", "uwsgi",
                                                                              "scgi"))
    return f"""daemon off;
master_process off;
pid {workdir}/nginx.pid;
error_log {workdir}/error.log notice;
events {{ worker_connections 1024; }}
http {{
    log_format n2n '$remote_addr "$request" $status upstream=$upstream_addr rt=$request_time';
    access_log {workdir}/access.log n2n;
    default_type application/octet-stream;
{temp}
{site}
}}
"""


def nginx_check(nginx: str, conf: Path) -> subprocess.CompletedProcess:
    """``nginx -t`` on a rendered configuration."""
    return subprocess.run([nginx, "-t", "-p", str(conf.parent), "-c", str(conf), "-e", str(conf.parent / "error.log")],
                          capture_output=True, text=True, timeout=120)


def spawn(argv: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    """Start ``argv`` so that it dies with this process; its output goes to ``log``."""
    with open(log, "ab") as fh:
        return subprocess.Popen([sys.executable, "-c", _TRAMPOLINE, str(os.getpid()), *argv], cwd=ROOT, env=env,
                                stdout=fh, stderr=subprocess.STDOUT)


def stop(proc: subprocess.Popen, grace: float = 30.0) -> None:
    """SIGTERM, then SIGKILL after ``grace`` seconds; reaped either way."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
    proc.wait()


def answers(url: str, context: ssl.SSLContext | None = None) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=10, context=context) as r:
            return r.status == 200
    except OSError:
        return False


class LocalCluster:
    """nginx in front of ``replicas`` API replicas (``N2N_EMBEDDED_WORKER=0``) and ``workers`` `n2n worker`
    processes, on ``database_url`` (None: SQLite in the shared data directory) and ``workdir``/data.

    ``env``: more settings for every n2n process (the replicas and workers get one torch thread each
    unless it says otherwise). ``keep_logs``: for a ``workdir`` deleted afterwards, a folder that the logs
    are copied to when the cluster fails to start or its block raises; the error names that folder."""

    def __init__(self, workdir: Path, *, database_url: str | None = None, replicas: int = 2, workers: int = 0,
                 weights: str | None = None, token: str = "cluster-token", env: dict[str, str] | None = None,
                 nginx: str | None = None, keep_logs: Path | None = None) -> None:
        self.workdir, self.token = Path(workdir), token
        self.keep_logs = Path(keep_logs) if keep_logs else None
        self.data_dir = self.workdir / "data"
        self.nginx = nginx or nginx_binary()
        if self.nginx is None:
            raise FileNotFoundError("nginx is not installed (Debian: apt-get install nginx)")
        self.n_replicas, self.n_workers = replicas, workers
        self.env = {**os.environ, "N2N_DATA_DIR": str(self.data_dir), "N2N_API_TOKEN": token,
                    "N2N_EMBEDDED_WORKER": "0", "N2N_DEVICE": "cpu", "N2N_THREADS": "1", "OMP_NUM_THREADS": "1",
                    **({"N2N_DATABASE_URL": database_url} if database_url else {}),
                    **({"N2N_WEIGHTS": weights} if weights else {}), **(env or {})}
        self.ports: list[int] = []
        self.replicas: list[subprocess.Popen] = []
        self.workers: list[subprocess.Popen] = []
        self.proxy: subprocess.Popen | None = None
        self.http_port = self.https_port = 0
        self.cert: Path | None = None

    # -- addresses ---------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        """nginx over TLS."""
        return f"https://127.0.0.1:{self.https_port}"

    def replica_url(self, i: int) -> str:
        return f"http://127.0.0.1:{self.ports[i]}"

    def tls(self) -> ssl.SSLContext:
        """A TLS context that trusts the cluster's self-signed certificate (and verifies it)."""
        return ssl.create_default_context(cafile=str(self.cert))

    def client(self, **kw):
        import httpx

        return httpx.Client(base_url=self.url, verify=self.tls(), headers={"Authorization": f"Bearer {self.token}"},
                            **{"timeout": HANG_GUARD, **kw})

    # -- life --------------------------------------------------------------------------------------
    def __enter__(self) -> LocalCluster:
        try:
            self.start()
        except BaseException as e:
            self.close()
            if self.keep_logs is not None:  # the workdir may be deleted: the error names the copy
                self.save_logs(self.keep_logs)
                if str(self.keep_logs) not in str(e):
                    raise RuntimeError(f"{e} (logs: {self.keep_logs})") from e
            raise
        return self

    def __exit__(self, exc_type, *exc) -> None:
        self.close()
        if exc_type is not None and self.keep_logs is not None:
            print(f"cluster logs kept in {self.save_logs(self.keep_logs)}", file=sys.stderr, flush=True)

    @property
    def log_folder(self) -> Path:
        return self.workdir / "logs"

    def save_logs(self, dest: Path) -> Path:
        """Copy every log (the processes' and nginx's) to ``dest``, a folder that outlives the workdir;
        returns it."""
        dest.mkdir(parents=True, exist_ok=True)
        for log in sorted(self.log_folder.glob("*.log")):
            shutil.copy2(log, dest / log.name)
        for log in sorted((self.workdir / "nginx").glob("*.log")):
            shutil.copy2(log, dest / f"nginx-{log.name}")
        return dest

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        logs = self.log_folder
        logs.mkdir(exist_ok=True)
        self.ports = [free_port() for _ in range(self.n_replicas)]
        for i, port in enumerate(self.ports):
            self.replicas.append(spawn([sys.executable, "-m", "n2n_core.cli", "serve", "--host", "127.0.0.1",
                                        "--port", str(port), "--log-level", "warning"], self.env,
                                       logs / f"api-{i + 1}.log"))
        for i in range(self.n_workers):
            self.workers.append(spawn([sys.executable, "-m", "n2n_core.cli", "worker"], self.env,
                                      logs / f"worker-{i + 1}.log"))
        certs = self.workdir / "certs"
        self.cert = self_signed(certs)
        self.http_port, self.https_port = free_port(), free_port()
        nginx_dir = self.workdir / "nginx"
        nginx_dir.mkdir(exist_ok=True)
        conf = nginx_dir / "nginx.conf"
        conf.write_text(render_nginx([f"127.0.0.1:{p}" for p in self.ports], self.http_port, self.https_port, certs,
                                     nginx_dir))
        check = nginx_check(self.nginx, conf)
        if check.returncode != 0:
            raise RuntimeError(f"nginx -t failed:\n{check.stderr}")
        for i in range(self.n_replicas):
            self.wait_ready(i)
        self.proxy = spawn([self.nginx, "-p", str(nginx_dir), "-c", str(conf), "-e", str(nginx_dir / "error.log")],
                           self.env, logs / "nginx.log")
        self._wait(lambda: answers(f"http://127.0.0.1:{self.http_port}/healthz"), self.proxy, "nginx")

    def wait_ready(self, i: int) -> None:
        self._wait(lambda: answers(f"{self.replica_url(i)}/readyz"), self.replicas[i], f"replica {i + 1}")

    def _wait(self, ready, proc: subprocess.Popen, what: str) -> None:
        deadline = time.monotonic() + HANG_GUARD
        while not ready():
            if proc.poll() is not None:
                where = self.keep_logs or self.log_folder  # keep_logs: copied there when the start fails
                raise RuntimeError(f"{what} exited with code {proc.returncode}; see {where}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"hang guard: {what} not answering after {HANG_GUARD:.0f} s")
            time.sleep(0.2)

    def close(self) -> None:
        for proc in [*self.workers, *([self.proxy] if self.proxy else []), *self.replicas]:
            stop(proc)

    def logs(self) -> str:
        """The tail of every log, for a failure message."""
        parts = []
        for log in sorted(self.log_folder.glob("*.log")) + sorted((self.workdir / "nginx").glob("*.log")):
            parts.append(f"--- {log.name}\n{log.read_text(errors='replace')[-3000:]}")
        return "\n".join(parts)
