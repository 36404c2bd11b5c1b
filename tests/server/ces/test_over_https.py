"""The real server over HTTPS, a SOAP client with a user's Kerberos ticket bound to the TLS channel.

This is what a Windows Server 2025 client or certmonger does: HTTPS to the CEP, Negotiate with a
tls-server-end-point channel binding computed from the certificate the TLS handshake presented,
GetPolicies, then RequestSecurityToken at the CES the policy names.
"""

from __future__ import annotations

import base64
import http.client
import os
import socket
import ssl
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

import gssapi
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs7
from gssapi.raw import ChannelBindings
from lxml import etree

from autoenroll.server.ces import wstep, xcep
from autoenroll.server.kerberos import spnego
from autoenroll.testbed.server import SERVER_HOST, start_server

from .conftest import NS, SERVICE, SPNEGO, assert_valid, fault_of, get_policies, make_csr, rst


@pytest.fixture(scope="module")
def server(tmp_path_factory, samba_ad):
    with start_server(tmp_path_factory.mktemp("ces-server"), samba_ad, customer="cestest") as srv:
        yield srv


class HttpsSoapClient:
    """http.client over a socket to 127.0.0.1 with TLS for ccm.test.com; one connection per request."""

    def __init__(self, server, ccache: str) -> None:
        self.server = server
        self.creds = gssapi.Credentials(usage="initiate", store={"ccache": ccache})
        self.context = ssl.create_default_context(cafile=str(server.root_ca))

    def post(self, url: str, body: bytes, *, bind: bool = True, wrong_binding: bool = False) -> tuple[int, dict, bytes]:
        parts = urlsplit(url)
        assert parts.hostname == SERVER_HOST
        conn = http.client.HTTPSConnection(SERVER_HOST, parts.port, context=self.context, timeout=60)
        conn._create_connection = lambda addr, timeout=None, source_address=None: socket.create_connection(
            ("127.0.0.1", parts.port), timeout=timeout
        )
        try:
            conn.connect()
            peer = x509.load_der_x509_certificate(conn.sock.getpeercert(binary_form=True))
            digest = b"\x00" * 32 if wrong_binding else spnego.end_point_hash(peer)
            cb = ChannelBindings(application_data=spnego.CBT_PREFIX + digest) if bind else None
            ctx = gssapi.SecurityContext(
                name=SERVICE, creds=self.creds, usage="initiate", mech=SPNEGO, channel_bindings=cb
            )
            headers = {
                "Authorization": "Negotiate " + base64.b64encode(ctx.step()).decode(),
                "Content-Type": "application/soap+xml; charset=utf-8",
            }
            conn.request("POST", parts.path, body=body, headers=headers)
            response = conn.getresponse()
            return response.status, response.headers, response.read()
        finally:
            conn.close()


@pytest.fixture(scope="module")
def client(server, samba_ad):
    saved = os.environ.get("KRB5_CONFIG")
    os.environ["KRB5_CONFIG"] = str(samba_ad.krb5_conf)
    yield lambda user: HttpsSoapClient(server, samba_ad.kinit(user))
    if saved is None:
        os.environ.pop("KRB5_CONFIG", None)
    else:
        os.environ["KRB5_CONFIG"] = saved


def _policies(client, server, schema):
    status, _, body = client("user1").post(f"{server.url}/{xcep.CEP_PATH}", get_policies())
    assert status == 200, body
    doc = assert_valid(schema, body)
    (template,) = [n.text for n in doc.iterfind(".//x:policy/x:attributes/x:commonName", NS)]
    (ces,) = [n.text for n in doc.iterfind(".//x:cA/x:uris/x:cAURI/x:uri", NS)]
    return template, ces


def _verify(server, leaf_der: bytes, bundle_der: bytes, tmp_path: Path) -> x509.Certificate:
    leaf = x509.load_der_x509_certificate(leaf_der)
    chain = [c for c in pkcs7.load_der_pkcs7_certificates(bundle_der) if c != leaf]
    (tmp_path / "chain.pem").write_bytes(b"".join(c.public_bytes(serialization.Encoding.PEM) for c in chain))
    (tmp_path / "leaf.pem").write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    result = subprocess.run(
        ["openssl", "verify", "-purpose", "smimesign", "-CAfile", str(server.root_ca), "-untrusted",
         str(tmp_path / "chain.pem"), str(tmp_path / "leaf.pem")],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    return leaf


def _issued(doc) -> tuple[bytes, bytes, str]:
    rstr = doc.find(".//t:RequestSecurityTokenResponse", NS)
    leaf = base64.b64decode(rstr.findtext("t:RequestedSecurityToken/w:BinarySecurityToken", namespaces=NS))
    bundle = base64.b64decode(rstr.findtext("w:BinarySecurityToken", namespaces=NS))
    return leaf, bundle, rstr.findtext("e:RequestID", namespaces=NS)


def test_get_policies_then_issue_a_certificate_for_the_ad_mail_over_https(server, client, schema, tmp_path):
    template, ces = _policies(client, server, schema)
    assert template == "User"
    assert ces == f"{server.url}/autoenroll-smime_CES_Kerberos/service.svc/CES"
    _, csr = make_csr(template="User")
    status, headers, body = client("user1").post(ces, rst(csr))
    assert status == 200, body
    assert headers["Content-Type"].startswith("application/soap+xml")
    leaf_der, bundle, request_id = _issued(assert_valid(schema, body))
    leaf = _verify(server, leaf_der, bundle, tmp_path)
    assert leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
        x509.RFC822Name
    ) == ["user1@test.com"]
    assert request_id.isdigit()


def test_a_client_that_binds_nothing_is_accepted_one_bound_to_another_channel_is_not(server, client, schema):
    status, _, body = client("user1").post(f"{server.url}/{xcep.CEP_PATH}", get_policies(), bind=False)
    assert status == 200, body
    assert_valid(schema, body)
    status, headers, body = client("user1").post(f"{server.url}/{xcep.CEP_PATH}", get_policies(), wrong_binding=True)
    assert (status, headers["WWW-Authenticate"]) == (401, "Negotiate")
    assert_valid(schema, body)


def test_impostor_request_gets_http_500_with_the_guides_number(server, client, schema):
    _, ces = _policies(client, server, schema)
    _, csr = make_csr(sans=[x509.RFC822Name("user2@test.com")])
    status, _, body = client("user1").post(ces, rst(csr))
    assert status == 500
    assert_valid(schema, body)
    assert fault_of(body)["reason"] == "Error 18: Email in AD mismatch.."
    _, csr = make_csr(sans=[x509.RFC822Name("user1@test.com"), x509.DNSName("www.test.com")])
    status, _, body = client("user1").post(ces, rst(csr))
    assert (status, fault_of(body)["reason"]) == (500, "Error 15: Invalid CSR..")


def test_pending_request_is_collected_with_query_token_status_over_https(server, client, schema, tmp_path):
    _, ces = _policies(client, server, schema)
    server.shell(
        "from autoenroll.server.tenants.models import Customer; Customer.objects.update(require_approval=True)"
    )
    try:
        _, csr = make_csr()
        status, _, body = client("user1").post(ces, rst(csr))
        assert status == 200, body
        doc = assert_valid(schema, body)
        assert doc.findtext(".//e:DispositionMessage", namespaces=NS) == wstep.DISPOSITION_PENDING
        request_id = doc.findtext(".//e:RequestID", namespaces=NS)
        query = rst(None, request_type=wstep.REQUEST_QUERY, request_id=request_id)
        status, _, body = client("user1").post(ces, query)
        assert status == 200 and etree.fromstring(body).findtext(".//e:DispositionMessage", namespaces=NS) == (
            wstep.DISPOSITION_PENDING
        )
        server.shell(
            "from autoenroll.server.enrollment import lifecycle; "
            "from autoenroll.server.enrollment.models import EnrollmentRequest; "
            "lifecycle.approve(EnrollmentRequest.objects.get(status='pending').pk, by='admin')"
        )
        status, _, body = client("user1").post(ces, query)
        assert status == 200, body
        leaf_der, bundle, same_id = _issued(assert_valid(schema, body))
        assert same_id == request_id
        _verify(server, leaf_der, bundle, tmp_path)
    finally:
        server.shell(
            "from autoenroll.server.tenants.models import Customer; Customer.objects.update(require_approval=False)"
        )
