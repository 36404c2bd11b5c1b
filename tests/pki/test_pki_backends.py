"""CA backends: the single signing path, lazy cached key loading, dotted-path loading."""

from __future__ import annotations

import threading

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.padding import PKCS1v15

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
    signature_hash_for_key,
    verify_data,
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


def test_sign_data_is_the_ca_key_signature_with_its_hash(chain):
    """What a CRL's TBS is signed with: PKCS#1 v1.5 or ECDSA over the data, with the key's hash."""
    public_key = chain.hierarchy.issuing_certificate.public_key()
    algorithm = signature_hash_for_key(public_key)
    scheme = (ec.ECDSA(algorithm),) if isinstance(public_key, ec.EllipticCurvePublicKey) else (PKCS1v15(), algorithm)
    signature = chain.issuing_backend.sign_data(b"tbs")
    public_key.verify(signature, b"tbs", *scheme)  # cryptography's own verification, not ours
    verify_data(public_key, signature, b"tbs")
    with pytest.raises(InvalidSignature):
        verify_data(public_key, signature, b"other")


def test_self_signing_backend_has_no_ca_certificate():
    backend = InMemoryKeyBackend(generate_private_key("ec-p256"))
    with pytest.raises(BackendConfigurationError):
        _ = backend.certificate
