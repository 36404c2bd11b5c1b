"""The stores on their own: the folder with its saved summaries, NSS with the real certutil/pk12util."""

from __future__ import annotations

import datetime
import os
import subprocess

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from autoenroll.agent.stores import open_stores
from autoenroll.agent.stores.base import Request, python_request
from autoenroll.agent.stores.folder import FolderStore
from autoenroll.agent.stores.nss import NSSStore


def issue(mail: str, days: int = 365) -> tuple[Request, x509.Certificate, list[x509.Certificate]]:
    """A key and CSR made the agent's way, certified by a throw-away CA."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "store test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    request = python_request("Test User", mail, "ec-p256")
    csr = x509.load_pem_x509_csr(request.csr_pem.encode())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, mail)]))
        .issuer_name(ca_name)
        .public_key(csr.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName([x509.RFC822Name(mail)]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return request, cert, [ca]


def test_the_saved_summary_is_used_only_while_it_describes_the_file(tmp_path):
    store = FolderStore(str(tmp_path / "certs"))
    request, cert, chain = issue("a@test.com")
    store.install(request, cert, chain)
    (found,) = store.certificates()
    assert found.serial == format(cert.serial_number, "x") and found.mails == ["a@test.com"]
    assert found._certificate is None  # nothing parsed
    assert found.certificate == cert  # ... until asked for
    # someone replaces the certificate file: the summary no longer applies, the file is read
    _, other, _ = issue("b@test.com", days=10)
    path = tmp_path / "certs" / found.ref
    path.write_bytes(other.public_bytes(serialization.Encoding.PEM))
    os.utime(path, ns=(1, 1))
    (found,) = store.certificates()
    assert found.mails == ["b@test.com"] and found.serial == format(other.serial_number, "x")


def test_nss_store_installs_the_identity_and_lists_it(tmp_path):
    profile = tmp_path / "profile"
    profile.mkdir()
    store = NSSStore(str(profile))
    assert store.certificates() == []  # an empty profile directory gets a database
    request, cert, chain = issue("c@test.com")
    assert store.install(request, cert, chain) == "c@test.com"
    (found,) = store.certificates()
    assert found.certificate == cert and found.ref == "c@test.com"
    keys = subprocess.run(["certutil", "-K", "-d", f"sql:{profile}"], capture_output=True, text=True, timeout=30)
    assert "c@test.com" in keys.stdout  # the private key is in the database


def test_store_specs(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    for name in ("abc.default", "xyz.work"):
        (tmp_path / ".thunderbird" / name).mkdir(parents=True)
        (tmp_path / ".thunderbird" / name / "cert9.db").write_bytes(b"")
    stores = open_stores(["folder:/somewhere", "nss:thunderbird"])
    assert [s.name for s in stores] == [
        "folder:/somewhere",
        f"nss:{tmp_path}/.thunderbird/abc.default",
        f"nss:{tmp_path}/.thunderbird/xyz.work",
    ]
