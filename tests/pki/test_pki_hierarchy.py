"""init_hierarchy and the CA profiles (root, S/MIME issuing CA)."""

from __future__ import annotations

import os
import stat

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from autoenroll.pki import (
    SMIME_MAILBOX_STRICT_POLICY,
    HierarchyExists,
    ProfileError,
    PublicationURLs,
    UnsupportedKeyType,
    read_encrypted_key,
)
from autoenroll.pki import profiles as profiles_module

FILES = {"root-ca.pem", "root-ca.key", "issuing-ca.pem", "issuing-ca.key"}


def test_hierarchy_writes_pem_certificates_and_0600_encrypted_keys(chain, passphrase):
    h = chain.hierarchy
    directory = h.root_cert_path.parent
    assert {p.name for p in directory.iterdir()} == FILES  # no temporary leftovers
    for key_path, cert in ((h.root_key_path, h.root_certificate), (h.issuing_key_path, h.issuing_certificate)):
        assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
        data = key_path.read_bytes()
        assert data.startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----") and b"BEGIN PRIVATE KEY" not in data
        assert read_encrypted_key(key_path, passphrase).public_key() == cert.public_key()
    assert x509.load_pem_x509_certificate(h.root_cert_path.read_bytes()) == h.root_certificate
    assert x509.load_pem_x509_certificate(h.issuing_cert_path.read_bytes()) == h.issuing_certificate


def test_root_ca_is_a_self_signed_ca_per_smime_br(chain):
    root = chain.hierarchy.root_certificate
    root.verify_directly_issued_by(root)
    assert root.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "Test Root CA"
    assert root.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == "Test Organization"
    assert root.subject.get_attributes_for_oid(NameOID.COUNTRY_NAME)[0].value == "FR"
    bc = root.extensions.get_extension_for_class(x509.BasicConstraints)
    assert bc.critical and bc.value.ca and bc.value.path_length is None
    ku = root.extensions.get_extension_for_class(x509.KeyUsage)
    assert ku.critical and ku.value.key_cert_sign and ku.value.crl_sign and not ku.value.digital_signature
    with pytest.raises(x509.ExtensionNotFound):
        root.extensions.get_extension_for_class(x509.ExtendedKeyUsage)
    ski = root.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert root.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value.key_identifier == ski.digest
    years = (root.not_valid_after_utc - root.not_valid_before_utc).days / 365.25
    assert 19.9 < years < 20.1


def test_issuing_ca_is_an_smime_subordinate_ca_per_smime_br(chain):
    h = chain.hierarchy
    ca = h.issuing_certificate
    ca.verify_directly_issued_by(h.root_certificate)
    ext = ca.extensions
    bc = ext.get_extension_for_class(x509.BasicConstraints)
    assert bc.critical and bc.value.ca and bc.value.path_length == 0
    ku = ext.get_extension_for_class(x509.KeyUsage)
    assert ku.critical and ku.value.key_cert_sign and ku.value.crl_sign
    eku = ext.get_extension_for_class(x509.ExtendedKeyUsage)
    assert list(eku.value) == [ExtendedKeyUsageOID.EMAIL_PROTECTION] and not eku.critical
    policies = ext.get_extension_for_class(x509.CertificatePolicies)
    assert [p.policy_identifier for p in policies.value] == [SMIME_MAILBOX_STRICT_POLICY] and not policies.critical
    crl = ext.get_extension_for_class(x509.CRLDistributionPoints).value
    assert [n.value for dp in crl for n in dp.full_name] == ["http://ccm.test.com:8080/crl/root.crl"]
    aia = ext.get_extension_for_class(x509.AuthorityInformationAccess).value
    assert [(d.access_method, d.access_location.value) for d in aia] == [
        (x509.AuthorityInformationAccessOID.CA_ISSUERS, "http://ccm.test.com:8080/ca/root.crt")
    ]
    root_ski = h.root_certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    aki = ext.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    assert aki.key_identifier == root_ski.digest and aki.authority_cert_serial_number is None
    assert ext.get_extension_for_class(x509.SubjectKeyIdentifier).value == (
        x509.SubjectKeyIdentifier.from_public_key(ca.public_key())
    )
    for attr in (NameOID.COUNTRY_NAME, NameOID.ORGANIZATION_NAME, NameOID.COMMON_NAME):
        assert ca.subject.get_attributes_for_oid(attr)
    years = (ca.not_valid_after_utc - ca.not_valid_before_utc).days / 365.25
    assert 9.9 < years < 10.1


def test_ca_certificates_pass_pkilint_rfc5280_and_chain_linters(chain, pkix_lint, chain_lint):
    """pkilint 0.13 has no CABF S/MIME *CA* linter: lint the CAs against RFC 5280 and the chain links."""
    h = chain.hierarchy
    for cert in (h.root_certificate, h.issuing_certificate):
        findings = pkix_lint(cert)
        assert findings == [], "\n".join(findings)
    for issuer, subject in ((h.root_cert_path, h.root_cert_path), (h.root_cert_path, h.issuing_cert_path)):
        result = chain_lint(issuer, subject)
        assert result.returncode == 0, result.stdout + result.stderr


def test_openssl_strictly_verifies_the_ca_certificates(chain, openssl):
    """(The S/MIME purpose of the issuing CA is proven at depth 1 by the leaf verification tests.)"""
    h = chain.hierarchy
    for cert in (h.root_cert_path, h.issuing_cert_path):
        result = openssl("verify", "-x509_strict", "-CAfile", h.root_cert_path, cert)
        assert result.returncode == 0, result.stdout + result.stderr


def test_init_hierarchy_twice_refuses_and_leaves_the_first_ca_intact(tmp_path, new_hierarchy):
    directory = tmp_path / "ca"
    new_hierarchy(directory, "ec-p256")
    before = {p.name: p.read_bytes() for p in directory.iterdir()}
    with pytest.raises(HierarchyExists, match="already exists"):
        new_hierarchy(directory, "ec-p256")
    assert {p.name: p.read_bytes() for p in directory.iterdir()} == before


def test_init_hierarchy_refuses_if_any_single_file_exists(tmp_path, new_hierarchy):
    directory = tmp_path / "ca"
    directory.mkdir()
    (directory / "issuing-ca.key").write_bytes(b"precious")
    with pytest.raises(HierarchyExists, match="issuing-ca.key"):
        new_hierarchy(directory, "ec-p256")
    assert {p.name for p in directory.iterdir()} == {"issuing-ca.key"}
    assert (directory / "issuing-ca.key").read_bytes() == b"precious"


def test_init_hierarchy_leaves_no_partial_state_when_a_file_appears_midway(tmp_path, new_hierarchy, monkeypatch):
    directory = tmp_path / "ca"
    real_link = os.link
    count = 0

    def racing_link(src, dst, **kwargs):
        nonlocal count
        count += 1
        if count == 3:  # someone creates the third file concurrently
            with open(dst, "wb") as fh:
                fh.write(b"other")
        return real_link(src, dst, **kwargs)

    monkeypatch.setattr(profiles_module.os, "link", racing_link)
    with pytest.raises(HierarchyExists):
        new_hierarchy(directory, "ec-p256")
    assert [p.name for p in directory.iterdir()] == ["issuing-ca.pem"]  # only the intruder's file
    assert (directory / "issuing-ca.pem").read_bytes() == b"other"


def test_init_hierarchy_leaves_no_partial_state_on_unexpected_errors(tmp_path, new_hierarchy, monkeypatch):
    directory = tmp_path / "ca"

    def failing_write(key, path, passphrase):
        raise OSError("disk full")

    monkeypatch.setattr(profiles_module, "write_encrypted_key", failing_write)
    with pytest.raises(OSError, match="disk full"):
        new_hierarchy(directory, "ec-p256")
    assert list(directory.iterdir()) == []


def test_init_hierarchy_refuses_rsa_2048_for_cas(tmp_path, new_hierarchy):
    with pytest.raises(UnsupportedKeyType):
        new_hierarchy(tmp_path / "ca", "rsa-2048")
    assert not (tmp_path / "ca" / "root-ca.key").exists()


def test_publication_urls_are_derived_from_base_url_and_slug():
    urls = PublicationURLs.for_ca("http://ccm.test.com:8080/", "smime")
    assert urls == PublicationURLs(
        crl="http://ccm.test.com:8080/crl/smime.crl",
        ocsp="http://ccm.test.com:8080/ocsp/smime",
        ca_issuers="http://ccm.test.com:8080/ca/smime.crt",
    )
    with pytest.raises(AttributeError):
        urls.crl = "http://evil"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("base", "slug"),
    [
        ("https://ccm.test.com", "smime"),
        ("ccm.test.com", "smime"),
        ("http://ccm.test.com", "../x"),
        ("http://ccm.test.com", "Smime"),
        ("ldap://ccm.test.com", "root"),
    ],
)
def test_publication_urls_must_be_plain_http_with_a_safe_slug(base, slug):
    """CABF: CRL/AIA URLs are HTTP (fetchable without TLS revocation checks)."""
    with pytest.raises(ProfileError):
        PublicationURLs.for_ca(base, slug)
