"""Checks and fixtures by real tools, shared by the test packages: pkilint linters, OpenSSL, MIT ktutil."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

VENV_BIN = Path(sys.executable).parent


def run_openssl(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("openssl")
    if exe is None:
        pytest.fail("openssl is required by the PKI tests")
    return subprocess.run([exe, *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=60)


def format_findings(results, threshold) -> list[str]:
    """Every pkilint finding at ``threshold`` or worse, as readable lines."""
    return [
        f"{fd.finding.severity} {fd.finding.code} @ {result.node.path} ({result.validator}) {fd.message or ''}"
        for result in results
        for fd in result.finding_descriptions
        if fd.finding.severity <= threshold
    ]


def lint_smime_mailbox_strict(cert: x509.Certificate) -> list[str]:
    """pkilint's CABF S/MIME subscriber linter, mailbox-validated strict: WARNING and worse."""
    from pkilint import loader
    from pkilint.cabf import smime
    from pkilint.cabf.smime import smime_constants
    from pkilint.pkix import certificate
    from pkilint.validation import ValidationFindingSeverity

    doc = loader.RFC5280CertificateDocumentLoader().load_der_document(
        cert.public_bytes(serialization.Encoding.DER), "certificate"
    )
    validator = certificate.create_pkix_certificate_validator_container(
        smime.create_decoding_validators(),
        smime.create_subscriber_validators(smime_constants.ValidationLevel.MAILBOX, smime_constants.Generation.STRICT),
    )
    return format_findings(validator.validate(doc.root), ValidationFindingSeverity.WARNING)


def lint_pkix(cert: x509.Certificate) -> list[str]:
    """pkilint's RFC 5280 linter (used for the CA certificates: pkilint has no S/MIME CA linter)."""
    from pkilint import loader
    from pkilint.pkix import certificate, extension, name
    from pkilint.validation import ValidationFindingSeverity

    doc = loader.RFC5280CertificateDocumentLoader().load_der_document(
        cert.public_bytes(serialization.Encoding.DER), "certificate"
    )
    validator = certificate.create_pkix_certificate_validator_container(
        certificate.create_decoding_validators(name.ATTRIBUTE_TYPE_MAPPINGS, extension.EXTENSION_MAPPINGS),
        [
            certificate.create_issuer_validator_container([]),
            certificate.create_validity_validator_container(),
            certificate.create_subject_validator_container([]),
            certificate.create_extensions_validator_container([]),
            certificate.create_spki_validator_container([]),
        ],
    )
    return format_findings(validator.validate(doc.root), ValidationFindingSeverity.WARNING)


def lint_chain_link(issuer_pem: Path, subject_pem: Path) -> subprocess.CompletedProcess[str]:
    """pkilint's issuer/subject linter (name chaining, AKI/SKI, policy chaining, signature)."""
    return subprocess.run(
        [
            str(VENV_BIN / "lint_pkix_signer_signee_cert_chain"),
            "lint",
            "-s",
            "WARNING",
            str(issuer_pem),
            str(subject_pem),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )


def lint_crl(der: bytes) -> list[str]:
    """pkilint's CRL linter, CA/B Forum profile (as `lint_crl lint -t CRL -p BR`)."""
    from pkilint import loader, pkix
    from pkilint.cabf import cabf_crl
    from pkilint.pkix import crl, extension, name
    from pkilint.validation import ValidationFindingSeverity

    kind = crl.CertificateRevocationListType.CRL
    validator = crl.create_pkix_crl_validator_container(
        [
            pkix.create_attribute_decoder(name.ATTRIBUTE_TYPE_MAPPINGS),
            pkix.create_extension_decoder(extension.EXTENSION_MAPPINGS),
        ],
        [
            crl.create_issuer_validator_container([]),
            crl.create_validity_validator_container([cabf_crl.create_validity_period_validator(kind)]),
            crl.create_extensions_validator_container([]),
            cabf_crl.CabfCrlReasonCodeAllowlistValidator(kind),
        ],
    )
    doc = loader.RFC5280CertificateListDocumentLoader().load_der_document(der, "crl")
    return format_findings(validator.validate(doc.root), ValidationFindingSeverity.WARNING)


def lint_ocsp(der: bytes) -> list[str]:
    """pkilint's RFC 6960 OCSP response linter (as `lint_ocsp_response lint`)."""
    from pkilint import loader, pkix
    from pkilint.pkix import extension, name, ocsp
    from pkilint.validation import ValidationFindingSeverity

    validator = ocsp.create_pkix_ocsp_response_validator_container(
        [
            ocsp.create_response_decoder(),
            pkix.create_attribute_decoder(name.ATTRIBUTE_TYPE_MAPPINGS),
            pkix.create_extension_decoder(extension.EXTENSION_MAPPINGS),
        ],
        [],
    )
    doc = loader.RFC6960OCSPResponseDocumentLoader().load_der_document(der, "ocsp")
    return format_findings(validator.validate(doc.root), ValidationFindingSeverity.WARNING)


def ktutil_keytab(path: Path, principal: str, enctype: str = "aes256-cts", kvno: int = 1) -> Path:
    """Write a keytab with MIT ktutil (password-derived key), as an admin might have done by hand."""
    script = f"addent -password -p {principal} -k {kvno} -e {enctype}\nsecret-pw\nwkt {path}\nquit\n"
    proc = subprocess.run(["ktutil"], input=script, capture_output=True, text=True, timeout=30, check=False)
    assert proc.returncode == 0 and path.exists(), proc.stderr
    path.chmod(0o600)
    return path
