"""`autoenroll-server serve`: gunicorn over HTTPS with the server's TLS certificate."""

from __future__ import annotations

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from gunicorn.app.base import BaseApplication


class _Gunicorn(BaseApplication):
    def __init__(self, options: dict) -> None:
        self.options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self):
        from autoenroll.server.wsgi import application

        return application


class Command(BaseCommand):
    help = "Serve the enrollment service and the admin pages over HTTPS (gunicorn)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--listen", help="HOST:PORT (default: AUTOENROLL_LISTEN)")
        parser.add_argument("--workers", type=int, help="worker processes (default: AUTOENROLL_WORKERS)")
        parser.add_argument("--pid-file", help="write the master's PID here")

    def handle(self, *args, listen, workers, pid_file, **options) -> None:
        config = settings.CONFIG
        cert, key = config.tls_cert_path, config.tls_key_path
        for path in (cert, key):
            if not path.is_file():
                raise CommandError(
                    f"TLS file {path} is missing: run `autoenroll-server init` (it issues one), "
                    "or set AUTOENROLL_TLS_CERT and AUTOENROLL_TLS_KEY"
                )
        options = {
            "bind": [listen or config.listen],
            "workers": workers or config.workers,
            "worker_class": "sync",
            "certfile": str(cert),
            "keyfile": str(key),
            "accesslog": "-",
            "errorlog": "-",
            "loglevel": config.log_level.lower(),
            "timeout": 60,
            "graceful_timeout": 10,
            "keepalive": 5,
            "proc_name": "autoenroll-server",
        }
        if pid_file:
            options["pidfile"] = pid_file
        self.stdout.write(
            f"serving {config.public_url} on https://{options['bind'][0]} with {options['workers']} workers"
        )
        _Gunicorn(options).run()
