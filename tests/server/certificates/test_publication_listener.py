"""The publication listener as users run it: `autoenroll-server serve --publication-only` (Granian), where OCSP
requests skip Django's middleware (`wsgi.PublicationHandler`) and answers signed ahead are served as stored.
Everything else on that listener (the CRL, CA certificates) still goes through Django."""

from __future__ import annotations

import base64
import http.client
import json
import os
import secrets
import socket
import subprocess
import sys
import time
from urllib.parse import quote

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp

from autoenroll.testbed.server import free_port

SETUP = """
import base64, json
from django.conf import settings
from autoenroll import pki
from autoenroll.server.certificates import authority, publication
from autoenroll.server.certificates.models import PresignedOCSPResponse
from autoenroll.server.enrollment import lifecycle
good, revoked = (authority.issue_smime(settings.CONFIG, pki.generate_private_key("ec-p256").public_key(), m)
                 for m in ("good@test.com", "gone@test.com"))
lifecycle.revoke([revoked], "key_compromise", by="test")
publication.presign_ocsp()
stored = {c.serial: base64.b64encode(bytes(c.presigned_ocsp.der)).decode() for c in (good, revoked)}
print(json.dumps({"ca": authority.issuing_ca().name, "issuer": authority.issuing_ca().certificate_pem,
                  "good": good.pem, "revoked": revoked.pem, "stored": stored}))
"""


@pytest.fixture(scope="module")
def listener(tmp_path_factory):
    """A data directory with two certificates (one revoked) signed ahead, and its publication listener."""
    workdir = tmp_path_factory.mktemp("publication")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AUTOENROLL_", "DJANGO_"))}
    env.update(
        AUTOENROLL_DATA_DIR=str(workdir / "data"),
        AUTOENROLL_CA_PASSPHRASE=secrets.token_urlsafe(16),
        AUTOENROLL_SECRET_KEY=secrets.token_urlsafe(40),
        AUTOENROLL_PUBLICATION_URL=f"http://127.0.0.1:{port}",
    )
    cli = [sys.executable, "-m", "autoenroll.server.cli"]
    subprocess.run([*cli, "init"], env=env, check=True, capture_output=True, timeout=120)
    facts = json.loads(subprocess.run([*cli, "shell", "-c", SETUP], env=env, check=True, capture_output=True,
                                      text=True, timeout=120).stdout.splitlines()[-1])  # fmt: skip
    log = open(workdir / "serve.log", "wb")  # noqa: SIM115 - closed below
    server = subprocess.Popen(
        [*cli, "serve", "--publication-only", "--publication-listen", f"127.0.0.1:{port}", "--workers", "1"],
        env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while socket.socket().connect_ex(("127.0.0.1", port)) != 0:
            assert server.poll() is None and time.monotonic() < deadline, (workdir / "serve.log").read_text()[-2000:]
            time.sleep(0.1)
        yield port, facts, workdir / "serve.log", env
    finally:
        os.killpg(server.pid, 15)
        server.wait(timeout=30)
        log.close()


SHA1 = hashes.SHA1()  # noqa: S303 -- what RFC 5019 clients put in a CertID


def _request(facts, which: str, *, algorithm: hashes.HashAlgorithm = SHA1, nonce: bytes | None = None) -> bytes:
    issuer = x509.load_pem_x509_certificate(facts["issuer"].encode())
    builder = ocsp.OCSPRequestBuilder().add_certificate(
        x509.load_pem_x509_certificate(facts[which].encode()), issuer, algorithm
    )
    if nonce:
        builder = builder.add_extension(x509.OCSPNonce(nonce), critical=False)
    return builder.build().public_bytes(serialization.Encoding.DER)


def _http(port: int, method: str, path: str, body: bytes | None = None, headers: dict | None = None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.headers, response.read()
    finally:
        conn.close()


def _serial(facts, which: str) -> str:
    return format(x509.load_pem_x509_certificate(facts[which].encode()).serial_number, "x")


@pytest.mark.parametrize("which", ["good", "revoked"])
def test_post_is_answered_with_the_response_signed_ahead(listener, which):
    port, facts, *_ = listener
    status, headers, body = _http(port, "POST", f"/ocsp/{facts['ca']}", _request(facts, which),
                                  {"Content-Type": "application/ocsp-request"})  # fmt: skip
    assert status == 200 and headers["Content-Type"] == "application/ocsp-response"
    assert body == base64.b64decode(facts["stored"][_serial(facts, which)])
    expected = ocsp.OCSPCertStatus.GOOD if which == "good" else ocsp.OCSPCertStatus.REVOKED
    assert ocsp.load_der_ocsp_response(body).certificate_status == expected
    assert headers["Cache-Control"] == "no-store"  # POST answers are not for HTTP caches


def test_get_is_cacheable_until_next_update(listener):
    port, facts, *_ = listener
    encoded = quote(base64.b64encode(_request(facts, "good")).decode(), safe="")
    status, headers, body = _http(port, "GET", f"/ocsp/{facts['ca']}/{encoded}")
    assert status == 200 and body == base64.b64decode(facts["stored"][_serial(facts, "good")])
    assert "max-age=" in headers["Cache-Control"] and headers["ETag"] and headers["Expires"]


def test_sha256_cert_ids_and_nonces_are_answered_on_request(listener):
    port, facts, *_ = listener
    path = f"/ocsp/{facts['ca']}"
    _, _, body = _http(port, "POST", path, _request(facts, "revoked", algorithm=hashes.SHA256()))
    answer = ocsp.load_der_ocsp_response(body)
    assert answer.hash_algorithm.name == "sha256" and answer.certificate_status == ocsp.OCSPCertStatus.REVOKED
    _, _, body = _http(port, "POST", path, _request(facts, "good", nonce=b"n" * 16))
    assert body == base64.b64decode(facts["stored"][_serial(facts, "good")])  # signed ahead: no nonce echoed


@pytest.mark.parametrize(
    ("method", "path", "body", "expected"),
    [
        ("POST", "/ocsp/{ca}", b"junk", ocsp.OCSPResponseStatus.MALFORMED_REQUEST),
        ("POST", "/ocsp/{ca}/", b"", ocsp.OCSPResponseStatus.MALFORMED_REQUEST),
        ("GET", "/ocsp/{ca}/%%%", None, ocsp.OCSPResponseStatus.MALFORMED_REQUEST),
        ("POST", "/ocsp/no-such-ca", "good", ocsp.OCSPResponseStatus.UNAUTHORIZED),
    ],
)
def test_bad_requests_get_an_ocsp_error_not_an_http_one(listener, method, path, body, expected):
    port, facts, *_ = listener
    body = _request(facts, body) if body == "good" else body
    status, _, answer = _http(port, method, path.format(ca=facts["ca"]), body)
    assert status == 200 and ocsp.load_der_ocsp_response(answer).response_status == expected


def test_a_body_over_the_largest_ocsp_request_is_answered_unread(listener):
    """3 MB declared, one byte sent: an OCSP malformedRequest at once, and the connection closed (the rest of
    the body must not be read as a request)."""
    port, facts, *_ = listener
    with socket.create_connection(("127.0.0.1", port), timeout=30) as conn:
        conn.sendall(
            f"POST /ocsp/{facts['ca']} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 3000000\r\n\r\n0".encode()
        )
        answer = b""
        while chunk := conn.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200") and b"connection: close" in head.lower(), head
    assert ocsp.load_der_ocsp_response(body).response_status == ocsp.OCSPResponseStatus.MALFORMED_REQUEST


def test_other_methods_and_the_rest_of_the_listener_go_through_django(listener):
    port, facts, *_ = listener
    assert _http(port, "PUT", f"/ocsp/{facts['ca']}", b"x")[0] == 405
    assert _http(port, "POST", f"/ocsp/{facts['ca']}/abc", b"x")[0] == 405
    status, headers, body = _http(port, "GET", f"/crl/{facts['ca']}.crl")
    assert status == 200 and headers["Content-Type"] == "application/pkix-crl"
    crl = x509.load_der_x509_crl(body)
    assert crl.get_revoked_certificate_by_serial_number(int(_serial(facts, "revoked"), 16)) is not None
    assert _http(port, "GET", "/admin/")[0] == 404  # only the publication URLs, without TLS


def test_requests_are_not_logged_one_by_one_by_default(listener):
    """Every relying party that checks a signature asks: AUTOENROLL_PUBLICATION_ACCESS_LOG turns the lines on."""
    port, facts, log, _ = listener
    assert _http(port, "GET", f"/ocsp/{facts['ca']}/not-base64!")[0] == 200
    assert _http(port, "GET", f"/crl/{facts['ca']}.crl")[0] == 200
    text = log.read_text(errors="replace")
    assert "serving http://" in text and "/ocsp/" not in text and ".crl" not in text


ISSUE_ONE = """
from django.conf import settings
from autoenroll import pki
from autoenroll.server.certificates import authority
print(authority.issue_smime(settings.CONFIG, pki.generate_private_key("ec-p256").public_key(), "late@test.com").pem)
"""


def test_an_answer_kept_by_the_worker_is_never_given_after_another_process_revokes(listener):
    """The worker keeps the answer it gave; `certificates revoke`, another process, bumps the CA's revocation
    count in its transaction, and the worker's next answer reads the records again."""
    port, facts, _, env = listener
    cli = [sys.executable, "-m", "autoenroll.server.cli"]
    pem = subprocess.run([*cli, "shell", "-c", ISSUE_ONE], env=env, check=True, capture_output=True, text=True,
                         timeout=120).stdout.split("-----BEGIN")[1]  # fmt: skip
    late = {**facts, "late": "-----BEGIN" + pem}
    path, request = f"/ocsp/{facts['ca']}", _request(late, "late")
    for _ in range(3):
        _, _, body = _http(port, "POST", path, request)
        assert ocsp.load_der_ocsp_response(body).certificate_status == ocsp.OCSPCertStatus.GOOD
    revoke = [*cli, "certificates", "revoke", _serial(late, "late"), "--reason", "key-compromise"]
    subprocess.run(revoke, env=env, check=True, capture_output=True, timeout=120)
    _, _, body = _http(port, "POST", path, request)
    answer = ocsp.load_der_ocsp_response(body)
    assert answer.certificate_status == ocsp.OCSPCertStatus.REVOKED
    assert answer.revocation_reason == x509.ReasonFlags.key_compromise
