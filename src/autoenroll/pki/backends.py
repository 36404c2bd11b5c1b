"""CA backends: who holds a CA key and signs with it.

Profiles (:mod:`autoenroll.pki.profiles`) decide *what* goes into a certificate;
a backend only signs. Keeping the interface this small means an HSM (PKCS#11) or an
external CA can be plugged in later by dotted path, like Django's ``STORAGES``,
without touching the profiles. Every signature of the project goes through
:meth:`CABackend.sign` / :meth:`CABackend.sign_data`.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import threading
from pathlib import Path
from typing import Any, Final, Protocol, runtime_checkable

from cryptography import x509
from cryptography.exceptions import InvalidSignature

from .keys import PKIError, PrivateKey, read_encrypted_key, sign_data, signature_hash_for_key

__all__ = [
    "DEFAULT_BACKEND",
    "BackendConfigurationError",
    "CABackend",
    "FileKeyBackend",
    "InMemoryKeyBackend",
    "SigningError",
    "clear_key_cache",
    "load_backend",
]

DEFAULT_BACKEND: Final = "autoenroll.pki.backends.FileKeyBackend"


class BackendConfigurationError(PKIError):
    """The backend cannot be loaded or its key does not match its certificate."""


class SigningError(PKIError):
    """A freshly signed object failed its self-check; it must not be published."""


@runtime_checkable
class CABackend(Protocol):
    """What the rest of the project needs from a CA: its certificate and a signer."""

    @property
    def certificate(self) -> x509.Certificate:
        """The CA certificate whose key signs (its subject becomes the issuer)."""
        ...

    def sign(self, builder: x509.CertificateBuilder) -> x509.Certificate:
        """Sign a fully built certificate template with the CA key."""
        ...

    def sign_data(self, data: bytes) -> bytes:
        """The CA key's signature over ``data`` as X.509 carries it, with the hash of
        :func:`~autoenroll.pki.keys.signature_hash_for_key`: for a TBS the project encodes itself
        (a CRL of a million entries, which cryptography's builder would hold as a million objects).
        The caller checks the result against the CA certificate."""
        ...


class _PrivateKeyBackend:
    """Shared signing path of the backends that hold a ``cryptography`` private key."""

    _certificate: x509.Certificate | None

    def _private_key(self) -> PrivateKey:
        raise NotImplementedError

    @property
    def certificate(self) -> x509.Certificate:
        if self._certificate is None:
            raise BackendConfigurationError("this backend has no CA certificate (self-signing only)")
        return self._certificate

    def sign(self, builder: x509.CertificateBuilder) -> x509.Certificate:
        """Sign ``builder`` and check the result chains to our certificate before returning it."""
        key = self._private_key()
        cert = builder.sign(key, signature_hash_for_key(key))
        issuer = self._certificate if self._certificate is not None else cert
        try:
            cert.verify_directly_issued_by(issuer)
        except (ValueError, TypeError, InvalidSignature) as exc:
            raise SigningError(
                f"signed certificate does not verify against {issuer.subject.rfc4514_string()}: {exc}"
            ) from None
        return cert

    def sign_data(self, data: bytes) -> bytes:
        return sign_data(self._private_key(), data)

    def _check_key_matches(self, key: PrivateKey) -> None:
        if self._certificate is not None and self._certificate.public_key() != key.public_key():
            raise BackendConfigurationError(
                f"the CA key does not match the certificate of {self._certificate.subject.rfc4514_string()}"
            )


class InMemoryKeyBackend(_PrivateKeyBackend):
    """A backend around a key already in memory.

    Used to self-sign a new root (``certificate=None``) and to sign with a CA that was
    just created; production signing uses :class:`FileKeyBackend`.
    """

    def __init__(self, key: PrivateKey, certificate: x509.Certificate | None = None) -> None:
        self._key = key
        self._certificate = certificate
        self._check_key_matches(key)

    def _private_key(self) -> PrivateKey:
        return self._key


# Decrypted CA keys, per process: decrypting costs a deliberately slow KDF, and
# Django may build a new backend object per request.
_KEY_CACHE: dict[tuple[str, bytes], PrivateKey] = {}
_KEY_CACHE_LOCK = threading.Lock()


def clear_key_cache() -> None:
    """Forget every decrypted CA key of this process (after a key rotation, in tests)."""
    with _KEY_CACHE_LOCK:
        _KEY_CACHE.clear()


def _load_pem_certificate(value: x509.Certificate | str | Path) -> x509.Certificate:
    if isinstance(value, x509.Certificate):
        return value
    path = Path(value)
    try:
        return x509.load_pem_x509_certificate(path.read_bytes())
    except OSError as exc:
        raise BackendConfigurationError(f"cannot read CA certificate {path}: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise BackendConfigurationError(f"{path} is not a PEM certificate: {exc}") from None


class FileKeyBackend(_PrivateKeyBackend):
    """A CA whose key is an encrypted PKCS#8 file on disk (see :func:`keys.write_encrypted_key`).

    The key is decrypted lazily on first use and then cached for the life of the process,
    shared by every instance pointing at the same file with the same passphrase.
    """

    def __init__(
        self,
        certificate: x509.Certificate | str | Path,
        key_path: str | Path,
        passphrase: bytes | str,
    ) -> None:
        self._certificate = _load_pem_certificate(certificate)
        self.key_path = Path(key_path)
        self._passphrase = passphrase.encode() if isinstance(passphrase, str) else passphrase
        self._key: PrivateKey | None = None
        self._lock = threading.Lock()

    def _private_key(self) -> PrivateKey:
        if self._key is not None:
            return self._key
        with self._lock:
            if self._key is None:
                self._key = self._load_cached()
        return self._key

    def _load_cached(self) -> PrivateKey:
        cache_key = (
            str(self.key_path.resolve()),
            # Salted so the cache never holds something that identifies the passphrase.
            hashlib.sha256(b"autoenroll-key-cache\0" + self._passphrase).digest(),
        )
        with _KEY_CACHE_LOCK:
            key = _KEY_CACHE.get(cache_key)
            if key is None:
                key = read_encrypted_key(self.key_path, self._passphrase)
                self._check_key_matches(key)
                _KEY_CACHE[cache_key] = key
        return key


def load_backend(dotted_path: str = DEFAULT_BACKEND, /, **options: Any) -> CABackend:
    """Instantiate the backend class named by ``dotted_path`` with ``options`` (from settings)."""
    module_name, _, class_name = dotted_path.rpartition(".")
    if not module_name:
        raise BackendConfigurationError(f"{dotted_path!r} is not a dotted path to a backend class")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise BackendConfigurationError(f"cannot import CA backend module {module_name!r}: {exc}") from None
    cls = getattr(module, class_name, None)
    if not isinstance(cls, type):
        raise BackendConfigurationError(f"{module_name!r} has no backend class {class_name!r}")
    try:
        backend = cls(**options)
    except TypeError as exc:
        raise BackendConfigurationError(f"bad options for CA backend {dotted_path}: {exc}") from None
    # Static lookup: a runtime_checkable isinstance() would evaluate the ``certificate`` property.
    if any(inspect.getattr_static(backend, attr, None) is None for attr in ("certificate", "sign", "sign_data")):
        raise BackendConfigurationError(f"{dotted_path} does not implement CABackend")
    return backend
