"""Helpers for tests that speak the enrollment protocol: an in-process agent with a real Kerberos
ticket and real SPNEGO tokens (Django's test client does the HTTP part), CSRs, error checks."""

from __future__ import annotations

import base64
import json
import threading

import gssapi
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import NameOID
from django.db import connection
from django.test import Client

from autoenroll import pki
from autoenroll.protocol.messages import API_PREFIX

SPNEGO = gssapi.OID.from_int_seq("1.3.6.1.5.5.2")
SERVICE = gssapi.Name("HTTP@ccm.test.com", gssapi.NameType.hostbased_service)


class Agent:
    """Speaks the enrollment protocol as one Kerberos user."""

    def __init__(self, ccache: str) -> None:
        self.creds = gssapi.Credentials(usage="initiate", store={"ccache": ccache})
        self.client = Client(enforce_csrf_checks=True)

    def token(self) -> str:
        ctx = gssapi.SecurityContext(name=SERVICE, creds=self.creds, usage="initiate", mech=SPNEGO)
        return base64.b64encode(ctx.step()).decode()

    def post(self, step: str, **data):
        return self.client.post(
            f"{API_PREFIX}/{step}",
            data=json.dumps(data),
            content_type="application/json",
            HTTP_AUTHORIZATION=f"Negotiate {self.token()}",
            secure=True,
        )

    def get(self, path: str):
        return self.client.get(f"{API_PREFIX}/{path}", HTTP_AUTHORIZATION=f"Negotiate {self.token()}", secure=True)

    def sync(self, **data):
        return self.post("sync", **data)

    def enroll(self, **data):
        return self.post("enroll", **data)

    def status(self, **data):
        return self.post("status", **data)

    def logon(self, **data):
        return self.post("logon", **data)

    def logon_status(self, **data):
        """The installation report of the one-call protocol: the status token instead of Kerberos."""
        return self.client.post(
            f"{API_PREFIX}/logon/status", data=json.dumps(data), content_type="application/json", secure=True
        )


def make_csr(cn: str | None = "user1", *, key_type="ec-p256", mail: str | None = None, extensions=()) -> tuple:
    """A real PKCS#10 request; returns (private key, PEM text)."""
    key = pki.generate_private_key(key_type)
    names = [x509.NameAttribute(NameOID.COMMON_NAME, cn)] if cn else []
    if mail:
        names.append(x509.NameAttribute(NameOID.EMAIL_ADDRESS, mail))
    builder = x509.CertificateSigningRequestBuilder().subject_name(x509.Name(names))
    for ext, critical in extensions:
        builder = builder.add_extension(ext, critical=critical)
    csr = builder.sign(key, hashes.SHA256())
    return key, csr.public_bytes(serialization.Encoding.PEM).decode()


def assert_error(response, code: int, message: str) -> None:
    """The guide's number and exact message, as the agent will read them."""
    assert response.json() == {"error": {"code": code, "message": message}}, response.content


def raw_csr(key, subject: x509.Name, extensions: list[tuple[str, bool, bytes]]) -> str:
    """A PKCS#10 request with extensions given as raw DER values (duplicates, malformed values: what
    cryptography's builder refuses to make), correctly signed by `key`. PEM text."""
    from cryptography.hazmat.primitives.asymmetric import ec
    from pyasn1.codec.der import decoder, encoder
    from pyasn1.type import univ
    from pyasn1_alt_modules import rfc2986, rfc5280

    template = x509.CertificateSigningRequestBuilder().subject_name(subject).sign(key, hashes.SHA256())
    csr, _ = decoder.decode(template.public_bytes(serialization.Encoding.DER), asn1Spec=rfc2986.CertificationRequest())
    info = csr["certificationRequestInfo"]
    exts = rfc5280.Extensions()
    for i, (oid, critical, value) in enumerate(extensions):
        ext = rfc5280.Extension()
        ext["extnID"] = univ.ObjectIdentifier(oid)
        ext["critical"] = critical
        ext["extnValue"] = value
        exts[i] = ext
    attr = rfc2986.Attribute()
    attr["type"] = rfc2986.univ.ObjectIdentifier("1.2.840.113549.1.9.14")  # extensionRequest
    attr["values"][0] = univ.Any(encoder.encode(exts))
    info["attributes"].clear()
    info["attributes"][0] = attr
    tbs = encoder.encode(info)
    if isinstance(key, ec.EllipticCurvePrivateKey):
        signature = key.sign(tbs, ec.ECDSA(hashes.SHA256()))
    else:
        from cryptography.hazmat.primitives.asymmetric import padding

        signature = key.sign(tbs, padding.PKCS1v15(), hashes.SHA256())
    csr["signature"] = univ.BitString.fromOctetString(signature)
    der = encoder.encode(csr)
    return x509.load_der_x509_csr(der).public_bytes(serialization.Encoding.PEM).decode()


def run_concurrently(n: int, work):
    """`work(i)` in n threads released at once; (answers, errors). Each thread closes its own connection."""
    answers, errors = [], []
    start = threading.Barrier(n)

    def one(i):
        try:
            start.wait(timeout=30)
            answers.append(work(i))
        except Exception as exc:  # noqa: BLE001 - reported by the test
            errors.append(exc)
        finally:
            connection.close()  # this thread's own connection: none left open at teardown

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    return answers, errors


def caller(principal: str = "user1@TEST.COM"):
    """The pipeline's caller as Kerberos authenticated it, in the test realm."""
    from autoenroll.server.enrollment import pipeline
    from autoenroll.server.kerberos.models import KerberosRealm

    return pipeline.Caller(principal, KerberosRealm.objects.select_related("customer").get())
