"""Issued certificates: search, detail, download, revoke (with who and when)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404
from ninja import Query, Router, Schema
from ninja.errors import HttpError
from pydantic import Field

from autoenroll.server.certificates import authority, search
from autoenroll.server.certificates.models import Certificate, RevocationReason
from autoenroll.server.certificates.search import State
from autoenroll.server.enrollment import lifecycle
from autoenroll.server.utils.restrict import restricted
from autoenroll.server.utils.text import text

from .auth import ADMIN_AUTH
from .crud import IsoDateTime, require_admin

router = Router(auth=ADMIN_AUTH, tags=["certificates"])


class CertificateOut(Schema):
    id: int
    serial: str
    ca: str
    profile: str
    mail: str
    subject: str
    issuer: str
    principal: str | None
    not_before: datetime
    not_after: datetime
    state: str
    revoked_at: datetime | None
    revocation_reason: str
    revoked_by: str
    fingerprint_sha256: str

    @staticmethod
    def resolve_ca(obj: Certificate) -> str:
        return obj.ca.name

    @staticmethod
    def resolve_principal(obj: Certificate) -> str | None:
        return obj.person.principal if obj.person_id else None


class CertificateFilter(Schema):
    mail: text(320) | None = None
    principal: text(320) | None = None
    serial: text(200) | None = Field(None, description="hexadecimal, any case; 0x, colons and leading zeros allowed")
    state: State | None = None
    expires_before: IsoDateTime | None = None


class RevokeIn(Schema):
    reason: RevocationReason = RevocationReason.UNSPECIFIED


def _restricted(request: HttpRequest):
    require_admin(request)
    return restricted(Certificate, request.user).select_related("ca", "person")


@router.get("", response=list[CertificateOut], summary="Search certificates")
def list_certificates(request: HttpRequest, filters: Query[CertificateFilter]):
    qs = _restricted(request)
    if filters.mail:
        qs = qs.filter(mail__icontains=filters.mail)
    if filters.principal:
        qs = qs.filter(person__principal__icontains=filters.principal)
    if filters.serial:
        try:
            qs = search.filter_by_serial(qs, filters.serial)
        except ValueError as exc:
            raise HttpError(422, f"serial: {exc}") from None
    if filters.expires_before:
        qs = qs.filter(not_after__lt=filters.expires_before)
    if filters.state:
        qs = search.filter_by_state(qs, filters.state)
    return qs[:1000]


@router.get("/{pk}", response=CertificateOut, summary="Get a certificate")
def get_certificate(request: HttpRequest, pk: int):
    return get_object_or_404(_restricted(request), pk=pk)


@router.get("/{pk}/download", summary="The certificate as PEM (with its chain) or DER")
def download(request: HttpRequest, pk: int, format: Literal["pem", "der"] = "pem", chain: bool = False):
    cert = get_object_or_404(_restricted(request), pk=pk)
    if format == "der":
        der = x509.load_pem_x509_certificate(cert.pem.encode()).public_bytes(serialization.Encoding.DER)
        response = HttpResponse(der, content_type="application/pkix-cert")
        response["Content-Disposition"] = f'attachment; filename="{cert.serial}.cer"'
        return response
    body = cert.pem + (authority.chain_pem(cert.ca) if chain else "")
    response = HttpResponse(body, content_type="application/x-pem-file")
    response["Content-Disposition"] = f'attachment; filename="{cert.serial}.pem"'
    return response


@router.post(
    "/{pk}/revoke",
    response=CertificateOut,
    summary="Revoke, recording who and why",
    description="A certificate revoked already is answered as it is, with its first reason and date: "
    "a retry after a lost answer converges.",
)
def revoke(request: HttpRequest, pk: int, body: RevokeIn):
    cert = get_object_or_404(_restricted(request), pk=pk)
    lifecycle.revoke([cert], body.reason, by=request.user.get_username())
    cert.refresh_from_db()
    return cert
