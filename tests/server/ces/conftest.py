"""Fixtures for the CEP/CES tests: real Kerberos tickets from the test AD, SOAP envelopes as Windows and
cepces write them, and the published schemas every answer must validate against."""

from __future__ import annotations

import base64
import uuid
from pathlib import Path

import gssapi
import pytest
import xmlschema
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import NameOID
from django.test import Client
from gssapi.raw import ChannelBindings
from lxml import etree

from autoenroll import pki
from autoenroll.server.ces import soap, wstep, xcep

SCHEMAS = Path(__file__).parent / "schemas"
SPNEGO = gssapi.OID.from_int_seq("1.3.6.1.5.5.2")
SERVICE = gssapi.Name("HTTP@ccm.test.com", gssapi.NameType.hostbased_service)
CEP_PATH = "/" + xcep.CEP_PATH
NS = {"s": soap.SOAP12, "a": soap.WSA, "x": soap.XCEP, "t": soap.WST, "e": soap.WSTEP, "w": soap.WSSE}


@pytest.fixture(scope="session")
def schema() -> xmlschema.XMLSchema:
    return xmlschema.XMLSchema(str(SCHEMAS / "all.xsd"))


def assert_valid(schema: xmlschema.XMLSchema, body: bytes) -> etree._Element:
    """The whole envelope, and its Body element on its own as a document root (strict against its
    namespace's global declaration: the envelope's lax wildcard alone would skip unknown elements)."""
    doc = etree.fromstring(body)
    schema.validate(doc)
    payload = doc.find(f"{{{soap.SOAP12}}}Body")[0]
    declared = schema.maps.elements.get(payload.tag)
    assert declared is not None, f"no schema declares {payload.tag}"
    schema.validate(etree.ElementTree(etree.fromstring(etree.tostring(payload))))
    return doc


def ces_path(ca) -> str:
    return "/" + xcep.CES_PATH.format(ca=ca.name)


def envelope(action: str, body: str, *, prefixes: tuple[str, str] = ("s", "a"), to: str = "https://x/") -> bytes:
    s, a = prefixes
    return (
        f'<{s}:Envelope xmlns:{s}="{soap.SOAP12}" xmlns:{a}="{soap.WSA}">'
        f'<{s}:Header><{a}:Action {s}:mustUnderstand="1">\n  {action}\n</{a}:Action>'
        f"<{a}:MessageID>urn:uuid:{uuid.uuid4()}</{a}:MessageID>"
        f'<{a}:To {s}:mustUnderstand="1">{to}</{a}:To></{s}:Header>'
        f'<{s}:Body xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">{body}</{s}:Body></{s}:Envelope>'
    ).encode()


def get_policies(last_update: str | None = None, filter_oids: list[str] | None = None, **kw) -> bytes:
    """GetPolicies as Windows sends it (MS-XCEP 4.1.1.1)."""
    last = f"<lastUpdate>{last_update}</lastUpdate>" if last_update else '<lastUpdate xsi:nil="true"/>'
    if filter_oids is None:
        flt = '<requestFilter xsi:nil="true"/>'
    else:
        oids = "".join(f"<oid>{o}</oid>" for o in filter_oids)
        flt = f"<requestFilter><policyOIDs>{oids}</policyOIDs></requestFilter>"
    client = f'<client>{last}<preferredLanguage xsi:nil="true"/></client>'
    body = f'<GetPolicies xmlns="{soap.XCEP}">{client}{flt}</GetPolicies>'
    return envelope(xcep.ACTION_GET_POLICIES, body, **kw)


def rst(token: bytes | str | None, *, request_type: str = wstep.REQUEST_ISSUE, request_id: str | None = None) -> bytes:
    """RequestSecurityToken as certenroll sends it (MS-WSTEP 4.1.1.1, 4.1.3.1)."""
    parts = [f"<TokenType>{wstep.TOKEN_X509}</TokenType>", f"<RequestType>{request_type}</RequestType>"]
    if token is not None:
        text = token if isinstance(token, str) else base64.b64encode(token).decode()
        wrapped = "\n".join(text[i : i + 64] for i in range(0, len(text), 64))
        parts.append(
            f'<BinarySecurityToken xmlns="{soap.WSSE}" ValueType="{wstep.VALUE_PKCS7}" '
            f'EncodingType="{wstep.ENCODING_BASE64}">{wrapped}</BinarySecurityToken>'
        )
    if request_id is None:
        parts.append(f'<RequestID xmlns="{soap.WSTEP}" xsi:nil="true"/>')
    else:
        parts.append(f'<RequestID xmlns="{soap.WSTEP}">{request_id}</RequestID>')
    return envelope(
        wstep.ACTION_RST, f'<RequestSecurityToken xmlns="{soap.WST}">{"".join(parts)}</RequestSecurityToken>'
    )


def make_csr(
    key=None, *, cn: str | None = None, sans: list[x509.GeneralName] | None = None, template: str | None = None
) -> tuple[object, bytes]:
    """A DER PKCS#10 as certenroll builds it for a template whose names come from AD: no subject."""
    key = key or pki.generate_private_key("rsa-2048")
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)] if cn else [])
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    if template:
        value = b"\x1e" + bytes([len(template) * 2]) + template.encode("utf-16-be")
        builder = builder.add_extension(
            x509.UnrecognizedExtension(x509.ObjectIdentifier("1.3.6.1.4.1.311.20.2"), value), critical=False
        )
    csr = builder.sign(key, hashes.SHA256())
    return key, csr.public_bytes(serialization.Encoding.DER)


def fault_of(body: bytes) -> dict:
    doc = etree.fromstring(body)
    fault = doc.find(".//s:Fault", NS)
    assert fault is not None, body
    detail = fault.find("s:Detail/e:CertificateEnrollmentWSDetail", NS)
    return {
        "code": fault.findtext("s:Code/s:Value", namespaces=NS),
        "subcode": fault.findtext("s:Code/s:Subcode/s:Value", namespaces=NS),
        "reason": fault.findtext("s:Reason/s:Text", namespaces=NS),
        "error_code": None if detail is None else detail.findtext("e:ErrorCode", namespaces=NS),
        "request_id": None if detail is None else detail.findtext("e:RequestID", namespaces=NS),
    }


class SoapClient:
    """One Kerberos user speaking SOAP to the in-process server (Django's test client does HTTP)."""

    def __init__(self, ccache: str) -> None:
        self.creds = gssapi.Credentials(usage="initiate", store={"ccache": ccache})
        self.client = Client(enforce_csrf_checks=True)

    def token(self, bindings: bytes | None = None) -> str:
        cb = ChannelBindings(application_data=bindings) if bindings else None
        ctx = gssapi.SecurityContext(name=SERVICE, creds=self.creds, usage="initiate", mech=SPNEGO, channel_bindings=cb)
        return base64.b64encode(ctx.step()).decode()

    def post(self, path: str, body: bytes, *, auth: bool = True, bindings: bytes | None = None, **extra):
        headers = {"HTTP_AUTHORIZATION": f"Negotiate {self.token(bindings)}"} if auth else {}
        return self.client.post(path, data=body, content_type=soap.CONTENT_TYPE, secure=True, **headers, **extra)


@pytest.fixture
def soap_for(kerberos_env):
    return lambda user: SoapClient(kerberos_env.kinit(user))


@pytest.fixture
def user1(soap_for) -> SoapClient:
    return soap_for("user1")


@pytest.fixture(autouse=True)
def _no_channel_bindings(monkeypatch):
    """In process there is no TLS: the server binds to nothing unless a test says otherwise."""
    from autoenroll.server.kerberos import spnego

    monkeypatch.setattr(spnego, "server_end_point", lambda: None)


@pytest.fixture
def ready(ca, realm, organization):
    """A customer wired to the test AD, with its realm and CA: what a CEP/CES request needs."""
    return organization
