"""Key generation, encrypted key storage and the hash that goes with each key.

Key types are plain strings so they can live in settings, database columns and
the agent protocol without importing anything from ``cryptography``.
"""

from __future__ import annotations

import base64
import os
import secrets
import threading
from pathlib import Path
from typing import Final

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, padding, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric import padding as asymmetric_padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC
from pyasn1.codec.der import encoder as der_encoder
from pyasn1.type import univ
from pyasn1.type.base import Asn1Item
from pyasn1_alt_modules import rfc5280, rfc5958, rfc8018

from .keytypes import CA_KEY_TYPES, END_ENTITY_KEY_TYPES, KEY_TYPES

__all__ = [
    "CA_KEY_TYPES",
    "END_ENTITY_KEY_TYPES",
    "KEY_TYPES",
    "PBKDF2_ITERATIONS",
    "KeyFileError",
    "KeyFileExists",
    "KeyFileMissing",
    "PKIError",
    "PrivateKey",
    "PublicKey",
    "UnsupportedKeyType",
    "WrongPassphrase",
    "encrypt_private_key_pem",
    "generate_private_key",
    "key_type_of",
    "read_encrypted_key",
    "sign_data",
    "verify_data",
    "signature_hash_for_key",
    "throwaway_key",
    "write_encrypted_key",
]

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey

# key type -> (constructor argument, signature hash)
_EC_CURVES: Final = {"ec-p256": ec.SECP256R1, "ec-p384": ec.SECP384R1}
_RSA_SIZES: Final = {"rsa-2048": 2048, "rsa-3072": 3072, "rsa-4096": 4096}


# PBES2 / PBKDF2-HMAC-SHA256 work factor (OWASP 2023 recommendation). The
# ``BestAvailableEncryption`` of cryptography only uses 2048 iterations for PKCS#8,
# which is too cheap to brute-force-protect a CA key, so we build the PBES2 structure ourselves
# (pyasn1 schemas of RFC 5958 / RFC 8018; the KDF and the cipher are cryptography's).
PBKDF2_ITERATIONS: Final = 600_000

_ENCRYPTED_PEM_LABEL: Final = b"ENCRYPTED PRIVATE KEY"


class PKIError(Exception):
    """Base class of every error of the PKI layer; ``str(e)`` is a message for humans."""


class UnsupportedKeyType(PKIError, ValueError):
    """The key type string or key object is not one we issue or accept."""


class KeyFileError(PKIError):
    """A key file cannot be written or read (missing, unreadable, not encrypted...)."""


class KeyFileExists(KeyFileError, FileExistsError):
    """Refusing to overwrite an existing key file: a lost CA key cannot be recovered."""


class KeyFileMissing(KeyFileError, FileNotFoundError):
    """The key file does not exist."""


class WrongPassphrase(KeyFileError):
    """The passphrase does not decrypt the key file."""


def generate_private_key(key_type: str, *, ca: bool = False) -> PrivateKey:
    """Generate a fresh private key of ``key_type``; ``ca=True`` refuses types too weak for a CA."""
    allowed = CA_KEY_TYPES if ca else END_ENTITY_KEY_TYPES
    if key_type not in allowed:
        what = "a CA" if ca else "a key"
        raise UnsupportedKeyType(f"unsupported key type {key_type!r} for {what}; choose one of {', '.join(allowed)}")
    if key_type in _EC_CURVES:
        return ec.generate_private_key(_EC_CURVES[key_type]())
    return rsa.generate_private_key(public_exponent=65537, key_size=_RSA_SIZES[key_type])


def key_type_of(key: PrivateKey | PublicKey) -> str:
    """Map a key object back to its key type string, rejecting anything we do not support."""
    if isinstance(key, ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey):
        for name, curve in _EC_CURVES.items():
            if isinstance(key.curve, curve):
                return name
        raise UnsupportedKeyType(f"unsupported elliptic curve {key.curve.name}; use P-256 or P-384")
    if isinstance(key, rsa.RSAPrivateKey | rsa.RSAPublicKey):
        public = key.public_key() if isinstance(key, rsa.RSAPrivateKey) else key
        if public.public_numbers().e != 65537:  # the S/MIME BRs' recommended range; e = 3 is a classic weakness
            raise UnsupportedKeyType(f"RSA public exponent {public.public_numbers().e}: only 65537 is accepted")
        for name, size in _RSA_SIZES.items():
            if key.key_size == size:
                return name
        raise UnsupportedKeyType(f"unsupported RSA key size {key.key_size}; use 2048, 3072 or 4096 bits")
    raise UnsupportedKeyType(f"unsupported key algorithm {type(key).__name__}; use RSA or ECDSA")


def signature_hash_for_key(key: PrivateKey | PublicKey) -> hashes.HashAlgorithm:
    """The hash a signature by ``key`` uses: match the hash strength to the key strength."""
    key_type = key_type_of(key)
    if key_type in ("ec-p384", "rsa-4096"):
        return hashes.SHA384()
    return hashes.SHA256()


def sign_data(key: PrivateKey, data: bytes) -> bytes:
    """``key``'s signature over ``data`` as X.509 carries it (PKCS#1 v1.5 or a DER ECDSA-Sig-Value), with
    :func:`signature_hash_for_key`: what a CA signs when it encodes a TBS itself (a large CRL)."""
    if isinstance(key, rsa.RSAPrivateKey):
        return key.sign(data, asymmetric_padding.PKCS1v15(), signature_hash_for_key(key))
    return key.sign(data, ec.ECDSA(signature_hash_for_key(key)))


def verify_data(public_key: PublicKey, signature: bytes, data: bytes) -> None:
    """Check a :func:`sign_data` signature; raises cryptography's ``InvalidSignature``."""
    if isinstance(public_key, rsa.RSAPublicKey):
        public_key.verify(signature, data, asymmetric_padding.PKCS1v15(), signature_hash_for_key(public_key))
    else:
        public_key.verify(signature, data, ec.ECDSA(signature_hash_for_key(public_key)))


_THROWAWAY: dict[str, PrivateKey] = {}
_THROWAWAY_LOCK = threading.Lock()


def throwaway_key(key_type: str) -> PrivateKey:
    """A process-wide key of ``key_type`` that signs only drafts: cryptography encodes a TBS only when it
    signs, and a draft signed with a key of the CA's type carries the CA's signature algorithm."""
    with _THROWAWAY_LOCK:
        key = _THROWAWAY.get(key_type)
        if key is None:
            key = _THROWAWAY[key_type] = generate_private_key(key_type, ca=True)
        return key


# --- encrypted PKCS#8 (PBES2) -------------------------------------------------------------------


def _algorithm(oid: univ.ObjectIdentifier, parameters: Asn1Item) -> rfc5280.AlgorithmIdentifier:
    algorithm = rfc5280.AlgorithmIdentifier()
    algorithm["algorithm"] = oid
    algorithm["parameters"] = univ.Any(der_encoder.encode(parameters))
    return algorithm


def _encrypted_private_key_info(salt: bytes, iterations: int, iv: bytes, ciphertext: bytes) -> bytes:
    """DER of EncryptedPrivateKeyInfo (RFC 5958) with PBES2 / PBKDF2-HMAC-SHA256 / AES-256-CBC (RFC 8018)."""
    kdf = rfc8018.PBKDF2_params()
    kdf["salt"]["specified"] = salt
    kdf["iterationCount"] = iterations
    kdf["prf"] = _algorithm(rfc8018.id_hmacWithSHA256, univ.Null(""))
    pbes2 = rfc8018.PBES2_params()
    pbes2["keyDerivationFunc"] = _algorithm(rfc8018.id_PBKDF2, kdf)
    pbes2["encryptionScheme"] = _algorithm(rfc8018.aes256_CBC_PAD, rfc8018.AES_IV(iv))
    info = rfc5958.EncryptedPrivateKeyInfo()
    info["encryptionAlgorithm"] = _algorithm(rfc8018.id_PBES2, pbes2)
    info["encryptedData"] = ciphertext
    return der_encoder.encode(info)


def encrypt_private_key_pem(key: PrivateKey, passphrase: bytes, *, iterations: int = PBKDF2_ITERATIONS) -> bytes:
    """Serialize ``key`` as PKCS#8 ``ENCRYPTED PRIVATE KEY`` PEM (PBES2, PBKDF2-SHA256, AES-256-CBC).

    Readable by OpenSSL, cryptography and every PKCS#8 consumer; unlike cryptography's
    ``BestAvailableEncryption`` the KDF work factor is strong enough for a CA key.
    """
    if not isinstance(passphrase, bytes) or not passphrase:
        raise ValueError("the key passphrase must be non-empty bytes")
    plain = key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    salt, iv = secrets.token_bytes(16), secrets.token_bytes(16)
    aes_key = PBKDF2HMAC(algorithm=hashes.SHA256(), length=32, salt=salt, iterations=iterations).derive(passphrase)
    padder = padding.PKCS7(128).padder()
    padded = padder.update(plain) + padder.finalize()
    encryptor = Cipher(algorithms.AES(aes_key), modes.CBC(iv)).encryptor()
    ciphertext = encryptor.update(padded) + encryptor.finalize()
    der = _encrypted_private_key_info(salt, iterations, iv, ciphertext)
    b64 = base64.encodebytes(der).replace(b"\n", b"")
    lines = [b64[i : i + 64] for i in range(0, len(b64), 64)]
    return (
        b"-----BEGIN "
        + _ENCRYPTED_PEM_LABEL
        + b"-----\n"
        + b"\n".join(lines)
        + b"\n-----END "
        + _ENCRYPTED_PEM_LABEL
        + b"-----\n"
    )


def write_encrypted_key(key: PrivateKey, path: Path | str, passphrase: bytes) -> Path:
    """Write ``key`` encrypted to a new 0600 file; never overwrite (a CA key is irreplaceable)."""
    path = Path(path)
    pem = encrypt_private_key_pem(key, passphrase)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0) | getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(path, flags, 0o600)
    except FileExistsError:
        raise KeyFileExists(f"refusing to overwrite existing key file {path}") from None
    except OSError as exc:
        raise KeyFileError(f"cannot create key file {path}: {exc.strerror or exc}") from None
    try:
        if hasattr(os, "fchmod"):
            os.fchmod(fd, 0o600)  # the umask may only remove bits, but be explicit
        with os.fdopen(fd, "wb") as fh:
            fh.write(pem)
            fh.flush()
            os.fsync(fh.fileno())
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return path


def read_encrypted_key(path: Path | str, passphrase: bytes) -> PrivateKey:
    """Read and decrypt a key written by :func:`write_encrypted_key`; errors are for humans."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise KeyFileMissing(f"key file {path} does not exist") from None
    except OSError as exc:
        raise KeyFileError(f"cannot read key file {path}: {exc.strerror or exc}") from None
    if b"-----BEGIN " + _ENCRYPTED_PEM_LABEL + b"-----" not in data:
        if b"PRIVATE KEY-----" in data:
            raise KeyFileError(f"key file {path} is not encrypted; refusing to use a plaintext key")
        raise KeyFileError(f"{path} is not a PEM encrypted private key")
    if not passphrase:
        raise WrongPassphrase(f"no passphrase given for encrypted key file {path}")
    try:
        key = serialization.load_pem_private_key(data, password=passphrase)
    except ValueError:
        raise WrongPassphrase(f"wrong passphrase for key file {path} (or the file is corrupted)") from None
    except (TypeError, UnsupportedAlgorithm) as exc:
        raise KeyFileError(f"cannot load key file {path}: {exc}") from None
    if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        raise UnsupportedKeyType(f"key file {path} holds an unsupported key type {type(key).__name__}")
    return key
