"""HTTP Negotiate (SPNEGO/Kerberos) for Django views: how domain users prove who they are (guide 2, 2.5).

Plain synchronous code, the way authentik does it: the acceptor credentials of each KerberosRealm come from
that realm's keytab through an explicit credential store, so several realms (customers, guide 6) are served by
one process without ever switching KRB5_* environment variables per request. The realm is chosen from the
ticket in the client's AP-REQ (its realm and service name travel in clear); when the token cannot be read
that way every realm's credentials are tried.

Process-wide Kerberos settings (replay cache directory, clock skew) are made once at start-up by
`kerberos_environment`, called by `serve` and `init` (`server.startup`) before any request thread exists.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import functools
import hashlib
import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import gssapi
import gssapi.raw as gss_raw
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt
from gssapi.raw import ChannelBindings
from gssapi.raw import exceptions as gss_errors
from gssapi.raw.misc import GSSError
from pyasn1.codec.der import decoder as der_decoder
from pyasn1.error import PyAsn1Error
from pyasn1.type import univ

from autoenroll.protocol.principals import computer_principal, user_principal
from autoenroll.server.kerberos import asn1
from autoenroll.server.kerberos.keytab import KeytabError, read_keytab

if TYPE_CHECKING:  # the model is imported lazily: this module is imported before the apps are ready
    from autoenroll.server.kerberos.models import KerberosRealm

logger = logging.getLogger("autoenroll.kerberos")

#: The body CCM answers unauthenticated requests with (guide 2.5).
UNAUTHORIZED_TEXT = "This request requires HTTP authentication ()."
#: MIT's default: tickets whose authenticator time differs more than this from ours are refused.
DEFAULT_CLOCKSKEW = 300
#: A Negotiate header larger than this is refused unread (AD tickets with big PACs stay well below).
MAX_TOKEN_CHARS = 64 * 1024

KINDS = ("missing", "malformed", "replay", "skew", "bindings", "unknown_spn", "no_realm", "other")
#: How each kind reads in the log line (operators grep for these words).
KIND_LABELS = {
    "missing": "no Negotiate token",
    "malformed": "malformed token",
    "replay": "replayed ticket (replay cache hit)",
    "skew": "clock skew too great",
    "bindings": "channel bindings mismatch",
    "unknown_spn": "unknown SPN",
    "no_realm": "no usable realm",
    "other": "refused",
}
# When several realms were tried, the most telling failure is reported.
_PRIORITY = ("replay", "skew", "bindings", "malformed", "other", "unknown_spn", "no_realm")
#: Failures that any other realm's keytab would repeat (and a second try must not touch another replay cache).
_FINAL = ("replay", "skew", "bindings", "malformed")


class NegotiateError(Exception):
    """Authentication failed; `kind` is one of KINDS, `reason` says why in words (never contains the token)."""

    def __init__(self, reason: str, kind: str = "other") -> None:
        if kind not in KINDS:
            raise ValueError(f"unknown kind {kind!r}")
        self.reason = reason
        self.kind = kind
        super().__init__(f"{KIND_LABELS[kind]}: {reason}")


@dataclass(frozen=True)
class Negotiated:
    """A successful Negotiate: who (e.g. user1@TEST.COM), through which realm, and the mutual-auth token."""

    principal: str
    realm: KerberosRealm
    response_token: bytes | None
    service: str | None = None


# ---- TLS channel bindings (RFC 5929 tls-server-end-point) --------------------------------------------------

CBT_PREFIX = b"tls-server-end-point:"


def end_point_hash(cert: x509.Certificate) -> bytes:
    """RFC 5929 4.1: the certificate's signature hash, MD5 and SHA-1 upgraded to SHA-256."""
    algorithm = cert.signature_hash_algorithm
    if algorithm is None or isinstance(algorithm, hashes.MD5 | hashes.SHA1):
        algorithm = hashes.SHA256()
    return cert.fingerprint(algorithm)


@functools.cache
def server_end_point() -> bytes | None:
    """Channel-binding data for the server's own TLS certificate, once per process.

    Windows Server 2025 clients bind their authenticator to the TLS channel and may mark the binding as
    required; MIT then refuses the token unless the acceptor supplies the same bindings. Clients that send
    none are still accepted, so the acceptor always supplies them. None when the server has no TLS
    certificate of its own (behind a TLS-terminating proxy, in tests)."""
    from django.conf import settings

    path = settings.CONFIG.tls_cert_path
    try:
        cert = x509.load_pem_x509_certificate(path.read_bytes())
    except (OSError, ValueError):
        return None
    return CBT_PREFIX + end_point_hash(cert)


# ---- process set-up ----------------------------------------------------------------------------------------


def kerberos_environment(
    data_dir: str | os.PathLike[str],
    clockskew: int = DEFAULT_CLOCKSKEW,
    base_config: str | None = None,
) -> dict[str, str]:
    """Prepare `<data_dir>/rcache` and `<data_dir>/krb5-acceptor.conf`; return the KRB5_* variables to set ONCE.

    Why environment variables at all: MIT reads the replay cache directory only from KRB5RCACHEDIR (default
    /var/tmp, shared with every other program) and the clock skew only from krb5.conf. KRB5_CONFIG takes a
    colon-separated list in which the first file wins, so a small file holding just `clockskew` is put in
    front of the admin's krb5.conf (`base_config`, default: the current KRB5_CONFIG or /etc/krb5.conf).
    Setting variables while request threads run would race with libkrb5's getenv; never call this per request.
    """
    if not 0 <= clockskew <= 86400:
        raise ValueError("clockskew must be between 0 and 86400 seconds")
    root = Path(data_dir)
    rcache = root / "rcache"
    rcache.mkdir(parents=True, exist_ok=True, mode=0o700)
    rcache.chmod(0o700)  # the replay cache holds authenticator hashes of every login
    ours = root / "krb5-acceptor.conf"
    content = (
        "# Written by autoenroll at start-up (kerberos_environment); edits are overwritten.\n"
        f"[libdefaults]\n    clockskew = {int(clockskew)}\n"
    )
    if not ours.exists() or ours.read_text() != content:
        tmp = ours.with_name(f".{ours.name}.{os.getpid()}")
        tmp.write_text(content)
        os.replace(tmp, ours)
    base = base_config if base_config is not None else os.environ.get("KRB5_CONFIG") or "/etc/krb5.conf"
    rest = [p for p in base.split(":") if p and Path(p) != ours]
    return {"KRB5RCACHEDIR": str(rcache), "KRB5_CONFIG": ":".join([str(ours), *rest])}


# ---- acceptor credentials, cached per (realm, keytab path, mtime) -------------------------------------------

_lock = threading.Lock()
_creds: dict[tuple[int, str, int], gssapi.Credentials] = {}
_principals: dict[tuple[str, int, int], frozenset[str]] = {}


def _stat_key(path: str) -> tuple[int, int]:
    st = os.stat(path)
    return st.st_mtime_ns, st.st_size


def acceptor_credentials(realm: KerberosRealm) -> gssapi.Credentials:
    """The realm's acceptor credentials from its keytab (explicit store; any principal in the keytab).

    Built once per process per (realm, keytab path, mtime): a replaced keytab (new kvno after ktpass) is picked
    up without a restart. Raises NegotiateError(no_realm) when the keytab is missing or unusable.
    """
    path = realm.keytab_path
    try:
        mtime, _ = _stat_key(path)
    except OSError as exc:
        raise NegotiateError(f"realm {realm.domain}: keytab {path}: {exc.strerror}", "no_realm") from None
    key = (realm.pk, path, mtime)
    with _lock:
        creds = _creds.get(key)
        if creds is None:
            try:
                creds = gssapi.Credentials(usage="accept", store={"keytab": path})
            except GSSError as exc:
                raise NegotiateError(f"realm {realm.domain}: keytab {path}: {_minor(exc)}", "no_realm") from None
            for old in [k for k in _creds if k[0] == realm.pk]:
                del _creds[old]
            _creds[key] = creds
        return creds


def keytab_principals(path: str) -> frozenset[str] | None:
    """Principals a keytab holds (cached by mtime and size); None when it cannot be read."""
    try:
        key = (path, *_stat_key(path))
    except OSError:
        return None
    with _lock:
        if key in _principals:
            return _principals[key]
    try:
        names = frozenset(e.principal for e in read_keytab(path))
    except KeytabError:
        return None
    with _lock:
        for old in [k for k in _principals if k[0] == path]:
            del _principals[old]
        _principals[key] = names
    return names


def clear_caches() -> None:
    """Forget cached credentials and keytab listings (tests; admin tools after replacing a keytab in place)."""
    with _lock:
        _creds.clear()
        _principals.clear()


# ---- reading the ticket's service name out of the token ------------------------------------------------------


def ticket_service(token: bytes) -> str | None:
    """The service principal (e.g. HTTP/ccm.test.com@TEST.COM) of the ticket inside a Negotiate token.

    Works on SPNEGO NegTokenInit with a Kerberos mechToken and on raw Kerberos GSS tokens; None when the
    token carries no readable AP-REQ (e.g. NTLM first), in which case the caller tries every realm.
    """
    try:
        return _ticket_service(token)
    except (PyAsn1Error, ValueError, OverflowError):  # UnicodeDecodeError is a ValueError
        return None


def _gss_token(data: bytes) -> tuple[univ.ObjectIdentifier, bytes]:
    """(mechanism, inner token) of an RFC 2743 InitialContextToken."""
    body, _ = der_decoder.decode(data, asn1Spec=asn1.GssToken())
    mech, inner = der_decoder.decode(body.asOctets(), asn1Spec=univ.ObjectIdentifier())
    return mech, bytes(inner)


def _ticket_service(token: bytes) -> str | None:
    mech, inner = _gss_token(token)
    if mech == asn1.SPNEGO_MECH:
        negotiation, _ = der_decoder.decode(inner, asn1Spec=asn1.NegotiationToken())
        if negotiation.getName() != "negTokenInit":
            return None
        mech_token = negotiation["negTokenInit"]["mechToken"]
        if not mech_token.isValue:  # no optimistic mechToken
            return None
        mech, inner = _gss_token(mech_token.asOctets())
    if mech not in asn1.KRB5_MECHS or inner[:2] != asn1.TOK_ID_AP_REQ:
        return None
    ap_req, _ = der_decoder.decode(inner[2:], asn1Spec=asn1.ApReq())
    ticket = ap_req["ticket"]
    realm = ticket["realm"].asOctets().decode("utf-8")
    parts = [part.asOctets().decode("utf-8") for part in ticket["sname"]["name-string"]]
    name = "/".join(parts) + "@" + realm
    if not parts or not realm or not name.isprintable():  # it is unauthenticated text that ends up in the log
        return None
    return name


# ---- classification ------------------------------------------------------------------------------------------


def _minor(exc: GSSError) -> str:
    """The most specific line of a GSSError (the minor status when there is one)."""
    try:
        message = exc.gen_message()
    except Exception:  # noqa: BLE001 - never let error formatting hide the error
        message = str(exc)
    head, sep, tail = message.rpartition("Minor (")
    if sep:
        text = tail.split(": ", 1)[-1].strip()
        if text and text.lower() != "unknown error":
            return text
    return message.split(", Minor (")[0].split(": ", 1)[-1].strip() or message


_UNKNOWN_SPN_MARKERS = (
    "server not found in kerberos database",
    "not found in keytab",
    "key table entry not found",
    "no key table entry found",
    "wrong principal in request",
    "no principal in keytab matches",
)


def classify_gss_error(exc: GSSError) -> NegotiateError:
    """Turn a GSSError from accepting a token into a NegotiateError with the right kind.

    MIT's minor status numbers are remapped per process by the mechglue (they read 100001, 100005, ...), so
    the minor message text is what identifies the cause; the major code catches defective tokens.
    """
    text = _minor(exc)
    low = text.lower()
    if "replay" in low:
        return NegotiateError(text, "replay")
    if "clock skew" in low:
        return NegotiateError(text, "skew")
    if any(m in low for m in _UNKNOWN_SPN_MARKERS):
        if "kvno" in low and "out of date" in low:
            return NegotiateError(f"{text} (export the keytab again)", "other")
        return NegotiateError(text, "unknown_spn")
    if isinstance(exc, gss_errors.DuplicateTokenError):
        return NegotiateError(text, "replay")
    if isinstance(exc, gss_errors.InvalidTokenError | gss_errors.BadMechanismError | gss_errors.TokenReadError):
        return NegotiateError(text, "malformed")
    return NegotiateError(text, "other")


# ---- accepting -----------------------------------------------------------------------------------------------


def accept_token(
    token: bytes, creds: gssapi.Credentials, channel_bindings: bytes | None = None
) -> tuple[str, bytes | None, str | None]:
    """Run the acceptor once: (initiator principal, output token, service name) or NegotiateError.

    Through python-gssapi's raw calls: its high-level context (argument binding and a context inquiry per
    property) cost as much Python as the accept itself on every logon."""
    bindings = ChannelBindings(application_data=channel_bindings) if channel_bindings else None
    try:
        accepted = gss_raw.accept_sec_context(token, creds, None, bindings)
        if accepted.more_steps:
            raise NegotiateError("the client's first token needs another round trip (no Kerberos token first)", "other")
        initiator = _display(accepted.initiator_name)
        try:
            target = gss_raw.inquire_context(
                accepted.context, initiator_name=False, lifetime=False, mech=False, flags=False, locally_init=False
            ).target_name
            service = _display(target) if target is not None else None
        except GSSError:
            service = None
    except GSSError as exc:
        if "channel binding" in str(exc).lower():
            raise NegotiateError("channel bindings do not match this server's TLS certificate", "bindings") from None
        raise classify_gss_error(exc) from None
    return initiator, accepted.token or None, service


def _display(name: gss_raw.Name) -> str:
    return gss_raw.display_name(name, name_type=False).name.decode("utf-8")


def _check_initiator(principal: str, realm: KerberosRealm) -> None:
    """A person's or a computer's principal of the accepting realm (services are refused)."""
    try:
        _, principal_realm = user_principal(principal)
    except ValueError:
        try:
            _, principal_realm = computer_principal(principal)
        except ValueError as exc:
            raise NegotiateError(f"initiator {principal}: {exc}", "other") from None
    if principal_realm.upper() != realm.realm.upper():
        raise NegotiateError(
            f"cross-realm principal {principal} refused by realm {realm.domain} ({realm.realm})", "other"
        )


def _parse_header(request: HttpRequest) -> bytes:
    header = request.META.get("HTTP_AUTHORIZATION", "")
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() != "negotiate":
        raise NegotiateError("no 'Authorization: Negotiate' header", "missing")
    value = value.strip()
    if not value:
        raise NegotiateError("empty Negotiate token", "malformed")
    if len(value) > MAX_TOKEN_CHARS:
        raise NegotiateError(f"Negotiate token longer than {MAX_TOKEN_CHARS} characters", "malformed")
    try:
        token = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise NegotiateError("Negotiate token is not base64", "malformed") from None
    if token.startswith(b"NTLMSSP\x00"):
        raise NegotiateError(
            "NTLM token: the client has no Kerberos ticket for this server (not logged on to the domain, "
            "or the host name it used has no SPN)",
            "other",
        )
    return token


def _candidates(service: str | None, realms: list[KerberosRealm]) -> tuple[list[KerberosRealm], bool]:
    """Realms to try, best first, and whether one of them is known to hold the ticket's service key."""
    if service is None:
        return realms, False
    service_realm = service.rpartition("@")[2].upper()
    holding = [r for r in realms if service in (keytab_principals(r.keytab_path) or ())]
    if not holding:
        return realms, False

    def rank(r: KerberosRealm) -> tuple[bool, bool]:
        return (r.service_principal != service, r.realm.upper() != service_realm)

    return sorted(holding, key=rank), True


def authenticate(request: HttpRequest, realms: list[KerberosRealm] | None = None) -> Negotiated:
    """Authenticate the request's `Authorization: Negotiate` token against the configured realms.

    The initiator must be a user principal of the realm that the accepting KerberosRealm's service principal
    belongs to: cross-realm principals (user@OTHER.REALM through a trust) are refused, because users are then
    looked up in that realm's directory and a foreign name would resolve to the wrong account or none.
    Raises NegotiateError(kind) on failure.
    """
    token = _parse_header(request)
    if realms is None:
        from autoenroll.server.kerberos.models import KerberosRealm

        realms = list(KerberosRealm.objects.select_related("customer"))
    if not realms:
        raise NegotiateError("no Kerberos realm is configured", "no_realm")
    # Which realm the ticket is for matters only when there is a choice (parsing costs ~0.3 ms).
    service = ticket_service(token) if len(realms) > 1 else None
    candidates, known = _candidates(service, realms)
    failures: list[NegotiateError] = []
    for realm in candidates:
        try:
            principal, out, accepted_service = accept_token(token, acceptor_credentials(realm), server_end_point())
        except NegotiateError as exc:
            failures.append(exc)
            if exc.kind in _FINAL:
                break
            continue
        _check_initiator(principal, realm)
        _first_use_in_cluster(token)
        return Negotiated(principal, realm, out, accepted_service or service)
    worst = min(failures, key=lambda e: _PRIORITY.index(e.kind))
    if worst.kind in ("unknown_spn", "no_realm") and service is not None and not known:
        raise NegotiateError(f"ticket for {service}, which no configured keytab holds ({worst.reason})", "unknown_spn")
    raise worst


# ---- the replay cache shared by the servers of a cluster ------------------------------------------------------

_accepted = 0


def _first_use_in_cluster(token: bytes) -> None:
    """On PostgreSQL (several servers may share it behind a load balancer), refuse a token that another
    server accepted already; MIT's replay cache only knows this host's. SQLite is one host: nothing to do.

    One statement, committed by itself (autocommit) or with the caller's transaction: a row for the token's
    digest, left out when another server's row for it is there (seen before)."""
    global _accepted
    from django.conf import settings
    from django.db import connection
    from django.utils import timezone

    from autoenroll.server.kerberos.models import SeenAuthenticator
    from autoenroll.server.utils import rows

    if connection.vendor != "postgresql":
        return
    now = timezone.now()
    seen = SeenAuthenticator(
        digest=hashlib.sha256(token).hexdigest(),
        expires=now + datetime.timedelta(seconds=settings.CONFIG.kerberos_clockskew * 2 + 60),
    )
    if rows.insert(seen, ignore_conflicts=True)._state.adding:
        raise NegotiateError("this token was accepted before by a server of this cluster", "replay")
    _accepted += 1
    if _accepted % 1000 == 0:  # keep the table to the authenticators that could still be replayed
        SeenAuthenticator.objects.filter(expires__lt=now).delete()


# ---- the one entry point for views -------------------------------------------------------------------------


def unauthorized() -> HttpResponse:
    """401 with `WWW-Authenticate: Negotiate` and the guide's text, as CCM answered."""
    response = HttpResponse(UNAUTHORIZED_TEXT, status=401, content_type="text/plain; charset=utf-8")
    response["WWW-Authenticate"] = "Negotiate"
    return response


def _client(request: HttpRequest) -> str:
    return request.META.get("REMOTE_ADDR") or "?"


def log_failure(request: HttpRequest, exc: NegotiateError) -> None:
    """One line saying why (replay, clock skew, unknown SPN, ...); never the token. A missing header is
    the normal first leg of every exchange, so only DEBUG."""
    level = logging.DEBUG if exc.kind == "missing" else logging.WARNING
    logger.log(
        level,
        "Negotiate authentication failed: %s: %s (client %s, %s %s)",
        KIND_LABELS[exc.kind],
        exc.reason,
        _client(request),
        request.method,
        request.path,
        extra={"kerberos_failure": exc.kind},
    )


def negotiate(request: HttpRequest, realms: list[KerberosRealm] | None = None) -> Negotiated:
    """Authenticate the request (every view that takes Kerberos calls this): sets request.negotiated,
    kerberos_principal and kerberos_realm; a failure is logged and raised as NegotiateError."""
    try:
        result = authenticate(request, realms)
    except NegotiateError as exc:
        log_failure(request, exc)
        raise
    request.negotiated = result
    request.kerberos_principal = result.principal
    request.kerberos_realm = result.realm
    return result


def mutual_auth(response: HttpResponse, negotiated: Negotiated | None) -> HttpResponse:
    """Add the acceptor's token (mutual authentication) to the answer of a negotiated request."""
    if negotiated is not None and negotiated.response_token:
        response["WWW-Authenticate"] = "Negotiate " + base64.b64encode(negotiated.response_token).decode("ascii")
    return response


def negotiate_required(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """`negotiate` + `mutual_auth` around a plain Django view (401 on failure).

    CSRF-exempt: Negotiate-authenticated calls carry no cookie, so there is no ambient authority to forge.
    """

    @functools.wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        try:
            negotiated = negotiate(request)
        except NegotiateError:
            return unauthorized()
        return mutual_auth(view(request, *args, **kwargs), negotiated)

    return csrf_exempt(wrapper)
