"""Windows CurrentUser\\MY, the store the guide's ExchangeEnroll.vbs filled (section 5 shows where to look).

As the guide's script did, the key and the request are made by ``certreq -new`` inside the user's key
storage provider (not exportable: the key never leaves the machine) and the issued certificate is
accepted with ``certreq -accept -user``; intermediates go to CurrentUser\\CA with ``certutil -user
-addstore``. Listing reads the store through crypt32 (ctypes, read-only), which is fast at logon.
Superseded certificates stay in MY: Outlook needs them and their keys to read old mail.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from autoenroll.protocol import EnrollmentError

from .base import CREATE_REQUEST, INSTALL, OPEN_STORE, Installed, Request, Store, run_tool

if TYPE_CHECKING:
    from cryptography import x509


_INF = """[Version]
Signature="$Windows NT$"

[NewRequest]
Subject = "CN={cn}"
KeyAlgorithm = {algorithm}
KeyLength = {length}
Exportable = FALSE
MachineKeySet = FALSE
ProviderName = "Microsoft Software Key Storage Provider"
RequestType = PKCS10
HashAlgorithm = sha256
KeyUsage = {key_usage}

[Extensions]
2.5.29.17 = "{{text}}"
_continue_ = "email={mail}"
"""


def _der_certificates_in_my() -> list[bytes]:
    import ctypes
    from ctypes import wintypes

    class CertContext(ctypes.Structure):
        _fields_ = [
            ("dwCertEncodingType", wintypes.DWORD),
            ("pbCertEncoded", ctypes.POINTER(ctypes.c_ubyte)),
            ("cbCertEncoded", wintypes.DWORD),
            ("pCertInfo", ctypes.c_void_p),
            ("hCertStore", ctypes.c_void_p),
        ]

    crypt32 = ctypes.WinDLL("crypt32", use_last_error=True)  # type: ignore[attr-defined]
    crypt32.CertOpenSystemStoreW.restype = ctypes.c_void_p
    crypt32.CertOpenSystemStoreW.argtypes = [ctypes.c_void_p, wintypes.LPCWSTR]
    crypt32.CertEnumCertificatesInStore.restype = ctypes.POINTER(CertContext)
    crypt32.CertEnumCertificatesInStore.argtypes = [ctypes.c_void_p, ctypes.POINTER(CertContext)]
    crypt32.CertCloseStore.argtypes = [ctypes.c_void_p, wintypes.DWORD]
    store = crypt32.CertOpenSystemStoreW(None, "MY")
    if not store:
        raise OSError(ctypes.get_last_error(), "CertOpenSystemStoreW(MY) failed")
    found: list[bytes] = []
    try:
        ctx = crypt32.CertEnumCertificatesInStore(store, None)
        while ctx:
            found.append(ctypes.string_at(ctx.contents.pbCertEncoded, ctx.contents.cbCertEncoded))
            ctx = crypt32.CertEnumCertificatesInStore(store, ctx)  # frees the previous context
    finally:
        crypt32.CertCloseStore(store, 0)
    return found


def _run(args: list[str], code: int) -> str:
    return run_tool(args, code, args[0])


class WindowsStore(Store):
    kind = "windows"
    imports_keys = False

    def __init__(self, location: str = "") -> None:
        super().__init__(location or r"CurrentUser\MY")

    def certificates(self) -> list[Installed]:
        from cryptography import x509

        if sys.platform != "win32":
            raise EnrollmentError(OPEN_STORE, "the Windows certificate store exists only on Windows")
        try:
            ders = _der_certificates_in_my()
        except OSError as exc:
            raise EnrollmentError(OPEN_STORE, f"{self.name}: {exc}") from None
        found = []
        for der in ders:
            try:
                cert = x509.load_der_x509_certificate(der)
            except ValueError:
                continue
            found.append(Installed(cert, self.name, cert.fingerprint(_sha1()).hex()))
        return found

    def create_request(self, cn: str, mail: str, key_type: str) -> Request:
        kind, _, size = key_type.partition("-")
        algorithm, length = ("RSA", size) if kind == "rsa" else (f"ECDSA_{size.upper()}", size.removeprefix("p"))
        tmp = Path(tempfile.mkdtemp(prefix="autoenroll-"))
        inf, csr = tmp / "request.inf", tmp / "request.csr"
        key_usage = "0xa0" if kind == "rsa" else "0x88"  # signature + key encipherment / key agreement
        inf.write_text(
            _INF.format(cn=cn.replace('"', ""), mail=mail, algorithm=algorithm, length=length, key_usage=key_usage)
        )
        _run(["certreq", "-new", "-q", "-user", str(inf), str(csr)], CREATE_REQUEST)
        return Request(csr.read_text(), None, {self.kind: str(tmp)})

    def install(self, request: Request, certificate: x509.Certificate, chain: list[x509.Certificate]) -> str:
        from cryptography.hazmat.primitives import serialization

        tmp = Path(request.handle.get(self.kind) or tempfile.mkdtemp(prefix="autoenroll-"))
        if request.key is not None:
            raise EnrollmentError(INSTALL, "the Windows store installs only keys it made itself (certreq -new)")
        cer = tmp / "certificate.cer"
        cer.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
        _run(["certreq", "-accept", "-q", "-user", str(cer)], INSTALL)
        for n, ca in enumerate(chain):
            if ca.issuer == ca.subject:
                continue  # the root comes by Group Policy (guide 3.6), never from the agent
            path = tmp / f"ca{n}.cer"
            path.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
            _run(["certutil", "-user", "-addstore", "CA", str(path)], INSTALL)
        return certificate.fingerprint(_sha1()).hex()


def _sha1():
    from cryptography.hazmat.primitives import hashes

    return hashes.SHA1()  # noqa: S303 - the Windows thumbprint is SHA-1 by definition
