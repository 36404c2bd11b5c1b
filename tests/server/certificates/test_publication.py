"""Publication by the running server (`autoenroll-server serve`), checked with OpenSSL over loopback,
and the CA certificate downloads for Group Policy (guide 3.6) and for trusting the HTTPS server (error 41)."""

from __future__ import annotations

import urllib.request
from email.message import Message
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs7

from autoenroll import pki
from autoenroll.server.certificates.models import RevocationReason
from autoenroll.server.enrollment import lifecycle
from checks import run_openssl

live = pytest.mark.django_db(transaction=True)


def fetch(url: str, data: bytes | None = None, headers: dict | None = None) -> tuple[int, Message, bytes]:
    request = urllib.request.Request(url, data=data, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 -- loopback test server
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers, exc.read()


def write_pem(path: Path, pem: str) -> Path:
    path.write_text(pem)
    return path


def openssl_ocsp(server, ca_files, cert_path: Path):
    return run_openssl(
        "ocsp",
        "-url",
        f"{server.publication_url}/ocsp/test-smime",
        "-issuer",
        ca_files.issuing_cert_path,
        "-cert",
        cert_path,
        "-CAfile",
        ca_files.root_cert_path,
        "-verify_other",
        ca_files.issuing_cert_path,
        "-timeout",
        "20",
    )


@live
def test_openssl_ocsp_against_the_running_server_reports_good_revoked_and_unknown(
    live_server_process, issue, ca_files, tmp_path
):
    good = write_pem(tmp_path / "good.pem", issue("good@test.com").pem)
    revoked_row = issue("revoked@test.com")
    revoked = write_pem(tmp_path / "revoked.pem", revoked_row.pem)
    lifecycle.revoke([revoked_row], RevocationReason.KEY_COMPROMISE, by="test")
    # Unknown: a certificate the same CA key signed that the server never recorded.
    unrecorded = pki.issue_smime_certificate(
        pki.FileKeyBackend(ca_files.issuing_cert_path, ca_files.issuing_key_path, b"test-ca-passphrase"),
        pki.generate_private_key("ec-p256").public_key(),
        "ghost@test.com",
        ca_files.issuing_urls,
    )
    unknown = tmp_path / "unknown.pem"
    unknown.write_bytes(unrecorded.public_bytes(serialization.Encoding.PEM))

    results = {
        name: openssl_ocsp(live_server_process, ca_files, path)
        for name, path in (("good", good), ("revoked", revoked), ("unknown", unknown))
    }
    for name, result in results.items():
        out = result.stdout + result.stderr
        assert result.returncode == 0, out
        assert "Response verify OK" in out, out
        assert f": {name}\n" in out, out
        assert "WARNING" not in out, out  # the nonce is echoed, the response is within its validity
    assert "Reason: keyCompromise" in results["revoked"].stdout


@live
def test_openssl_verify_crl_check_with_the_served_crls(live_server_process, issue, ca_files, tmp_path):
    valid = write_pem(tmp_path / "valid.pem", issue("valid@test.com").pem)
    row = issue("leaver@test.com")
    revoked = write_pem(tmp_path / "revoked.pem", row.pem)
    lifecycle.revoke([row], RevocationReason.AFFILIATION_CHANGED, by="ad sync")

    # Fetched from the URLs written in the certificates (CRL DP), rebased on the test server's port.
    crls = []
    for cert_path in (valid, ca_files.issuing_cert_path):
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        dp = cert.extensions.get_extension_for_class(x509.CRLDistributionPoints).value[0].full_name[0].value
        url = dp.replace("http://ccm.test.com:8080", live_server_process.publication_url)
        code, headers, body = fetch(url)
        assert code == 200 and headers["Content-Type"] == "application/pkix-crl"
        crls.append(x509.load_der_x509_crl(body))
    crl_file = tmp_path / "crls.pem"
    crl_file.write_bytes(b"".join(c.public_bytes(serialization.Encoding.PEM) for c in crls))

    def verify(path):
        return run_openssl(
            "verify",
            "-crl_check_all",
            "-CRLfile",
            crl_file,
            "-CAfile",
            ca_files.root_cert_path,
            "-untrusted",
            ca_files.issuing_cert_path,
            path,
        )

    accepted = verify(valid)
    assert accepted.returncode == 0, accepted.stdout + accepted.stderr
    rejected = verify(revoked)
    assert rejected.returncode != 0
    assert "certificate revoked" in rejected.stdout + rejected.stderr


@live
def test_ocsp_answers_every_revocation_reason_as_the_crl_states_it(live_server_process, issue, ca_files, tmp_path):
    from cryptography.x509 import ocsp

    for reason in RevocationReason.values:
        row = issue(f"{reason.replace('_', '')}@test.com")
        lifecycle.revoke([row], reason, by="test")
        cert = x509.load_pem_x509_certificate(row.pem.encode())
        der = (
            ocsp.OCSPRequestBuilder()
            .add_certificate(cert, ca_files.issuing_certificate, pki.ocsp.hashes.SHA256())
            .build()
            .public_bytes(serialization.Encoding.DER)
        )
        code, _, body = fetch(
            f"{live_server_process.publication_url}/ocsp/test-smime", der, {"Content-Type": "application/ocsp-request"}
        )
        answer = ocsp.load_der_ocsp_response(body)
        assert code == 200 and answer.certificate_status == ocsp.OCSPCertStatus.REVOKED
        expected = None if reason == "unspecified" else x509.ReasonFlags[reason]
        assert answer.revocation_reason == expected


@live
def test_malformed_ocsp_over_http_is_an_ocsp_error_not_a_500(live_server_process, ca):
    from cryptography.x509 import ocsp

    for url, data in (
        (f"{live_server_process.publication_url}/ocsp/test-smime", b"not a request"),
        (f"{live_server_process.publication_url}/ocsp/test-smime/%%%", None),
    ):
        code, headers, body = fetch(url, data, {"Content-Type": "application/ocsp-request"})
        assert code == 200 and headers["Content-Type"] == "application/ocsp-response"
        assert ocsp.load_der_ocsp_response(body).response_status == ocsp.OCSPResponseStatus.MALFORMED_REQUEST


@live
def test_publication_listener_serves_only_publication_urls(live_server_process, ca):
    base = live_server_process.publication_url
    assert fetch(f"{base}/ca/test-smime.crt")[0] == 200
    for path in ("/admin/", "/api/docs", "/api/enroll/sync"):
        assert fetch(base + path)[0] == 404, path


@live
def test_revocation_state_survives_a_server_restart(live_server_process, issue, ca_files, tmp_path):
    row = issue("restart@test.com")
    path = write_pem(tmp_path / "cert.pem", row.pem)
    lifecycle.revoke([row], RevocationReason.CESSATION_OF_OPERATION, by="test")
    crl_url = f"{live_server_process.publication_url}/crl/test-smime.crl"
    before = x509.load_der_x509_crl(fetch(crl_url)[2])
    live_server_process.restart()
    after_ocsp = openssl_ocsp(live_server_process, ca_files, path)
    assert ": revoked" in after_ocsp.stdout and "cessationOfOperation" in after_ocsp.stdout, after_ocsp.stderr
    after = x509.load_der_x509_crl(fetch(crl_url)[2])
    assert after.public_bytes(serialization.Encoding.DER) == before.public_bytes(serialization.Encoding.DER)
    assert after.get_revoked_certificate_by_serial_number(int(row.serial, 16)) is not None


# --- downloads -----------------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.urls("autoenroll.server.certificates.urls")
@pytest.mark.parametrize(("slug", "name"), [("test-root", "root"), ("test-smime", "issuing")])
def test_ca_downloads_in_pem_der_and_pkcs7_for_group_policy(client, ca, ca_files, slug, name, tmp_path):
    expected = ca_files.root_certificate if name == "root" else ca_files.issuing_certificate
    for alias in (slug, name):
        crt = client.get(f"/ca/{alias}.crt")
        assert crt["Content-Type"] == "application/pkix-cert"
        assert x509.load_der_x509_certificate(crt.content) == expected
        der = client.get(f"/ca/{alias}.der")
        assert der.content == crt.content and "attachment" in der["Content-Disposition"]
        pem = client.get(f"/ca/{alias}.pem")
        assert x509.load_pem_x509_certificate(pem.content) == expected
        p7b = client.get(f"/ca/{alias}.p7b")
        assert p7b["Content-Type"] == "application/x-pkcs7-certificates"
        bundle = pkcs7.load_der_pkcs7_certificates(p7b.content)
        chain = {expected, ca_files.root_certificate}  # a SET OF: DER sorts it, order is not kept
        assert set(bundle) == chain and len(bundle) == len(chain)
        (tmp_path / "bundle.p7b").write_bytes(p7b.content)
        parsed = run_openssl("pkcs7", "-inform", "DER", "-in", tmp_path / "bundle.p7b", "-print_certs", "-noout")
        assert parsed.returncode == 0 and expected.subject.rfc4514_string().split(",")[0].split("=")[1] in parsed.stdout


@pytest.mark.django_db
@pytest.mark.urls("autoenroll.server.certificates.urls")
def test_aia_ca_issuers_url_of_a_certificate_serves_its_issuer(client, issue, ca_files):
    cert = x509.load_pem_x509_certificate(issue().pem.encode())
    aia = cert.extensions.get_extension_for_class(x509.AuthorityInformationAccess).value
    url = next(d.access_location.value for d in aia if d.access_method.dotted_string == "1.3.6.1.5.5.7.48.2")
    response = client.get(url.removeprefix("http://ccm.test.com:8080"))
    assert x509.load_der_x509_certificate(response.content) == ca_files.issuing_certificate


@pytest.mark.django_db
@pytest.mark.urls("autoenroll.server.certificates.urls")
def test_tls_issuer_download_is_the_ca_clients_must_trust_for_https(client, ca, ca_files, settings, tmp_path):
    config = settings.CONFIG
    backend = pki.FileKeyBackend(ca_files.root_cert_path, ca_files.root_key_path, config.ca_passphrase_bytes())
    key = pki.generate_private_key("ec-p256")
    tls = pki.issue_tls_server_certificate(backend, key.public_key(), ["ccm.test.com"])
    (tmp_path / "tls.pem").write_bytes(tls.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "tls.key").write_bytes(b"unused")
    settings.CONFIG = config.model_copy(update={"tls_cert": tmp_path / "tls.pem", "tls_key": tmp_path / "tls.key"})
    response = client.get("/ca/tls-issuer.crt")
    assert x509.load_der_x509_certificate(response.content) == ca_files.root_certificate
    assert pkcs7.load_der_pkcs7_certificates(client.get("/ca/tls-issuer.p7b").content) == [ca_files.root_certificate]

    # A self-signed server certificate must itself be trusted.
    self_key = pki.generate_private_key("ec-p256")
    name = x509.Name.from_rfc4514_string("CN=ccm.test.com")
    self_signed = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(self_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(tls.not_valid_before_utc)
        .not_valid_after(tls.not_valid_after_utc)
        .sign(self_key, pki.signature_hash_for_key(self_key))
    )
    (tmp_path / "tls.pem").write_bytes(self_signed.public_bytes(serialization.Encoding.PEM))
    assert x509.load_pem_x509_certificate(client.get("/ca/tls-issuer.pem").content) == self_signed

    (tmp_path / "tls.pem").unlink()
    assert client.get("/ca/tls-issuer.crt").status_code == 404


@pytest.mark.django_db
@pytest.mark.urls("autoenroll.server.certificates.urls")
def test_unknown_ca_or_format_is_404(client, ca):
    assert client.get("/ca/nope.crt").status_code == 404
    assert client.get("/ca/test-root.exe").status_code == 404
