"""PostgreSQL goes away under a running `serve` (a failover, a restart for an upgrade) and comes back. While it
is away a logon ends in the guide's error 30 (HTTP 503, one line in the server log, no traceback) and the
agent keeps what it had, and /healthz answers 503 so that a load balancer sends the agents elsewhere; once
it is back, the same server processes serve the next logon, without a restart. Its own PostgreSQL cluster:
stopping the PostgreSQL phase's would stop every other test. The connection lost in the middle of an
issuance is the same: 30 with 503, nothing half-done, and the next logon converges."""

from __future__ import annotations

import json
import ssl
import threading
import time
import urllib.error
import urllib.request
from urllib.parse import urlsplit

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509 import ocsp
from cryptography.x509.oid import AuthorityInformationAccessOID

from autoenroll.server.ces.xcep import CEP_PATH
from autoenroll.testbed.server import SERVER_HOST, ServerProcess, start_server
from databases import ON_POSTGRESQL, Cluster, own_databases

from .conftest import CUSTOMER, AgentUser, issuer_common_name

pytestmark = [pytest.mark.samba, pytest.mark.skipif(not ON_POSTGRESQL, reason="runs in the PostgreSQL phase")]


@pytest.fixture
def cluster():
    own = Cluster()
    own.start()
    yield own
    own.remove()


def _ask(server: ServerProcess, path: str, body: bytes | None = None, **headers: str) -> tuple[int, bytes]:
    context = ssl.create_default_context(cafile=str(server.root_ca))
    context.check_hostname = False  # 127.0.0.1, the server's certificate names ccm.test.com
    url = f"https://127.0.0.1:{server.port}/{path}"
    request = urllib.request.Request(url, data=body, headers={"Host": SERVER_HOST, **headers})
    try:
        with urllib.request.urlopen(request, context=context, timeout=30) as answer:  # noqa: S310 - https, loopback
            return answer.status, answer.read()
    except urllib.error.HTTPError as answer:
        return answer.code, answer.read()


def _ocsp_status(server: ServerProcess, cert_file) -> ocsp.OCSPResponseStatus:
    """What the publication listener answers to an OCSP request for the certificate, at its AIA's path."""
    leaf = x509.load_pem_x509_certificate(cert_file.read_bytes())
    issuer = x509.load_pem_x509_certificate(server.issuing_ca.read_bytes())
    der = ocsp.OCSPRequestBuilder().add_certificate(leaf, issuer, hashes.SHA256()).build().public_bytes(Encoding.DER)
    aia = leaf.extensions.get_extension_for_class(x509.AuthorityInformationAccess).value
    url = next(d.access_location.value for d in aia if d.access_method == AuthorityInformationAccessOID.OCSP)
    request = urllib.request.Request(
        f"http://127.0.0.1:{server.publication_port}{urlsplit(url).path}",
        data=der,
        headers={"Content-Type": "application/ocsp-request"},
    )
    with urllib.request.urlopen(request, timeout=30) as answer:  # noqa: S310 - http, loopback
        return ocsp.load_der_ocsp_response(answer.read()).response_status


def _published_paths(cert_file) -> list[str]:
    """The paths of the certificate's CRL distribution point and of its issuer's certificate (AIA)."""
    leaf = x509.load_pem_x509_certificate(cert_file.read_bytes())
    cdp = leaf.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
    aia = leaf.extensions.get_extension_for_class(x509.AuthorityInformationAccess).value
    issuer = next(d for d in aia if d.access_method == AuthorityInformationAccessOID.CA_ISSUERS)
    return [urlsplit(cdp[0].full_name[0].value).path, urlsplit(issuer.access_location.value).path]


def _health(server: ServerProcess) -> tuple[int, dict]:
    status, body = _ask(server, "healthz")
    return status, json.loads(body)


def _enrolled(sam: str, tmp_path, server: ServerProcess, samba_ad) -> tuple[AgentUser, list]:
    """A new AD user whose agent enrolled, and the certificate files it holds."""
    samba_ad.add_user(sam, f"Passw0rd!{sam}", mail=f"{sam}@test.com")
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    user = AgentUser(sam, home, server, samba_ad, issuer_common_name(server))
    user.kinit()
    user.write_config()
    first = user.run("run")
    assert first.returncode == 0, first.stderr
    return user, sorted(user.folder.glob("*.cert.pem"))


def test_a_logon_while_postgresql_is_away_fails_with_a_number_and_the_next_one_after_it_returns_succeeds(
    samba_ad, tmp_path, cluster
):
    env = {"HOME": str(tmp_path), "AUTOENROLL_DATABASE_URL": cluster.url}
    with start_server(tmp_path / "server", samba_ad, customer=CUSTOMER, env=env, workers=1) as server:
        user, held = _enrolled("outage1", tmp_path, server, samba_ad)
        assert _health(server)[0] == 200

        cluster.stop()
        logged = len(server.log_file.read_text())
        away = user.run("run", "--force")
        assert away.returncode == 30 and "(HTTP 503)" in away.stderr, away.stderr  # and Retry-After
        assert "Traceback" not in away.stderr
        log = server.log_file.read_text()[logged:]
        assert "error 30: the database cannot be used: connection failed" in log
        assert "Traceback" not in log  # one line per call, not three tracebacks: no bug, the database is away
        assert sorted(user.folder.glob("*.cert.pem")) == held  # nothing half-done on the desktop
        assert _health(server) == (503, {"status": "unavailable", "reason": "the database does not answer"})
        soap = b'<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope"/>'  # Windows' policy request
        status, fault = _ask(server, CEP_PATH, soap, **{"Content-Type": "application/soap+xml; charset=utf-8"})
        assert status == 500 and b"Error 30: Failed to enroll certificate.." in fault  # a SOAP fault, not HTML
        assert _ocsp_status(server, held[0]) == ocsp.OCSPResponseStatus.TRY_LATER  # RFC 6960: ask again later
        for path in _published_paths(held[0]):  # the CRL and the CA certificate the certificate names
            with pytest.raises(urllib.error.HTTPError) as unavailable:
                urllib.request.urlopen(f"http://127.0.0.1:{server.publication_port}{path}", timeout=30)  # noqa: S310
            assert (unavailable.value.code, unavailable.value.headers["Retry-After"]) == (503, "60"), path
        assert "Traceback" not in server.log_file.read_text()[logged:]

        cluster.start()
        back = user.run("run", "--force")
        assert back.returncode == 0, back.stderr
        renewed = sorted(user.folder.glob("*.cert.pem"))
        assert len(renewed) == 1 and renewed != held  # the new certificate replaced the one held
        assert _health(server)[0] == 200
        assert server.process.poll() is None  # the same processes


def test_a_logon_whose_connection_is_lost_while_it_issues_is_a_503_and_leaves_nothing_half_done(samba_ad, tmp_path):
    """The logon waits for its person's row lock (held here, as a concurrent logon of the same person
    would), and PostgreSQL ends its connection meanwhile (a failover, an admin's pg_terminate_backend):
    the guide's 30 with HTTP 503, the transaction rolled back, the agent keeps its certificate."""
    import psycopg

    with (
        own_databases("midway") as [env],
        start_server(tmp_path / "server", samba_ad, customer=CUSTOMER, env=env, workers=1) as server,
    ):
        user, held = _enrolled("midway1", tmp_path, server, samba_ad)
        url = env["AUTOENROLL_DATABASE_URL"]
        count = "SELECT count(*) FROM certificates_certificate WHERE status = 'issued'"
        with psycopg.connect(url) as holder, psycopg.connect(url, autocommit=True) as admin:
            issued = admin.execute(count).fetchone()[0]
            holder.execute("SELECT id FROM directory_person WHERE principal LIKE 'midway1@%%' FOR UPDATE")
            result = {}
            logon = threading.Thread(target=lambda: result.update(run=user.run("run", "--force")))
            logon.start()
            waiting = "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
            deadline = time.monotonic() + 60
            while not (pids := [pid for (pid,) in admin.execute(waiting)]) and time.monotonic() < deadline:
                time.sleep(0.05)
            assert len(pids) == 1, "the logon never waited for the person's lock"
            admin.execute("SELECT pg_terminate_backend(%s)", pids)
            logon.join(120)
            holder.rollback()
            lost = result["run"]
            assert lost.returncode == 30 and "(HTTP 503)" in lost.stderr, lost.stderr
            assert admin.execute(count).fetchone()[0] == issued  # nothing signed was recorded half-way
        assert sorted(user.folder.glob("*.cert.pem")) == held
        log = server.log_file.read_text()
        assert "Traceback" not in log

        again = user.run("run", "--force")
        assert again.returncode == 0, again.stderr
        renewed = sorted(user.folder.glob("*.cert.pem"))
        assert len(renewed) == 1 and renewed != held
