"""MS-WSTEP RequestSecurityToken: Issue (new and renewal) and QueryTokenStatus, through the enrollment pipeline.

The request token is what certenroll or certmonger produced: a bare PKCS#10, a PKCS#7 SignedData around a
PKCS#10 (renewal: signed by the key of the certificate being renewed), or CMC (PKIData). It is unwrapped
here and handed to the same `sync` + `enroll` the agent uses, with the identity AD holds: the request's
own claims never reach the certificate. Refusals carry the guide's numbers and are recorded as events.
"""

from __future__ import annotations

import base64
import binascii
import logging
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.serialization import pkcs7
from django.utils import timezone
from lxml import etree
from pyasn1.codec.der import decoder as der_decoder
from pyasn1.codec.der import encoder as der_encoder
from pyasn1.error import PyAsn1Error
from pyasn1.type import namedtype, tag, univ
from pyasn1_alt_modules import rfc5652, rfc6402

from autoenroll.protocol import EnrollmentError
from autoenroll.server.certificates import authority
from autoenroll.server.certificates.models import Certificate, CertificateAuthority
from autoenroll.server.enrollment import pipeline
from autoenroll.server.enrollment.events import record_error
from autoenroll.server.enrollment.models import EnrollmentEvent, EnrollmentRequest

from . import soap, templates, xcep
from .soap import WSSE, WST, WSTEP, XML_NS, SoapFault, q

log = logging.getLogger("autoenroll.ces")

ACTION_RST = "http://schemas.microsoft.com/windows/pki/2009/01/enrollment/RST/wstep"
ACTION_RSTRC = "http://schemas.microsoft.com/windows/pki/2009/01/enrollment/RSTRC/wstep"
REQUEST_ISSUE = "http://docs.oasis-open.org/ws-sx/ws-trust/200512/Issue"
REQUEST_QUERY = "http://schemas.microsoft.com/windows/pki/2009/01/enrollment/QueryTokenStatus"
TOKEN_X509 = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-x509-token-profile-1.0#X509v3"
VALUE_PKCS7 = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd#PKCS7"
ENCODING_BASE64 = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd#base64binary"
DISPOSITION_ISSUED = "Issued"
DISPOSITION_PENDING = "Taken Under Submission"  # what AD CS says for a request waiting for a CA manager
MAX_TOKEN_BYTES = 128 * 1024

_DIGESTS = {
    "2.16.840.1.101.3.4.2.1": hashes.SHA256,
    "2.16.840.1.101.3.4.2.2": hashes.SHA384,
    "2.16.840.1.101.3.4.2.3": hashes.SHA512,
}
_RSA_SIGNATURES = {
    "1.2.840.113549.1.1.1",  # rsaEncryption: the digest algorithm says which hash
    "1.2.840.113549.1.1.11",
    "1.2.840.113549.1.1.12",
    "1.2.840.113549.1.1.13",
}
_ECDSA_SIGNATURES = {"1.2.840.10045.4.3.2", "1.2.840.10045.4.3.3", "1.2.840.10045.4.3.4", "1.2.840.10045.2.1"}

# HRESULTs (winerror.h) that Windows shows for a refusal, per guide error number.
E_FAIL = 0x80004005
E_ACCESSDENIED = 0x80070005
E_INVALIDARG = 0x80070057
CERTSRV_E_BAD_REQUESTSUBJECT = 0x80094001
CERTSRV_E_NO_REQUEST = 0x80094002
CERTSRV_E_ENROLL_DENIED = 0x80094011
CERTSRV_E_ADMIN_DENIED_REQUEST = 0x80094014
CERTSRV_E_UNSUPPORTED_CERT_TYPE = 0x80094800
CERTSRV_E_SUBJECT_EMAIL_REQUIRED = 0x80094812
HRESULTS = {
    **dict.fromkeys((1, 2, 3, 4, 5, 6, 7, 8, 10, 11, 17), CERTSRV_E_ENROLL_DENIED),
    **dict.fromkeys((9, 12, 13, 14, 28, 30), E_FAIL),
    **dict.fromkeys((15, 18, 19), CERTSRV_E_BAD_REQUESTSUBJECT),
    **dict.fromkeys((16, 26), CERTSRV_E_SUBJECT_EMAIL_REQUIRED),
    **dict.fromkeys((20, 27), E_ACCESSDENIED),
    25: CERTSRV_E_ADMIN_DENIED_REQUEST,
    29: E_INVALIDARG,
}


def signed32(value: int) -> int:
    """An HRESULT as the xs:int the detail carries (0x80094001 -> -2146877439)."""
    return value - (1 << 32) if value & 0x80000000 else value


def detail(error_code: int | None, request_id: str | None, invalid_request: bool = True) -> etree._Element:
    """wstep:CertificateEnrollmentWSDetail (MS-WSTEP 3.1.4.1.3.7): nil where there is nothing to say."""
    root = etree.Element(q(WSTEP, "CertificateEnrollmentWSDetail"), nsmap={None: WSTEP, "xsi": soap.XSI})
    for name, value in (
        ("BinaryResponse", None),
        ("ErrorCode", None if error_code is None else signed32(error_code)),
        ("InvalidRequest", "true" if invalid_request else "false"),
        ("RequestID", request_id),
    ):
        el = etree.SubElement(root, q(WSTEP, name))
        if value is None:
            el.set(q(soap.XSI, "nil"), "true")
        else:
            el.text = str(value)
    return root


def guide_fault(error: EnrollmentError, request_id: str | None = None) -> SoapFault:
    """The SOAP fault for a refusal: the guide's number and message in the reason, the HRESULT in the detail."""
    return SoapFault(
        f"Error {error.code}: {error.message}",
        code="Receiver",
        detail=detail(HRESULTS.get(error.code, E_FAIL), request_id),
    )


def request_number(request: EnrollmentRequest) -> int:
    """The RequestID clients keep: a positive 31-bit number (Windows stores it as a LONG) from the UUID."""
    return int(request.pk.hex[:8], 16) & 0x7FFFFFFF or 1


# --- unwrapping the request token -------------------------------------------------------------


@dataclass
class Unwrapped:
    """The PKCS#10 inside the token, and the certificate that signed the envelope (renewal), if any."""

    csr: x509.CertificateSigningRequest
    csr_der: bytes
    kind: str  # "pkcs10", "pkcs7" or "cmc"
    signer: x509.Certificate | None = None


class TokenError(ValueError):
    """The request token is not a certificate request we accept (structure, content or signature)."""


def _context(number: int) -> tag.Tag:
    return tag.Tag(tag.tagClassContext, tag.tagFormatConstructed, number)


class _SignerInfo(univ.Sequence):
    """RFC 5652 SignerInfo, but signedAttrs stay the octets that were signed: a DER re-encoding could
    reorder the SET OF and break a signature that was valid."""

    componentType = namedtype.NamedTypes(
        namedtype.NamedType("version", rfc5652.CMSVersion()),
        namedtype.NamedType("sid", rfc5652.SignerIdentifier()),
        namedtype.NamedType("digestAlgorithm", rfc5652.DigestAlgorithmIdentifier()),
        namedtype.OptionalNamedType("signedAttrs", univ.Any().subtype(implicitTag=_context(0))),
        namedtype.NamedType("signatureAlgorithm", rfc5652.SignatureAlgorithmIdentifier()),
        namedtype.NamedType("signature", rfc5652.SignatureValue()),
        namedtype.OptionalNamedType("unsignedAttrs", rfc5652.UnsignedAttributes().subtype(implicitTag=_context(1))),
    )


class _SignedData(univ.Sequence):
    """RFC 5652 SignedData with the certificates kept as received (cryptography loads them) and _SignerInfo."""

    componentType = namedtype.NamedTypes(
        namedtype.NamedType("version", rfc5652.CMSVersion()),
        namedtype.NamedType("digestAlgorithms", rfc5652.DigestAlgorithmIdentifiers()),
        namedtype.NamedType("encapContentInfo", rfc5652.EncapsulatedContentInfo()),
        namedtype.OptionalNamedType(
            "certificates", univ.SetOf(componentType=univ.Any()).subtype(implicitTag=_context(0))
        ),
        namedtype.OptionalNamedType("crls", rfc5652.RevocationInfoChoices().subtype(implicitTag=_context(1))),
        namedtype.NamedType("signerInfos", univ.SetOf(componentType=_SignerInfo())),
    )


def _decode(data: bytes, spec: univ.Asn1Type, what: str) -> univ.Asn1Type:
    """Exactly one DER value of spec; pyasn1 bounds nesting and checks every length against its parent."""
    value, rest = der_decoder.decode(data, asn1Spec=spec)
    if rest:
        raise TokenError(f"trailing bytes after the {what}")
    return value


def _csr_from_cmc(content: bytes) -> bytes:
    """PKIData (RFC 5272/6402): the first TaggedCertificationRequest of reqSequence."""
    for request in _decode(content, rfc6402.PKIData(), "PKIData")["reqSequence"]:
        if request.getName() == "tcr":
            return der_encoder.encode(request["tcr"]["certificationRequest"])
    raise TokenError("CMC request holds no PKCS#10 certification request")


def _verify(signer_info: _SignerInfo, content: bytes, key, digest_name: str) -> None:
    digest_alg = str(signer_info["digestAlgorithm"]["algorithm"])
    digest_cls = _DIGESTS.get(digest_alg)
    if digest_cls is None:
        raise TokenError(f"digest algorithm {digest_alg} is not accepted (use SHA-256 or stronger)")
    signed = content
    if signer_info["signedAttrs"].isValue:
        # RFC 5652 5.4: the signature covers the attributes with a SET OF tag instead of [0] IMPLICIT.
        signed = der_encoder.encode(univ.Any(signer_info["signedAttrs"].asOctets(), tagSet=univ.SetOf.tagSet))
        wanted = hashes.Hash(digest_cls())
        wanted.update(content)
        expected = wanted.finalize()
        found = None
        for attr in _decode(signed, rfc5652.SignedAttributes(), "signed attributes"):
            if attr["attrType"] == rfc5652.id_messageDigest:
                found = _decode(attr["attrValues"][0].asOctets(), rfc5652.MessageDigest(), "messageDigest")
        if found is None or found.asOctets() != expected:
            raise TokenError("the messageDigest attribute does not match the content")
    sig_alg = str(signer_info["signatureAlgorithm"]["algorithm"])
    signature = signer_info["signature"].asOctets()
    try:
        if isinstance(key, rsa.RSAPublicKey) and sig_alg in _RSA_SIGNATURES:
            key.verify(signature, signed, padding.PKCS1v15(), digest_cls())
        elif isinstance(key, ec.EllipticCurvePublicKey) and sig_alg in _ECDSA_SIGNATURES:
            key.verify(signature, signed, ec.ECDSA(digest_cls()))
        else:
            raise TokenError(f"signature algorithm {sig_alg} is not supported for this key")
    except InvalidSignature:
        raise TokenError(f"the {digest_name} signature is invalid") from None


def _signer_certificate(signer_info: _SignerInfo, certs: list[x509.Certificate]) -> x509.Certificate | None:
    sid = signer_info["sid"]
    if sid.getName() == "issuerAndSerialNumber":
        issuer = der_encoder.encode(sid["issuerAndSerialNumber"]["issuer"])
        serial = int(sid["issuerAndSerialNumber"]["serialNumber"])
        for cert in certs:
            if cert.serial_number == serial and cert.issuer.public_bytes() == issuer:
                return cert
        raise TokenError("the signer's certificate is not in the request")
    if sid.getName() == "subjectKeyIdentifier":
        wanted = sid["subjectKeyIdentifier"].asOctets()
        for cert in certs:
            try:
                ski = cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
            except x509.ExtensionNotFound:
                continue
            if ski == wanted:
                return cert
        return None  # CMC signed with the key being certified: proof of possession, no certificate
    raise TokenError("unknown SignerIdentifier")


def _certificates(signed_data: _SignedData) -> list[x509.Certificate]:
    """The X.509 certificates of the CertificateSet (other choices are skipped), loaded from their own octets."""
    certs = []
    if signed_data["certificates"].isValue:
        for item in signed_data["certificates"]:
            raw = item.asOctets()
            if _decode(raw, rfc5652.CertificateChoices(), "certificate").getName() == "certificate":
                certs.append(x509.load_der_x509_certificate(raw))
    return certs


def unwrap(token: bytes) -> Unwrapped:
    """PKCS#10, PKCS#7 around PKCS#10, or CMC; signatures checked. Raises TokenError or ValueError."""
    try:
        request = _unwrap(token)
    except (PyAsn1Error, IndexError, OverflowError) as exc:  # a length of 2**64 - 1 overflows pyasn1's read
        raise TokenError(f"malformed CMS request: {str(exc)[:200]}") from None
    except (UnsupportedAlgorithm, x509.InvalidVersion) as exc:  # e.g. an unknown key type, CSR version 87
        raise TokenError(f"unsupported request: {exc}") from None
    try:  # now: an extension that cryptography knows but cannot read is a bad request, not a crash later
        len(request.csr.extensions)
    except ValueError as exc:
        raise TokenError(f"unreadable CSR extension: {exc}") from None
    return request


def _unwrap(token: bytes) -> Unwrapped:
    try:
        csr = x509.load_der_x509_csr(token)
        return Unwrapped(csr, token, "pkcs10")
    except ValueError:
        return _unwrap_signed(token)


def _unwrap_signed(token: bytes) -> Unwrapped:
    info = _decode(token, rfc5652.ContentInfo(), "ContentInfo")
    if info["contentType"] != rfc5652.id_signedData:
        raise TokenError("neither a PKCS#10 request nor a CMS SignedData")
    signed_data = _decode(info["content"].asOctets(), _SignedData(), "SignedData")
    encap = signed_data["encapContentInfo"]
    if not encap["eContent"].isValue:
        raise TokenError("SignedData without content")
    content = encap["eContent"].asOctets()  # BER's constructed OCTET STRING is joined by the decoder
    certs = _certificates(signed_data)
    if encap["eContentType"] == rfc5652.id_data:
        csr_der, kind = content, "pkcs7"
    elif encap["eContentType"] == rfc6402.id_cct_PKIData:
        csr_der, kind = _csr_from_cmc(content), "cmc"
    else:
        raise TokenError(f"SignedData content type {encap['eContentType']} is not a certificate request")
    csr = x509.load_der_x509_csr(csr_der)
    signer_infos = signed_data["signerInfos"]
    if len(signer_infos) != 1:
        raise TokenError(f"{len(signer_infos)} signers; exactly one is expected")
    signer = _signer_certificate(signer_infos[0], certs)
    key = signer.public_key() if signer is not None else csr.public_key()
    _verify(signer_infos[0], content, key, "renewal" if signer is not None else "CMC")
    return Unwrapped(csr, csr_der, kind, signer)


def requested_template(csr: x509.CertificateSigningRequest) -> tuple[str | None, str | None]:
    """(name, OID) of the template the request names through 1.3.6.1.4.1.311.20.2 / .21.7."""
    name = oid = None
    for ext in csr.extensions:
        if isinstance(ext.value, x509.MSCertificateTemplate):
            oid = ext.value.template_id.dotted_string
        elif ext.oid.dotted_string == templates.OID_TEMPLATE_NAME and isinstance(ext.value, x509.UnrecognizedExtension):
            try:
                name = templates.template_name(ext.value.value)
            except ValueError:
                continue
    return name, oid


# --- the operations ---------------------------------------------------------------------------


@dataclass
class Context:
    """Who asks (as the pipeline sees it) and which CA endpoint they called."""

    caller: pipeline.Caller
    ca: CertificateAuthority


def _refuse(ctx: Context, code: int, detail_text: str, **refs) -> EnrollmentError:
    """A refusal decided here rather than in the pipeline: recorded like the pipeline's, then raised."""
    error = EnrollmentError(code, detail_text)
    record_error(EnrollmentEvent.Step.ENROLL, ctx.caller.principal, error, remote_addr=ctx.caller.remote_addr, **refs)
    return error


def handle(message: soap.Message, ctx: Context) -> etree._Element:
    """RequestSecurityToken -> RequestSecurityTokenResponseCollection, or SoapFault / EnrollmentError."""
    rst = message.body
    if rst.tag != q(WST, "RequestSecurityToken"):
        raise SoapFault(f"expected wst:RequestSecurityToken in the Body, found {rst.tag}")
    request_type = soap.text(soap.child(rst, WST, "RequestType"))
    if not request_type:
        raise SoapFault(
            "RequestSecurityToken without RequestType (MS-WSTEP 3.1.4.2.1)", detail=detail(E_INVALIDARG, None)
        )
    if request_type == REQUEST_ISSUE:
        return _issue(rst, ctx)
    if request_type == REQUEST_QUERY:
        return _query(rst, ctx)
    raise SoapFault(f"RequestType {request_type[:200]} is not supported", detail=detail(E_INVALIDARG, None))


def _customer(ctx: Context):
    realm = ctx.caller.realm
    customer = getattr(realm, "customer", None)
    if customer is None:
        raise _refuse(ctx, 1, f"realm {getattr(realm, 'domain', '?')} is bound to no customer")
    return customer


def _issue(rst: etree._Element, ctx: Context) -> etree._Element:
    customer = _customer(ctx)
    token_el = soap.child(rst, WSSE, "BinarySecurityToken")
    if token_el is None or soap.is_nil(token_el) or not soap.text(token_el):
        raise _refuse(ctx, 29, "RequestSecurityToken without BinarySecurityToken", customer=customer)
    raw = "".join(soap.text(token_el).split()).replace("&#xD;", "")
    if len(raw) > MAX_TOKEN_BYTES * 4 // 3 + 4:
        raise _refuse(ctx, 15, "BinarySecurityToken too large", customer=customer)
    try:
        token = base64.b64decode(raw, validate=True)
        request = unwrap(token)
    except (binascii.Error, ValueError) as exc:
        raise _refuse(ctx, 15, f"BinarySecurityToken: {exc}", customer=customer) from None
    name, oid = requested_template(request.csr)
    template = templates.find(name, oid) if (name or oid) else templates.USER
    if template is None or template.for_computers:
        raise _refuse(ctx, 15, f"template {name or oid!r} is not offered", customer=customer)
    try:
        key = request.csr.public_key()
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise _refuse(ctx, 15, f"unreadable public key: {exc}", customer=customer) from None
    if not isinstance(key, rsa.RSAPublicKey) or key.key_size < template.minimal_key_length:
        # what the policy (MS-XCEP) announced: the client chose its key by it
        wanted = f"RSA of at least {template.minimal_key_length} bits"
        raise _refuse(ctx, 15, f"template {template.common_name} asks for {wanted}", customer=customer)
    renewing = _renewed_certificate(ctx, request, customer)
    synced = pipeline.sync(ctx.caller, {"customeruri": customer.uri})
    person = synced.person
    if not person.mail:
        raise _refuse(ctx, 16, f"AD holds no mail for {ctx.caller.principal}", customer=customer, person=person)
    pem = request.csr.public_bytes(serialization.Encoding.PEM).decode("ascii")
    data = {
        "customeruri": customer.uri,
        "orgid": str(synced.organization.pk) if synced.organization else "",
        "email": person.mail,
        "csr": pem,
    }
    enrollment = pipeline.enroll(
        ctx.caller, data, template=template.certificate_template(), replaces=renewing, subject_from_ad=True
    )
    return answer(enrollment, ctx)


def _renewed_certificate(ctx: Context, request: Unwrapped, customer) -> Certificate | None:
    """A renewal must be signed by a valid certificate of ours that belongs to the caller."""
    if request.signer is None:
        return None
    fingerprint = request.signer.fingerprint(hashes.SHA256()).hex()
    old = Certificate.objects.filter(fingerprint_sha256=fingerprint).select_related("person").first()
    if old is None:
        raise _refuse(ctx, 15, "renewal signed by a certificate this server did not issue", customer=customer)
    if old.person is None or old.person.principal != ctx.caller.principal:
        raise _refuse(ctx, 20, f"renewal signed by certificate {old.serial} of someone else", customer=customer)
    if old.status != Certificate.Status.ISSUED or old.not_after < timezone.now():
        raise _refuse(ctx, 15, f"renewal signed by certificate {old.serial}, which is {old.state}", customer=customer)
    return old


def _query(rst: etree._Element, ctx: Context) -> etree._Element:
    id_el = soap.child(rst, WSTEP, "RequestID")
    text = soap.text(id_el)
    if id_el is None or soap.is_nil(id_el) or not text:
        raise _refuse(ctx, 29, "QueryTokenStatus without RequestID")
    if not (text.isascii() and text.isdigit()) or len(text) > 10:
        raise _refuse(ctx, 25, f"RequestID {text[:40]!r} is not a request number")
    number = int(text)
    mine = EnrollmentRequest.objects.filter(person__principal=ctx.caller.principal).order_by("-created")
    match = next((r for r in mine.only("pk", "created") if request_number(r) == number), None)
    try:
        enrollment = pipeline.poll(ctx.caller, str(match.pk) if match else f"unknown request {number}")
    except EnrollmentError as exc:
        raise guide_fault(exc, text) from None
    return answer(enrollment, ctx)


def answer(enrollment: EnrollmentRequest, ctx: Context) -> etree._Element:
    """RequestSecurityTokenResponseCollection: issued (certificate + PKCS#7 chain) or pending (reference)."""
    root = etree.Element(q(WST, "RequestSecurityTokenResponseCollection"), nsmap={None: WST})
    rstr = etree.SubElement(root, q(WST, "RequestSecurityTokenResponse"))
    etree.SubElement(rstr, q(WST, "TokenType")).text = TOKEN_X509
    disposition = etree.SubElement(rstr, q(WSTEP, "DispositionMessage"), nsmap={None: WSTEP})
    disposition.set(q(XML_NS, "lang"), "en-US")
    issued = enrollment.status == EnrollmentRequest.Status.ISSUED and enrollment.certificate is not None
    if issued:
        disposition.text = DISPOSITION_ISSUED
        cert = x509.load_pem_x509_certificate(enrollment.certificate.pem.encode())
        chain = [cert, *x509.load_pem_x509_certificates(authority.chain_pem(enrollment.certificate.ca).encode())]
        bundle = pkcs7.serialize_certificates(chain, serialization.Encoding.DER)
        _token(rstr, VALUE_PKCS7, bundle)
        requested = etree.SubElement(rstr, q(WST, "RequestedSecurityToken"))
        _token(requested, TOKEN_X509, cert.public_bytes(serialization.Encoding.DER))
    else:
        disposition.text = DISPOSITION_PENDING
        requested = etree.SubElement(rstr, q(WST, "RequestedSecurityToken"))
        ref = etree.SubElement(requested, q(WSSE, "SecurityTokenReference"), nsmap={None: WSSE})
        etree.SubElement(ref, q(WSSE, "Reference")).set("URI", xcep.ces_url(ctx.ca))
    etree.SubElement(rstr, q(WSTEP, "RequestID"), nsmap={None: WSTEP}).text = str(request_number(enrollment))
    return root


def _token(parent: etree._Element, value_type: str, data: bytes) -> None:
    token = etree.SubElement(parent, q(WSSE, "BinarySecurityToken"), nsmap={None: WSSE})
    token.set("ValueType", value_type)
    token.set("EncodingType", ENCODING_BASE64)
    token.text = base64.b64encode(data).decode("ascii")
