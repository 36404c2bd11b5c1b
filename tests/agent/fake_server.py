"""A fake enrollment server for the agent: TLS on 127.0.0.1, a random port, answers chosen by each test.

The real server (tests/agent/conftest.py) only ever answers what a correct server answers. The agent
must also survive what a broken or hostile one sends, byte for byte: this server lets a test answer
anything (a bad status line, a body of more than 1 MiB, a byte every half second) and records what the agent
sent. Kerberos is replaced by a stub negotiator, since what is tested is what the agent does with the
answer, not the logon.

Everything a server starts (its listening socket, one thread per connection) ends in ``close()``: the
fixtures of the tests call it at teardown, and answers that take time wait on its ``stopping`` event, so
that no test leaves a thread or a socket behind.
"""

from __future__ import annotations

import datetime
import json
import socket
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import AuthorityInformationAccessOID, ExtendedKeyUsageOID, NameOID

HOST = "ccm.test.com"
MAIL = "user1@test.com"
ISSUER_CN = "autoenroll S/MIME CA"
#: What the sync and logon answers say of the user (docs/protocol.md).
USER = {"principal": "user1@TEST.COM", "email": MAIL, "cn": "User One", "orgid": "1", "customeruri": "acme"}
#: The longest a test's server waits for the agent's request, or lets a slow answer go on.
SERVER_TIMEOUT = 20.0


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _name(cn: str, *org: str) -> x509.Name:
    return x509.Name(
        [x509.NameAttribute(NameOID.COMMON_NAME, cn)] + [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in org]
    )


class PKI:
    """A root CA that signs the server's TLS certificate and, under the issuing CA's name, the users'
    certificates (one key for both: only the names and the agent's checks matter here)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.key = ec.generate_private_key(ec.SECP256R1())
        day = datetime.timedelta(days=1)
        root = _name("fake root")
        self.root = self._sign(
            x509.CertificateBuilder()
            .subject_name(root)
            .issuer_name(root)
            .public_key(self.key.public_key())
            .serial_number(1)
            .not_valid_before(_now() - day)
            .not_valid_after(_now() + 3650 * day)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        )
        self.issuing_name = _name(ISSUER_CN, "autoenroll")
        self.issuing = self._sign(
            x509.CertificateBuilder()
            .subject_name(self.issuing_name)
            .issuer_name(root)
            .public_key(self.key.public_key())
            .serial_number(2)
            .not_valid_before(_now() - day)
            .not_valid_after(_now() + 3650 * day)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        )
        tls = self._sign(
            x509.CertificateBuilder()
            .subject_name(_name(HOST))
            .issuer_name(root)
            .public_key(self.key.public_key())
            .serial_number(3)
            .not_valid_before(_now() - day)
            .not_valid_after(_now() + 365 * day)
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(HOST)]), critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        )
        self.root_pem = folder / "root.pem"
        self.root_pem.write_bytes(_pem(self.root))
        (folder / "tls.pem").write_bytes(_pem(tls))
        (folder / "tls.key").write_bytes(
            self.key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
        self.chain_pem = (_pem(self.issuing) + _pem(self.root)).decode()
        self._serial = 0x1000

    def _sign(self, builder: x509.CertificateBuilder) -> x509.Certificate:
        return builder.sign(self.key, hashes.SHA256())

    def tls_context(self) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(self.folder / "tls.pem", self.folder / "tls.key")
        return ctx

    def issue(
        self,
        csr_pem: str,
        mail: str = MAIL,
        *,
        not_before: datetime.datetime | None = None,
        not_after: datetime.datetime | None = None,
        serial: int | None = None,
        issuer: x509.Name | None = None,
        ocsp: str | None = None,
    ) -> x509.Certificate:
        """A certificate for the CSR's key (valid from yesterday for a year unless told otherwise)."""
        csr = x509.load_pem_x509_csr(csr_pem.encode())
        self._serial += 1
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(mail))
            .issuer_name(issuer or self.issuing_name)
            .public_key(csr.public_key())
            .serial_number(serial or self._serial)
            .not_valid_before(not_before or _now() - datetime.timedelta(days=1))
            .not_valid_after(not_after or _now() + datetime.timedelta(days=365))
            .add_extension(x509.SubjectAlternativeName([x509.RFC822Name(mail)]), critical=False)
        )
        if ocsp:
            access = x509.AccessDescription(AuthorityInformationAccessOID.OCSP, x509.UniformResourceIdentifier(ocsp))
            builder = builder.add_extension(x509.AuthorityInformationAccess([access]), critical=False)
        return self._sign(builder)

    def issued(self, certificate: x509.Certificate | str, **extra: Any) -> dict[str, Any]:
        """A logon answer carrying ``certificate`` (a certificate or PEM text) and this CA's chain."""
        pem = certificate if isinstance(certificate, str) else _pem(certificate).decode()
        return {**USER, "status": "issued", "certificate": pem, "chain": self.chain_pem, "status_token": "tok", **extra}


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def http_answer(status: int = 200, body: Any = b"", headers: dict[str, str] | None = None) -> bytes:
    """An HTTP/1.1 answer: ``body`` as JSON unless it is bytes, with the headers the agent expects (mutual
    authentication included) unless ``headers`` replaces them (None drops one)."""
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    fields = {
        "Content-Type": "application/json",
        "Content-Length": str(len(data)),
        "WWW-Authenticate": "Negotiate b2s=",
    }
    fields.update(headers or {})
    head = f"HTTP/1.1 {status} X\r\n" + "".join(f"{k}: {v}\r\n" for k, v in fields.items() if v is not None)
    return (head + "\r\n").encode("latin-1") + data


@dataclass
class Hangup:
    """An answer after which the server closes the connection (as a server does with what it cannot
    frame). With ``every``, sent one byte every ``every`` seconds: each read of the agent gets something,
    so only a limit on the whole exchange ends it (the byte loop stops when the server closes)."""

    data: bytes
    every: float = 0.0


@dataclass
class Call:
    method: str
    path: str
    body: Any


#: handler(method, path, JSON body or None) -> the raw answer (bytes), or a Hangup.
Handler = Callable[[str, str, Any], "bytes | Hangup"]


def accepted(sock: socket.socket, stopping: threading.Event):
    """The connections a listening socket (with a short timeout) accepts until `stopping` is set or it closes."""
    while not stopping.is_set():
        try:
            conn, _ = sock.accept()
        except TimeoutError:
            continue
        except OSError:
            return
        yield conn


class FakeServer:
    """The enrollment service on https://ccm.test.com:<port> (127.0.0.1): ``handler`` answers each request;
    ``calls`` is what the agent asked, in order."""

    def __init__(self, pki: PKI, handler: Handler) -> None:
        self.handler = handler
        self.calls: list[Call] = []
        self.errors: list[str] = []
        self.stopping = threading.Event()
        self._ctx = pki.tls_context()
        self._lock = threading.Lock()
        self._conns: set[socket.socket] = set()
        self._threads: list[threading.Thread] = []
        self._sock = socket.create_server(("127.0.0.1", 0))
        self._sock.settimeout(0.1)
        self.port: int = self._sock.getsockname()[1]
        self._start(self._accept)

    def _start(self, target: Callable[..., None], *args: Any) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        with self._lock:
            self._threads.append(thread)
        thread.start()

    def _accept(self) -> None:
        for conn in accepted(self._sock, self.stopping):
            self._start(self._serve, conn)

    def _serve(self, conn: socket.socket) -> None:
        conn.settimeout(SERVER_TIMEOUT)
        tls = self._ctx.wrap_socket(conn, server_side=True, do_handshake_on_connect=False)
        with self._lock:
            self._conns.add(tls)
        try:
            tls.do_handshake()
            with tls.makefile("rb") as reader:
                while not self.stopping.is_set() and (line := reader.readline(65536)):
                    method, path, _ = line.decode("latin-1").split(" ", 2)
                    fields = {}
                    while (field := reader.readline(65536)) not in (b"\r\n", b""):
                        name, _, value = field.decode("latin-1").partition(":")
                        fields[name.strip().lower()] = value.strip()
                    data = reader.read(int(fields.get("content-length") or 0))
                    body = json.loads(data) if data else None
                    self.calls.append(Call(method, path, body))
                    answer = self.handler(method, path, body)
                    if isinstance(answer, Hangup):
                        if not answer.every:
                            tls.sendall(answer.data)
                        for i in range(len(answer.data) if answer.every else 0):
                            if self.stopping.wait(answer.every if i else 0):
                                break
                            tls.sendall(answer.data[i : i + 1])
                        break
                    tls.sendall(answer)
        except (OSError, ValueError) as exc:  # the agent hung up, or sent what this server cannot read
            self.errors.append(repr(exc))
        finally:
            with self._lock:
                self._conns.discard(tls)
            tls.close()

    def paths(self) -> list[str]:
        return [call.path for call in self.calls]

    def close(self) -> None:
        """Stop accepting, cut every connection, and wait for every thread of this server."""
        self.stopping.set()
        self._sock.close()
        self._threads[0].join(timeout=5)  # the accepting thread: no connection comes after it
        with self._lock:
            conns, threads = list(self._conns), list(self._threads)
        for conn in conns:
            try:  # the descriptor itself: a TLS shutdown would wait for the agent
                socket.socket.shutdown(conn, socket.SHUT_RDWR)
            except OSError:
                pass
        for thread in threads:
            thread.join(timeout=5)
        assert not any(t.is_alive() for t in threads), "a fake server thread did not end"


class FakeOCSPResponder:
    """A plain-HTTP OCSP responder on 127.0.0.1 answering ``body`` (HTTP 200) to every request."""

    def __init__(self, body: bytes) -> None:
        self.body = body
        self.requests = 0
        self._sock = socket.create_server(("127.0.0.1", 0))
        self._sock.settimeout(0.1)
        self.port: int = self._sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}/ocsp"
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        for conn in accepted(self._sock, self._stopping):
            with conn:  # one request at a time is all the agent makes
                try:
                    conn.settimeout(5)
                    data = b""
                    while b"\r\n\r\n" not in data and (chunk := conn.recv(4096)):
                        data += chunk
                    self.requests += 1
                    head = b"HTTP/1.1 200 OK\r\nContent-Type: application/ocsp-response\r\nConnection: close\r\n"
                    conn.sendall(head + b"Content-Length: %d\r\n\r\n" % len(self.body) + self.body)
                except OSError:
                    pass

    def close(self) -> None:
        self._stopping.set()
        self._sock.close()
        self._thread.join(timeout=5)


class FakeNegotiator:
    """Stands in for Kerberos: a constant token, and any ``Negotiate`` answer is mutual authentication."""

    def __init__(self, host: str) -> None:
        self.host = host

    def token(self) -> str:
        return "dG9rZW4="

    def verify(self, header: str | None) -> None:
        from autoenroll.protocol import EnrollmentError

        if not (header or "").lower().startswith("negotiate "):
            raise EnrollmentError(37, "no mutual authentication")


def answering(pki: PKI, **paths: Callable[[Any], bytes | Hangup]) -> Handler:
    """A correct server, except for the endpoints named (``logon=...``, ``sync=...``, ``status=...``),
    which the given function answers from the request body. ``logon_status`` is the report made with the
    status token, ``requests`` the polls of a pending request."""

    def handler(method: str, path: str, body: Any) -> bytes | Hangup:
        name = path.partition("/api/enroll/")[2].partition("?")[0]
        name = "requests" if name.startswith("requests/") else name.replace("/", "_")
        if name in paths:
            return paths[name](body)
        if name == "logon":
            return http_answer(200, pki.issued(pki.issue(body["csr"])))
        if name in ("status", "logon_status"):
            return http_answer(200, {"status": "ok", "revoked_serial": None})
        if name == "sync":
            return http_answer(200, USER)
        return http_answer(404, {"detail": "not found"})

    return handler


@dataclass
class Agent:
    """``autoenroll run`` in this process against a fake server, with HOME, state, log and the folder
    store under ``home``; the environment is set through ``monkeypatch`` (undone after the test)."""

    home: Path
    pki: PKI
    monkeypatch: pytest.MonkeyPatch
    port: int = 0
    #: AUTOENROLL_SYNC_TIMEOUT and AUTOENROLL_CERTIFICATE_TIMEOUT: short, so that a test never waits long.
    sync_timeout: float = 3
    certificate_timeout: float = 6

    @property
    def log_path(self) -> Path:
        return self.home / "autoenroll.log"

    @property
    def state_path(self) -> Path:
        return self.home / "state.json"

    @property
    def store(self) -> Path:
        return self.home / "certs"

    @property
    def config_path(self) -> Path:
        return self.home / "autoenroll.conf"

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8") if self.log_path.exists() else ""

    def last_line(self) -> str:
        lines = self.log().splitlines()
        return lines[-1] if lines else ""

    def serials(self) -> list[str]:
        """The certificates in the store (not archived), by serial."""
        return sorted(p.name.removesuffix(".cert.pem") for p in self.store.glob("*.cert.pem"))

    def write_config(self, **changes: str | None) -> None:
        from autoenroll.agent import client

        mp = self.monkeypatch
        mp.setattr(client, "Negotiator", FakeNegotiator)
        for name, value in {
            "HOME": self.home / "home",
            "XDG_DATA_HOME": self.home / "home/.local/share",
            "XDG_STATE_HOME": self.home / "home/.local/state",
            "AUTOENROLL_STATE": self.state_path,
            "AUTOENROLL_LOG": self.log_path,
        }.items():
            mp.setenv(name, str(value))
        mp.setenv("AUTOENROLL_CONNECT_TO", f"{HOST}:{self.port}:127.0.0.1")
        mp.setenv("AUTOENROLL_SYNC_TIMEOUT", f"{self.sync_timeout:g}")
        mp.setenv("AUTOENROLL_CERTIFICATE_TIMEOUT", f"{self.certificate_timeout:g}")
        values: dict[str, str | None] = {
            "requestpath": f"https://{HOST}:{self.port}",
            "issuername": ISSUER_CN,
            "domainname": "test.com",
            "customeruri": "acme",
            "cafile": str(self.pki.root_pem),
            "store": f"folder:{self.store}",
            "keytype": "ec-p256",
        }
        values.update(changes)
        text = "".join(f"{k}={v}\n" for k, v in values.items() if v is not None)
        self.config_path.write_text(text, encoding="utf-8", errors="surrogatepass")

    def __call__(self, *args: str, **config: str | None) -> int:
        """``autoenroll --config ... <args>`` (default ``run``) with the configuration changed by ``config``."""
        from autoenroll.agent import cli

        self.write_config(**config)
        return cli.main(["--config", str(self.config_path), *(args or ("run",))])
