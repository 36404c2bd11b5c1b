"""The one LDAP client of the server: binds as the AD server's login DN and reads users.

Simple binds go over LDAPS or StartTLS only (AD and Samba refuse them in clear, rightly); a clear
bind happens only when an admin ticked "allow plain bind". The DC's CA is pinned when configured.
Every value that goes into a filter is escaped.

Over StartTLS (and an allowed plain bind), searches, the one AD read of every logon, go through
OpenLDAP's C library (python-ldap): 0.07 ms of CPU each here, against 0.8 ms in ldap3's pure-Python
BER. The connection is made here and handed to libldap, so that every read on it is bounded by the
AD server's timeout and the certificate is checked for `tls_server_name` (or the address). LDAPS stays
on ldap3: libldap would open that connection itself, and its TLS handshake waits without a bound on a
DC that accepts and then hangs. Writes (publishing certificates) are rare and stay on ldap3.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import os
import socket
import ssl
import struct
import tempfile
import threading
import time
import weakref
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

import ldap as libldap
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
#: LDAP_SERVER_PERMISSIVE_MODIFY_OID (MS-ADTS 3.1.1.3.4.1.8): adding a value that is there, or deleting
#: one that is not, succeeds. AD and Samba support it; not critical, as AD's own tools send it.
PERMISSIVE_MODIFY = ("1.2.840.113556.1.4.1413", False, None)
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
    networks: tuple = ()  # the networks (ipaddress) the DC's address must be in; empty: any


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
    """The directory could not answer; `stage` says where: dns, address (outside the allowed networks), tcp,
    tls, timeout, bind, base_dn, search or modify."""

    def __init__(self, stage: str, message: str) -> None:
        self.stage, self.message = stage, message
        super().__init__(f"{stage}: {message}")


def _tls(settings: LDAPSettings) -> Tls:
    """The certificate checked for the TLS server name, else the address as the admin gave it (ldap3
    checks the address it connects to as well: the one a name resolved to, when the networks are limited)."""
    kwargs: dict = {"validate": ssl.CERT_REQUIRED, "version": ssl.PROTOCOL_TLS_CLIENT}
    if settings.ca_pem:
        kwargs["ca_certs_data"] = settings.ca_pem
    name = settings.tls_server_name or settings.address
    return Tls(valid_names=[name], sni=_sni(name), **kwargs)


def _sni(name: str) -> str | None:
    """An address is not sent as a server name (RFC 6066 3)."""
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return name
    return None


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
        self._idle: dict[bool, list] = {False: [], True: []}  # by kind: libldap (True) or ldap3
        self._lock = threading.Lock()
        self._pool_size = pool_size
        self.breaker = CircuitBreaker(f"{settings.address}:{settings.port}")
        self.opened = 0  # connections opened so far (binds): for tests and metrics
        self._libldap = not settings.use_ssl  # StartTLS or a plain bind: see the module's docstring
        self._ca_file = (
            _ca_file(settings.ca_pem) if self._libldap and _wants_tls(settings) and settings.ca_pem else None
        )
        if self._ca_file:  # removed with the client, or when the process exits
            self._forget_ca_file = weakref.finalize(self, _remove, self._ca_file)

    # Connection ---------------------------------------------------------------------------

    def _open(self) -> Connection:
        addresses = _resolve(self.settings)
        for address in addresses[:-1]:
            try:
                return self._open_at(address)
            except DirectoryError as exc:
                if exc.stage != "tcp":
                    raise
                log.info("AD server %s: %s; trying its next address", self.settings.address, exc)
        return self._open_at(addresses[-1])

    def _open_at(self, address: str) -> Connection:
        s = self.settings
        tls = _tls(s) if _wants_tls(s) else None
        # No schema download (get_info=NONE): it costs a round trip per connection and we read few attributes.
        server = Server(address, port=s.port, use_ssl=s.use_ssl, tls=tls, connect_timeout=s.timeout, get_info=NONE)
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
        try:
            self._start_tls_and_bind(conn, tls)
        except BaseException:
            _unbind(conn)  # its socket now, not at garbage collection
            raise
        return conn

    def _start_tls_and_bind(self, conn: Connection, tls: Tls | None) -> None:
        if not self.settings.use_ssl and tls is not None:
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

    def _open_libldap(self) -> _Libldap:
        """Connected to the address here; StartTLS checks the certificate for the name in the URL."""
        s = self.settings
        sock = _connect(s, _resolve(s))
        with sock:  # closed unless libldap took it
            sock.settimeout(None)  # libldap reads it blocking; a DC that stops answering fails a read after this
            bound = struct.pack("ll", s.timeout + 1, 0)  # (libldap's own timeout, a second sooner, names it)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, bound)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, bound)
            url = f"ldap://{_url_host(s.tls_server_name or s.address)}:{s.port}"
            ld = libldap.initialize(url, fileno=sock.fileno())
            sock.detach()  # libldap's now: unbinding closes it
        conn = _Libldap(ld)
        try:
            for option, value in (
                (libldap.OPT_PROTOCOL_VERSION, 3),
                (libldap.OPT_REFERRALS, 0),
                (libldap.OPT_NETWORK_TIMEOUT, float(s.timeout)),
                (libldap.OPT_TIMEOUT, float(s.timeout)),
                *(_libldap_tls_options(self._ca_file) if _wants_tls(s) else ()),
            ):
                ld.set_option(option, value)
            if _wants_tls(s):
                try:
                    ld.start_tls_s()
                except libldap.TIMEOUT as exc:
                    raise DirectoryError("timeout", f"no answer within {s.timeout} s: {_libldap_text(exc)}") from None
                except libldap.LDAPError as exc:
                    raise DirectoryError("tls", f"StartTLS failed: {_libldap_text(exc)}") from None
            try:
                ld.simple_bind_s(s.login_dn, s.password)
            except libldap.TIMEOUT as exc:
                raise DirectoryError("timeout", f"no answer within {s.timeout} s: {_libldap_text(exc)}") from None
            except libldap.SERVER_DOWN as exc:
                raise DirectoryError(
                    "tcp", f"{s.address}:{s.port} closed the connection: {_libldap_text(exc)}"
                ) from None
            except libldap.LDAPError as exc:
                raise DirectoryError("bind", _libldap_text(exc)) from None
        except BaseException:
            conn.unbind()
            raise
        return conn

    @contextlib.contextmanager
    def _connection(self, *, fresh: bool = False, c: bool = False) -> Iterator:
        """An idle bound connection (or a new one), of libldap (`c`) or ldap3; back to the pool after
        use unless it broke."""
        conn = None
        if not fresh:
            with self._lock:
                conn = self._idle[c].pop() if self._idle[c] else None
        if conn is None or conn.closed:
            conn = self._open_libldap() if c else self._open()
            self.opened += 1
        try:
            yield conn
        except BaseException:
            _unbind(conn)
            raise
        if conn.closed:
            return
        with self._lock:
            if len(self._idle[c]) < self._pool_size:
                self._idle[c].append(conn)
                return
        _unbind(conn)

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle[False] + self._idle[True], {False: [], True: []}
        for conn in idle:
            _unbind(conn)
        if self._ca_file:
            self._forget_ca_file()

    def _search(self, base: str, flt: str, scope, attributes: list[str]) -> list:
        with self.breaker.guard():
            if self._libldap:
                return self._search_libldap(base, flt, scope, attributes)
            return self._search_once(base, flt, scope, attributes)

    def _search_libldap(self, base: str, flt: str, scope, attributes: list[str]) -> list:
        """`_search_once` through libldap: the same retry, the same stages, entries in ldap3's shape."""
        for attempt in (1, 2):
            with self._connection(fresh=attempt == 2, c=True) as conn:
                try:
                    return conn.search(base, flt, _SCOPES[scope], attributes, self.settings.timeout)
                except libldap.NO_SUCH_OBJECT:
                    raise DirectoryError("base_dn", f"{base} does not exist") from None
                except libldap.TIMEOUT as exc:
                    raise DirectoryError("timeout", f"no answer within {self.settings.timeout} s: {exc}") from None
                except (
                    libldap.SERVER_DOWN,
                    libldap.UNAVAILABLE,
                    libldap.BUSY,
                    libldap.OPERATIONS_ERROR,
                    libldap.OTHER,
                ) as exc:
                    conn.unbind()  # stale or refused: once more on a new connection
                    if attempt == 2:
                        raise DirectoryError("search", _libldap_text(exc)) from None
                except libldap.LDAPError as exc:
                    raise DirectoryError("search", _libldap_text(exc)) from None
        return []

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
        certificate to encrypt to. The login DN needs write access to it (AD's Cert Publishers group).

        AD's permissive modify makes it idempotent: a value already there is not added twice, a value
        already gone is not an error, so a retry or a second server doing the same converges."""
        ops = [(MODIFY_ADD, list(add))] if add else []
        ops += [(MODIFY_DELETE, list(remove))] if remove else []
        if ops:
            with self.breaker.guard():
                self._modify(dn, {"userCertificate": ops})

    def published_certificates(self, dn: str) -> set[bytes]:
        """The DER certificates in the user's userCertificate, as Outlook finds them (over ldap3, as
        writes are: the values are binary)."""
        with self.breaker.guard():
            entries = self._search_once(dn, "(objectClass=user)", BASE, ["userCertificate"])
        for entry in entries:
            if entry.get("type") == "searchResEntry":
                raw = {name.lower(): values for name, values in entry.get("raw_attributes", {}).items()}
                return set(raw.get("usercertificate", []))
        return set()

    def _modify(self, dn: str, changes: dict) -> None:
        for attempt in (1, 2):
            with self._connection(fresh=attempt == 2) as conn:
                try:
                    ok = conn.modify(dn, changes, controls=[PERMISSIVE_MODIFY])
                except LDAPException as exc:
                    _unbind(conn)
                    self._raise_if_timed_out(exc)
                    if attempt == 2:
                        raise DirectoryError("modify", str(exc)) from None
                    continue
                if ok:
                    return
                result = conn.result
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
        with self._connection(c=self._libldap) as conn:
            if self._libldap:
                der = conn.ld.get_option(libldap.OPT_X_TLS_PEERCERT) if _wants_tls(self.settings) else None  # fmt: skip
            else:
                sock = conn.socket
                der = sock.getpeercert(binary_form=True) if isinstance(sock, ssl.SSLSocket) else None
        return DCCertificate.from_der(der) if der else None


class _Libldap:
    """A libldap connection, and whether it was closed (ldap3's connections say so themselves)."""

    def __init__(self, ld) -> None:
        self.ld, self.closed = ld, False

    def search(self, base: str, flt: str, scope: int, attributes: list[str], timeout: float) -> list[dict]:
        """The entries (at most 2: one more than a logon needs, to see an ambiguous principal)."""
        msgid = self.ld.search_ext(base, scope, flt, attributes, sizelimit=2)
        entries = []
        try:
            while True:
                kind, found, *_ = self.ld.result3(msgid, all=0, timeout=timeout)
                if kind == libldap.RES_SEARCH_RESULT:
                    break
                entries += [_entry(dn, values, attributes) for dn, values in found if dn is not None]
        except libldap.SIZELIMIT_EXCEEDED:
            pass  # the entries before the limit were read
        return entries

    def unbind(self) -> None:
        if not self.closed:
            self.closed = True
            with contextlib.suppress(libldap.LDAPError):
                self.ld.unbind_ext_s()


def _entry(dn: str, values: dict[str, list[bytes]], attributes: list[str]) -> dict:
    """ldap3's shape of an entry (attribute names as asked, case-insensitively; values as text)."""
    by_name = {name.lower(): found for name, found in values.items()}
    decoded = {name: [v.decode("utf-8", "replace") for v in by_name.get(name.lower(), [])] for name in attributes}
    return {"type": "searchResEntry", "dn": dn, "attributes": decoded}


_SCOPES = {SUBTREE: libldap.SCOPE_SUBTREE, BASE: libldap.SCOPE_BASE}


def _wants_tls(settings: LDAPSettings) -> bool:
    return settings.use_ssl or not settings.allow_plain_bind


def _libldap_tls_options(ca_file: str | None) -> tuple:
    """The DC's certificate is required and checked: against the pinned CA, else the system's."""
    if ca_file:
        trust = ((libldap.OPT_X_TLS_CACERTFILE, ca_file),)
    else:
        paths = ssl.get_default_verify_paths()
        if paths.cafile:
            trust = ((libldap.OPT_X_TLS_CACERTFILE, paths.cafile),)
        else:
            trust = ((libldap.OPT_X_TLS_CACERTDIR, paths.capath),) if paths.capath else ()
    return (
        (libldap.OPT_X_TLS_REQUIRE_CERT, libldap.OPT_X_TLS_DEMAND),
        *trust,
        (libldap.OPT_X_TLS_NEWCTX, 0),  # last: the context is made from the options above
    )


def _remove(path: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)


def _ca_file(pem: str) -> str:
    """libldap reads a pinned CA from a file only: a private copy for this client's connections."""
    fd, path = tempfile.mkstemp(prefix="autoenroll-dc-ca-", suffix=".pem")
    with os.fdopen(fd, "w") as out:
        out.write(pem)
    return path


def _libldap_text(exc: libldap.LDAPError) -> str:
    detail = exc.args[0] if exc.args and isinstance(exc.args[0], dict) else {}
    return ": ".join(str(detail[k]) for k in ("desc", "info") if detail.get(k)) or str(exc)


def _url_host(name: str) -> str:
    try:
        return f"[{name}]" if ipaddress.ip_address(name).version == 6 else name
    except ValueError:
        return name


def in_networks(ip: ipaddress.IPv4Address | ipaddress.IPv6Address, networks) -> bool:
    """Whether a DC at `ip` is one the server may connect to (`ad_networks`; empty: any)."""
    ip = getattr(ip, "ipv4_mapped", None) or ip  # ::ffff:127.0.0.1 reaches 127.0.0.1
    return not networks or any(ip in network for network in networks)


def _resolve(settings: LDAPSettings) -> list[str]:
    """The addresses to connect to, in turn. With networks set (`ad_networks`), those the name resolves to
    that are in one of them, and the connection goes there: resolved again, a name could lead elsewhere.
    Without, the name itself (the connection tries each address it resolves to)."""
    try:
        found = socket.getaddrinfo(settings.address, settings.port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise DirectoryError("dns", f"cannot resolve {settings.address}: {exc.strerror}") from None
    except UnicodeError as exc:  # a label IDNA cannot encode
        raise DirectoryError("dns", f"cannot resolve {settings.address}: {exc}") from None
    if not settings.networks:
        return [settings.address]
    addresses = list(dict.fromkeys(str(info[4][0]) for info in found))
    allowed = [a for a in addresses if in_networks(ipaddress.ip_address(a), settings.networks)]
    if allowed:
        return allowed
    # the addresses a name resolves to are the server's network's business, not the admin's who gave it
    log.info("AD server address %s resolves to %s, outside AUTOENROLL_AD_NETWORKS", settings.address, addresses)
    networks = ", ".join(str(network) for network in settings.networks)
    raise DirectoryError("address", f"{settings.address} is outside the networks AD servers may be in: {networks}")


def _connect(settings: LDAPSettings, addresses: list[str]) -> socket.socket:
    """A TCP connection to the first of `addresses` that answers."""
    for address in addresses:
        try:
            return socket.create_connection((address, settings.port), timeout=settings.timeout)
        except OSError as exc:
            failure = exc
    raise DirectoryError("tcp", f"cannot connect to {settings.address}:{settings.port}: {failure}")


def _unbind(conn) -> None:
    if isinstance(conn, _Libldap):
        conn.unbind()
        return
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
