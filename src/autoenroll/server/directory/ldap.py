"""The one LDAP client of the server: binds as the AD server's login DN and reads users.

Simple binds go over LDAPS or StartTLS only (AD and Samba refuse them in clear, rightly); a clear
bind happens only when an admin ticked "allow plain bind". The DC's CA is pinned when configured.
Every value that goes into a filter is escaped.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

from ldap3 import BASE, MODIFY_ADD, MODIFY_DELETE, NONE, SIMPLE, SUBTREE, Connection, Server, Tls
from ldap3.core.exceptions import (
    LDAPException,
    LDAPResponseTimeoutError,
    LDAPSocketOpenError,
    LDAPSocketReceiveError,
    LDAPStartTLSError,
)
from ldap3.utils.conv import escape_filter_chars

from autoenroll.server import metrics

log = logging.getLogger(__name__)

ACCOUNTDISABLE = 0x2
USER_ATTRIBUTES = ["sAMAccountName", "userPrincipalName", "mail", "cn", "userAccountControl", "distinguishedName"]


@dataclass(frozen=True)
class LDAPSettings:
    """What the client needs from an ADServer row (kept plain so it can be tested and cached)."""

    address: str
    port: int
    use_ssl: bool
    users_base_dn: str
    login_dn: str
    password: str
    allow_plain_bind: bool = False
    ca_pem: str = ""
    tls_server_name: str = ""
    timeout: int = 10  # seconds; ldap3 packs it into a socket option, so a whole number


@dataclass(frozen=True)
class DirectoryUser:
    dn: str
    sam_account_name: str
    user_principal_name: str
    mail: str
    cn: str
    enabled: bool


@dataclass(frozen=True)
class DCCertificate:
    """The certificate the DC presented over TLS: which DC was verified, not merely that one answered."""

    subject: str
    issuer: str
    sha256: str  # hex, colon-separated, as `openssl x509 -fingerprint -sha256` prints it

    @classmethod
    def from_der(cls, der: bytes) -> DCCertificate:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes

        cert = x509.load_der_x509_certificate(der)
        sha256 = cert.fingerprint(hashes.SHA256()).hex(":").upper()
        return cls(cert.subject.rfc4514_string(), cert.issuer.rfc4514_string(), sha256)


@dataclass(frozen=True)
class VerifyReport:
    round_trip_ms: float
    clock_skew_seconds: float | None
    dc_time: datetime | None
    dc_certificate: DCCertificate | None = None


class DirectoryError(Exception):
    """The directory could not answer; `stage` says where: dns, tcp, tls, timeout, bind, base_dn, search
    or modify."""

    def __init__(self, stage: str, message: str) -> None:
        self.stage, self.message = stage, message
        super().__init__(f"{stage}: {message}")


def _tls(settings: LDAPSettings) -> Tls:
    kwargs: dict = {"validate": ssl.CERT_REQUIRED, "version": ssl.PROTOCOL_TLS_CLIENT}
    if settings.ca_pem:
        kwargs["ca_certs_data"] = settings.ca_pem
    if settings.tls_server_name:
        kwargs["valid_names"] = [settings.tls_server_name]
    return Tls(**kwargs)


#: Failures that say the DC is not answering (rather than answering no): they open the circuit breaker.
UNREACHABLE = frozenset({"dns", "tcp", "tls", "timeout"})


class CircuitBreaker:
    """A DC that does not answer costs one timeout, not one per request: after such a failure the
    requests fail at once with it (the guide's error 13), except one probe a second that really asks;
    the first probe answered closes the breaker, so a DC that comes back is used again within a
    second, without a restart."""

    PROBE_EVERY = 1.0  # seconds

    def __init__(self, name: str = "") -> None:
        self._up = metrics.AD_SERVER_UP.labels(name)  # what the last request found, for the monitoring
        self._lock = threading.Lock()
        self._failure: DirectoryError | None = None
        self._next_probe = 0.0
        self._probing = False

    @contextlib.contextmanager
    def guard(self) -> Iterator[None]:
        with self._lock:
            failure = self._failure
            probe = failure is not None and not self._probing and time.monotonic() >= self._next_probe
            if failure is not None and not probe:
                raise DirectoryError(failure.stage, f"{failure.message} (not answering: asked again each second)")
            self._probing = self._probing or probe
        try:
            yield
        except DirectoryError as exc:
            self._up.set(0 if exc.stage in UNREACHABLE else 1)
            if exc.stage in UNREACHABLE:
                with self._lock:
                    if self._failure is None:
                        log.warning("AD server not answering, requests fail at once until it does: %s", exc.message)
                    self._failure, self._next_probe = exc, time.monotonic() + self.PROBE_EVERY
            raise
        else:
            self._up.set(1)
            with self._lock:
                if self._failure is not None:
                    log.warning("AD server answers again")
                self._failure = None
        finally:
            if probe:
                with self._lock:
                    self._probing = False


class DirectoryClient:
    """Bound connections to one AD server, reopened when they break.

    A small pool rather than one connection behind a lock: each request thread searches on a connection
    of its own, so one slow answer (a busy or hung DC) does not queue every other logon of the process
    behind it. Idle connections are kept for the next search."""

    def __init__(self, settings: LDAPSettings, pool_size: int = 8) -> None:
        self.settings = settings
        self._idle: list[Connection] = []
        self._lock = threading.Lock()
        self._pool_size = pool_size
        self.breaker = CircuitBreaker(f"{settings.address}:{settings.port}")
        self.opened = 0  # connections opened so far (binds): for tests and metrics

    # Connection ---------------------------------------------------------------------------

    def _open(self) -> Connection:
        s = self.settings
        try:
            socket.getaddrinfo(s.address, s.port, type=socket.SOCK_STREAM)
        except socket.gaierror as exc:
            raise DirectoryError("dns", f"cannot resolve {s.address}: {exc.strerror}") from None
        tls = _tls(s) if (s.use_ssl or not s.allow_plain_bind) else None
        # No schema download (get_info=NONE): it costs a round trip per connection and we read few attributes.
        server = Server(s.address, port=s.port, use_ssl=s.use_ssl, tls=tls, connect_timeout=s.timeout, get_info=NONE)
        conn = Connection(
            server,
            user=s.login_dn,
            password=s.password,
            authentication=SIMPLE,
            receive_timeout=s.timeout,
            raise_exceptions=False,
            check_names=False,
        )
        try:
            conn.open()
        except LDAPSocketOpenError as exc:
            text = str(exc)
            stage = "tls" if ("ssl" in text.lower() or "certificate" in text.lower()) else "tcp"
            raise DirectoryError(stage, f"cannot connect to {s.address}:{s.port}: {text}") from None
        except (LDAPException, OSError, ValueError) as exc:
            raise DirectoryError("tcp", f"cannot connect to {s.address}:{s.port}: {exc}") from None
        if not s.use_ssl and tls is not None:
            try:
                if not conn.start_tls():
                    raise DirectoryError("tls", f"StartTLS refused: {conn.result.get('message')}")
            except (LDAPStartTLSError, LDAPException, ssl.SSLError) as exc:
                raise DirectoryError("tls", f"StartTLS failed: {exc}") from None
        try:
            bound = conn.bind()
        except LDAPException as exc:
            raise DirectoryError("bind", str(exc)) from None
        if not bound:
            raise DirectoryError("bind", f"{conn.result.get('description')}: {conn.result.get('message', '')}".strip())
        return conn

    @contextlib.contextmanager
    def _connection(self, *, fresh: bool = False) -> Iterator[Connection]:
        """An idle bound connection (or a new one); back to the pool after use unless it broke."""
        conn = None
        if not fresh:
            with self._lock:
                conn = self._idle.pop() if self._idle else None
        if conn is None or conn.closed:
            conn = self._open()
            self.opened += 1
        try:
            yield conn
        except BaseException:
            _unbind(conn)
            raise
        if conn.closed:
            return
        with self._lock:
            if len(self._idle) < self._pool_size:
                self._idle.append(conn)
                return
        _unbind(conn)

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            _unbind(conn)

    def _search(self, base: str, flt: str, scope, attributes: list[str]) -> list:
        with self.breaker.guard():
            return self._search_once(base, flt, scope, attributes)

    def _search_once(self, base: str, flt: str, scope, attributes: list[str]) -> list:
        """Search, on a new connection once if a kept one went stale (but not after a timeout: a DC
        that does not answer would only be waited for twice)."""
        for attempt in (1, 2):
            with self._connection(fresh=attempt == 2) as conn:
                try:
                    ok = conn.search(base, flt, search_scope=scope, attributes=attributes, size_limit=2)
                except LDAPException as exc:
                    _unbind(conn)
                    self._raise_if_timed_out(exc)
                    if attempt == 2:
                        raise DirectoryError("search", str(exc)) from None
                    continue
                result = conn.result.get("result")
                if ok or result in (0, 4):  # success or sizeLimitExceeded (entries still returned)
                    return list(conn.response or [])
                if result == 32:  # noSuchObject: the base DN is wrong
                    raise DirectoryError("base_dn", f"{base} does not exist")
                if attempt == 2 or result not in (1, 51, 52, 80):  # operationsError/busy/unavailable/other
                    raise DirectoryError("search", f"{conn.result.get('description')}: {conn.result.get('message')}")
                _unbind(conn)
        return []

    def _raise_if_timed_out(self, exc: LDAPException) -> None:
        """A timeout means the DC does not answer; retrying on a new connection would wait twice."""
        if isinstance(exc, LDAPResponseTimeoutError) or (
            isinstance(exc, LDAPSocketReceiveError) and "timed out" in str(exc).lower()
        ):
            raise DirectoryError("timeout", f"no answer within {self.settings.timeout} s: {exc}") from None

    # Queries ------------------------------------------------------------------------------

    def find_user(self, principal: str) -> DirectoryUser | None:
        """The AD user behind a Kerberos principal (user@REALM), by sAMAccountName or UPN."""
        name, _, realm = principal.rpartition("@")  # the realm follows the last @, as Kerberos writes it
        if not name or any(ord(ch) < 0x20 for ch in principal):
            return None  # AD would cut a value at NUL: "user1\0x" must not find user1
        sam = escape_filter_chars(name)
        upn = escape_filter_chars(f"{name}@{realm}" if realm else name)
        flt = f"(&(objectCategory=person)(objectClass=user)(|(sAMAccountName={sam})(userPrincipalName={upn})))"
        entries = [
            e
            for e in self._search(self.settings.users_base_dn, flt, SUBTREE, USER_ATTRIBUTES)
            if e.get("type") == "searchResEntry"
        ]
        if len(entries) != 1:
            if len(entries) > 1:
                log.warning("principal %s matches %d AD users; refusing to guess", principal, len(entries))
            return None
        a = entries[0]["attributes"]

        def one(attr: str) -> str:
            value = a.get(attr)
            if isinstance(value, list):
                value = value[0] if value else ""
            return str(value or "")

        uac = int(one("userAccountControl") or 0)
        return DirectoryUser(
            dn=entries[0]["dn"],
            sam_account_name=one("sAMAccountName"),
            user_principal_name=one("userPrincipalName"),
            mail=one("mail"),
            cn=one("cn"),
            enabled=not uac & ACCOUNTDISABLE,
        )

    def publish_certificates(self, dn: str, add: list[bytes] = (), remove: list[bytes] = ()) -> None:
        """Add and remove DER certificates in the user's userCertificate, where Outlook looks for the
        certificate to encrypt to. The login DN needs write access to it (AD's Cert Publishers group)."""
        changes = {}
        ops = [(MODIFY_ADD, list(add))] if add else []
        ops += [(MODIFY_DELETE, list(remove))] if remove else []
        if not ops:
            return
        changes["userCertificate"] = ops
        with self.breaker.guard():
            self._modify(dn, changes, only_removing=bool(remove and not add))

    def _modify(self, dn: str, changes: dict, *, only_removing: bool) -> None:
        for attempt in (1, 2):
            with self._connection(fresh=attempt == 2) as conn:
                try:
                    ok = conn.modify(dn, changes)
                except LDAPException as exc:
                    _unbind(conn)
                    self._raise_if_timed_out(exc)
                    if attempt == 2:
                        raise DirectoryError("modify", str(exc)) from None
                    continue
                if ok:
                    return
                result = conn.result
                if result.get("result") == 16 and only_removing:  # noSuchAttribute: already gone
                    return
                if result.get("result") == 50 and attempt == 1:
                    # insufficientAccessRights: group memberships are read at bind time, so a login
                    # DN just added to Cert Publishers needs a fresh bind.
                    _unbind(conn)
                    continue
                raise DirectoryError("modify", f"{result.get('description')}: {result.get('message')}")

    def verify(self) -> VerifyReport:
        """Connect, bind, read the users base DN and the DC's clock (guide 2.3 "Verify", 2.4 time sync)."""
        started = time.perf_counter()
        self._search(self.settings.users_base_dn, "(objectClass=*)", BASE, ["distinguishedName"])
        rtt = (time.perf_counter() - started) * 1000
        dc_time = None
        try:
            root = self._search("", "(objectClass=*)", BASE, ["currentTime"])
            raw = root[0]["attributes"].get("currentTime") if root else None
            if isinstance(raw, list):
                raw = raw[0] if raw else None
            if isinstance(raw, datetime):
                dc_time = raw if raw.tzinfo else raw.replace(tzinfo=UTC)
            elif raw:
                dc_time = datetime.strptime(str(raw)[:14], "%Y%m%d%H%M%S").replace(tzinfo=UTC)
        except (DirectoryError, ValueError):
            dc_time = None
        skew = (datetime.now(UTC) - dc_time).total_seconds() if dc_time else None
        return VerifyReport(rtt, skew, dc_time, self._peer_certificate())

    def _peer_certificate(self) -> DCCertificate | None:
        """The DC's TLS certificate, from a kept connection (None over a plain bind)."""
        with self._connection() as conn:
            sock = conn.socket
            der = sock.getpeercert(binary_form=True) if isinstance(sock, ssl.SSLSocket) else None
        return DCCertificate.from_der(der) if der else None


def _unbind(conn: Connection) -> None:
    try:
        conn.unbind()
    except (LDAPException, OSError):
        pass


_clients: dict[int, DirectoryClient] = {}
_clients_lock = threading.Lock()


def client_for(server_id: int, settings: LDAPSettings) -> DirectoryClient:
    """The kept connections of one AD server (by its row id) in this process; new ones, and the old
    closed, when an admin changed its settings."""
    with _clients_lock:
        client = _clients.get(server_id)
        if client is not None and client.settings == settings:
            return client
        _clients[server_id] = DirectoryClient(settings)
    if client is not None:
        client.close()
    return _clients[server_id]
