"""Backup and restore (issue 16), as an admin would after a lost disk: `autoenroll-server backup` of a server
that agents are enrolling against, the server lost, `restore` into a new data directory (and database), and
the restored server serving the agents again.

On SQLite in the first phase of scripts/test, on PostgreSQL in the second (AUTOENROLL_DATABASE_URL set)."""

from __future__ import annotations

import concurrent.futures
import json
import threading
import time
import tomllib
import uuid

import pytest

from autoenroll.testbed.server import ServerProcess, free_port, start_server
from databases import own_databases

from .conftest import CUSTOMER, HOST, AgentUser

USERS = 3
ROUNDS = 3

FACTS = """
import json
from cryptography import x509
from autoenroll.server.certificates.models import Certificate, CertificateAuthority, RevocationList
cas = {ca.pk: x509.load_pem_x509_certificate(ca.certificate_pem.encode()) for ca in CertificateAuthority.objects.all()}
signed_by_its_ca = True
for c in Certificate.objects.all():
    try:
        x509.load_pem_x509_certificate(c.pem.encode()).verify_directly_issued_by(cas[c.ca_id])
    except Exception:
        signed_by_its_ca = False
print(json.dumps({
    "serials": sorted(Certificate.objects.values_list("serial", flat=True)),
    "signed_by_its_ca": signed_by_its_ca,
    "crl_numbers": sorted(RevocationList.objects.values_list("number", flat=True)),
    "ca_crl_numbers": dict(CertificateAuthority.objects.values_list("name", "crl_number")),
}))
"""


@pytest.fixture
def databases():
    """Two fresh PostgreSQL databases (the lost server's, the restored one's), or SQLite in each data directory."""
    with own_databases("backup", 2) as envs:
        yield envs


def _seal(server: ServerProcess) -> None:
    """`audit seal` now (serve's own sealer may be at it: then wait for it)."""
    for _ in range(30):
        if "another server" not in server.cli("audit", "seal"):
            return
        time.sleep(1)
    raise AssertionError("the audit trail was never free to seal")


def _common_name(pem_path) -> str:
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    cert = x509.load_pem_x509_certificate(pem_path.read_bytes())
    return cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value


def _agent(samba_ad, server: ServerProcess, tmp_path, issuer: str) -> AgentUser:
    sam = f"bk{uuid.uuid4().hex[:6]}"
    samba_ad.add_user(sam, "Passw0rd!Backup1", mail=f"{sam}@test.com")
    home = tmp_path / f"home-{sam}"
    home.mkdir(mode=0o700)
    user = AgentUser(sam, home, server, samba_ad, issuer)
    user.kinit()
    user.write_config()
    return user


def test_a_backup_under_load_restores_into_a_new_data_directory(samba_ad, tmp_path, databases):
    lost_db, new_db = databases
    archive = tmp_path / "autoenroll.backup"
    with start_server(tmp_path / "lost", samba_ad, customer=CUSTOMER, env=dict(lost_db)) as lost:
        issuer_cn = _common_name(lost.issuing_ca)
        users = [_agent(samba_ad, lost, tmp_path, issuer_cn) for _ in range(USERS)]
        for user in users:
            assert user.run("run").returncode == 0, user.log_text()[-2000:]
        _seal(lost)
        before = json.loads(lost.shell(FACTS))

        started = threading.Event()

        def load(user: AgentUser) -> list[int]:
            started.set()
            return [user.run("run", "--force").returncode for _ in range(ROUNDS)]

        with concurrent.futures.ThreadPoolExecutor(USERS) as pool:
            runs = [pool.submit(load, user) for user in users]
            started.wait(30)
            time.sleep(1)  # logons under way
            printed = lost.cli("backup", str(archive))
            codes = [code for run in runs for code in run.result(timeout=600)]
        assert codes.count(0) == len(codes), codes
        assert oct(archive.stat().st_mode & 0o777) == "0o600"
        lost.cli("crl")  # the lost server goes on publishing CRLs after the backup...
        after = json.loads(lost.shell(FACTS))
    # ...and then its disk is gone.

    passphrase = tmp_path / "lost" / "ca-passphrase"
    port, publication_port = free_port(), free_port()
    env = {
        **{k: v for k, v in lost.env.items() if k != "AUTOENROLL_DATABASE_URL"},
        **new_db,
        "AUTOENROLL_DATA_DIR": str(tmp_path / "new" / "data"),
        "AUTOENROLL_CA_PASSPHRASE_FILE": str(passphrase),
        "AUTOENROLL_LISTEN": f"127.0.0.1:{port}",
        "AUTOENROLL_PUBLIC_URL": f"https://{HOST}:{port}",
        "AUTOENROLL_PUBLICATION_LISTEN": f"127.0.0.1:{publication_port}",
        "AUTOENROLL_PUBLICATION_URL": f"http://{HOST}:{publication_port}",
    }
    (tmp_path / "new").mkdir()
    restored = ServerProcess(tmp_path / "new", port, publication_port, CUSTOMER, env)
    wrong = {**env, "AUTOENROLL_CA_PASSPHRASE_FILE": str(tmp_path / "wrong")}
    (tmp_path / "wrong").write_text("not the passphrase\n")
    with pytest.raises(Exception, match="passphrase does not open this backup"):
        ServerProcess(tmp_path / "new", port, publication_port, CUSTOMER, wrong).cli("restore", str(archive))
    printed_restore = restored.cli("restore", str(archive))
    print(printed_restore)
    # The settings travel with the backup (encrypted, the passphrase never), and those that differ are named.
    carried = tmp_path / "new" / "data" / "settings-from-backup.toml"
    assert oct(carried.stat().st_mode & 0o777) == "0o600"
    settings = tomllib.loads(carried.read_text())
    assert settings["publication_url"] == lost.env["AUTOENROLL_PUBLICATION_URL"]
    assert settings["metrics_token"] == lost.env["AUTOENROLL_METRICS_TOKEN"]
    assert "ca_passphrase" not in settings and "secret_key" not in settings
    assert "data_dir" not in settings  # the lost host's: taken into this server's file, it would point there
    differing = printed_restore.split("settings that differ from the backed-up server's:")[1]
    assert f"publication_url: '{lost.env['AUTOENROLL_PUBLICATION_URL']}' in the backup" in differing
    assert "public_url:" in differing and "listen:" in differing
    assert "metrics_token" not in differing and "data_dir" not in differing
    with pytest.raises(Exception, match="not empty|exists"):
        restored.cli("restore", str(archive))  # never over a server's data

    assert "intact:" in restored.cli("audit", "verify")  # the chain, its MACs (the restored SECRET_KEY), signatures
    facts = json.loads(restored.shell(FACTS))
    assert set(before["serials"]) <= set(facts["serials"]) <= set(after["serials"])  # nothing lost, nothing invented
    assert facts["signed_by_its_ca"]
    assert f"with {len(facts['serials'])} certificates" in printed
    # CRL numbers never go back: the next CRL of the restored CAs is above every CRL the lost server published.
    restored.cli("crl")
    numbers = json.loads(restored.shell(FACTS))["ca_crl_numbers"]
    assert all(numbers[name] > number for name, number in after["ca_crl_numbers"].items()), (numbers, after)

    restored.start()  # the restored server enrolls: CA key, AD password (the restored SECRET_KEY), TLS
    try:
        user = users[0]
        user.server = restored
        user.write_config()
        result = user.run("run", "--force")
        assert result.returncode == 0, user.log_text()[-3000:]
    finally:
        restored.stop()
