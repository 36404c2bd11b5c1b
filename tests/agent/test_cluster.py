"""Past one host: two `autoenroll-server serve` processes (their own data directories, ports and MIT replay
caches, as two hosts would have) share one PostgreSQL database behind HAProxy (TCP, TLS passed through).
Real agents log on through the balancer; logons land on both servers; with one server stopped the other
carries on, and a renewal reported to either one revokes the old certificate.

Runs in the PostgreSQL phase of scripts/test (AUTOENROLL_DATABASE_URL set) with Debian's haproxy."""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import time
import uuid
from urllib.parse import urlsplit, urlunsplit

import pytest
from cryptography import x509

from autoenroll.testbed.server import free_port, start_server

from .conftest import CUSTOMER, HOST, AgentUser

BASE_URL = os.environ.get("AUTOENROLL_DATABASE_URL", "")
HAPROXY = shutil.which("haproxy") or "/usr/sbin/haproxy"

pytestmark = [
    pytest.mark.skipif(not BASE_URL.startswith("postgresql"), reason="a cluster shares PostgreSQL"),
    pytest.mark.skipif(not os.path.exists(HAPROXY), reason="Debian's haproxy is not installed"),
]


@pytest.fixture
def database():
    """A database of its own in the test's PostgreSQL cluster, dropped afterwards."""
    import psycopg

    name = f"cluster_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(BASE_URL, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    parts = urlsplit(BASE_URL)
    yield urlunsplit(parts._replace(path=f"/{name}"))
    with psycopg.connect(BASE_URL, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def haproxy(port: int, backends: list[int], workdir) -> subprocess.Popen:
    config = workdir / "haproxy.cfg"
    servers = "\n".join(f"    server s{i} 127.0.0.1:{p} check inter 300 fall 1 rise 1" for i, p in enumerate(backends))
    config.write_text(
        "defaults\n    mode tcp\n    timeout connect 2s\n    timeout client 60s\n    timeout server 60s\n"
        f"frontend enroll\n    bind 127.0.0.1:{port}\n    default_backend servers\n"
        f"backend servers\n    balance roundrobin\n{servers}\n"
    )
    proc = subprocess.Popen([HAPROXY, "-f", str(config), "-db"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    for _ in range(50):
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return proc
        time.sleep(0.1)
    proc.kill()
    raise AssertionError(f"haproxy did not listen: {proc.stderr.read().decode()[-500:]}")


def logons(server) -> int:
    return server.log_file.read_text(errors="replace").count('"POST /api/enroll/logon HTTP')


def test_two_servers_behind_haproxy_on_one_database(samba_ad, tmp_path, database):
    front = free_port()
    shared = {
        "HOME": str(tmp_path),
        "AUTOENROLL_DATABASE_URL": database,
        "AUTOENROLL_SECRET_KEY": secrets.token_urlsafe(40),  # status tokens must verify on both servers
    }
    with start_server(tmp_path / "a", samba_ad, customer=CUSTOMER, env=shared, workers=1, public_port=front) as a:
        joined = {**shared, "AUTOENROLL_CA_PASSPHRASE_FILE": str(tmp_path / "a" / "ca-passphrase")}
        with start_server(
            tmp_path / "b", samba_ad, customer=CUSTOMER, env=joined, workers=1, configure=False, public_port=front
        ) as b:
            balancer = haproxy(front, [a.port, b.port], tmp_path)
            try:
                users = []
                for sam in ("user1", "user2"):
                    home = tmp_path / f"home-{sam}"
                    home.mkdir(mode=0o700)
                    user = AgentUser(sam, home, a, samba_ad, _issuer_cn(a))
                    user.kinit()
                    user.write_config(requestpath=f"https://{HOST}:{front}")  # the balancer
                    user.extra_env["AUTOENROLL_CONNECT_TO"] = f"{HOST}:{front}:127.0.0.1"
                    users.append(user)
                for _ in range(2):  # four logons, round robin: both servers serve some
                    for user in users:
                        assert user.run("run", "--force").returncode == 0, user.log_text()
                assert logons(a) >= 1 and logons(b) >= 1, (logons(a), logons(b))
                a.stop()  # a host goes away: the balancer sends everything to b
                time.sleep(1)
                for user in users:
                    result = user.run("run", "--force")
                    assert result.returncode == 0, user.log_text()
                    assert "the server revoked the replaced certificate" in user.log_text().splitlines()[-2]
            finally:
                balancer.terminate()
                balancer.wait(timeout=10)


def _issuer_cn(server) -> str:
    from cryptography.x509.oid import NameOID

    cert = x509.load_pem_x509_certificate(server.issuing_ca.read_bytes())
    return cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
