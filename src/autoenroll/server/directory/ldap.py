"""The one LDAP client of the server: binds as the AD server's login DN and reads users.

Simple binds go over LDAPS or StartTLS only (AD and Samba refuse them in clear, rightly); a clear
bind happens only when an admin ticked "allow plain bind". The DC's CA is pinned when configured.
Every value that goes into a filter is escaped.
"""

from __future__ import annotations

import logging
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from ldap3 import BASE, MODIFY_ADD, MODIFY_DELETE, NONE, SIMPLE, SUBTREE, Connection, Server, Tls
from ldap3.core.exceptions import LDAPException, LDAPSocketOpenError, LDAPStartTLSError
from ldap3.utils.conv import escape_filter_chars

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
class VerifyReport:
    round_trip_ms: float
    clock_skew_seconds: float | None
    dc_time: datetime | None


class DirectoryError(Exception):
    """The directory could not answer; `stage` says where: dns, tcp, tls, bind, base_dn or search."""

    def __init__(self, stage: str, message: str) -> None:
        self.stage = stage
        super().__init__(f"{stage}: {message}")


def _tls(settings: LDAPSettings) -> Tls:
    kwargs: dict = {"validate": ssl.CERT_REQUIRED, "version": ssl.PROTOCOL_TLS_CLIENT}
    if settings.ca_pem:
        kwargs["ca_certs_data"] = settings.ca_pem
    if settings.tls_server_name:
        kwargs["valid_names"] = [settings.tls_server_name]
    return Tls(**kwargs)


class DirectoryClient:
    """A bound connection to one AD server, reopened when it breaks."""

    def __init__(self, settings: LDAPSettings) -> None:
        self.settings = settings
        self._conn: Connection | None = None
        self._lock = threading.Lock()

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

    def _connection(self) -> Connection:
        if self._conn is None or self._conn.closed:
            self._conn = self._open()
        return self._conn

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                try:
                    self._conn.unbind()
                except LDAPException:
                    pass
                self._conn = None

    def _search(self, base: str, flt: str, scope, attributes: list[str]) -> list:
        """Search, reconnecting once if the kept connection went stale."""
        with self._lock:
            for attempt in (1, 2):
                conn = self._connection()
                try:
                    ok = conn.search(base, flt, search_scope=scope, attributes=attributes, size_limit=2)
                except LDAPException as exc:
                    self._conn = None
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
                self._conn = None
        return []

    # Queries ------------------------------------------------------------------------------

    def find_user(self, principal: str) -> DirectoryUser | None:
        """The AD user behind a Kerberos principal (user@REALM), by sAMAccountName or UPN."""
        name, _, realm = principal.partition("@")
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
        with self._lock:
            for attempt in (1, 2):
                conn = self._connection()
                try:
                    ok = conn.modify(dn, changes)
                except LDAPException as exc:
                    self._conn = None
                    if attempt == 2:
                        raise DirectoryError("modify", str(exc)) from None
                    continue
                if ok:
                    return
                result = conn.result
                if result.get("result") == 16 and remove and not add:  # noSuchAttribute: already gone
                    return
                if result.get("result") == 50 and attempt == 1:
                    # insufficientAccessRights: group memberships are read at bind time, so a login
                    # DN just added to Cert Publishers needs a fresh bind.
                    self._conn.unbind()
                    self._conn = None
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
        return VerifyReport(round_trip_ms=rtt, clock_skew_seconds=skew, dc_time=dc_time)


_clients: dict[tuple, DirectoryClient] = {}
_clients_lock = threading.Lock()


def client_for(settings: LDAPSettings) -> DirectoryClient:
    """One kept connection per AD server configuration and process (settings changes open a new one)."""
    with _clients_lock:
        client = _clients.get(tuple(vars(settings).values()))
        if client is None:
            client = _clients[tuple(vars(settings).values())] = DirectoryClient(settings)
        return client
