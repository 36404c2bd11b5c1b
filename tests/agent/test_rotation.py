"""Key rotation in a running server: `autoenroll-server ca rotate` makes a new issuing CA, and the very next
logon, in server processes that have held the configuration in memory since they started, is issued by it, and
the renewal revokes the certificate of the old CA it replaces (guide 3.1)."""

from __future__ import annotations

import subprocess

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID

from autoenroll.testbed.server import start_server

from .conftest import CUSTOMER, AgentUser


def common_name(name: x509.Name) -> str:
    return name.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value


def installed(user: AgentUser) -> list[x509.Certificate]:
    return [x509.load_pem_x509_certificate(p.read_bytes()) for p in sorted(user.folder.glob("*.cert.pem"))]


def test_a_new_issuing_ca_issues_from_the_next_logon_without_a_restart(samba_ad, tmp_path):
    with start_server(tmp_path / "server", samba_ad, customer=CUSTOMER, env={"HOME": str(tmp_path)}) as server:
        first_ca = common_name(x509.load_pem_x509_certificate(server.issuing_ca.read_bytes()).subject)
        home = tmp_path / "home-user1"
        home.mkdir(mode=0o700)
        user = AgentUser("user1", home, server, samba_ad, first_ca)
        user.kinit()
        user.write_config()
        assert user.run("run").returncode == 0, user.log_text()
        assert [common_name(c.issuer) for c in installed(user)] == [first_ca]

        assert "active" in server.cli("ca", "rotate")
        code = "from autoenroll.server.certificates import authority; print(authority.issuing_ca().certificate_pem)"
        new_ca_pem = server.cli("shell", "-c", code)
        new_ca = x509.load_pem_x509_certificate(new_ca_pem.encode())
        assert common_name(new_ca.subject) != first_ca
        assert first_ca in common_name(new_ca.subject)  # the agent's issuername matches both CAs, as the guide's
        first = installed(user)[0]
        assert user.run("run", "--force").returncode == 0, user.log_text()  # the renewal, as when it is due
        newest = max(installed(user), key=lambda c: c.not_valid_before_utc)
        assert newest.issuer == new_ca.subject
        # ...and, as the guide's renewal, it revoked the certificate it replaced, of the old CA
        status = "from autoenroll.server.certificates.models import Certificate as C; "
        status += f"print(C.objects.get(serial='{first.serial_number:x}').revocation_reason)"
        assert server.shell(status) == "superseded", user.log_text()
        (tmp_path / "new-ca.pem").write_text(new_ca_pem)
        leaf = tmp_path / "leaf.pem"
        leaf.write_bytes(newest.public_bytes(serialization.Encoding.PEM))
        verify = subprocess.run(
            ["openssl", "verify", "-CAfile", str(server.root_ca), "-untrusted", str(tmp_path / "new-ca.pem"),
             "-purpose", "smimesign", str(leaf)],
            capture_output=True, text=True,
        )  # fmt: skip
        assert verify.returncode == 0, verify.stdout + verify.stderr
