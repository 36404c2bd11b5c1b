"""MS-XCEP GetPolicies: the templates, the issuing CAs and where to enroll, for the calling principal.

The answer follows MS-XCEP 3.1.4.1 and validates against the schema of section 6.2 (element order,
nil where the schema wants nil). The policy identity (policyID, template OIDs) is derived from stable
inputs so that clients that cache the policy keep recognising it across restarts and upgrades.
"""

from __future__ import annotations

import base64
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from django.conf import settings
from lxml import etree

from autoenroll.protocol.principals import computer_principal, user_principal
from autoenroll.server.certificates.models import CertificateAuthority

from . import soap, templates
from .soap import XCEP, SoapFault, q

ACTION_GET_POLICIES = "http://schemas.microsoft.com/windows/pki/2009/01/enrollmentpolicy/IPolicy/GetPolicies"
ACTION_GET_POLICIES_RESPONSE = ACTION_GET_POLICIES + "Response"
CEP_PATH = "ADPolicyProvider_CEP_Kerberos/service.svc/CEP"
CES_PATH = "{ca}_CES_Kerberos/service.svc/CES"
#: MS-XCEP 3.1.4.1.3.5: 2 = Transport Kerberos Authentication (HTTP Negotiate).
CLIENT_AUTH_KERBEROS = 2
#: What AD CS answers by default (MS-XCEP <6>): clients ask again after 8 hours.
NEXT_UPDATE_HOURS = 8
POLICY_SCHEMA = 3  # CNG key storage and a hash algorithm
KEY_STORAGE_PROVIDER = "Microsoft Software Key Storage Provider"

# MS-XCEP 3.1.4.1.3.16 OID groups.
GROUP_HASH, GROUP_PUBLIC_KEY, GROUP_EXTENSION, GROUP_EKU, GROUP_TEMPLATE = 1, 3, 6, 7, 9
_OID_NAMES = {
    templates.OID_SHA256: (GROUP_HASH, "sha256"),
    templates.OID_RSA: (GROUP_PUBLIC_KEY, "RSA"),
    templates.OID_TEMPLATE_INFO: (GROUP_EXTENSION, "Certificate Template Information"),
    templates.OID_EKU: (GROUP_EXTENSION, "Enhanced Key Usage"),
    templates.OID_KEY_USAGE: (GROUP_EXTENSION, "Key Usage"),
    templates.OID_EMAIL_PROTECTION: (GROUP_EKU, "Secure Email"),
}


def public_url() -> str:
    return settings.CONFIG.public_url.rstrip("/")


def cep_url() -> str:
    return f"{public_url()}/{CEP_PATH}"


def ces_url(ca: CertificateAuthority) -> str:
    return f"{public_url()}/{CES_PATH.format(ca=ca.name)}"


def policy_id() -> str:
    """Stable per policy server URL, in the {GUID} form AD CS uses."""
    return "{" + str(uuid.uuid5(uuid.NAMESPACE_URL, cep_url())).upper() + "}"


def issuing_cas() -> list[CertificateAuthority]:
    return list(CertificateAuthority.objects.filter(role=CertificateAuthority.Role.ISSUING, active=True).order_by("pk"))


@dataclass(frozen=True)
class Permission:
    enroll: bool
    auto_enroll: bool


def permission_for(principal: str, realm, template: templates.Template) -> Permission:
    """Enroll/autoEnroll for this principal: its realm must name an enabled customer, and users get user
    templates, computer accounts (NAME$) computer templates. The full identity checks run at enrollment."""
    kind_of = computer_principal if template.for_computers else user_principal
    try:
        kind_of(principal)
    except ValueError:
        return Permission(False, False)
    customer = getattr(realm, "customer", None)
    allowed = customer is not None and customer.enabled
    return Permission(allowed, allowed)


def _sub(parent: etree._Element, name: str, value=None, *, nil: bool = False) -> etree._Element:
    element = etree.SubElement(parent, q(XCEP, name))
    if nil:
        element.set(q(soap.XSI, "nil"), "true")
    elif value is not None:
        element.text = str(value).lower() if isinstance(value, bool) else str(value)
    return element


def _client_last_update(request: etree._Element) -> datetime | None:
    client = soap.child(request, XCEP, "client")
    if client is None or soap.is_nil(client):
        raise SoapFault("GetPolicies: the client element is missing or nil (MS-XCEP 3.1.4.1.2.1)")
    last = soap.child(client, XCEP, "lastUpdate")
    if last is None or soap.is_nil(last) or not soap.text(last):
        return None
    raw = soap.text(last).replace("Z", "+00:00")
    try:
        value = datetime.fromisoformat(raw)
    except ValueError:
        raise SoapFault(f"GetPolicies: lastUpdate {soap.text(last)[:40]!r} is not an xs:dateTime") from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _filter_oids(request: etree._Element) -> set[str] | None:
    """MS-XCEP 3.1.4.1.3.22: a missing, nil or empty policyOIDs list means no filter."""
    flt = soap.child(request, XCEP, "requestFilter")
    if flt is None or soap.is_nil(flt):
        return None
    oids = soap.child(flt, XCEP, "policyOIDs")
    if oids is None or soap.is_nil(oids):
        return None
    values = {soap.text(o) for o in oids.findall(q(XCEP, "oid")) if soap.text(o)}
    return values or None


def _last_changed(cas: list[CertificateAuthority]) -> datetime:
    """When the policy last changed: the newest issuing CA (templates change only with a release)."""
    return max((ca.created for ca in cas), default=datetime(2020, 1, 1, tzinfo=UTC))


def get_policies(request: etree._Element, principal: str, realm) -> etree._Element:
    """The GetPoliciesResponse element for a GetPolicies request element."""
    if request.tag != q(XCEP, "GetPolicies"):
        raise SoapFault(f"expected xcep:GetPolicies in the Body, found {request.tag}")
    last_update = _client_last_update(request)
    wanted = _filter_oids(request)
    cas = issuing_cas()
    root = etree.Element(q(XCEP, "GetPoliciesResponse"), nsmap={None: XCEP, "xsi": soap.XSI})
    response = _sub(root, "response")
    _sub(response, "policyID", policy_id())
    _sub(response, "policyFriendlyName", f"autoenroll ({settings.CONFIG.public_url})")
    _sub(response, "nextUpdateHours", NEXT_UPDATE_HOURS)
    if last_update is not None and cas and last_update >= _last_changed(cas):
        _sub(response, "policiesNotChanged", True)
        _sub(response, "policies", nil=True)
        _sub(root, "cAs", nil=True)
        _sub(root, "oIDs", nil=True)
        return root
    _sub(response, "policiesNotChanged", nil=True)

    offered = [t for t in templates.TEMPLATES if wanted is None or t.oid in wanted]
    oid_ids: dict[str, int] = {}  # OID -> oIDReferenceID, in order of first use
    names: dict[str, tuple[int, str]] = {}

    def ref(oid: str, group: int | None = None, name: str | None = None) -> int:
        if oid not in oid_ids:
            oid_ids[oid] = len(oid_ids) + 1
            names[oid] = (group, name) if group else _OID_NAMES[oid]
        return oid_ids[oid]

    if offered and cas:
        policies = _sub(response, "policies")
        for template in offered:
            _policy(policies, template, cas, principal, realm, ref, settings.CONFIG.certificate_days)
    else:
        _sub(response, "policies", nil=True)

    if cas:
        cas_el = _sub(root, "cAs")
        for index, ca in enumerate(cas):
            cert = x509.load_pem_x509_certificate(ca.certificate_pem.encode())
            ca_el = _sub(cas_el, "cA")
            uris = _sub(ca_el, "uris")
            uri = _sub(uris, "cAURI")
            _sub(uri, "clientAuthentication", CLIENT_AUTH_KERBEROS)
            _sub(uri, "uri", ces_url(ca))
            _sub(uri, "priority", 1)
            _sub(uri, "renewalOnly", False)
            _sub(ca_el, "certificate", base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode())
            _sub(ca_el, "enrollPermission", any(permission_for(principal, realm, t).enroll for t in offered))
            _sub(ca_el, "cAReferenceID", index)
    else:
        _sub(root, "cAs", nil=True)

    if oid_ids:
        oids_el = _sub(root, "oIDs")
        for oid, number in oid_ids.items():
            group, name = names[oid]
            oid_el = _sub(oids_el, "oID")
            _sub(oid_el, "value", oid)
            _sub(oid_el, "group", group)
            _sub(oid_el, "oIDReferenceID", number)
            _sub(oid_el, "defaultName", name)
    else:
        _sub(root, "oIDs", nil=True)
    return root


def _policy(parent, template: templates.Template, cas, principal, realm, ref, certificate_days: int) -> None:
    policy = _sub(parent, "policy")
    _sub(policy, "policyOIDReference", ref(template.oid, GROUP_TEMPLATE, template.display_name))
    ca_refs = _sub(policy, "cAs")
    for index in range(len(cas)):
        _sub(ca_refs, "cAReference", index)
    attrs = _sub(policy, "attributes")
    _sub(attrs, "commonName", template.common_name)
    _sub(attrs, "policySchema", POLICY_SCHEMA)
    validity = _sub(attrs, "certificateValidity")
    _sub(validity, "validityPeriodSeconds", int(template.validity(certificate_days).total_seconds()))
    _sub(validity, "renewalPeriodSeconds", int(template.renewal_period(certificate_days).total_seconds()))
    permission = permission_for(principal, realm, template)
    perm = _sub(attrs, "permission")
    _sub(perm, "enroll", permission.enroll)
    _sub(perm, "autoEnroll", permission.auto_enroll)
    key = _sub(attrs, "privateKeyAttributes")
    _sub(key, "minimalKeyLength", template.minimal_key_length)
    _sub(key, "keySpec", templates.KEYSPEC_KEYEXCHANGE)
    _sub(key, "keyUsageProperty", nil=True)
    _sub(key, "permissions", nil=True)
    _sub(key, "algorithmOIDReference", ref(templates.OID_RSA))
    providers = _sub(key, "cryptoProviders")
    _sub(providers, "provider", KEY_STORAGE_PROVIDER)
    revision = _sub(attrs, "revision")
    _sub(revision, "majorRevision", template.major_revision)
    _sub(revision, "minorRevision", template.minor_revision)
    _sub(attrs, "supersededPolicies", nil=True)
    _sub(attrs, "privateKeyFlags", template.private_key_flags)
    _sub(attrs, "subjectNameFlags", template.subject_name_flags)
    _sub(attrs, "enrollmentFlags", template.enrollment_flags)
    _sub(attrs, "generalFlags", template.general_flags)
    _sub(attrs, "hashAlgorithmOIDReference", ref(templates.OID_SHA256))
    _sub(attrs, "rARequirements", nil=True)
    _sub(attrs, "keyArchivalAttributes", nil=True)
    extensions = _sub(attrs, "extensions")
    for oid, critical, value in template.extensions():
        ext = _sub(extensions, "extension")
        _sub(ext, "oIDReference", ref(oid))
        _sub(ext, "critical", critical)
        _sub(ext, "value", base64.b64encode(value).decode())
    ref(templates.OID_EMAIL_PROTECTION)
