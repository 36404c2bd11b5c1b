"""Fixtures for the PKI tests: real hierarchies on disk, real OpenSSL, real pkilint."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from autoenroll.pki import (
    FileKeyBackend,
    Hierarchy,
    PrivateKey,
    clear_key_cache,
    generate_private_key,
    init_hierarchy,
    issue_smime_certificate,
    write_encrypted_key,
)
from checks import lint_chain_link, lint_pkix, lint_smime_mailbox_strict, run_openssl

PASSPHRASE = b"correct horse battery staple"
BASE_URL = "http://ccm.test.com:8080"
MAIL = "user1@test.com"
# The key types every behaviour is proven for (CA and end entity alike).
KEY_TYPES = ("ec-p256", "ec-p384", "rsa-3072")
VENV_BIN = Path(sys.executable).parent


@pytest.fixture(autouse=True)
def _fresh_key_cache():
    """Each test sees the key cache empty, so caching behaviour is observable."""
    clear_key_cache()
    yield
    clear_key_cache()


def make_hierarchy(directory: Path, key_type: str) -> Hierarchy:
    return init_hierarchy(
        directory,
        PASSPHRASE,
        key_type,
        name="Test",
        organization="Test Organization",
        country="FR",
        publication_base_url=BASE_URL,
    )


@dataclass
class Chain:
    """A root, an issuing CA and an S/MIME leaf for MAIL, all written as PEM."""

    key_type: str
    hierarchy: Hierarchy
    leaf: x509.Certificate
    leaf_key: PrivateKey
    leaf_cert_path: Path
    leaf_key_path: Path  # encrypted with PASSPHRASE
    directory: Path

    @property
    def issuing_backend(self) -> FileKeyBackend:
        h = self.hierarchy
        return FileKeyBackend(h.issuing_cert_path, h.issuing_key_path, PASSPHRASE)

    @property
    def root_backend(self) -> FileKeyBackend:
        h = self.hierarchy
        return FileKeyBackend(h.root_cert_path, h.root_key_path, PASSPHRASE)


@pytest.fixture(scope="session", params=KEY_TYPES)
def chain(request, tmp_path_factory) -> Chain:
    """One full chain per key type, shared by the tests (key generation is slow)."""
    key_type = request.param
    directory = tmp_path_factory.mktemp(f"ca-{key_type}")
    hierarchy = make_hierarchy(directory / "ca", key_type)
    leaf_key = generate_private_key(key_type)
    backend = FileKeyBackend(hierarchy.issuing_cert_path, hierarchy.issuing_key_path, PASSPHRASE)
    leaf = issue_smime_certificate(backend, leaf_key.public_key(), MAIL, hierarchy.issuing_urls)
    leaf_cert_path = directory / "leaf.pem"
    leaf_cert_path.write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    leaf_key_path = write_encrypted_key(leaf_key, directory / "leaf.key", PASSPHRASE)
    return Chain(key_type, hierarchy, leaf, leaf_key, leaf_cert_path, leaf_key_path, directory)


# Helpers exposed as fixtures, so test modules never import conftest.


@pytest.fixture(scope="session")
def openssl() -> Callable[..., subprocess.CompletedProcess[str]]:
    """Run ``openssl`` and return the completed process (never raises on failure)."""
    return run_openssl


@pytest.fixture(scope="session")
def passphrase() -> bytes:
    return PASSPHRASE


@pytest.fixture(scope="session")
def new_hierarchy() -> Callable[[Path, str], Hierarchy]:
    """Factory: ``new_hierarchy(directory, key_type)`` runs init_hierarchy with test names/URLs."""
    return make_hierarchy


@pytest.fixture(scope="session")
def smime_lint() -> Callable[[x509.Certificate], list[str]]:
    return lint_smime_mailbox_strict


@pytest.fixture(scope="session")
def pkix_lint() -> Callable[[x509.Certificate], list[str]]:
    return lint_pkix


@pytest.fixture(scope="session")
def chain_lint() -> Callable[[Path, Path], subprocess.CompletedProcess[str]]:
    return lint_chain_link
