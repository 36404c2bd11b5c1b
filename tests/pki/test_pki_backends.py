"""CA backends: the single signing path, lazy cached key loading, dotted-path loading."""

from __future__ import annotations

import datetime as dt
import threading

import pytest
from cryptography import x509

from autoenroll.pki import (
    DEFAULT_BACKEND,
    BackendConfigurationError,
    CABackend,
    FileKeyBackend,
    InMemoryKeyBackend,
    SigningError,
    WrongPassphrase,
    backends,
    generate_private_key,
    issue_smime_certificate,
    load_backend,
)


@pytest.fixture
def count_key_reads(monkeypatch):
    calls = []
    real = backends.read_encrypted_key

    def counting(path, passphrase):
        calls.append(path)
        return real(path, passphrase)

    monkeypatch.setattr(backends, "read_encrypted_key", counting)
    return calls


def _sign_one(backend, chain):
    key = generate_private_key("ec-p256").public_key()
    return issue_smime_certificate(backend, key, "user1@test.com", chain.hierarchy.issuing_urls)


@pytest.mark.parametrize("chain", ["ec-p256"], indirect=True)
def test_file_backend_loads_the_key_lazily_once_per_process(chain, passphrase, count_key_reads):
    h = chain.hierarchy
    backend = FileKeyBackend(h.issuing_cert_path, h.issuing_key_path, passphrase)
    assert count_key_reads == []  # constructing does not decrypt
    for _ in range(3):
        _sign_one(backend, chain)
    # A second instance (e.g. one per request) reuses the process-wide cache.
    _sign_one(FileKeyBackend(h.issuing_cert_path, h.issuing_key_path, passphrase), chain)
    assert len(count_key_reads) == 1


@pytest.mark.parametrize("chain", ["ec-p256"], indirect=True)
def test_file_backend_decrypts_once_under_concurrent_first_use(chain, passphrase, count_key_reads):
    h = chain.hierarchy
    backend = FileKeyBackend(h.issuing_cert_path, h.issuing_key_path, passphrase)
    barrier = threading.Barrier(8)
    results, errors = [], []

    def worker():
        barrier.wait()
        try:
            results.append(_sign_one(backend, chain))
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and len(results) == 8
    assert len(count_key_reads) == 1


@pytest.mark.parametrize("chain", ["ec-p256"], indirect=True)
def test_file_backend_with_wrong_passphrase_fails_at_first_signature(chain):
    h = chain.hierarchy
    backend = FileKeyBackend(h.issuing_cert_path, h.issuing_key_path, b"wrong")
    with pytest.raises(WrongPassphrase):
        _sign_one(backend, chain)


@pytest.mark.parametrize("chain", ["ec-p256"], indirect=True)
def test_file_backend_refuses_a_key_that_does_not_match_its_certificate(chain, passphrase):
    h = chain.hierarchy
    backend = FileKeyBackend(h.issuing_cert_path, h.root_key_path, passphrase)
    with pytest.raises(BackendConfigurationError, match="does not match"):
        _sign_one(backend, chain)


@pytest.mark.parametrize("chain", ["ec-p256"], indirect=True)
def test_sign_refuses_a_template_naming_another_issuer(chain):
    h = chain.hierarchy
    backend = InMemoryKeyBackend(chain.leaf_key, chain.leaf)  # wrong CA for this template
    from autoenroll.pki.profiles import smime_builder

    builder = smime_builder(h.issuing_certificate, chain.leaf_key.public_key(), "user1@test.com", h.issuing_urls)
    with pytest.raises(SigningError):
        backend.sign(builder)


def test_load_backend_defaults_to_file_backend_by_dotted_path(chain, passphrase):
    h = chain.hierarchy
    assert DEFAULT_BACKEND == "autoenroll.pki.backends.FileKeyBackend"
    backend = load_backend(
        certificate=str(h.issuing_cert_path), key_path=str(h.issuing_key_path), passphrase=passphrase.decode()
    )
    assert isinstance(backend, FileKeyBackend) and isinstance(backend, CABackend)
    assert backend.certificate == h.issuing_certificate
    cert = _sign_one(backend, chain)
    cert.verify_directly_issued_by(h.issuing_certificate)


@pytest.mark.parametrize("chain", ["ec-p256"], indirect=True)
def test_load_backend_accepts_any_class_implementing_the_protocol(chain):
    backend = load_backend("autoenroll.pki.backends.InMemoryKeyBackend", key=chain.leaf_key, certificate=chain.leaf)
    assert isinstance(backend, InMemoryKeyBackend)


@pytest.mark.parametrize(
    ("path", "options"),
    [
        ("nodots", {}),
        ("autoenroll.pki.nonexistent.Backend", {}),
        ("autoenroll.pki.backends.Nope", {}),
        ("autoenroll.pki.backends.DEFAULT_BACKEND", {}),
        ("autoenroll.pki.backends.FileKeyBackend", {"bogus": 1}),
        ("autoenroll.pki.backends.SigningError", {}),
    ],
)
def test_load_backend_reports_bad_configuration_clearly(path, options):
    with pytest.raises(BackendConfigurationError):
        load_backend(path, **options)


def test_missing_ca_certificate_file_is_a_configuration_error(tmp_path):
    with pytest.raises(BackendConfigurationError, match="cannot read"):
        FileKeyBackend(tmp_path / "missing.pem", tmp_path / "missing.key", b"x")


def test_sign_crl_produces_a_crl_openssl_accepts(chain, openssl, tmp_path):
    from cryptography.hazmat.primitives import serialization

    h = chain.hierarchy
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(h.issuing_certificate.subject)
        .last_update(now)
        .next_update(now + dt.timedelta(days=7))
        .add_revoked_certificate(
            x509.RevokedCertificateBuilder().serial_number(chain.leaf.serial_number).revocation_date(now).build()
        )
    )
    crl = chain.issuing_backend.sign_crl(builder)
    assert crl.is_signature_valid(h.issuing_certificate.public_key())
    crl_path = tmp_path / "smime.crl"
    crl_path.write_bytes(crl.public_bytes(serialization.Encoding.PEM))
    result = openssl(
        "verify",
        "-crl_check",
        "-CAfile",
        h.root_cert_path,
        "-untrusted",
        h.issuing_cert_path,
        "-CRLfile",
        crl_path,
        chain.leaf_cert_path,
    )
    assert result.returncode != 0 and "revoked" in (result.stdout + result.stderr)


def test_self_signing_backend_has_no_ca_certificate():
    backend = InMemoryKeyBackend(generate_private_key("ec-p256"))
    with pytest.raises(BackendConfigurationError):
        _ = backend.certificate
