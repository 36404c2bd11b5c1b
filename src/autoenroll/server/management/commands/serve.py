"""`autoenroll-server serve`: Granian over HTTPS, plus the plain-HTTP publication listener.

Relying parties fetch CRLs, OCSP answers and CA certificates over plain HTTP (the S/MIME BRs want
it; TLS there would be circular), so `serve` runs two Granian servers: this process serves the
whole site over HTTPS on AUTOENROLL_LISTEN, and a child serves only the publication URLs over
HTTP on AUTOENROLL_PUBLICATION_LISTEN. A third small child regenerates CRLs before their
nextUpdate. The children die with this process (SIGTERM, or PR_SET_PDEATHSIG if it is killed).

Granian, not gunicorn: TLS, HTTP parsing and the connection loop are in Rust, outside the GIL. On one
pinned core, one connection per request (bench/http_servers.py), gunicorn's threaded worker spent 0.64 ms
of CPU per HTTPS request besides the application and 0.18 ms per plain-HTTP one; Granian 0.19 and 0.04.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from granian.constants import HTTPModes, Interfaces, Loops, SSLProtocols
from granian.http import HTTP1Settings
from granian.log import LogLevels
from granian.server import Server

from autoenroll.server.startup import prepare_kerberos

#: How often the CRL watcher looks for CRLs due for regeneration: after revocations (a burst makes one CRL;
#: OCSP answers at once, the S/MIME BRs allow 24 hours for the CRL) and before nextUpdate (they live 7 days).
CRL_WATCH_SECONDS = 30
NOTIFY_WATCH_SECONDS = 600
AUDIT_WATCH_SECONDS = 60


def _die_with_parent() -> None:
    """In the child, before exec: get SIGTERM when the parent dies, even by SIGKILL (Linux)."""
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _child(*args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "autoenroll.server.cli", *args],
        preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
    )


def _stop(children: list[subprocess.Popen]) -> None:
    for child in children:
        if child.poll() is None:
            child.terminate()
    for child in children:
        try:
            child.wait(timeout=15)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait(timeout=5)


#: One line per request on stderr, as gunicorn's was: client, request line, status, milliseconds.
ACCESS_LOG_FORMAT = '%(addr)s - [%(time)s] "%(method)s %(path)s %(protocol)s" %(status)d %(dt_ms).1f ms'


def _server(
    target: str,
    bind: str,
    workers: int,
    name: str,
    *,
    access_log: bool = True,
    pid_file: str | None = None,
    tls: tuple[Path, Path] | None = None,
) -> Server:
    config = settings.CONFIG
    host, _, port = bind.rpartition(":")
    options = {}
    if tls:
        # TLS 1.2 too: Windows 10's Schannel, the MS-XCEP/WSTEP client, has no TLS 1.3.
        options.update(ssl_cert=tls[0], ssl_key=tls[1], ssl_protocol_min=SSLProtocols.tls12)
    return Server(
        target,
        address=host.strip("[]"),
        port=int(port),
        # Request bodies received by the event loop within a time limit, before one of the application's
        # threads takes the request (`autoenroll.server.rsgi`, which has its own pool of threads).
        interface=Interfaces.RSGI,
        loop=Loops.uvloop,  # the adapter's part of a request: a fifth less than asyncio's own loop
        factory=True,
        workers=workers,
        # HTTP/1.1 only: Negotiate authenticates per request and agents keep one connection per logon.
        http=HTTPModes.http1,
        http1_settings=HTTP1Settings(header_read_timeout=10_000),  # a client that never finishes its headers
        websockets=False,
        log_level=LogLevels(config.log_level.lower()),
        log_access=access_log,
        log_access_format=ACCESS_LOG_FORMAT,
        respawn_failed_workers=True,
        workers_kill_timeout=10,
        process_name=name,
        pid_file=Path(pid_file) if pid_file else None,
        **options,
    )


class Command(BaseCommand):
    help = "Serve the enrollment service and admin pages over HTTPS, and CRL/OCSP/CA certificates over HTTP."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--listen", help="HOST:PORT (default: AUTOENROLL_LISTEN)")
        parser.add_argument(
            "--publication-listen", help="HOST:PORT of the plain-HTTP listener (default: AUTOENROLL_PUBLICATION_LISTEN)"
        )
        parser.add_argument("--workers", type=int, help="worker processes (default: AUTOENROLL_WORKERS)")
        parser.add_argument("--pid-file", help="write the master's PID here")
        parser.add_argument(
            "--no-publication", action="store_true", help="do not run the publication listener and the watchers"
        )
        parser.add_argument(
            "--no-watchers",
            action="store_true",
            help="run no scheduled work (CRLs, OCSP answers signed ahead, audit sealing, expiry notices): "
            "another server, or cron with `crl --due`, `audit seal`, `notify`, does it",
        )
        parser.add_argument(
            "--publication-only", action="store_true", help="serve only the publication URLs, over plain HTTP"
        )

    def handle(
        self,
        *args,
        listen,
        publication_listen,
        workers,
        pid_file,
        no_publication,
        no_watchers,
        publication_only,
        **options,
    ) -> None:
        config = settings.CONFIG
        workers = workers or config.workers
        for name in [name for name in os.environ if name.startswith("HTTP_")]:
            del os.environ[name]  # Granian starts each request's environ from this: they would read as headers
        publication_listen = publication_listen or config.publication_listen
        if publication_only:
            self.stdout.write(f"serving {config.publication_url} on http://{publication_listen} (publication only)")
            self.stdout.flush()
            _server(
                "autoenroll.server.rsgi:get_publication_application",
                publication_listen,
                workers,
                "autoenroll-publication",
                access_log=config.publication_access_log,
                pid_file=pid_file,
            ).serve()
            return

        cert, key = config.tls_cert_path, config.tls_key_path
        for path in (cert, key):
            if not path.is_file():
                raise CommandError(
                    f"TLS file {path} is missing: run `autoenroll-server init` (it issues one), "
                    "or set AUTOENROLL_TLS_CERT and AUTOENROLL_TLS_KEY"
                )
        prepare_kerberos()  # before Granian starts its workers: they inherit the environment
        listen = listen or config.listen
        server = _server(
            "autoenroll.server.rsgi:get_application",
            listen,
            workers,
            "autoenroll-server",
            pid_file=pid_file,
            tls=(cert, key),
        )
        children: list[subprocess.Popen] = []
        if not no_publication:
            children.append(
                _child(
                    "serve", "--publication-only", "--publication-listen", publication_listen, "--workers", str(workers)
                )
            )
        if not no_publication and not no_watchers:
            children.append(_child("crl", "--watch", str(CRL_WATCH_SECONDS)))
            children.append(_child("audit", "seal", "--watch", str(AUDIT_WATCH_SECONDS)))
            if config.smtp_host:  # checks the SMTP server at once, then mails what is due every few minutes
                children.append(_child("notify", "--watch", str(NOTIFY_WATCH_SECONDS)))
        self.stdout.write(f"serving {config.public_url} on https://{listen} with {workers} workers")
        self.stdout.flush()
        try:
            server.serve()
        finally:
            _stop(children)
