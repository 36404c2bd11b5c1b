"""Past one host: three `autoenroll-server serve` processes (their own data directories, ports, MIT replay
caches and CRL watchers, as three hosts would have) share one PostgreSQL database behind HAProxy (TCP, TLS
passed through). Real agents log on through the balancer while one server is killed and restarted.

Runs in the PostgreSQL phase of scripts/test (AUTOENROLL_DATABASE_URL set) with Debian's haproxy."""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
import os
import secrets
import shutil
import socket
import ssl
import subprocess
import sys
import threading
import time
import uuid

import pytest
from cryptography import x509

from autoenroll.testbed.server import free_port, start_server
from databases import ON_POSTGRESQL, own_databases

from .conftest import CUSTOMER, HOST, AgentUser, issuer_common_name

HAPROXY = shutil.which("haproxy") or "/usr/sbin/haproxy"

pytestmark = [
    pytest.mark.skipif(not ON_POSTGRESQL, reason="a cluster shares PostgreSQL"),
    pytest.mark.skipif(not os.path.exists(HAPROXY), reason="Debian's haproxy is not installed"),
]


@pytest.fixture
def database():
    """A database of its own in the test's PostgreSQL cluster, dropped afterwards."""
    with own_databases("cluster") as (env,):
        yield env["AUTOENROLL_DATABASE_URL"]


def haproxy(port: int, backends: list[int], workdir) -> subprocess.Popen:
    config = workdir / "haproxy.cfg"
    check = "check check-ssl verify none inter 300 fall 1 rise 1"
    servers = "\n".join(f"    server s{i} 127.0.0.1:{p} {check}" for i, p in enumerate(backends))
    config.write_text(
        "defaults\n    mode tcp\n    timeout connect 2s\n    timeout client 60s\n    timeout server 60s\n"
        f"frontend enroll\n    bind 127.0.0.1:{port}\n    default_backend servers\n"
        "backend servers\n    balance roundrobin\n    option httpchk\n"
        f"    http-check send meth GET uri /healthz ver HTTP/1.1 hdr Host {HOST}\n    http-check expect status 200\n"
        f"{servers}\n"
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


NODES = 3
USERS = 6
ROUNDS = 4  # logons per user during the storm, each a renewal (`run --force`)


def test_three_servers_behind_haproxy_survive_a_kill_9_under_load(samba_ad, tmp_path, database):
    """The issue's storm: agents log on through HAProxy to three servers while one is killed with
    SIGKILL (its whole process tree) and started again. Afterwards every agent's next logon succeeds;
    every certificate an agent holds is in the database and current, no serial is recorded twice, no
    person holds two installed certificates, no request is left pending, and no two CRLs were built
    for one revocation generation although three CRL watchers and three `crl --due` raced."""
    front = free_port()
    shared = {
        "HOME": str(tmp_path),
        "AUTOENROLL_DATABASE_URL": database,
        "AUTOENROLL_SECRET_KEY": secrets.token_urlsafe(40),  # status tokens must verify on every server
    }
    with contextlib.ExitStack() as stack:
        first = stack.enter_context(
            start_server(tmp_path / "n0", samba_ad, customer=CUSTOMER, env=shared, workers=1, public_port=front)
        )
        joined = {**shared, "AUTOENROLL_CA_PASSPHRASE_FILE": str(tmp_path / "n0" / "ca-passphrase")}
        nodes = [first] + [
            stack.enter_context(
                start_server(
                    tmp_path / f"n{i}",
                    samba_ad,
                    customer=CUSTOMER,
                    env=joined,
                    workers=1,
                    configure=False,
                    public_port=front,
                )  # fmt: skip
            )
            for i in range(1, NODES)
        ]
        balancer = haproxy(front, [n.port for n in nodes], tmp_path)
        stack.callback(_end, balancer)

        users = [_agent(samba_ad, first, tmp_path, front, f"node{uuid.uuid4().hex[:6]}") for _ in range(USERS)]
        _replayed_to_another_node_is_refused(users[0], nodes[0], nodes[1])

        victim = nodes[1]
        done = threading.Semaphore(0)

        def storm(user: AgentUser) -> list[int]:
            codes = []
            for _ in range(ROUNDS):
                codes.append(user.run("run", "--force").returncode)
                done.release()
            return codes

        with concurrent.futures.ThreadPoolExecutor(USERS) as pool:
            results = [pool.submit(storm, user) for user in users]
            for _ in range(USERS):  # a round's worth of logons in, then the host loses power
                assert done.acquire(timeout=240)
            victim.kill()
            before_restart = logons(victim)
            time.sleep(2)
            victim.start()
            codes = [code for r in results for code in r.result(timeout=600)]
        assert codes.count(0) >= len(codes) // 2, codes  # those cut off by the kill may fail; the rest not
        assert before_restart >= 1, before_restart

        # The storm may end before the balancer's check (every 300 ms, rise 1) sees the restarted node
        # up again; give it a few checks, so the round robin below reaches all three.
        time.sleep(1.5)
        for user in users:  # converged: the next logon of everyone succeeds
            result = user.run("run", "--force")
            assert result.returncode == 0, user.log_text()[-3000:]
        assert logons(victim) > before_restart  # the restarted node serves again
        assert all(logons(n) >= 1 for n in nodes), [logons(n) for n in nodes]
        crls = [subprocess.Popen([sys.executable, "-m", "autoenroll.server.cli", "crl", "--due"], env=n.env,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) for n in nodes]  # fmt: skip
        for proc in crls:
            assert proc.wait(timeout=120) == 0, proc.stderr.read().decode()
        facts = json.loads(first.shell(FACTS))

    assert facts["serials_twice"] == [] and facts["pending"] == 0, facts
    assert facts["crls_per_generation"] == [], facts
    for user in users:
        person = facts["persons"][f"{user.sam}@TEST.COM"]
        held = _newest_serial(user)
        assert person["installed_valid"] == [held], (user.sam, held, person)
        assert len(person["valid"]) <= 2, person  # the bound: a certificate lost with the kill, at most


FACTS = """
import json
from django.db.models import Count
from autoenroll.server.certificates.models import Certificate, RevocationList
from autoenroll.server.directory.models import Person
from autoenroll.server.enrollment.models import EnrollmentRequest
persons = {}
for p in Person.objects.all():
    valid = Certificate.objects.valid().filter(person=p, profile="smime").order_by("pk")
    persons[p.principal] = {
        "valid": [c.serial for c in valid],
        "installed_valid": [c.serial for c in valid if c.installed_at is not None],
    }
twice = Certificate.objects.values("ca", "serial").annotate(n=Count("pk")).filter(n__gt=1)
crls = RevocationList.objects.values("ca", "generation").annotate(n=Count("pk")).filter(n__gt=1)
print(json.dumps({
    "persons": persons,
    "serials_twice": [r["serial"] for r in twice],
    "pending": EnrollmentRequest.objects.filter(status="pending").count(),
    "crls_per_generation": [r["generation"] for r in crls],
}))
"""


def _agent(samba_ad, server, tmp_path, front: int, sam: str) -> AgentUser:
    samba_ad.add_user(sam, "Passw0rd!Node1", mail=f"{sam}@test.com")
    home = tmp_path / f"home-{sam}"
    home.mkdir(mode=0o700)
    user = AgentUser(sam, home, server, samba_ad, issuer_common_name(server))
    user.kinit()
    user.write_config(requestpath=f"https://{HOST}:{front}")  # the balancer
    user.extra_env["AUTOENROLL_CONNECT_TO"] = f"{HOST}:{front}:127.0.0.1"
    return user


def _newest_serial(user: AgentUser) -> str:
    certs = [x509.load_pem_x509_certificate(p.read_bytes()) for p in user.folder.glob("*.cert.pem")]
    return format(max(certs, key=lambda c: c.not_valid_before_utc).serial_number, "x")


def _replayed_to_another_node_is_refused(user: AgentUser, a, b) -> None:
    """Each node has its own MIT replay cache; the one they share is in PostgreSQL."""
    make_token = (
        "import base64, gssapi; ctx = gssapi.SecurityContext(name=gssapi.Name('HTTP@" + HOST + "', "
        "gssapi.NameType.hostbased_service), usage='initiate', mech=gssapi.OID.from_int_seq('1.3.6.1.5.5.2')); "
        "print(base64.b64encode(ctx.step()).decode())"
    )
    token = subprocess.run(
        [sys.executable, "-c", make_token], env=user.env(), capture_output=True, text=True, check=True, timeout=60
    ).stdout.strip()
    assert _post_logon(a, token) != 401
    assert _post_logon(b, token) == 401
    assert "replay" in b.log_file.read_text(errors="replace")


def _post_logon(server, token: str) -> int:
    """POST /api/enroll/logon straight to one node (not through the balancer); the HTTP status."""
    body = b"{}"
    head = (
        f"POST /api/enroll/logon HTTP/1.1\r\nHost: {HOST}:{server.port}\r\nAuthorization: Negotiate {token}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    context = ssl.create_default_context(cafile=str(server.root_ca))
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as raw:
        with context.wrap_socket(raw, server_hostname=HOST) as tls:
            tls.sendall(head.encode() + body)
            answer = b"".join(iter(lambda: tls.recv(65536), b""))
    return int(answer.split(b" ", 2)[1])


def _end(balancer: subprocess.Popen) -> None:
    balancer.terminate()
    balancer.wait(timeout=10)
