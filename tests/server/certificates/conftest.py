"""Fixtures for revocation and publication: certificates to revoke, pkilint, and a live `serve`."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from django.conf import settings as django_settings

from autoenroll import pki
from autoenroll.server.certificates import authority, publication
from autoenroll.server.certificates.models import Certificate
from checks import lint_crl, lint_ocsp

VENV_BIN = Path(sys.executable).parent
START_TIMEOUT = 40.0
STOP_TIMEOUT = 20.0


@pytest.fixture(autouse=True)
def _fresh_responders():
    """Each test builds its OCSP responder from its own database (rows roll back between tests)."""
    publication.clear_responder_cache()
    yield
    publication.clear_responder_cache()


@pytest.fixture
def issue(ca) -> Callable[[str], Certificate]:
    """Factory: `issue("user@test.com")` signs and records a real S/MIME certificate (no AD needed)."""

    def _issue(mail: str = "user1@test.com") -> Certificate:
        key = pki.generate_private_key("ec-p256")
        return authority.issue_smime(django_settings.CONFIG, key.public_key(), mail)

    return _issue


@pytest.fixture(scope="session")
def crl_lint() -> Callable[[bytes], list[str]]:
    return lint_crl


@pytest.fixture(scope="session")
def ocsp_lint() -> Callable[[bytes], list[str]]:
    return lint_ocsp


# --- a live `autoenroll-server serve` ------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_listening(port: int, proc: subprocess.Popen, deadline: float) -> None:
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"autoenroll-server serve exited with {proc.returncode}")
        with socket.socket() as s:
            s.settimeout(0.5)
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {START_TIMEOUT} s")


@dataclass
class LiveServer:
    """`autoenroll-server serve` in a subprocess, on the test database, loopback ports only."""

    env: dict[str, str]
    https_port: int
    http_port: int
    log_path: Path
    proc: subprocess.Popen | None = None

    @property
    def publication_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def https_url(self) -> str:
        return f"https://127.0.0.1:{self.https_port}"

    def start(self) -> None:
        log = open(self.log_path, "ab")  # noqa: SIM115 -- kept open for the child's lifetime
        self.proc = subprocess.Popen(
            # No watchers: their writes (OCSP answers signed ahead, the audit seal) would race the test database's
            # flush between tests; a CRL is regenerated on request anyway.
            [str(VENV_BIN / "autoenroll-server"), "serve", "--no-watchers"],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        deadline = time.monotonic() + START_TIMEOUT
        try:
            _wait_listening(self.http_port, self.proc, deadline)
            _wait_listening(self.https_port, self.proc, deadline)
        except Exception as exc:
            self.stop()
            raise RuntimeError(f"{exc}\n--- server log ---\n{self.log()}") from None

    def stop(self) -> None:
        """SIGTERM to the server's PID (it stops its children), SIGKILL if it does not exit in time."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=5)
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]


@pytest.fixture(scope="module")
def live_server_process(django_db_setup, django_db_blocker, ca_files, tmp_path_factory) -> Iterator[LiveServer]:
    """The real server on free loopback ports, reading the test database (tests commit with
    `django_db(transaction=True)`), with its own data directory and a TLS certificate by the test root."""
    from django.db import connection

    directory = tmp_path_factory.mktemp("live-server")
    config = django_settings.CONFIG
    tls_key = pki.generate_private_key("ec-p256")
    root = pki.FileKeyBackend(ca_files.root_cert_path, ca_files.root_key_path, config.ca_passphrase_bytes())
    tls_cert = pki.issue_tls_server_certificate(root, tls_key.public_key(), ["localhost"], ["127.0.0.1"])
    (directory / "tls.pem").write_bytes(tls_cert.public_bytes(serialization.Encoding.PEM))
    (directory / "tls.key").write_bytes(
        tls_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    with django_db_blocker.unblock():
        db = connection.settings_dict
        if connection.vendor == "sqlite":
            database_url = f"sqlite:///{db['NAME']}"
        else:  # the test database pytest-django made, on the same PostgreSQL server
            database_url = f"postgresql://{db['USER']}:{db['PASSWORD']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"
    https_port, http_port = free_port(), free_port()
    env = dict(os.environ)
    env.update(
        AUTOENROLL_DATA_DIR=str(directory / "data"),
        AUTOENROLL_DATABASE_URL=database_url,
        AUTOENROLL_LISTEN=f"127.0.0.1:{https_port}",
        AUTOENROLL_PUBLICATION_LISTEN=f"127.0.0.1:{http_port}",
        AUTOENROLL_TLS_CERT=str(directory / "tls.pem"),
        AUTOENROLL_TLS_KEY=str(directory / "tls.key"),
        AUTOENROLL_WORKERS="2",
        AUTOENROLL_LOG_LEVEL="WARNING",
    )
    env.pop("DJANGO_SETTINGS_MODULE", None)
    server = LiveServer(env, https_port, http_port, directory / "serve.log")
    server.start()
    try:
        yield server
    finally:
        server.stop()
