"""Benchmark: what the HTTP server itself costs per request, Granian (what `serve` runs) against gunicorn
(what it ran until the fourth session of issue 11), in the same run.

A trivial WSGI application (a 1,500-byte answer, what an OCSP answer or a logon's is) under each server,
one worker pinned to CPU 0, `wrk` pinned to CPU 1 sending one request per connection (`Connection: close`,
as the agent's logon and a relying party's OCSP request do), plain HTTP and HTTPS (a P-256 certificate,
TLS session resumption as each server does it; gunicorn with one TLS context per worker, as `serve` had).
Prints requests/s and the server's CPU per request from /proc, and the ratio gunicorn / Granian.

    .venv/bin/pip install gunicorn          # not a dependency of the project any more
    .venv/bin/python bench/http_servers.py --seconds 6

Needs `wrk` (Debian package) and taskset. Bounded: each load lasts --seconds; servers are stopped by PID.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _storm_sys import tree_cpu  # noqa: E402

APP = """
BODY = b"x" * 1500


def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "application/octet-stream"), ("Content-Length", str(len(BODY)))])
    return [BODY]
"""

GUNICORN_CONFIG = """
_context = None


def ssl_context(config, factory):  # one per worker, as `serve` had
    global _context
    if _context is None:
        _context = factory()
    return _context
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{proc.args[3]} exited with {proc.returncode}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise SystemExit(f"nothing listens on {port}")


def server_command(name: str, port: int, workdir: Path, tls: bool) -> list[str]:
    venv = Path(sys.executable).parent
    if name == "granian":
        cmd = [str(venv / "granian"), "--interface", "wsgi", "--host", "127.0.0.1", "--port", str(port)]
        cmd += ["--workers", "1", "--http", "1", "--no-ws", "--log-level", "warning"]
        if tls:
            cmd += ["--ssl-certificate", str(workdir / "cert.pem"), "--ssl-keyfile", str(workdir / "key.pem")]
        return [*cmd, "app:app"]
    cmd = [str(venv / "gunicorn"), "-c", str(workdir / "gunicorn_conf.py"), "-w", "1", "-k", "gthread"]
    cmd += ["--threads", "4", "-b", f"127.0.0.1:{port}", "--log-level", "warning"]
    if tls:
        cmd += ["--certfile", str(workdir / "cert.pem"), "--keyfile", str(workdir / "key.pem")]
    return [*cmd, "app:app"]


def measure(name: str, workdir: Path, tls: bool, seconds: float) -> dict:
    port = free_port()
    proc = subprocess.Popen(
        ["taskset", "-c", "0", *server_command(name, port, workdir, tls)],
        cwd=workdir,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        wait_port(port, proc)
        url = f"{'https' if tls else 'http'}://127.0.0.1:{port}/"
        before = tree_cpu([proc.pid])
        out = subprocess.run(
            ["taskset", "-c", "1", "wrk", "-t1", "-c50", f"-d{round(seconds)}s", "-H", "Connection: close", url],
            capture_output=True,
            text=True,
            timeout=seconds + 30,
        ).stdout
        cpu = tree_cpu([proc.pid]) - before
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=15)
    done = int(re.search(r"(\d+) requests in", out).group(1))
    return {"requests": done, "rps": done / seconds, "cpu_ms": cpu * 1000 / max(1, done)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=6.0, help="length of each load (at most 60)")
    args = p.parse_args()
    args.seconds = min(args.seconds, 60.0)
    for tool in ("wrk", "taskset", "openssl"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is not installed")
    if not (Path(sys.executable).parent / "gunicorn").exists():
        raise SystemExit("gunicorn is not installed here: .venv/bin/pip install gunicorn")
    with tempfile.TemporaryDirectory(prefix="autoenroll-http-") as tmp:
        workdir = Path(tmp)
        (workdir / "app.py").write_text(APP)
        (workdir / "gunicorn_conf.py").write_text(GUNICORN_CONFIG)
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
             "-keyout", workdir / "key.pem", "-out", workdir / "cert.pem", "-days", "1", "-subj", "/CN=127.0.0.1"],
            check=True, capture_output=True,
        )  # fmt: skip
        print(f"{'':16} {'gunicorn':>22} {'Granian':>22} {'CPU ratio':>10}")
        for tls in (False, True):
            g, r = (measure(name, workdir, tls, args.seconds) for name in ("gunicorn", "granian"))
            print(
                f"{'HTTPS' if tls else 'HTTP':16} {g['rps']:8.0f}/s {g['cpu_ms']:7.3f} ms   "
                f"{r['rps']:8.0f}/s {r['cpu_ms']:7.3f} ms {g['cpu_ms'] / r['cpu_ms']:9.2f}x"
            )
    print("(requests/s and server CPU per request, one worker on CPU 0, wrk on CPU 1, one connection per request)")


if __name__ == "__main__":
    main()
