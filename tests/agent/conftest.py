"""The agent against the real thing: the Samba AD DC of the session and the real server (``autoenroll-server
serve`` in a subprocess, configured with its own command line), on loopback.

The agent runs as a subprocess with the user's own ticket (KRB5CCNAME), the test bed's krb5.conf and
``AUTOENROLL_CONNECT_TO`` so that https://ccm.test.com:<port> reaches 127.0.0.1 while TLS and Kerberos
use ccm.test.com. Each test user gets a HOME of its own (stores, state, log under it).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from autoenroll.testbed.samba import SambaDC
from autoenroll.testbed.server import SERVER_HOST, ServerProcess, start_server

HOST = SERVER_HOST
CUSTOMER = "acme"


def base_env(**extra: str) -> dict[str, str]:
    """A clean environment: no Django settings of the test process, nothing of the caller's Kerberos."""
    keep = ("PATH", "LANG", "LC_ALL", "TZ", "SYSTEMROOT")
    env = {k: v for k, v in os.environ.items() if k in keep}
    env.update(extra)
    return env


@pytest.fixture(scope="session")
def server(samba_ad: SambaDC, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """The real enrollment server over HTTPS with its CA, configured for TEST.COM through its command line."""
    work = tmp_path_factory.mktemp("server")
    env = {"HOME": str(work)}
    if os.environ.get("AUTOENROLL_TEST_SERVER_PYTHONPATH"):  # run another server tree (e.g. a release)
        env["PYTHONPATH"] = os.environ["AUTOENROLL_TEST_SERVER_PYTHONPATH"]
    with start_server(work, samba_ad, customer=CUSTOMER, env=env) as srv:
        yield srv


def issuer_common_name(server: ServerProcess) -> str:
    """The CN of the server's issuing CA: the `issuername` of autoenroll.conf."""
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    cert = x509.load_pem_x509_certificate(server.issuing_ca.read_bytes())
    return cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value


@pytest.fixture(scope="session")
def issuer_cn(server: ServerProcess) -> str:
    return issuer_common_name(server)


@dataclass
class AgentRun:
    returncode: int
    stdout: str
    stderr: str
    seconds: float


@dataclass
class AgentUser:
    """One desktop user: own HOME (stores, state, log), own ticket, own autoenroll.conf."""

    sam: str
    home: Path
    server: ServerProcess
    samba: SambaDC
    issuer: str
    conf: dict[str, str] = field(default_factory=dict)
    ccache: str | None = None
    extra_env: dict[str, str] = field(default_factory=dict)

    @property
    def config_path(self) -> Path:
        return self.home / "autoenroll.conf"

    @property
    def log_path(self) -> Path:
        return self.home / ".local" / "state" / "autoenroll" / "log" / "autoenroll.log"

    @property
    def folder(self) -> Path:
        return self.home / ".local" / "share" / "autoenroll" / "certificates"

    def kinit(self) -> None:
        self.ccache = self.samba.kinit(self.sam)

    def write_config(self, **changes: str | None) -> None:
        """Write autoenroll.conf: the standard keys, then every change made so far (None removes a key)."""
        for key, value in changes.items():
            self.conf[key] = value
        conf = {
            "requestpath": self.server.url,
            "issuername": self.issuer,
            "days": "30",
            "domainname": "test.com",
            "customeruri": CUSTOMER,
            "cafile": str(self.server.root_ca),
        }
        conf.update(self.conf)
        lines = ["# autoenroll.conf (guide 3.1)"] + [f"{k}={v}" for k, v in conf.items() if v is not None]
        self.config_path.write_text("\n".join(lines) + "\n")

    def env(self) -> dict[str, str]:
        env = base_env(
            HOME=str(self.home),
            KRB5_CONFIG=str(self.samba.krb5_conf),
            KRB5CCNAME=self.ccache or f"FILE:{self.home}/no-ticket",
            # the enrollment service, and the publication listener the certificates' OCSP URL names
            AUTOENROLL_CONNECT_TO=f"{HOST}:{self.server.port}:127.0.0.1,{HOST}:{self.server.publication_port}:127.0.0.1",
        )
        env.update(self.extra_env)
        return env

    def run(self, *args: str, timeout: float = 240) -> AgentRun:
        started = time.monotonic()
        proc = subprocess.run(
            [sys.executable, "-m", "autoenroll.agent", "--config", str(self.config_path), *args],
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )
        return AgentRun(proc.returncode, proc.stdout, proc.stderr, time.monotonic() - started)

    def log_text(self) -> str:
        return self.log_path.read_text() if self.log_path.exists() else ""


@pytest.fixture
def make_user(server: ServerProcess, samba_ad: SambaDC, issuer_cn: str, tmp_path: Path):
    """make_user("user1") -> an AgentUser with a ticket and the standard autoenroll.conf."""

    def make(sam: str, *, ticket: bool = True) -> AgentUser:
        home = tmp_path / f"home-{sam}"
        home.mkdir(mode=0o700)
        user = AgentUser(sam, home, server, samba_ad, issuer_cn)
        if ticket:
            user.kinit()
        user.write_config()
        return user

    return make
