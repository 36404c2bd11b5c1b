"""A real autoenroll server wired to a test-bed AD DC, for agent tests, benchmarks and demos.

It drives the `autoenroll-server` command line in subprocesses, exactly as an admin would (guide 2.2
and 2.3: customer, email domain, AD server, Kerberos realm, organization), and never imports the
server: the test bed stays free of Django.
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import ssl
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from .samba import DC_FQDN, DOMAIN, REALM, SERVICE_ACCOUNT_DN, USERS_DN, SambaDC, TestbedError

SERVER_HOST = "ccm.test.com"  # the SPN is HTTP/ccm.test.com; clients connect to 127.0.0.1


def free_port(ip: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((ip, 0))
        return s.getsockname()[1]


@dataclass
class ServerProcess:
    workdir: Path
    port: int
    publication_port: int
    customer: str
    env: dict[str, str]
    process: subprocess.Popen | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        """The enrollment URL the agent's `requestpath` takes."""
        return f"https://{SERVER_HOST}:{self.port}"

    @property
    def data_dir(self) -> Path:
        return Path(self.env["AUTOENROLL_DATA_DIR"])

    @property
    def root_ca(self) -> Path:
        return self.data_dir / "ca" / "root-ca.pem"

    @property
    def issuing_ca(self) -> Path:
        return self.data_dir / "ca" / "issuing-ca.pem"

    @property
    def log_file(self) -> Path:
        return self.workdir / "server.log"

    def cli(self, *args: str, input_text: str | None = None, timeout: float = 120) -> str:
        """Run `autoenroll-server ARGS` against this server's data; raise with its output on failure."""
        return _cli(self.env, *args, input_text=input_text, timeout=timeout)

    def shell(self, code: str) -> str:
        """The last line `autoenroll-server shell -c CODE` prints: server-side facts a test wants to see."""
        return (self.cli("shell", "-c", code).strip().splitlines() or [""])[-1]

    def stop(self, timeout: float = 15) -> None:
        """SIGTERM `serve` (our child) and wait; idempotent."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=5)

    def start(self, timeout: float = 60) -> None:
        """`autoenroll-server serve` on this data directory, in a session of its own; wait for HTTPS and for
        the publication listener (a child `serve` starts after its own)."""
        log = open(self.log_file, "ab")  # noqa: SIM115 - handed to the child, closed with it
        self.process = subprocess.Popen(
            [sys.executable, "-m", "autoenroll.server.cli", "serve"],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        try:
            context = ssl.create_default_context(cafile=str(self.root_ca))
            wait_listening(self.port, self.process, self.log_file, timeout, context)
            wait_listening(self.publication_port, self.process, self.log_file, timeout)
        except BaseException:
            self.stop()
            raise

    def kill(self) -> None:
        """SIGKILL the whole server (`serve`, its workers, the publication listener, the CRL watcher),
        as a host that loses power would stop it."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _cli(env: dict[str, str], *args: str, input_text: str | None = None, timeout: float = 120) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "autoenroll.server.cli", *args],
        env=env,
        input=input_text,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if result.returncode != 0:
        raise TestbedError(f"autoenroll-server {' '.join(args)} failed:\n{result.stdout}{result.stderr}")
    return result.stdout


def wait_listening(
    port: int, process: subprocess.Popen, log: Path, timeout: float, tls: ssl.SSLContext | None = None
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise TestbedError(f"the server exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as raw:
                if tls is None:
                    return
                with tls.wrap_socket(raw, server_hostname=SERVER_HOST):
                    return
        except (OSError, ssl.SSLError):
            time.sleep(0.1)
    raise TestbedError(f"the server did not answer on port {port} within {timeout:.0f} s:\n{log.read_text()[-3000:]}")


def start_server(
    workdir: Path,
    dc: SambaDC,
    *,
    customer: str = "demo",
    workers: int = 2,
    port: int | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 60,
    configure: bool = True,
    public_port: int | None = None,
) -> ServerProcess:
    """Initialise a data directory, configure one customer against `dc`, and serve over HTTPS.

    `configure=False` joins a database another server configured (a second server of a cluster: its
    own data directory and TLS certificate, the shared configuration). `public_port` is the port of the
    URL clients use when it is not this server's own (a load balancer in front)."""
    workdir = Path(workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    passphrase = workdir / "ca-passphrase"
    if not passphrase.exists():
        fd = os.open(passphrase, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_urlsafe(24) + "\n")
    port = port or free_port()
    publication_port = free_port()
    server_env = {k: v for k, v in os.environ.items() if not k.startswith(("AUTOENROLL_", "DJANGO_"))}
    server_env.update(
        AUTOENROLL_DATA_DIR=str(workdir / "data"),
        AUTOENROLL_CA_PASSPHRASE_FILE=str(passphrase),
        AUTOENROLL_PUBLIC_URL=f"https://{SERVER_HOST}:{public_port or port}",
        AUTOENROLL_PUBLICATION_URL=f"http://{SERVER_HOST}:{publication_port}",
        AUTOENROLL_LISTEN=f"127.0.0.1:{port}",
        AUTOENROLL_PUBLICATION_LISTEN=f"127.0.0.1:{publication_port}",
        AUTOENROLL_WORKERS=str(workers),
        AUTOENROLL_METRICS_TOKEN=secrets.token_urlsafe(24),  # Prometheus's bearer token for GET /metrics
        KRB5_CONFIG=str(dc.krb5_conf),
    )
    server_env.update(env or {})  # the caller's settings win (a joined server's shared passphrase, say)
    server = ServerProcess(workdir, port, publication_port, customer, server_env)
    if not configure:
        server.cli("init")  # this data directory's TLS certificate; the CA and the rest are the database's
        server.root_ca.parent.mkdir(parents=True, exist_ok=True)  # the CA certificates (public) for clients
        for path, role in ((server.root_ca, "root"), (server.issuing_ca, "issuing")):
            code = (
                "from autoenroll.server.certificates.models import CertificateAuthority as C; "
                f"print(C.objects.filter(role='{role}').order_by('-active', 'pk').first().certificate_pem, end='')"
            )
            path.write_text(server.cli("shell", "-c", code))
    elif not (server.data_dir / "autoenroll.sqlite3").exists() or "AUTOENROLL_DATABASE_URL" in server_env:
        server.cli("init")
        server.cli("customers", "add", customer, "--name", f"{customer} (test bed)")
        server.cli("domains", "add", DOMAIN, "--customer", customer, "--authorized")
        server.cli(
            "adservers", "add", "--customer", customer, "--domain", DOMAIN, "--address", dc.ip,
            "--users-base-dn", USERS_DN, "--login-dn", SERVICE_ACCOUNT_DN, "--password-file", "-",
            "--no-ssl", "--ca-file", str(dc.tls_ca), "--tls-server-name", DC_FQDN, "--default",
            input_text=dc.service_account_password + "\n",
        )  # fmt: skip
        server.cli(
            "realms", "add", "--domain", DOMAIN, "--keytab", str(dc.keytab),
            "--principal", f"HTTP/{SERVER_HOST}@{REALM}", "--customer", customer,
        )  # fmt: skip
        server.cli("orgs", "add", f"{customer} org", "--customer", customer, "--domain", DOMAIN)
    server.start(timeout)
    return server
