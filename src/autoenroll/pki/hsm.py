"""A CA backend whose key lives in an HSM, reached through PKCS#11.

``cryptography`` cannot sign with a key it does not hold, so :class:`PKCS11Backend` lets it
build the object with a throwaway key *of the same type and size* (the signature
AlgorithmIdentifier, the only key-dependent part of the TBS, is then identical), has the
token sign the TBS bytes, and splices the token's signature into the DER with pyasn1.
Every signature is then verified against the CA certificate, like the file backend does.

The key is named by an RFC 7512 ``pkcs11:`` URI, stored where the file backend keeps its
key path; the CA passphrase is the token's user PIN. python-pkcs11 is imported lazily so
``autoenroll.pki`` stays importable without the ``hsm`` extra.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import datetime as dt
import functools
import hashlib
import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, TypeVar
from urllib.parse import unquote, unquote_to_bytes

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.hazmat.primitives.serialization import Encoding
from pyasn1.codec.der import decoder as der_decoder
from pyasn1.codec.der import encoder as der_encoder
from pyasn1.error import PyAsn1Error
from pyasn1.type import univ
from pyasn1_alt_modules import rfc5280

from .backends import BackendConfigurationError, SigningError, _load_pem_certificate
from .keys import (
    CA_KEY_TYPES,
    PrivateKey,
    PublicKey,
    UnsupportedKeyType,
    key_type_of,
    signature_hash_for_key,
    throwaway_key,
)
from .profiles import (
    DEFAULT_ISSUING_CA_VALIDITY_DAYS,
    DEFAULT_ROOT_VALIDITY_DAYS,
    PublicationURLs,
    ca_name,
    issue_issuing_ca,
    root_ca_builder,
)

__all__ = [
    "DEFAULT_PKCS11_MODULE",
    "PKCS11_MODULE_ENV",
    "HSMError",
    "HSMKeyExists",
    "PKCS11Backend",
    "PKCS11URI",
    "TokenHierarchy",
    "WrongPIN",
    "clear_token_cache",
    "generate_key_in_token",
    "init_hierarchy_in_token",
    "pkcs11_module_path",
]

DEFAULT_PKCS11_MODULE: Final = "/usr/lib/softhsm/libsofthsm2.so"
PKCS11_MODULE_ENV: Final = "AUTOENROLL_PKCS11_MODULE"

# DER of the namedCurve OIDs as PKCS#11 stores them in CKA_EC_PARAMS (RFC 5480).
_EC_PARAMS: Final = {
    "ec-p256": der_encoder.encode(univ.ObjectIdentifier("1.2.840.10045.3.1.7")),
    "ec-p384": der_encoder.encode(univ.ObjectIdentifier("1.3.132.0.34")),
}
_EC_CURVES: Final = {"ec-p256": ec.SECP256R1(), "ec-p384": ec.SECP384R1()}
_RSA_BITS: Final = {"rsa-3072": 3072, "rsa-4096": 4096}

_PATH_ATTRIBUTES: Final = frozenset({"token", "manufacturer", "serial", "model", "object", "id", "type", "slot-id"})
_QUERY_ATTRIBUTES: Final = frozenset({"module-path"})


class HSMError(BackendConfigurationError):
    """The PKCS#11 module, token or key cannot be used; ``str(e)`` says which and why."""


class WrongPIN(HSMError):
    """The token refused the user PIN (the CA passphrase)."""


class HSMKeyExists(HSMError):
    """Refusing to generate a key over an existing one: a CA key cannot be recovered."""


def _pkcs11() -> Any:
    """Import python-pkcs11 on first use: only HSM deployments install it."""
    try:
        import pkcs11
    except ImportError:
        raise HSMError("the PKCS#11 backend needs python-pkcs11: pip install 'autoenroll[hsm]'") from None
    return pkcs11


def pkcs11_module_path(module: str | Path | None = None) -> str:
    """The PKCS#11 module to load: ``module``, else $AUTOENROLL_PKCS11_MODULE, else SoftHSM2's."""
    return str(module or os.environ.get(PKCS11_MODULE_ENV) or DEFAULT_PKCS11_MODULE)


# --- RFC 7512 URIs -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PKCS11URI:
    """The parts of an RFC 7512 ``pkcs11:`` URI that select a token and a private key.

    A PIN in the URI (``pin-value``/``pin-source``) is refused on purpose: the URI is stored
    in the database next to the certificate; the PIN is the CA passphrase, kept elsewhere.
    """

    token: str | None = None
    manufacturer: str | None = None
    serial: str | None = None
    model: str | None = None
    slot_id: int | None = None
    object: str | None = None
    id: bytes | None = None
    module_path: str | None = None

    @classmethod
    def parse(cls, uri: str | Path) -> PKCS11URI:
        text = str(uri)
        if not text.startswith("pkcs11:"):
            raise HSMError(f"not a PKCS#11 URI (RFC 7512, e.g. 'pkcs11:token=CA;object=root-ca'): {text!r}")
        path, _, query = text[len("pkcs11:") :].partition("?")
        values: dict[str, Any] = {}
        for part, allowed, separator in ((path, _PATH_ATTRIBUTES, ";"), (query, _QUERY_ATTRIBUTES, "&")):
            for item in filter(None, part.split(separator)):
                name, eq, raw = item.partition("=")
                if not eq:
                    raise HSMError(f"malformed attribute {item!r} in PKCS#11 URI {text!r}")
                if name in ("pin-value", "pin-source"):
                    raise HSMError("do not put the PIN in the PKCS#11 URI; it is the CA passphrase")
                if name not in allowed:
                    raise HSMError(f"unsupported attribute {name!r} in PKCS#11 URI {text!r}")
                if name in values:
                    raise HSMError(f"attribute {name!r} repeated in PKCS#11 URI {text!r}")
                values[name] = unquote_to_bytes(raw) if name == "id" else unquote(raw, errors="strict")
        kind = values.pop("type", "private")
        if kind != "private":
            raise HSMError(f"the PKCS#11 URI must name a private key (type=private), not type={kind}")
        slot_id = values.pop("slot-id", None)
        if slot_id is not None and not slot_id.isdigit():
            raise HSMError(f"slot-id must be a decimal number in PKCS#11 URI {text!r}")
        result = cls(
            slot_id=int(slot_id) if slot_id is not None else None,
            module_path=values.pop("module-path", None),
            **values,
        )
        if result.object is None and result.id is None:
            raise HSMError(f"the PKCS#11 URI {text!r} names no key: add object=<label> and/or id=<%xx bytes>")
        return result

    def describe_token(self) -> str:
        """The token selector, for errors about the token itself."""
        selectors = {
            "token": self.token,
            "serial": self.serial,
            "manufacturer": self.manufacturer,
            "model": self.model,
            "slot-id": self.slot_id,
        }
        return ", ".join(f"{name}={value!r}" for name, value in selectors.items() if value is not None) or "any token"

    def describe(self) -> str:
        """A short human description for error messages (no PIN ever appears in a URI)."""
        where = f"token {self.token!r}" if self.token else "the token"
        what = f"object {self.object!r}" if self.object else f"id {self.id.hex() if self.id else ''}"
        return f"{what} on {where}"


# --- per-process token sessions ----------------------------------------------------------------

_Result = TypeVar("_Result")


def _pin_digest(pin: str) -> bytes:
    # Salted so the cache never holds something that identifies the PIN.
    return hashlib.sha256(b"autoenroll-pkcs11-pin\0" + pin.encode()).digest()


@dataclass(eq=False)
class _Token:
    """One logged-in session per token and process.

    PKCS#11 login state is per application: a second ``C_Login`` on the same token fails
    with CKR_USER_ALREADY_LOGGED_IN, so every backend on a token shares this session,
    serialized by ``lock`` (a PKCS#11 session must not be used by two threads at once).
    """

    module: str
    token: Any  # pkcs11.Token
    label: str
    lock: threading.Lock = field(default_factory=threading.Lock)
    session: Any = None  # pkcs11.Session
    pin_digest: bytes | None = None
    refused_pins: set[bytes] = field(default_factory=set)
    keys: dict[tuple[str | None, bytes | None], Any] = field(default_factory=dict)

    def reset(self) -> None:
        """Close the session (logs out) and forget key handles, e.g. after an HSM restart."""
        session, self.session, self.pin_digest = self.session, None, None
        self.keys.clear()
        if session is not None:
            try:
                session.close()
            except _pkcs11().PKCS11Error:
                pass  # the session is already gone with the device

    def login(self, pin: str) -> Any:
        """The logged-in session, (re)opened with ``pin`` if it is not the PIN it was opened with.

        A PIN the token refused is never retried in this process: real HSMs and smart cards
        lock the user PIN after a few failures, and a misconfigured server would retry per request.
        """
        p11 = _pkcs11()
        digest = _pin_digest(pin)
        if self.session is not None and self.pin_digest == digest:
            return self.session
        if digest in self.refused_pins:
            raise WrongPIN(
                f"wrong PIN for PKCS#11 token {self.label!r} (already refused once in this process; "
                "not retried so the token does not lock the PIN)"
            )
        self.reset()
        try:
            self.session = self.token.open(rw=True, user_pin=pin)
        except (p11.PinIncorrect, p11.PinInvalid, p11.PinLenRange):
            self.refused_pins.add(digest)
            raise WrongPIN(f"wrong PIN for PKCS#11 token {self.label!r}") from None
        except p11.PinLocked:
            raise HSMError(f"the user PIN of PKCS#11 token {self.label!r} is locked; the SO must reset it") from None
        except p11.PinExpired:
            raise HSMError(f"the user PIN of PKCS#11 token {self.label!r} has expired; change it first") from None
        except p11.UserPinNotInitialized:
            raise HSMError(f"PKCS#11 token {self.label!r} has no user PIN yet (softhsm2-util --init-token)") from None
        except p11.PKCS11Error as exc:
            raise HSMError(f"cannot log in to PKCS#11 token {self.label!r}: {_describe(exc)}") from None
        self.pin_digest = digest
        return self.session


_TOKENS: dict[tuple[Any, ...], _Token] = {}
_SELECTED: dict[tuple[Any, ...], _Token] = {}
_TOKENS_LOCK = threading.Lock()
_TOKENS_PID = os.getpid()


def clear_token_cache() -> None:
    """Log out of every token and forget sessions, key handles and refused PINs (tests, PIN change)."""
    with _TOKENS_LOCK:
        entries = list(_TOKENS.values())
        _TOKENS.clear()
        _SELECTED.clear()
    for entry in entries:
        with entry.lock:
            entry.reset()


def _forget_after_fork() -> None:
    """A forked child must not touch the parent's sessions; it re-initializes the module on first use."""
    global _TOKENS_LOCK
    _TOKENS_LOCK = threading.Lock()
    _TOKENS.clear()
    _SELECTED.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_after_fork)


def _describe(exc: Exception) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _load_library(module: str) -> Any:
    """The loaded, initialized module (python-pkcs11 keeps one per path); re-initialized after a fork."""
    global _TOKENS_PID
    p11 = _pkcs11()
    if not Path(module).is_file():
        raise HSMError(f"PKCS#11 module {module} not found: install it (softhsm2) or set ${PKCS11_MODULE_ENV}")
    try:
        library = p11.lib(module)
        if _TOKENS_PID != os.getpid():
            # PKCS#11 2.40 section 6.7.7: a child process must call C_Initialize itself.
            library.reinitialize()
            _TOKENS_PID = os.getpid()
    except p11.PKCS11Error as exc:
        raise HSMError(f"cannot load PKCS#11 module {module}: {_describe(exc)}") from None
    return library


def _find_token(library: Any, uri: PKCS11URI) -> Any:
    p11 = _pkcs11()
    matches = []
    try:
        for slot in library.get_slots(token_present=True):
            if uri.slot_id is not None and slot.slot_id != uri.slot_id:
                continue
            try:
                token = slot.get_token()
            except (p11.TokenNotPresent, p11.TokenNotRecognised):
                continue
            wanted = (
                (uri.token, token.label),
                (uri.manufacturer, token.manufacturer_id),
                (uri.model, token.model),
                (uri.serial, token.serial.decode(errors="replace").strip() if token.serial else ""),
            )
            if all(expected is None or expected == actual for expected, actual in wanted):
                matches.append(token)
    except p11.PKCS11Error as exc:
        raise HSMError(f"cannot list the tokens of PKCS#11 module {library.so}: {_describe(exc)}") from None
    if not matches:
        raise HSMError(f"no PKCS#11 token matches {uri.describe_token()} in module {library.so}")
    if len(matches) > 1:
        raise HSMError(f"several PKCS#11 tokens match {uri.describe_token()}; add serial= to the URI")
    return matches[0]


@functools.cache
def _libcrypto() -> Any:
    """The process's OpenSSL libcrypto (the one Python's ssl module and most PKCS#11 modules use), or None."""
    name = ctypes.util.find_library("crypto")
    if name is None:
        return None
    try:
        library = ctypes.CDLL(name)
        library.ERR_clear_error.restype = None
    except (OSError, AttributeError):
        return None
    return library


@contextlib.contextmanager
def _openssl_errors_cleared() -> Iterator[None]:
    """Leave this thread's OpenSSL error queue empty after a call into the PKCS#11 module.

    A module built on OpenSSL (SoftHSM, for one) can leave errors on that queue, and Python's ssl module
    does not empty it before a read (CPython issue 81891). The next TLS read of the thread that has to wait
    for data, an LDAPS answer from AD, would then fail with that stale error: "[PROV: BAD_DECRYPT] bad
    decrypt" with no byte received."""
    try:
        yield
    finally:
        library = _libcrypto()
        if library is not None:
            library.ERR_clear_error()


def _token_for(uri: PKCS11URI, module: str | Path | None) -> _Token:
    """The process-wide entry of the token ``uri`` selects (slots are enumerated once per selector)."""
    module_path = pkcs11_module_path(module or uri.module_path)
    selector = (module_path, uri.token, uri.manufacturer, uri.serial, uri.model, uri.slot_id)
    with _TOKENS_LOCK, _openssl_errors_cleared():
        entry = _SELECTED.get(selector)
        if entry is not None:
            return entry
        library = _load_library(module_path)
        token = _find_token(library, uri)
        # Keyed by the token itself: two URIs naming one token must share its single login.
        identity = (module_path, token.slot.slot_id, token.serial, token.label)
        entry = _TOKENS.get(identity)
        if entry is None:
            entry = _TOKENS[identity] = _Token(module=module_path, token=token, label=token.label)
        _SELECTED[selector] = entry
        return entry


def _with_session(entry: _Token, pin: str, action: Callable[[Any], _Result]) -> _Result:
    """Run ``action(session)`` under the token lock, reopening once if the HSM dropped the session."""
    p11 = _pkcs11()
    transient = (p11.SessionHandleInvalid, p11.SessionClosed, p11.UserNotLoggedIn, p11.DeviceRemoved)
    with entry.lock, _openssl_errors_cleared():
        for attempt in (1, 2):
            session = entry.login(pin)
            try:
                return action(session)
            except transient:
                entry.reset()
                if attempt == 2:
                    raise
    raise AssertionError("unreachable")


def _find_private_key(entry: _Token, session: Any, uri: PKCS11URI) -> Any:
    p11 = _pkcs11()
    cache_key = (uri.object, uri.id)
    key = entry.keys.get(cache_key)
    if key is None:
        try:
            key = session.get_key(object_class=p11.ObjectClass.PRIVATE_KEY, label=uri.object, id=uri.id)
        except p11.NoSuchKey:
            raise HSMError(f"no private key {uri.describe()} (check the URI's object= and id=)") from None
        except p11.MultipleObjectsReturned:
            raise HSMError(f"several private keys match {uri.describe()}; add id= to the URI") from None
        entry.keys[cache_key] = key
    return key


def _token_key_type(key: Any) -> str:
    """Our key type string for a token key, from its public attributes (readable even when sensitive)."""
    p11 = _pkcs11()
    key_type = key[p11.Attribute.KEY_TYPE]
    if key_type == p11.KeyType.EC:
        params = bytes(key[p11.Attribute.EC_PARAMS])
        for name, der in _EC_PARAMS.items():
            if params == der:
                return name
        raise UnsupportedKeyType(f"unsupported elliptic curve in the token (CKA_EC_PARAMS {params.hex()})")
    if key_type == p11.KeyType.RSA:
        bits = int.from_bytes(bytes(key[p11.Attribute.MODULUS]), "big").bit_length()
        for name, size in _RSA_BITS.items():
            if bits == size:
                return name
        raise UnsupportedKeyType(f"unsupported RSA key size {bits} in the token; use 3072 or 4096 bits")
    raise UnsupportedKeyType(f"unsupported key type {key_type} in the token; use RSA or ECDSA")


# --- signing -----------------------------------------------------------------------------------


def _replace_signature(der: bytes, spec: Any, signature: bytes, what: str) -> bytes:
    """Re-encode a Certificate / CertificateList with ``signature`` as its signatureValue."""
    try:
        decoded, rest = der_decoder.decode(der, asn1Spec=spec)
    except PyAsn1Error as exc:
        raise SigningError(f"cannot decode the {what} built by cryptography: {exc}") from None
    if rest:
        raise SigningError(f"trailing data after the {what} built by cryptography")
    decoded["signature"] = univ.BitString.fromOctetString(signature)
    return der_encoder.encode(decoded)


class PKCS11Backend:
    """A CA backend whose private key never leaves a PKCS#11 token.

    ``key_path`` is an RFC 7512 URI such as ``pkcs11:token=autoenroll;object=smime-ca``
    (``id=%01%02`` may replace or narrow ``object``); ``passphrase`` is the token's user PIN;
    ``module`` (or the URI's ``module-path`` query attribute, or $AUTOENROLL_PKCS11_MODULE)
    picks the PKCS#11 library, SoftHSM2 by default. ``certificate=None`` self-signs a root.
    Sessions and key handles are cached per process and token, like the file backend's keys.
    """

    def __init__(
        self,
        certificate: x509.Certificate | str | Path | None,
        key_path: str | Path,
        passphrase: bytes | str,
        module: str | Path | None = None,
    ) -> None:
        self._certificate = _load_pem_certificate(certificate) if certificate is not None else None
        self.uri = PKCS11URI.parse(key_path)
        self.module = pkcs11_module_path(module or self.uri.module_path)
        pin = passphrase.decode() if isinstance(passphrase, bytes) else passphrase
        if not pin:
            raise WrongPIN(f"no PIN given for {self.uri.describe()}")
        self._pin = pin
        self._key_type: str | None = None
        self._lock = threading.Lock()

    @property
    def certificate(self) -> x509.Certificate:
        if self._certificate is None:
            raise BackendConfigurationError("this backend has no CA certificate (self-signing only)")
        return self._certificate

    def _run(self, action: Callable[[Any], _Result]) -> _Result:
        """Run ``action(private_key)`` on the token; PKCS#11 failures become :class:`HSMError`."""
        p11 = _pkcs11()
        entry = _token_for(self.uri, self.module)

        def with_key(session: Any) -> _Result:
            return action(_find_private_key(entry, session, self.uri))

        try:
            return _with_session(entry, self._pin, with_key)
        except p11.PKCS11Error as exc:
            raise HSMError(f"PKCS#11 operation on {self.uri.describe()} failed: {_describe(exc)}") from None

    def key_type(self) -> str:
        """The token key's type (``ec-p256``...), checked once against the CA certificate."""
        if self._key_type is None:
            with self._lock:
                if self._key_type is None:
                    self._key_type = self._run(self._check_key)
        return self._key_type

    def _check_key(self, key: Any) -> str:
        p11 = _pkcs11()
        key_type = _token_key_type(key)
        if not key[p11.Attribute.SIGN]:
            raise HSMError(f"the key {self.uri.describe()} is not allowed to sign (CKA_SIGN is false)")
        if self._certificate is not None:
            public = self._certificate.public_key()
            subject = self._certificate.subject.rfc4514_string()
            if key_type_of(public) != key_type:  # type: ignore[arg-type]
                raise BackendConfigurationError(
                    f"the token key {self.uri.describe()} is {key_type}, the certificate of {subject} is not"
                )
            if _token_public_key(key, key_type) not in (None, public):
                raise BackendConfigurationError(
                    f"the token key {self.uri.describe()} does not match the certificate of {subject}"
                )
        return key_type

    def key_protection(self) -> dict[str, bool]:
        """The token key's protection flags (CKA_SENSITIVE, CKA_EXTRACTABLE...), for audits and tests."""
        p11 = _pkcs11()
        names = {
            "private": p11.Attribute.PRIVATE,
            "sensitive": p11.Attribute.SENSITIVE,
            "extractable": p11.Attribute.EXTRACTABLE,
            "always_sensitive": p11.Attribute.ALWAYS_SENSITIVE,
            "never_extractable": p11.Attribute.NEVER_EXTRACTABLE,
            "local": p11.Attribute.LOCAL,
        }
        return self._run(lambda key: {name: bool(key[attribute]) for name, attribute in names.items()})

    def _token_sign(self, data: bytes, hash_algorithm: hashes.HashAlgorithm) -> bytes:
        """The token's signature of ``data`` in X.509 encoding (DER ECDSA-Sig-Value or PKCS#1 v1.5)."""
        p11 = _pkcs11()
        if self.key_type().startswith("ec-"):
            # Hash here and use plain CKM_ECDSA: every EC-capable token has it, unlike CKM_ECDSA_SHA384.
            digest = hashes.Hash(hash_algorithm)
            digest.update(data)
            raw = self._run(lambda key: bytes(key.sign(digest.finalize(), mechanism=p11.Mechanism.ECDSA)))
            half = len(raw) // 2
            if len(raw) % 2 or not half:
                raise SigningError(f"the token returned a malformed ECDSA signature ({len(raw)} bytes)")
            # PKCS#11 returns r || s (each the size of the group order); X.509 wants SEQUENCE { r, s }.
            return encode_dss_signature(int.from_bytes(raw[:half], "big"), int.from_bytes(raw[half:], "big"))
        mechanisms = {
            "sha256": p11.Mechanism.SHA256_RSA_PKCS,
            "sha384": p11.Mechanism.SHA384_RSA_PKCS,
            "sha512": p11.Mechanism.SHA512_RSA_PKCS,
        }
        mechanism = mechanisms[hash_algorithm.name]
        return self._run(lambda key: bytes(key.sign(data, mechanism=mechanism)))

    def _prepare(self) -> tuple[PrivateKey, hashes.HashAlgorithm]:
        key = throwaway_key(self.key_type())
        return key, signature_hash_for_key(key)

    def sign(self, builder: x509.CertificateBuilder) -> x509.Certificate:
        """Sign ``builder`` with the token key and check the result chains to our certificate."""
        throwaway, hash_algorithm = self._prepare()
        draft = builder.sign(throwaway, hash_algorithm)
        tbs = draft.tbs_certificate_bytes
        signature = self._token_sign(tbs, hash_algorithm)
        der = _replace_signature(draft.public_bytes(Encoding.DER), rfc5280.Certificate(), signature, "certificate")
        cert = x509.load_der_x509_certificate(der)
        if cert.tbs_certificate_bytes != tbs:
            raise SigningError("re-encoding the certificate changed its TBS bytes")
        issuer = self._certificate if self._certificate is not None else cert
        try:
            cert.verify_directly_issued_by(issuer)
        except (ValueError, TypeError, InvalidSignature) as exc:
            raise SigningError(
                f"certificate signed by {self.uri.describe()} does not verify against "
                f"{issuer.subject.rfc4514_string()}: {str(exc) or 'bad signature'}"
            ) from None
        return cert

    def sign_data(self, data: bytes) -> bytes:
        """The token key's signature over ``data`` (a TBS this project encoded itself, such as a large CRL's)."""
        return self._token_sign(data, signature_hash_for_key(self.certificate.public_key()))


# --- creating CA keys in a token ---------------------------------------------------------------


def _public_key_from_token(public: Any, key_type: str) -> PublicKey:
    p11 = _pkcs11()
    if key_type in _RSA_BITS:
        modulus = int.from_bytes(bytes(public[p11.Attribute.MODULUS]), "big")
        exponent = int.from_bytes(bytes(public[p11.Attribute.PUBLIC_EXPONENT]), "big")
        return rsa.RSAPublicNumbers(exponent, modulus).public_key()
    point = bytes(public[p11.Attribute.EC_POINT])
    curve = _EC_CURVES[key_type]
    raw_length = 1 + 2 * ((curve.key_size + 7) // 8)
    if len(point) != raw_length:  # PKCS#11 2.40 stores the point DER-wrapped in an OCTET STRING
        point = bytes(der_decoder.decode(point, asn1Spec=univ.OctetString())[0])
    return ec.EllipticCurvePublicKey.from_encoded_point(curve, point)


def _token_public_key(private: Any, key_type: str) -> PublicKey | None:
    """The public key of a token private key: RSA from the key itself, EC from its public key object.

    An EC private key object carries no public point; without a public key object of the same
    CKA_ID, None is returned and the self-check of every signature is the only proof.
    """
    p11 = _pkcs11()
    if key_type in _RSA_BITS:
        return _public_key_from_token(private, key_type)
    key_id = bytes(private[p11.Attribute.ID] or b"")
    if not key_id:
        return None
    candidates = list(
        private.session.get_objects({p11.Attribute.CLASS: p11.ObjectClass.PUBLIC_KEY, p11.Attribute.ID: key_id})
    )
    return _public_key_from_token(candidates[0], key_type) if len(candidates) == 1 else None


def generate_key_in_token(
    uri: str | Path,
    key_type: str,
    pin: bytes | str,
    *,
    module: str | Path | None = None,
) -> PublicKey:
    """Generate a CA key pair inside the token named by ``uri`` and return its public key.

    The private key is created sensitive and non-extractable, may only sign, and is labelled
    with the URI's ``object`` (and ``id``, else a random one, so PKCS#11 tools pair it with its
    public key). Refuses to run if a private key matching the URI already exists.
    """
    p11 = _pkcs11()
    if key_type not in CA_KEY_TYPES:
        raise UnsupportedKeyType(f"unsupported CA key type {key_type!r}; choose one of {', '.join(CA_KEY_TYPES)}")
    parsed = PKCS11URI.parse(uri)
    if parsed.object is None:
        raise HSMError("name the new key with object=<label> in the PKCS#11 URI")
    key_id = parsed.id if parsed.id is not None else os.urandom(8)
    pin_text = pin.decode() if isinstance(pin, bytes) else pin
    if not pin_text:
        raise WrongPIN(f"no PIN given for {parsed.describe()}")
    entry = _token_for(parsed, module)
    A = p11.Attribute
    private_template = {
        A.TOKEN: True,
        A.PRIVATE: True,
        A.SENSITIVE: True,
        A.EXTRACTABLE: False,
        A.SIGN: True,
        A.DECRYPT: False,
        A.UNWRAP: False,
        A.DERIVE: False,
    }
    public_template = {A.TOKEN: True, A.VERIFY: True, A.ENCRYPT: False, A.WRAP: False}
    if key_type in _EC_PARAMS:
        kind, length = p11.KeyType.EC, None
        public_template[A.EC_PARAMS] = _EC_PARAMS[key_type]
    else:
        kind, length = p11.KeyType.RSA, _RSA_BITS[key_type]

    def generate(session: Any) -> Any:
        for label, identifier in ((parsed.object, None), (None, key_id)):
            if any(
                True for _ in session.get_objects({A.CLASS: p11.ObjectClass.PRIVATE_KEY, **_match(label, identifier)})
            ):
                raise HSMKeyExists(
                    f"a private key {parsed.describe()} (or with its id) already exists; not overwriting"
                )
        return session.generate_keypair(
            kind,
            length,
            id=key_id,
            label=parsed.object,
            store=True,
            capabilities=p11.MechanismFlag.SIGN | p11.MechanismFlag.VERIFY,
            public_template=public_template,
            private_template=private_template,
        )

    try:
        public, _private = _with_session(entry, pin_text, generate)
        return _public_key_from_token(public, key_type)
    except p11.PKCS11Error as exc:
        raise HSMError(f"cannot generate {key_type} key {parsed.describe()}: {_describe(exc)}") from None


def _match(label: str | None, identifier: bytes | None) -> dict[Any, Any]:
    p11 = _pkcs11()
    attributes: dict[Any, Any] = {}
    if label is not None:
        attributes[p11.Attribute.LABEL] = label
    if identifier is not None:
        attributes[p11.Attribute.ID] = identifier
    return attributes


def _destroy_key_pair(uri: PKCS11URI, pin: str, module: str | Path | None) -> None:
    """Undo :func:`generate_key_in_token` (only used when creating a hierarchy fails half-way)."""
    p11 = _pkcs11()
    entry = _token_for(uri, module)

    def destroy(session: Any) -> None:
        private = session.get_key(object_class=p11.ObjectClass.PRIVATE_KEY, label=uri.object, id=uri.id)
        key_id = bytes(private[p11.Attribute.ID])
        for obj in list(session.get_objects({p11.Attribute.CLASS: p11.ObjectClass.PUBLIC_KEY, **_match(None, key_id)})):
            obj.destroy()
        private.destroy()
        entry.keys.clear()

    _with_session(entry, pin, destroy)


# --- a new hierarchy in a token ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TokenHierarchy:
    """A root + S/MIME issuing CA whose keys are in a PKCS#11 token (see :func:`init_hierarchy_in_token`)."""

    root_certificate: x509.Certificate
    root_uri: str
    root_urls: PublicationURLs
    issuing_certificate: x509.Certificate
    issuing_uri: str
    issuing_urls: PublicationURLs


def init_hierarchy_in_token(
    root_uri: str,
    issuing_uri: str,
    pin: bytes | str,
    key_type: str = "ec-p256",
    *,
    name: str,
    organization: str,
    publication_base_url: str,
    country: str | None = None,
    root_slug: str = "root",
    issuing_slug: str = "smime",
    root_validity_days: int = DEFAULT_ROOT_VALIDITY_DAYS,
    issuing_validity_days: int = DEFAULT_ISSUING_CA_VALIDITY_DAYS,
    cps_url: str | None = None,
    not_before: dt.datetime | None = None,
    module: str | Path | None = None,
) -> TokenHierarchy:
    """Like :func:`~autoenroll.pki.profiles.init_hierarchy`, with both CA keys generated in the token.

    The root is self-signed and the issuing CA signed through :class:`PKCS11Backend`; the
    certificates are returned (they are public: store them where the server expects them). If
    anything fails, the keys generated so far are destroyed, so a retry starts clean.
    """
    root_urls = PublicationURLs.for_ca(publication_base_url, root_slug)
    issuing_urls = PublicationURLs.for_ca(publication_base_url, issuing_slug)
    pin_text = pin.decode() if isinstance(pin, bytes) else pin
    created: list[PKCS11URI] = []
    try:
        root_public = generate_key_in_token(root_uri, key_type, pin_text, module=module)
        created.append(PKCS11URI.parse(root_uri))
        issuing_public = generate_key_in_token(issuing_uri, key_type, pin_text, module=module)
        created.append(PKCS11URI.parse(issuing_uri))
        subject = ca_name(f"{name} Root CA", organization, country)
        builder = root_ca_builder(root_public, subject, validity_days=root_validity_days, not_before=not_before)
        root_cert = PKCS11Backend(None, root_uri, pin_text, module).sign(builder)
        issuing_cert = issue_issuing_ca(
            PKCS11Backend(root_cert, root_uri, pin_text, module),
            issuing_public,
            ca_name(f"{name} S/MIME CA", organization, country),
            root_urls,
            validity_days=issuing_validity_days,
            cps_url=cps_url,
            not_before=not_before,
        )
    except BaseException:
        for uri in reversed(created):
            try:
                _destroy_key_pair(uri, pin_text, module)
            except Exception:  # noqa: S110 - best effort; the original error matters more
                pass
        raise
    return TokenHierarchy(root_cert, root_uri, root_urls, issuing_cert, issuing_uri, issuing_urls)
