"""The macOS login keychain, through ``security`` (Apple Mail finds identities there).

Certificates are listed with ``security find-certificate -a -p``; an identity is added with ``security
import`` of a password-protected PKCS#12 made in memory. Old identities stay in the keychain: Mail needs
their keys for old messages and chooses the newest valid certificate for new ones.
"""

from __future__ import annotations

import os
import secrets
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from autoenroll.protocol import EnrollmentError

from .base import INSTALL, OPEN_STORE, Installed, Request, Store, load_pems, pkcs12_bytes, run_tool

if TYPE_CHECKING:
    from cryptography import x509


def login_keychain() -> str:
    return str(Path.home() / "Library" / "Keychains" / "login.keychain-db")


class KeychainStore(Store):
    kind = "keychain"

    def __init__(self, location: str = "") -> None:
        super().__init__(location or login_keychain())

    def _security(self, *args: str, code: int) -> str:
        return run_tool(["/usr/bin/security", *args], code, self.name)

    def certificates(self) -> list[Installed]:
        pem = self._security("find-certificate", "-a", "-p", self.location, code=OPEN_STORE)
        try:
            return [Installed(c, self.name, format(c.serial_number, "x")) for c in load_pems(pem.encode())]
        except ValueError as exc:
            raise EnrollmentError(OPEN_STORE, f"{self.name}: {exc}") from None

    def install(self, request: Request, certificate: x509.Certificate, chain: list[x509.Certificate]) -> str:
        password = secrets.token_urlsafe(24)
        try:
            data = pkcs12_bytes(request, certificate, chain, "autoenroll", password.encode())
        except Exception as exc:  # noqa: BLE001 - the guide's error 39
            raise EnrollmentError(INSTALL, f"{self.name}: {exc}") from None
        with tempfile.TemporaryDirectory(prefix="autoenroll-") as tmp:
            p12 = Path(tmp, "identity.p12")
            fd = os.open(p12, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            self._security(
                "import", str(p12), "-k", self.location, "-f", "pkcs12", "-P", password,
                "-T", "/Applications/Mail.app", code=INSTALL,
            )  # fmt: skip
        return format(certificate.serial_number, "x")
