"""The S/MIME end-entity profile, proven with pkilint, OpenSSL verify and OpenSSL CMS."""

from __future__ import annotations

import datetime as dt

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from autoenroll.pki import (
    MAX_SMIME_VALIDITY_DAYS,
    SMIME_MAILBOX_STRICT_POLICY,
    ProfileError,
    generate_private_key,
    issue_smime_certificate,
    public_key_from_csr,
)
from autoenroll.pki.profiles import smime_builder

MAIL = "user1@test.com"


def test_smime_certificate_passes_pkilint_mailbox_strict_without_warnings(chain, smime_lint):
    findings = smime_lint(chain.leaf)
    assert findings == [], "pkilint S/MIME (MAILBOX-STRICT) findings:\n" + "\n".join(findings)


def test_pkilint_detects_the_certificate_as_mailbox_strict(chain):
    from pkilint import loader
    from pkilint.cabf import smime
    from pkilint.cabf.smime import smime_constants

    doc = loader.RFC5280CertificateDocumentLoader().load_der_document(
        chain.leaf.public_bytes(serialization.Encoding.DER), "certificate"
    )
    assert smime.determine_validation_level_and_generation(doc) == (
        smime_constants.ValidationLevel.MAILBOX,
        smime_constants.Generation.STRICT,
    )


def test_smime_certificate_chains_with_pkilint_issuer_subject_linter(chain, chain_lint):
    result = chain_lint(chain.hierarchy.issuing_cert_path, chain.leaf_cert_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_openssl_verifies_smime_certificate_through_issuing_ca(chain, openssl):
    h = chain.hierarchy
    purposes: list[str | None] = [None, "smimesign"]
    if chain.key_type.startswith("rsa"):
        # OpenSSL's "smimeencrypt" purpose insists on keyEncipherment, which the S/MIME BR
        # forbid for EC keys (they use keyAgreement); CMS encryption itself works for EC.
        purposes.append("smimeencrypt")
    for purpose in purposes:
        extra = ["-purpose", purpose] if purpose else []
        result = openssl(
            "verify",
            "-x509_strict",
            "-CAfile",
            h.root_cert_path,
            "-untrusted",
            h.issuing_cert_path,
            *extra,
            chain.leaf_cert_path,
        )
        assert result.returncode == 0, f"purpose={purpose}: {result.stdout}{result.stderr}"
        assert result.stdout.strip().endswith(": OK")


def test_openssl_rejects_smime_certificate_without_the_issuing_ca(chain, openssl):
    result = openssl("verify", "-CAfile", chain.hierarchy.root_cert_path, chain.leaf_cert_path)
    assert result.returncode != 0


def test_openssl_cms_sign_then_verify_with_the_chain(chain, openssl, passphrase, tmp_path):
    h = chain.hierarchy
    message = tmp_path / "message.txt"
    message.write_text("Hello from autoenroll\n")
    signed = tmp_path / "signed.p7m"
    result = openssl(
        "cms",
        "-sign",
        "-in",
        message,
        "-signer",
        chain.leaf_cert_path,
        "-inkey",
        chain.leaf_key_path,
        "-passin",
        f"pass:{passphrase.decode()}",
        "-certfile",
        h.issuing_cert_path,
        "-nodetach",
        "-outform",
        "PEM",
        "-out",
        signed,
    )
    assert result.returncode == 0, result.stderr
    verified = tmp_path / "verified.txt"
    result = openssl(
        "cms",
        "-verify",
        "-in",
        signed,
        "-inform",
        "PEM",
        "-CAfile",
        h.root_cert_path,
        "-purpose",
        "smimesign",
        "-out",
        verified,
    )
    assert result.returncode == 0, result.stderr
    assert "Verification successful" in result.stderr
    assert verified.read_text() == message.read_text()


def test_openssl_cms_encrypt_then_decrypt_with_the_private_key(chain, openssl, passphrase, tmp_path):
    message = tmp_path / "secret.txt"
    message.write_text("for user1's eyes only\n")
    encrypted = tmp_path / "encrypted.p7m"
    result = openssl("cms", "-encrypt", "-aes-256-cbc", "-in", message, "-out", encrypted, chain.leaf_cert_path)
    assert result.returncode == 0, result.stderr
    decrypted = tmp_path / "decrypted.txt"
    result = openssl(
        "cms",
        "-decrypt",
        "-in",
        encrypted,
        "-recip",
        chain.leaf_cert_path,
        "-inkey",
        chain.leaf_key_path,
        "-passin",
        f"pass:{passphrase.decode()}",
        "-out",
        decrypted,
    )
    assert result.returncode == 0, result.stderr
    assert decrypted.read_text() == message.read_text()


def test_smime_certificate_has_exactly_the_strict_mailbox_contents(chain):
    cert = chain.leaf
    ext = cert.extensions
    assert cert.subject == x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, MAIL)])
    san = ext.get_extension_for_class(x509.SubjectAlternativeName)
    assert list(san.value) == [x509.RFC822Name(MAIL)] and not san.critical
    assert list(ext.get_extension_for_class(x509.ExtendedKeyUsage).value) == [ExtendedKeyUsageOID.EMAIL_PROTECTION]
    policies = ext.get_extension_for_class(x509.CertificatePolicies).value
    assert [p.policy_identifier for p in policies] == [SMIME_MAILBOX_STRICT_POLICY]
    assert SMIME_MAILBOX_STRICT_POLICY.dotted_string == "2.23.140.1.5.1.3"
    bc = ext.get_extension_for_class(x509.BasicConstraints)
    assert bc.value.ca is False
    urls = chain.hierarchy.issuing_urls
    crl = ext.get_extension_for_class(x509.CRLDistributionPoints).value
    assert [n.value for dp in crl for n in dp.full_name] == ["http://ccm.test.com:8080/crl/smime.crl"] == [urls.crl]
    aia = {
        d.access_method: d.access_location.value
        for d in ext.get_extension_for_class(x509.AuthorityInformationAccess).value
    }
    assert aia == {
        x509.AuthorityInformationAccessOID.OCSP: "http://ccm.test.com:8080/ocsp/smime",
        x509.AuthorityInformationAccessOID.CA_ISSUERS: "http://ccm.test.com:8080/ca/smime.crt",
    }
    issuing = chain.hierarchy.issuing_certificate
    assert cert.issuer == issuing.subject
    aki = ext.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    ski = issuing.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert aki.key_identifier == ski.digest and aki.authority_cert_issuer is None
    assert ext.get_extension_for_class(x509.SubjectKeyIdentifier).value == (
        x509.SubjectKeyIdentifier.from_public_key(chain.leaf_key.public_key())
    )


def test_smime_key_usage_follows_the_key_algorithm(chain):
    ku = chain.leaf.extensions.get_extension_for_class(x509.KeyUsage)
    assert ku.critical
    assert ku.value.digital_signature
    is_rsa = isinstance(chain.leaf_key, rsa.RSAPrivateKey)
    assert ku.value.key_encipherment is is_rsa
    assert ku.value.key_agreement is (not is_rsa)
    assert not (
        ku.value.content_commitment or ku.value.data_encipherment or ku.value.key_cert_sign or ku.value.crl_sign
    )


def test_signature_hash_follows_the_signing_ca_key(chain):
    expected = hashes.SHA384 if chain.key_type == "ec-p384" else hashes.SHA256
    for cert in (chain.leaf, chain.hierarchy.issuing_certificate, chain.hierarchy.root_certificate):
        assert isinstance(cert.signature_hash_algorithm, expected)


def test_smime_validity_defaults_to_365_days_in_aware_utc(chain):
    cert = chain.leaf
    start, end = cert.not_valid_before_utc, cert.not_valid_after_utc
    assert end - start + dt.timedelta(seconds=1) == dt.timedelta(days=365)
    now = dt.datetime.now(dt.UTC)
    assert start <= now <= start + dt.timedelta(minutes=10)


def test_serials_are_positive_and_at_least_64_bits(chain):
    h = chain.hierarchy
    for cert in (chain.leaf, h.issuing_certificate, h.root_certificate):
        assert cert.serial_number > 0
        assert cert.serial_number.bit_length() >= 64
    serials = set()
    backend = chain.issuing_backend
    key = generate_private_key("ec-p256").public_key()
    for _ in range(20):
        serials.add(issue_smime_certificate(backend, key, MAIL, h.issuing_urls).serial_number)
    assert len(serials) == 20 and min(s.bit_length() for s in serials) >= 64


def test_validity_over_825_days_is_refused(chain):
    key = generate_private_key("ec-p256").public_key()
    with pytest.raises(ProfileError, match="825"):
        issue_smime_certificate(chain.issuing_backend, key, MAIL, chain.hierarchy.issuing_urls, validity_days=826)
    cert = issue_smime_certificate(
        chain.issuing_backend, key, MAIL, chain.hierarchy.issuing_urls, validity_days=MAX_SMIME_VALIDITY_DAYS
    )
    assert cert.not_valid_after_utc - cert.not_valid_before_utc < dt.timedelta(days=825)


def test_identity_comes_from_the_mail_parameter_not_from_the_csr(chain):
    """A CSR claiming another identity only contributes its public key."""
    key = generate_private_key("ec-p256")
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ceo@test.com")]))
        .add_extension(x509.SubjectAlternativeName([x509.RFC822Name("ceo@test.com")]), critical=False)
        .sign(key, hashes.SHA256())
    )
    public_key = public_key_from_csr(csr.public_bytes(serialization.Encoding.PEM))
    cert = issue_smime_certificate(chain.issuing_backend, public_key, MAIL, chain.hierarchy.issuing_urls)
    assert "ceo@test.com" not in cert.subject.rfc4514_string()
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.RFC822Name) == [MAIL]
    assert cert.public_key() == key.public_key()


@pytest.mark.parametrize("chain", ["ec-p256"], indirect=True)
@pytest.mark.parametrize("leaf_key_type", ["rsa-2048", "rsa-4096", "ec-p256", "ec-p384"])
def test_every_end_entity_key_type_passes_pkilint(chain, smime_lint, leaf_key_type):
    key = generate_private_key(leaf_key_type).public_key()
    cert = issue_smime_certificate(chain.issuing_backend, key, MAIL, chain.hierarchy.issuing_urls)
    assert smime_lint(cert) == []


@pytest.mark.parametrize("chain", ["ec-p256"], indirect=True)
def test_mailbox_too_long_for_a_cn_gets_empty_subject_and_critical_san(chain, smime_lint):
    mail = "a.very.long.mailbox.name.that.exceeds.the.common.name.limit@test.com"
    assert len(mail) > 64
    key = generate_private_key("ec-p256").public_key()
    cert = issue_smime_certificate(chain.issuing_backend, key, mail, chain.hierarchy.issuing_urls)
    assert cert.subject == x509.Name([])
    assert cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).critical
    assert smime_lint(cert) == []


@pytest.mark.parametrize(
    "mail",
    [
        "user1",
        "user1@",
        "@test.com",
        "a@b@test.com",
        "user 1@test.com",
        "usér@test.com",
        "u@localhost",
        "u@-bad.com",
        "",
        "user1@test.com\n",  # `re.match` with `$` let a final line break into the certificate
        "user1\n@test.com",
    ],
)
def test_invalid_mailbox_is_refused(chain, mail):
    key = generate_private_key("ec-p256").public_key()
    with pytest.raises(ProfileError):
        smime_builder(chain.hierarchy.issuing_certificate, key, mail, chain.hierarchy.issuing_urls)


def test_unsupported_leaf_key_is_refused(chain):
    from autoenroll.pki import UnsupportedKeyType

    small = rsa.generate_private_key(65537, 1024).public_key()
    p521 = ec.generate_private_key(ec.SECP521R1()).public_key()
    for key in (small, p521):
        with pytest.raises(UnsupportedKeyType):
            smime_builder(chain.hierarchy.issuing_certificate, key, MAIL, chain.hierarchy.issuing_urls)


def test_leaf_never_outlives_the_issuing_ca(chain):
    issuing = chain.hierarchy.issuing_certificate
    late = issuing.not_valid_after_utc - dt.timedelta(days=30)
    key = generate_private_key("ec-p256").public_key()
    builder = smime_builder(issuing, key, MAIL, chain.hierarchy.issuing_urls, not_before=late)
    cert = chain.issuing_backend.sign(builder)
    assert cert.not_valid_after_utc == issuing.not_valid_after_utc
