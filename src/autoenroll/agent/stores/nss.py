"""An NSS database (Thunderbird, Firefox, Evolution): listed with ``certutil``, filled with ``pk12util``.

Locations: ``nss:/path/to/profile`` (a directory with cert9.db; created empty when the directory exists
without one), ``nss:thunderbird`` / ``nss:firefox`` (every profile of the current user). A database with
a primary password cannot be written without it: the install fails with error 39 and the folder store
(if configured) still holds the certificate. Superseded certificates stay, with their keys: Thunderbird
needs them to decrypt old mail and signs with the newest valid one.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from autoenroll.protocol import EnrollmentError

from .base import INSTALL, OPEN_STORE, Installed, Request, Store, load_pems, pkcs12_bytes, run_tool, summarize

if TYPE_CHECKING:
    from cryptography import x509

_LINE = re.compile(r"^(?P<nick>.+?)\s+(?P<trust>[a-zA-Z]*,[a-zA-Z]*,[a-zA-Z]*)\s*$")
PROFILE_GLOBS = {
    "thunderbird": (".thunderbird/*/cert9.db", "snap/thunderbird/common/.thunderbird/*/cert9.db"),
    "firefox": (".mozilla/firefox/*/cert9.db", "snap/firefox/common/.mozilla/firefox/*/cert9.db"),
}


def profiles(application: str, home: Path | None = None) -> list[Path]:
    """The NSS profile directories of an application for the current user."""
    home = home or Path.home()
    return sorted({p.parent for pattern in PROFILE_GLOBS[application] for p in home.glob(pattern)})


def _tool(name: str) -> str:
    found = shutil.which(name)
    if not found:
        raise FileNotFoundError(f"{name} not found (install libnss3-tools / nss-tools)")
    return found


class NSSStore(Store):
    kind = "nss"

    def __init__(self, location: str) -> None:
        super().__init__(location.removeprefix("sql:"))
        self.directory = Path(self.location).expanduser()

    @property
    def db(self) -> str:
        return f"sql:{self.directory}"

    def _run(self, *args: str, code: int) -> str:
        return run_tool([_tool(args[0]), *args[1:]], code, self.name)

    def _open(self) -> None:
        if not self.directory.is_dir():
            raise EnrollmentError(OPEN_STORE, f"{self.name}: no such profile directory")
        if not (self.directory / "cert9.db").exists():
            self._run("certutil", "-N", "-d", self.db, "--empty-password", code=OPEN_STORE)

    def certificates(self) -> list[Installed]:
        self._open()
        listing = self._run("certutil", "-L", "-d", self.db, code=OPEN_STORE)
        found: list[Installed] = []
        for line in listing.splitlines()[3:]:
            match = _LINE.match(line)
            if not match or "u" not in match["trust"]:  # "u": the database holds the private key
                continue
            nick = match["nick"]
            pem = self._run("certutil", "-L", "-d", self.db, "-n", nick, "-a", code=OPEN_STORE)
            try:
                found.extend(Installed(cert, self.name, nick) for cert in load_pems(pem.encode()))
            except ValueError as exc:
                raise EnrollmentError(OPEN_STORE, f"{self.name}: {nick}: {exc}") from None
        return found

    def install(self, request: Request, certificate: x509.Certificate, chain: list[x509.Certificate]) -> str:
        nick = next(iter(summarize(certificate)["mails"]), format(certificate.serial_number, "x"))
        password = secrets.token_urlsafe(24)
        try:
            self._open()
            data = pkcs12_bytes(request, certificate, chain, nick, password.encode())
        except EnrollmentError as exc:
            raise EnrollmentError(INSTALL, exc.detail) from None
        except Exception as exc:  # noqa: BLE001 - the guide's error 39
            raise EnrollmentError(INSTALL, f"{self.name}: {exc}") from None
        with tempfile.TemporaryDirectory(prefix="autoenroll-") as tmp:
            p12 = Path(tmp, "identity.p12")
            fd = os.open(p12, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            # -K "": the database password (none on a default profile; a primary password makes this fail)
            self._run("pk12util", "-i", str(p12), "-d", self.db, "-W", password, "-K", "", code=INSTALL)
        return nick
