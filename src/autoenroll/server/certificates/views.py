"""Publication endpoints: `/crl/<ca>.crl`, `/ocsp/<ca>` (RFC 6960 GET and POST), `/ca/<ca>.<format>`.

Plain HTTP by design (served by the publication listener, and over HTTPS too): everything here
is public and signed. No session, no CSRF: relying parties are mail clients and OpenSSL.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
from collections.abc import Callable

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509 import ocsp
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed, HttpResponseNotModified
from django.utils import timezone
from django.utils.http import http_date
from django.views.decorators.csrf import csrf_exempt

from autoenroll import pki
from autoenroll.server.utils import database, http

from . import publication
from .models import CertificateAuthority

log = logging.getLogger(__name__)

#: A CRL is regenerated on every revocation: caches may keep it for minutes, not until nextUpdate.
CRL_MAX_AGE = 300
OCSP_CONTENT_TYPE = "application/ocsp-response"


def _not_found(text: str) -> HttpResponse:
    return HttpResponse(text + "\n", status=404, content_type="text/plain; charset=utf-8")


def _unavailable(text: str) -> HttpResponse:
    response = HttpResponse(text + "\n", status=503, content_type="text/plain; charset=utf-8")
    response["Retry-After"] = str(database.RETRY_SECONDS)
    return response


def _seconds_until(moment: dt.datetime) -> int:
    return max(0, int((moment - timezone.now()).total_seconds()))


def crl(request: HttpRequest, slug: str, partition: str | None = None) -> HttpResponse:
    """The CA's current CRL, or one of its partitions, DER (RFC 5280 4.2.1.13 distribution point)."""
    if request.method not in ("GET", "HEAD"):
        return HttpResponseNotAllowed(["GET", "HEAD"])
    index = None if partition is None else int(partition)
    try:
        ca = CertificateAuthority.objects.filter(name=slug).first()
        if ca is None:
            return _not_found(f"no CA named {slug!r}")
        if index is not None and not publication.crl_partition_published(ca, index):
            return _not_found(f"{slug} has no CRL partition {index}")
        row = publication.current_crl(ca, partition=index)
    except Exception as exc:  # noqa: BLE001 - a relying party gets 503 and comes back; the log says why
        if not database.away(exc, f"CRL of {slug}: 503", "CRL"):
            log.exception("no CRL can be served for %s", slug)
        return _unavailable("the CRL is temporarily unavailable")
    etag = f'"crl-{ca.pk}-{row.number}"'
    max_age = min(CRL_MAX_AGE, _seconds_until(row.next_update))
    headers = {
        "ETag": etag,
        "Last-Modified": http_date(row.this_update.timestamp()),
        "Cache-Control": f"public, max-age={max_age}, no-transform",
        "Expires": http_date(timezone.now().timestamp() + max_age),
    }
    if request.headers.get("If-None-Match") == etag:
        response = HttpResponseNotModified()
    else:
        response = HttpResponse(bytes(row.der), content_type="application/pkix-crl")
        name = slug if index is None else f"{slug}-{index}"
        response["Content-Disposition"] = f'inline; filename="{name}.crl"'
    for name, value in headers.items():
        response[name] = value
    return response


def _ocsp_response(answer: pki.OCSPAnswer, *, cacheable: bool) -> HttpResponse:
    response = HttpResponse(answer.der, content_type=OCSP_CONTENT_TYPE)
    if answer.successful and cacheable and answer.next_update is not None:
        # RFC 5019 6.2: caches may keep a response until nextUpdate.
        max_age = _seconds_until(answer.next_update)
        response["Cache-Control"] = f"max-age={max_age}, public, no-transform, must-revalidate"
        response["Last-Modified"] = http_date(answer.this_update.timestamp())
        response["Expires"] = http_date(answer.next_update.timestamp())
        response["ETag"] = '"' + hashlib.sha1(answer.der, usedforsecurity=False).hexdigest() + '"'
    else:
        response["Cache-Control"] = "no-store"
    return response


@csrf_exempt
def ocsp_view(request: HttpRequest, slug: str, encoded: str | None = None) -> HttpResponse:
    """OCSP over POST (body: DER request) and GET (`/ocsp/<ca>/<url-encoded base64 request>`)."""
    return ocsp_exchange(request.method or "", slug, encoded, request.META.get("CONTENT_LENGTH"), lambda: request.body)


def ocsp_exchange(
    method: str, slug: str, encoded: str | None, content_length: str | None, read_body: Callable[[], bytes]
) -> HttpResponse:
    """The OCSP answer to one HTTP request: what the view answers, and what the publication listener answers
    without Django's middleware (`wsgi.PublicationHandler`)."""
    if method == "POST":
        if encoded:
            return HttpResponseNotAllowed(["GET"])
        length = http.content_length(content_length or "0")
        if length is None or length > pki.ocsp.MAX_OCSP_REQUEST_SIZE:
            return _ocsp_response(pki.unsuccessful_response(ocsp.OCSPResponseStatus.MALFORMED_REQUEST), cacheable=False)
        der = read_body()
    elif method in ("GET", "HEAD"):
        try:
            der = pki.decode_get_request(encoded or "")
        except pki.MalformedOCSPRequest:
            return _ocsp_response(pki.unsuccessful_response(ocsp.OCSPResponseStatus.MALFORMED_REQUEST), cacheable=False)
    else:
        return HttpResponseNotAllowed(["GET", "POST"])
    answer = publication.answer_ocsp(slug, der)
    if log.isEnabledFor(logging.DEBUG):
        log.debug("OCSP %s %s serial %s: %s", method, slug, answer.serial, publication.ocsp_serial_summary(answer))
    return _ocsp_response(answer, cacheable=method != "POST" and not answer.nonce)


# --- certificate downloads -----------------------------------------------------------------------

_CERT_TYPES = {
    "crt": "application/pkix-cert",
    "cer": "application/pkix-cert",
    "der": "application/pkix-cert",
    "pem": "application/x-pem-file",
    "p7b": "application/x-pkcs7-certificates",
    "p7c": "application/pkcs7-mime",
}


def _download(name: str, fmt: str, chain: list[x509.Certificate]) -> HttpResponse:
    if fmt in ("p7b", "p7c"):
        body = publication.pkcs7_bundle(chain)
    elif fmt == "pem":
        body = chain[0].public_bytes(serialization.Encoding.PEM)
    else:
        body = chain[0].public_bytes(serialization.Encoding.DER)
    response = HttpResponse(body, content_type=_CERT_TYPES[fmt])
    # The caIssuers URL (.crt) is fetched by software; the other forms are saved by an admin.
    disposition = "inline" if fmt == "crt" else "attachment"
    response["Content-Disposition"] = f'{disposition}; filename="{name}.{fmt}"'
    response["Cache-Control"] = "public, max-age=86400"
    return response


def ca_certificate(request: HttpRequest, slug: str, fmt: str) -> HttpResponse:
    """A CA certificate as DER (`.crt`: the AIA caIssuers URL, `.cer`, `.der`), PEM, or PKCS#7 with its chain.

    `root` and `issuing` name the current root and issuing CA, so Group Policy instructions
    (guide 3.6) need no CA name; `tls-issuer` is the issuer of this server's HTTPS certificate,
    which clients must trust (guide error 41).
    """
    if request.method not in ("GET", "HEAD"):
        return HttpResponseNotAllowed(["GET", "HEAD"])
    try:
        return _ca_download(slug, fmt)
    except Exception as exc:
        if database.away(exc, f"CA certificate {slug}: 503", "CA certificate"):
            return _unavailable("the CA certificate is temporarily unavailable")
        raise


def _ca_download(slug: str, fmt: str) -> HttpResponse:
    if slug == "tls-issuer":
        chain = publication.tls_issuer_chain()
        if not chain:
            return _not_found("the issuer of this server's TLS certificate is unknown")
        return _download(slug, fmt, chain)
    ca = publication.find_ca(slug)
    if ca is None:
        return _not_found(f"no CA named {slug!r}")
    return _download(slug, fmt, publication.ca_chain(ca))
