"""A PEM/PKCS#12 folder: the default store on Linux and macOS, readable by any mail client or script.

Layout (the folder is 0700, key and PKCS#12 files 0600)::

    <serial>.cert.pem   the certificate          <serial>.chain.pem   issuing CA(s) and root
    <serial>.meta.json  serial, validity, issuer, mails of the certificate (so a logon check parses nothing)
    <serial>.p12        key + certificate + chain, no password, for importing into mail clients
    keys/<id>.key.pem   the private keys (PKCS#8), written when the request is made, never deleted
    archive/            superseded certificates (their keys stay in keys/, to decrypt old mail)
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from autoenroll.protocol import EnrollmentError

from .base import (
    CREATE_REQUEST,
    INSTALL,
    OPEN_STORE,
    Installed,
    Request,
    Store,
    load_pems,
    pkcs12_bytes,
    python_request,
    summarize,
)

if TYPE_CHECKING:
    from cryptography import x509


def _loader(path: Path):
    def load() -> x509.Certificate:
        return load_pems(path.read_bytes())[0]

    return load


def default_location() -> Path:
    import platformdirs

    return Path(platformdirs.user_data_dir("autoenroll", appauthor=False), "certificates")


def _write(path: Path, data: bytes, mode: int) -> None:
    """Write atomically with the final mode from the start (a key is never readable by others)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def key_id(public_key: object) -> str:
    """A file name for a key, derived from its public half (the certificate finds its key by it)."""
    from cryptography.hazmat.primitives import serialization

    der = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(der).hexdigest()[:20]


class FolderStore(Store):
    kind = "folder"

    def __init__(self, location: str = "") -> None:
        super().__init__(location or str(default_location()))
        self.root = Path(self.location).expanduser()

    def _open(self) -> None:
        try:
            self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
            if not self.root.is_dir():
                raise NotADirectoryError(f"{self.root} is not a directory")
        except OSError as exc:
            raise EnrollmentError(OPEN_STORE, f"{self.name}: {exc}") from None

    def certificates(self) -> list[Installed]:
        """The folder's certificates. One file that cannot be read (damaged, truncated, not a certificate)
        is passed over and named in ``unreadable``: the store still opens, and a damaged current
        certificate is renewed instead of stopping every logon at error 31."""
        self._open()
        found, self.unreadable = [], []
        try:
            paths = sorted(self.root.glob("*.cert.pem"))
        except OSError as exc:
            raise EnrollmentError(OPEN_STORE, f"{self.name}: {exc}") from None
        for path in paths:
            if not path.is_file():  # a FIFO or a device would block or never end the read
                continue
            summary = self._summary(path)
            try:
                if summary is not None:
                    found.append(Installed(None, self.name, path.name, summary=summary, loader=_loader(path)))
                    continue
                for cert in load_pems(path.read_bytes())[:1]:
                    found.append(Installed(cert, self.name, path.name))
            except (OSError, ValueError, KeyError, TypeError) as exc:
                self.unreadable.append(f"{path.name}: {exc}")
        return found

    @staticmethod
    def _summary(cert_path: Path) -> dict | None:
        """The summary saved at install, if it still describes this very file (same size and mtime)."""
        meta_path = cert_path.with_name(cert_path.name.replace(".cert.pem", ".meta.json"))
        if not meta_path.is_file():
            return None
        try:
            meta = json.loads(meta_path.read_text())
            st = cert_path.stat()
            if meta["size"] == st.st_size and meta["mtime_ns"] == st.st_mtime_ns:
                return meta["summary"]
        except (OSError, ValueError, KeyError, TypeError):
            pass
        return None

    def create_request(self, cn: str, mail: str, key_type: str) -> Request:
        """The key is saved before the request leaves: a crash after issuance never loses it."""
        from cryptography.hazmat.primitives import serialization

        try:
            request = python_request(cn, mail, key_type)
            assert request.key is not None
            keys = self.root / "keys"
            keys.mkdir(mode=0o700, exist_ok=True)
            path = keys / f"{key_id(request.key.public_key())}.key.pem"
            pem = request.key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
            _write(path, pem, 0o600)
        except Exception as exc:  # noqa: BLE001 - the guide's error 33, whatever the cause
            raise EnrollmentError(CREATE_REQUEST, f"{self.name}: {exc}") from None
        request.handle[self.kind] = str(path)
        return request

    def resume_request(self, handle: dict[str, Any], cn: str, mail: str) -> Request | None:
        from cryptography.hazmat.primitives import serialization

        path = Path(str(handle.get(self.kind, "")))
        if path.parent != self.root / "keys":
            return None  # not a key this folder made
        try:
            key = serialization.load_pem_private_key(path.read_bytes(), password=None)
            request = python_request(cn, mail, "", key)  # type: ignore[arg-type]
        except Exception:  # noqa: BLE001 - a key that cannot serve again: the caller makes a new one
            return None
        request.handle[self.kind] = str(path)
        return request

    def install(self, request: Request, certificate: x509.Certificate, chain: list[x509.Certificate]) -> str:
        from cryptography.hazmat.primitives import serialization

        pem = serialization.Encoding.PEM
        serial = format(certificate.serial_number, "x")
        try:
            self._open()
            if self.kind not in request.handle and request.key is not None:  # key made by another store
                keys = self.root / "keys"
                keys.mkdir(mode=0o700, exist_ok=True)
                key_pem = request.key.private_bytes(
                    pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
                )
                _write(keys / f"{key_id(request.key.public_key())}.key.pem", key_pem, 0o600)
            mail = next(iter(summarize(certificate)["mails"]), serial)
            _write(self.root / f"{serial}.chain.pem", b"".join(c.public_bytes(pem) for c in chain), 0o644)
            _write(self.root / f"{serial}.p12", pkcs12_bytes(request, certificate, chain, mail, None), 0o600)
            cert_path = self.root / f"{serial}.cert.pem"
            _write(cert_path, certificate.public_bytes(pem), 0o644)
            st = cert_path.stat()
            meta = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "summary": summarize(certificate)}
            _write(self.root / f"{serial}.meta.json", json.dumps(meta).encode(), 0o644)
        except Exception as exc:  # noqa: BLE001 - the guide's error 39
            raise EnrollmentError(INSTALL, f"{self.name}: {exc}") from None
        return str(self.root / f"{serial}.cert.pem")

    def supersede(self, old: Installed) -> None:
        archive = self.root / "archive"
        archive.mkdir(mode=0o700, exist_ok=True)
        stem = old.ref.removesuffix(".cert.pem")
        for suffix in (".cert.pem", ".meta.json", ".chain.pem", ".p12"):
            src = self.root / f"{stem}{suffix}"
            if src.exists():
                os.replace(src, archive / src.name)

    def key_for(self, certificate: x509.Certificate) -> object | None:
        """The private key of a certificate in this folder (to copy it into another store), or None."""
        from cryptography.hazmat.primitives import serialization

        path = self.root / "keys" / f"{key_id(certificate.public_key())}.key.pem"
        try:
            return serialization.load_pem_private_key(path.read_bytes(), password=None)
        except (OSError, ValueError):
            return None

    def chain_for(self, installed: Installed) -> list[x509.Certificate]:
        """The chain saved with a certificate (for copying it into another store)."""
        path = self.root / installed.ref.replace(".cert.pem", ".chain.pem")
        try:
            return load_pems(path.read_bytes())
        except (OSError, ValueError):
            return []
