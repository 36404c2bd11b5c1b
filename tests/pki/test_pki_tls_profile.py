"""The TLS server certificate of our own HTTPS endpoint."""

from __future__ import annotations

import ipaddress

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID

from autoenroll.pki import ProfileError, generate_private_key, issue_tls_server_certificate


def test_tls_server_certificate_verifies_for_sslserver_purpose(chain, openssl, pkix_lint, tmp_path):
    h = chain.hierarchy
    key = generate_private_key(chain.key_type)
    cert = issue_tls_server_certificate(
        chain.root_backend,
        key.public_key(),
        ["ccm.test.com", "autoenroll.test.com"],
        ["127.0.0.1", "::1"],
        issuer_urls=h.root_urls,
    )
    path = tmp_path / "server.pem"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    result = openssl("verify", "-x509_strict", "-CAfile", h.root_cert_path, "-purpose", "sslserver", path)
    assert result.returncode == 0, result.stdout + result.stderr
    for host_check in (["-verify_hostname", "ccm.test.com"], ["-verify_ip", "127.0.0.1"]):
        result = openssl("verify", "-CAfile", h.root_cert_path, "-purpose", "sslserver", *host_check, path)
        assert result.returncode == 0, result.stdout + result.stderr
    assert pkix_lint(cert) == []  # pkilint wants a TLD, so no "localhost" in this one

    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["ccm.test.com", "autoenroll.test.com"]
    assert san.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1")]
    assert list(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == [
        ExtendedKeyUsageOID.SERVER_AUTH
    ]
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    assert cert.issuer == h.root_certificate.subject


@pytest.mark.parametrize("chain", ["ec-p256"], indirect=True)
def test_tls_server_certificate_is_rejected_for_smime_and_other_hosts(chain, openssl, tmp_path):
    h = chain.hierarchy
    key = generate_private_key("ec-p256")
    cert = issue_tls_server_certificate(chain.root_backend, key.public_key(), ["ccm.test.com"])
    path = tmp_path / "server.pem"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    assert openssl("verify", "-CAfile", h.root_cert_path, "-purpose", "smimesign", path).returncode != 0
    assert openssl("verify", "-CAfile", h.root_cert_path, "-verify_hostname", "other.test.com", path).returncode != 0


@pytest.mark.parametrize(
    ("dns", "ips"), [([], []), (["bad name"], []), (["-x.test.com"], []), (["ccm.test.com"], ["300.1.1.1"])]
)
def test_tls_server_certificate_needs_valid_names(chain, dns, ips):
    key = generate_private_key("ec-p256").public_key()
    with pytest.raises(ProfileError):
        issue_tls_server_certificate(chain.root_backend, key, dns, ips)
