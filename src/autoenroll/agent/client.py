"""The enrollment service's client: HTTPS (trust from the system or ``cafile``), HTTP Negotiate with the
logged-on user's Kerberos ticket, the wire format of ``autoenroll.protocol.messages``, and the guide's
client errors for everything that can go wrong on the way.

Kerberos: python-gssapi (MIT/Heimdal GSSAPI) everywhere but Windows, where pyspnego talks to SSPI and
so uses the logon session's ticket with no configuration. Either way the SPN is ``HTTP@<host of
requestpath>`` and the server's mutual-authentication token is checked.

Error mapping: refused/unreachable 35, TLS certificate not trusted 41, no ticket or 401 37, sync answer
late 40, certificate late 34, 5xx without a numbered error 36, any other unusable answer 38; a numbered
server refusal (1-30) is passed on with the server's own message.

``AUTOENROLL_CONNECT_TO=host:port:address[,...]`` connects to ``address`` for ``host:port`` while TLS and
Kerberos still use ``host`` (like curl --resolve); for tests and for networks without the DNS entry of
guide 2.1.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
import math
import os
import re
import socket
import ssl
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from autoenroll.protocol import EnrollmentError
from autoenroll.protocol import messages as msg

CONNECT_TIMEOUT = 10.0
SERVER_CODES = 30  # the guide's server errors are 1-30; 31-41 are the client's own
MAX_MESSAGE = 500  # of a server's refusal, in the log
#: An answer is a certificate and its chain: a few kilobytes. More is not an answer of this protocol.
MAX_ANSWER_BYTES = 1 << 20
_REQUEST_ID = re.compile(r"[0-9A-Za-z-]{1,64}")
CANNOT_CONNECT, SERVER_INTERNAL, AUTHENTICATION, REQUEST_CERTIFICATE = 35, 36, 37, 38
CERTIFICATE_TIMEOUT, SYNC_TIMEOUT, NOT_TRUSTED = 34, 40, 41


class NotOffered(EnrollmentError):
    """The server does not know the call (HTTP 404 without a numbered error): a server older than the agent."""

    def __init__(self, what: str) -> None:
        super().__init__(REQUEST_CERTIFICATE, f"{what}: not offered by this server (HTTP 404)")


class TokenRefused(EnrollmentError):
    """logon/status refused the status token (too old, or another server's secret key)."""

    def __init__(self, what: str) -> None:
        super().__init__(AUTHENTICATION, f"{what}: HTTP 401, the status token was refused")


class ServerRefusal(Exception):
    """The server answered with one of its numbered errors (1-30); message exactly as received."""

    def __init__(self, code: int, message: str, status: int) -> None:
        self.code, self.message, self.status = code, message, status
        super().__init__(f"Error {code}: {message}")


def timeouts() -> tuple[float, float]:
    """(sync, certificate) waits: the guide's 40 s and 2 minutes; AUTOENROLL_SYNC_TIMEOUT and
    AUTOENROLL_CERTIFICATE_TIMEOUT shorten them (tests, impatient admins)."""

    def read(name: str, default: float) -> float:
        try:
            return max(0.1, float(os.environ.get(name, default)))
        except ValueError:
            return default

    return (
        read("AUTOENROLL_SYNC_TIMEOUT", msg.SYNC_TIMEOUT_SECONDS),
        read("AUTOENROLL_CERTIFICATE_TIMEOUT", msg.CERTIFICATE_TIMEOUT_SECONDS),
    )


@contextlib.contextmanager
def watchdog(sock: socket.socket, seconds: float) -> Iterator[threading.Event]:
    """Shuts the socket down when the exchange has not ended within `seconds`; the event says it did. A
    socket's timeout bounds each read, not the answer: a server sending a byte a second would hold the
    logon for as long as it likes."""
    fired = threading.Event()

    def fire() -> None:
        fired.set()
        with contextlib.suppress(OSError):
            socket.socket.shutdown(sock, socket.SHUT_RDWR)  # the descriptor itself, under TLS too

    timer = threading.Timer(seconds, fire)
    timer.daemon = True
    timer.start()
    try:
        yield fired
    finally:
        timer.cancel()


def connect_to(host: str, port: int, setting: str | None = None) -> str:
    """The address to connect to for host:port (AUTOENROLL_CONNECT_TO), else the host itself."""
    for item in (setting if setting is not None else os.environ.get("AUTOENROLL_CONNECT_TO", "")).split(","):
        parts = item.strip().rsplit(":", 2) if item.strip() else []
        if len(parts) == 3 and parts[0].lower() == host.lower() and parts[1] == str(port):
            return parts[2].strip("[]")
    return host


# ---- Kerberos --------------------------------------------------------------------------------------------


class Negotiator:
    """One security context per request (each request carries a fresh authenticator)."""

    def __init__(self, host: str) -> None:
        self.host = host
        self._ctx: Any = None

    def token(self) -> str:
        """The Negotiate token for this host; error 37 when the user holds no usable ticket."""
        try:
            if sys.platform == "win32":
                import spnego

                self._ctx = spnego.client(hostname=self.host, service="HTTP", protocol="negotiate")
                out = self._ctx.step()
            else:
                import gssapi

                name = gssapi.Name(f"HTTP@{self.host}", gssapi.NameType.hostbased_service)
                flags = gssapi.RequirementFlag.mutual_authentication | gssapi.RequirementFlag.out_of_sequence_detection
                spnego_oid = gssapi.OID.from_int_seq("1.3.6.1.5.5.2")
                self._ctx = gssapi.SecurityContext(name=name, usage="initiate", mech=spnego_oid, flags=flags)
                out = self._ctx.step()
        except Exception as exc:  # noqa: BLE001 - GSSError / SpnegoError: no ticket, no KDC, unknown SPN
            text = _gss_text(exc)
            hint = _hint(text, self.host)
            raise EnrollmentError(AUTHENTICATION, f"no Kerberos ticket for HTTP@{self.host}: {text}{hint}") from None
        return base64.b64encode(out or b"").decode("ascii")

    def verify(self, header: str | None) -> None:
        """Check the server's mutual-authentication token (error 37 when absent or wrong)."""
        scheme, _, data = (header or "").partition(" ")
        if scheme.lower() != "negotiate" or not data.strip():
            raise EnrollmentError(AUTHENTICATION, "the server did not authenticate itself (no Negotiate token)")
        try:
            self._ctx.step(base64.b64decode(data.strip()))
            complete = self._ctx.complete
        except Exception as exc:  # noqa: BLE001
            raise EnrollmentError(AUTHENTICATION, f"mutual authentication failed: {_gss_text(exc)}") from None
        if not complete:
            raise EnrollmentError(AUTHENTICATION, "mutual authentication did not complete")


def _hint(text: str, host: str) -> str:
    """What the user or the admin can do about the usual causes of error 37."""
    lowered = text.lower()
    if "credentials cache" in lowered or "no credentials" in lowered or "not found (filename" in lowered:
        return " (no ticket: log on to the domain, or run kinit)"
    if "server not found in kerberos database" in lowered:
        return (
            f" (the KDC this client asked knows no HTTP/{host}: with several realms, the client's krb5.conf"
            " [domain_realm] must map the server's name to the realm of its keytab, docs/agent.md)"
        )
    return ""


def _gss_text(exc: Exception) -> str:
    gen = getattr(exc, "gen_message", None)
    if callable(gen):
        with contextlib.suppress(Exception):
            return f"{gen()}; {exc.min_message()}".strip("; ")  # type: ignore[attr-defined]
    return str(exc).strip() or type(exc).__name__


# ---- HTTP ------------------------------------------------------------------------------------------------


@dataclass
class Answer:
    status: int
    body: dict[str, Any]


class EnrollmentClient:
    """Talks to ``{requestpath}`` (``/api/enroll`` is added when requestpath names no path)."""

    def __init__(self, requestpath: str, *, cafile: str | None = None) -> None:
        url = urlsplit(requestpath)
        self.host = url.hostname or ""
        self.port = url.port or 443
        self.base = url.path.rstrip("/") or msg.API_PREFIX
        self.authority = self.host if self.port == 443 else f"{self.host}:{self.port}"
        try:
            self.context = ssl.create_default_context(cafile=cafile)
        except (OSError, ssl.SSLError) as exc:
            raise EnrollmentError(NOT_TRUSTED, f"cafile {cafile}: {exc}") from None
        self.address = connect_to(self.host, self.port)
        self._conn: Any = None  # kept alive between the calls of one logon: one TLS handshake, not three

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _connect(self, timeout: float, timeout_code: int, where: str):
        """The kept connection if the server has not closed it, else a new one (TLS checked first)."""
        from urllib3 import exceptions as u3
        from urllib3.connection import HTTPSConnection
        from urllib3.util.ssl_match_hostname import CertificateError

        conn = self._conn
        if conn is not None and conn.is_connected:
            conn.sock.settimeout(timeout)
            return conn
        self.close()
        conn = HTTPSConnection(
            self.address,
            self.port,
            timeout=timeout,
            ssl_context=self.context,
            server_hostname=self.host,
            assert_hostname=self.host,
        )
        try:
            conn.connect()
        except (ssl.SSLCertVerificationError, CertificateError) as exc:
            raise EnrollmentError(NOT_TRUSTED, f"{where}: {_reason(exc)}") from None
        except (TimeoutError, u3.ReadTimeoutError):  # TCP accepted, then silence (a TCP timeout is 35)
            raise EnrollmentError(timeout_code, f"{where}: no TLS handshake within {timeout:g} s") from None
        except (u3.HTTPError, OSError, ValueError) as exc:
            raise EnrollmentError(CANNOT_CONNECT, f"{where}: {_reason(exc)}") from None
        self._conn = conn
        return conn

    def call(
        self,
        method: str,
        path: str,
        body: dict | None,
        timeout: float,
        timeout_code: int,
        *,
        kerberos: bool = True,
        connect: tuple[float, int] | None = None,
    ) -> Answer:
        """One request, authenticated with Kerberos unless `kerberos` is False; raises EnrollmentError
        (client codes) or ServerRefusal (1-30). `connect`: another (timeout, code) for the TLS handshake.

        Connect and check TLS first, then ask Kerberos for a token: without a network the answer is 35,
        not 37, and the server's identity is known before a ticket is used for it."""
        from urllib3 import exceptions as u3

        where = f"https://{self.authority}" + (f" ({self.address})" if self.address != self.host else "")
        url = f"{self.base}/{path}"
        kept = self._conn is not None and self._conn.is_connected
        conn = self._connect(*(connect or (timeout, timeout_code)), where)
        conn.sock.settimeout(timeout)  # the answer's own wait
        negotiator = Negotiator(self.host) if kerberos else None
        headers = {"Host": self.authority, "Accept": "application/json", "User-Agent": "autoenroll-agent"}
        if negotiator is not None:
            headers["Authorization"] = f"Negotiate {negotiator.token()}"
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        try:
            with watchdog(conn.sock, timeout) as late:
                conn.request(method, url, body=data, headers=headers, preload_content=False)
                response = conn.getresponse()
                response_data = response.read(MAX_ANSWER_BYTES + 1)
        except Exception as exc:  # noqa: BLE001 - sorted below; whatever it was, this connection is done
            self.close()
            if late.is_set() or isinstance(exc, TimeoutError | u3.ReadTimeoutError):
                raise EnrollmentError(timeout_code, f"no answer to {method} {url} within {timeout:g} s") from None
            if kept and isinstance(exc, ConnectionResetError | BrokenPipeError):
                # The server closed the kept connection as the request went out (its keep-alive ran out):
                # ask again on a new one, with a new Kerberos token. Every call converges when repeated.
                return self.call(method, path, body, timeout, timeout_code, kerberos=kerberos, connect=connect)
            if isinstance(exc, u3.DecodeError):  # Content-Encoding: gzip, and no gzip
                raise EnrollmentError(REQUEST_CERTIFICATE, f"{method} {url}: {exc}") from None
            if isinstance(exc, u3.HTTPError | OSError):
                raise EnrollmentError(CANNOT_CONNECT, f"{where}: {method} {url}: {_reason(exc)}") from None
            if isinstance(exc, http.client.HTTPException | OverflowError | ValueError):  # a status line "ICY 200"
                raise EnrollmentError(REQUEST_CERTIFICATE, f"{method} {url}: not HTTP: {exc!r:.200}") from None
            raise
        if len(response_data) > MAX_ANSWER_BYTES:
            self.close()
            raise EnrollmentError(
                REQUEST_CERTIFICATE, f"{method} {url}: an answer of more than {MAX_ANSWER_BYTES} bytes"
            )
        if response.headers.get("Connection", "").lower() == "close":
            self.close()
        return self._answer(response, response_data, negotiator, f"{method} {url}")

    def _answer(self, response: Any, raw: bytes, negotiator: Negotiator | None, what: str) -> Answer:
        status = response.status
        if status == 401:
            if negotiator is None:
                raise TokenRefused(what)
            raise EnrollmentError(AUTHENTICATION, f"{what}: HTTP 401, the server refused the Kerberos ticket")
        try:
            body = json.loads(raw.decode("utf-8"))
        except (ValueError, UnicodeDecodeError, RecursionError):  # (JSON nested 100,000 deep)
            body = None
        error = body.get("error") if isinstance(body, dict) else None
        code = error.get("code") if isinstance(error, dict) else None
        if type(code) is int and 1 <= code <= SERVER_CODES:  # not True, not 999: the server's numbers only
            raise ServerRefusal(code, str(error.get("message", ""))[:MAX_MESSAGE], status)
        if status >= 500:
            raise EnrollmentError(SERVER_INTERNAL, f"{what}: HTTP {status}")
        if status == 404:
            raise NotOffered(what)
        if status != 200 or not isinstance(body, dict):
            raise EnrollmentError(REQUEST_CERTIFICATE, f"{what}: unexpected answer HTTP {status}")
        if negotiator is not None:
            negotiator.verify(response.headers.get("WWW-Authenticate"))
        return Answer(status, body)

    # ---- one call per logon ----

    def logon(self, body: dict[str, Any], deadline: float) -> dict[str, Any]:
        """Sync, checks and issuance in one call (NotOffered from a server older than the agent). A server
        that does not take the connection within the sync wait is the guide's error 40, as its sync was."""
        connect = (min(timeouts()[0], _left(deadline)), SYNC_TIMEOUT)
        answer = self.call("POST", msg.LOGON, body, _left(deadline), CERTIFICATE_TIMEOUT, connect=connect).body
        return self._collect(answer, deadline)

    def logon_status(self, body: dict[str, Any], timeout: float) -> dict[str, Any]:
        """The installation report, authorised by the logon answer's status token (no Kerberos)."""
        return self.call("POST", msg.LOGON_STATUS, body, timeout, SYNC_TIMEOUT, kerberos=False).body

    # ---- the three calls of the older protocol ----

    def sync(self, config_body: dict[str, Any], timeout: float) -> dict[str, Any]:
        return self.call("POST", msg.SYNC, config_body, timeout, SYNC_TIMEOUT).body

    def enroll(self, body: dict[str, Any], deadline: float) -> dict[str, Any]:
        """Send the CSR, then poll a pending request until it is issued or the deadline (error 34)."""
        answer = self.call("POST", msg.ENROLL, body, _left(deadline), CERTIFICATE_TIMEOUT).body
        return self._collect(answer, deadline)

    def _collect(self, answer: dict[str, Any], deadline: float) -> dict[str, Any]:
        """Poll a pending request until it is issued or the deadline (error 34)."""
        while answer.get("status") == msg.REQUEST_PENDING:
            request_id = str(answer.get("request_id") or "")
            if not _REQUEST_ID.fullmatch(request_id):
                raise EnrollmentError(REQUEST_CERTIFICATE, f"pending answer with request_id {request_id[:80]!r}")
            wait = _retry_after(answer.get("retry_after"))
            if time.monotonic() + wait >= deadline:
                raise EnrollmentError(CERTIFICATE_TIMEOUT, f"request {request_id} still pending")
            time.sleep(wait)
            answer = self.call("GET", f"{msg.REQUESTS}/{request_id}", None, _left(deadline), CERTIFICATE_TIMEOUT).body
        if answer.get("status") != msg.REQUEST_ISSUED or not answer.get("certificate"):
            raise EnrollmentError(
                REQUEST_CERTIFICATE, f"answer without a certificate (status {answer.get('status')!r})"
            )
        return answer

    def status(self, body: dict[str, Any], timeout: float) -> dict[str, Any]:
        return self.call("POST", msg.STATUS, body, timeout, SYNC_TIMEOUT).body


def _retry_after(value: Any) -> float:
    """The server's suggested wait before polling again, within 1 to 30 seconds (5 when unusable)."""
    try:
        wait = float(value)
    except (TypeError, ValueError, OverflowError):
        wait = 5.0
    return min(max(wait, 1.0), 30.0) if math.isfinite(wait) else 5.0


def _left(deadline: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise EnrollmentError(CERTIFICATE_TIMEOUT, "no certificate within the time allowed")
    return left


def _chain(exc: BaseException):
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = getattr(exc, "reason", None) or exc.__cause__ or exc.__context__  # type: ignore[assignment]


def _reason(exc: BaseException) -> str:
    for e in _chain(exc):
        if isinstance(e, ssl.SSLCertVerificationError) and e.verify_message:
            return e.verify_message
        if isinstance(e, OSError) and e.strerror:
            return e.strerror
    return str(exc)
