"""What every certificate store offers the agent: list, make a request, install, retire.

Guide errors: a store that cannot be opened or listed is error 31, a request (key + CSR) that cannot be
made is error 33, an issued certificate that cannot be installed is error 39. Stores raise
``EnrollmentError`` with those numbers; the run flow logs them.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from autoenroll.protocol import EnrollmentError

if TYPE_CHECKING:
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

OPEN_STORE = 31
CREATE_REQUEST = 33
INSTALL = 39


def summarize(certificate: x509.Certificate) -> dict[str, Any]:
    """What the agent needs to know about a certificate, as plain JSON-able values."""
    from cryptography import x509

    try:
        san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        mails = [m.lower() for m in san.get_values_for_type(x509.RFC822Name)]
    except x509.ExtensionNotFound:
        mails = []
    return {
        "serial": format(certificate.serial_number, "x"),
        "not_before": certificate.not_valid_before_utc.isoformat(),
        "not_after": certificate.not_valid_after_utc.isoformat(),
        "issuer": certificate.issuer.rfc4514_string(),
        "subject": certificate.subject.rfc4514_string(),
        "mails": mails,
    }


class Installed:
    """A certificate found in a store (with a private key, as far as the store can tell).

    Built from the certificate, or from a summary the store saved with it and a loader: the quick
    logon check then needs no X.509 parsing at all."""

    def __init__(
        self,
        certificate: x509.Certificate | None,
        store: str,
        ref: str,
        *,
        summary: dict[str, Any] | None = None,
        loader: Callable[[], x509.Certificate] | None = None,
    ) -> None:
        self._certificate, self.store, self.ref, self._loader = certificate, store, ref, loader
        if summary is None:
            if certificate is None:
                raise ValueError("a certificate or its summary is needed")
            summary = summarize(certificate)
        self.summary = summary
        self.serial: str = summary["serial"]  # lower-case hex without leading zeros, as the server writes it
        self.issuer: str = summary["issuer"]
        self.subject: str = summary["subject"]
        self.mails: list[str] = list(summary["mails"])
        self.not_before = _aware(datetime.datetime.fromisoformat(summary["not_before"]))
        self.not_after = _aware(datetime.datetime.fromisoformat(summary["not_after"]))

    @property
    def certificate(self) -> x509.Certificate:
        if self._certificate is None:
            assert self._loader is not None
            self._certificate = self._loader()
        return self._certificate

    def days_left(self, now: datetime.datetime | None = None) -> int:
        return days_left(self.not_after, now)

    def __repr__(self) -> str:
        return f"Installed({self.serial} in {self.store} as {self.ref!r})"


def _aware(moment: datetime.datetime) -> datetime.datetime:
    """A time without a zone (a summary edited by hand) is UTC, as the agent writes them."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=datetime.UTC)


def days_left(not_after: datetime.datetime, now: datetime.datetime | None = None) -> int:
    """Calendar days of the user's clock until ``not_after``, as the guide's script counted them."""
    now = now or datetime.datetime.now(datetime.UTC)
    return (local_date(not_after) - local_date(now)).days


def local_date(moment: datetime.datetime) -> datetime.date:
    """The date on the user's clock: what the agent's log shows beside its day counts."""
    try:
        return moment.astimezone().date()
    except OverflowError:  # 9999-12-31 23:59:59 UTC (RFC 5280's "no expiry") east of UTC
        return moment.date()


@dataclass
class Request:
    """A key and its CSR made for one enrollment; ``key`` is None when the store keeps it (Windows)."""

    csr_pem: str
    key: PrivateKeyTypes | None = None
    handle: dict[str, Any] = field(default_factory=dict)


class Store:
    """One certificate store. Subclasses set ``kind`` and implement the four operations."""

    kind = "store"
    #: Whether install() accepts a key made elsewhere (a PKCS#12 import); Windows keeps its own.
    imports_keys = True

    def __init__(self, location: str = "") -> None:
        self.location = location
        self.unreadable: list[str] = []  # files certificates() passed over, for the log

    @property
    def name(self) -> str:
        return f"{self.kind}:{self.location}" if self.location else self.kind

    def certificates(self) -> list[Installed]:
        """Every certificate with a private key in the store; EnrollmentError(31) when it cannot be read."""
        raise NotImplementedError

    def create_request(self, cn: str, mail: str, key_type: str) -> Request:
        """A new key and a CSR for it; EnrollmentError(33) on failure. The default keeps the key in memory."""
        try:
            return python_request(cn, mail, key_type)
        except Exception as exc:  # noqa: BLE001 - any failure here is the guide's error 33
            raise EnrollmentError(CREATE_REQUEST, f"{self.name}: {exc}") from None

    def resume_request(self, handle: dict[str, Any], cn: str, mail: str) -> Request | None:
        """The request `create_request` made with this `handle`, again (same key, new CSR), or None when
        the key is gone or kept only in memory, as here."""
        return None

    def install(self, request: Request, certificate: x509.Certificate, chain: list[x509.Certificate]) -> str:
        """Put the issued certificate (with its key and chain) in the store; EnrollmentError(39) on failure."""
        raise NotImplementedError

    def supersede(self, old: Installed) -> None:
        """The platform's handling of a renewed certificate. Keys always stay: they decrypt old mail."""

    def chain_for(self, installed: Installed) -> list[x509.Certificate]:
        """The CA certificates installed with a certificate, where the store keeps them (else none)."""
        return []


def python_request(cn: str, mail: str, key_type: str, key: PrivateKeyTypes | None = None) -> Request:
    """Key made here (never leaves the machine; or `key`, made here before) and a CSR with CN and the
    mail, by the PKI layer's rules."""
    from cryptography.hazmat.primitives import serialization

    from autoenroll.pki.csr import mailbox_csr
    from autoenroll.pki.keys import generate_private_key

    key = key or generate_private_key(key_type)
    csr = mailbox_csr(key, cn, mail)
    return Request(csr.public_bytes(serialization.Encoding.PEM).decode("ascii"), key)


def load_pems(data: bytes) -> list[x509.Certificate]:
    """Every certificate in a PEM bundle (an empty list for none)."""
    from cryptography import x509

    if b"-----BEGIN CERTIFICATE-----" not in data:
        return []
    return x509.load_pem_x509_certificates(data)


def pkcs12_bytes(
    request: Request, certificate: x509.Certificate, chain: list[x509.Certificate], name: str, password: bytes | None
) -> bytes:
    """A PKCS#12 file of key, certificate and chain (AES-256 + PBKDF2 when a password is given)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.serialization import pkcs12

    if request.key is None:
        raise ValueError("the key is held by another store and cannot be exported")
    encryption = serialization.BestAvailableEncryption(password) if password else serialization.NoEncryption()
    return pkcs12.serialize_key_and_certificates(
        name.encode(),
        request.key,
        certificate,
        chain or None,
        encryption,  # type: ignore[arg-type]
    )


TOOL_TIMEOUT = 60  # seconds; every platform tool runs without a terminal, so a prompt fails instead of waiting


def run_tool(argv: list[str], code: int, where: str) -> str:
    """Run a platform tool (certutil, pk12util, certreq, security) and return its output; any failure
    becomes the guide's error `code` with the tool's own words, for autoenroll.log."""
    import subprocess  # here, not at the top: the logon with nothing to do never runs a tool

    try:
        proc = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            timeout=TOOL_TIMEOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # no controlling terminal (ignored on Windows)
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise EnrollmentError(code, f"{where}: {exc}") from None
    if proc.returncode != 0:
        output = (proc.stderr.strip() + " " + proc.stdout.strip()).strip()
        raise EnrollmentError(code, f"{where}: {' '.join(argv[:2])}: {output}")
    return proc.stdout
