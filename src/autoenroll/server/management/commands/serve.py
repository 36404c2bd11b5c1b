"""`autoenroll-server serve`: gunicorn over HTTPS, plus the plain-HTTP publication listener.

Relying parties fetch CRLs, OCSP answers and CA certificates over plain HTTP (the S/MIME BRs want
it; TLS there would be circular), so `serve` runs two gunicorn arbiters: this process serves the
whole site over HTTPS on AUTOENROLL_LISTEN, and a child serves only the publication URLs over
HTTP on AUTOENROLL_PUBLICATION_LISTEN. A third small child regenerates CRLs before their
nextUpdate. The children die with this process (SIGTERM, or PR_SET_PDEATHSIG if it is killed).
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from gunicorn.app.base import BaseApplication

from autoenroll.server.startup import prepare_kerberos

#: How often the CRL watcher looks for CRLs due for regeneration: after revocations (a burst makes one CRL;
#: OCSP answers at once, the S/MIME BRs allow 24 hours for the CRL) and before nextUpdate (they live 7 days).
CRL_WATCH_SECONDS = 30
NOTIFY_WATCH_SECONDS = 600
AUDIT_WATCH_SECONDS = 60


class _Gunicorn(BaseApplication):
    def __init__(self, options: dict, publication: bool = False) -> None:
        self.options = options
        self.publication = publication
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            if key in self.cfg.settings:  # skip settings this gunicorn version does not know
                self.cfg.set(key, value)

    def load(self):
        if self.publication:
            from autoenroll.server.certificates.wsgi import get_publication_application

            return get_publication_application()
        from autoenroll.server.wsgi import application

        return application


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


_ssl_context = None


def _one_ssl_context(config, default_ssl_context_factory):
    """One TLS context per worker instead of one per connection: building it costs ~1 ms of CPU, and
    clients can resume their TLS sessions only with the context that issued them."""
    global _ssl_context
    if _ssl_context is None:
        _ssl_context = default_ssl_context_factory()
    return _ssl_context


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

    def _options(self, bind: str, workers: int, name: str) -> dict:
        config = settings.CONFIG
        return {
            "bind": [bind],
            "workers": workers,
            # Threads keep connections alive: an agent's sync, enroll and status share one TLS handshake.
            "worker_class": "gthread",
            "threads": config.threads,
            "accesslog": "-",
            "errorlog": "-",
            "loglevel": config.log_level.lower(),
            "timeout": 60,
            "graceful_timeout": 10,
            "keepalive": 5,
            "proc_name": name,
        }

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
        publication_listen = publication_listen or config.publication_listen
        if publication_only:
            opts = self._options(publication_listen, workers, "autoenroll-publication")
            # gunicorn >= 25.1 opens a control socket at one fixed path: leave it to the HTTPS arbiter.
            opts["control_socket_disable"] = True
            if pid_file:
                opts["pidfile"] = pid_file
            self.stdout.write(f"serving {config.publication_url} on http://{publication_listen} (publication only)")
            _Gunicorn(opts, publication=True).run()
            return

        cert, key = config.tls_cert_path, config.tls_key_path
        for path in (cert, key):
            if not path.is_file():
                raise CommandError(
                    f"TLS file {path} is missing: run `autoenroll-server init` (it issues one), "
                    "or set AUTOENROLL_TLS_CERT and AUTOENROLL_TLS_KEY"
                )
        prepare_kerberos()  # before gunicorn forks: every worker inherits it, no request thread sets it
        opts = self._options(listen or config.listen, workers, "autoenroll-server")
        opts.update(certfile=str(cert), keyfile=str(key), ssl_context=_one_ssl_context)
        # gunicorn >= 25.1's control socket: in this data directory, not one path per user that every
        # `serve` on the host deletes at start and stop.
        opts["control_socket"] = str(config.data_dir / "gunicorn.ctl")
        if pid_file:
            opts["pidfile"] = pid_file
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
        self.stdout.write(f"serving {config.public_url} on https://{opts['bind'][0]} with {workers} workers")
        try:
            _Gunicorn(opts).run()
        finally:
            _stop(children)
