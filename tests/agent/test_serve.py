"""What an admin's browser gets from the real `autoenroll-server serve` (as the README starts it), not from
Django's test server: the sign-in page and its stylesheet, over HTTPS."""

from __future__ import annotations

import http.client
import socket
import ssl
import time

from autoenroll.testbed.server import SERVER_HOST


def get(server, path: str, headers: dict | None = None) -> tuple[int, dict, bytes]:
    context = ssl.create_default_context(cafile=str(server.root_ca))
    conn = http.client.HTTPSConnection(SERVER_HOST, server.port, context=context, timeout=30)
    conn._create_connection = lambda addr, timeout=None, source_address=None: socket.create_connection(
        ("127.0.0.1", server.port), timeout=timeout
    )
    try:
        conn.request("GET", path, headers=headers or {})
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        conn.close()


def test_the_admin_pages_are_styled_under_serve(server):
    status, _, page = get(server, "/login/?next=/")
    assert status == 200, page[:500]
    assert b"/static/web/style.css" in page
    status, headers, css = get(server, "/static/web/style.css")
    assert status == 200 and headers["content-type"].startswith("text/css")
    assert b"{" in css and len(css) > 100
    assert get(server, "/static/web/nothing-here.css")[0] == 404


def test_two_servers_on_one_host_keep_their_own_control_sockets(samba_ad, tmp_path):
    """gunicorn's control socket defaults to one path per user, which each `serve` deleted at start and
    stop; each data directory now has its own."""
    from autoenroll.testbed.server import start_server

    with start_server(tmp_path / "a", samba_ad, customer="acme", env={"HOME": str(tmp_path)}) as a:
        with start_server(tmp_path / "b", samba_ad, customer="acme", env={"HOME": str(tmp_path)}) as b:
            sockets = [a.data_dir / "gunicorn.ctl", b.data_dir / "gunicorn.ctl"]
            for _ in range(50):
                if all(s.exists() for s in sockets):
                    break
                time.sleep(0.1)
            assert all(s.is_socket() for s in sockets)
        assert (a.data_dir / "gunicorn.ctl").is_socket()  # b stopped: a's socket stays
        assert get(a, "/static/web/style.css")[0] == 200


def test_prometheus_scrapes_the_metrics_of_every_worker(server, make_user, samba_ad):
    """/metrics (issue 16) from the real `serve` (two gunicorn workers, multiprocess files): an agent's
    logon counted and timed, the certificate issued, the stored state, the AD server answering."""
    from prometheus_client.parser import text_string_to_metric_families

    samba_ad.add_user("metrics1", "Passw0rd!Metrics1", mail="metrics1@test.com")
    user = make_user("metrics1")
    assert user.run("run").returncode == 0, user.log_text()[-2000:]
    token = server.env["AUTOENROLL_METRICS_TOKEN"]
    assert get(server, "/metrics")[0] == 401
    assert get(server, "/metrics", {"Authorization": "Bearer wrong"})[0] == 401
    seen = {}
    for _ in range(4):  # a scrape lands on either worker: each sums every process's files
        status, headers, body = get(server, "/metrics", {"Authorization": f"Bearer {token}"})
        assert status == 200 and headers["content-type"].startswith("text/plain"), body[:300]
        for family in text_string_to_metric_families(body.decode()):
            for sample in family.samples:
                seen[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value

    def value(name: str, **labels) -> float:
        return seen.get((name, tuple(sorted(labels.items()))), 0)

    assert value("autoenroll_enrollment_steps_total", step="enroll", outcome="success", error="") >= 1
    assert value("autoenroll_certificates_issued_total", profile="smime") >= 1
    assert value("autoenroll_enrollment_call_seconds_count", call="logon") >= 1
    assert value("autoenroll_certificates", customer=server.customer, state="valid") >= 1
    up = {dict(labels)["server"]: v for (name, labels), v in seen.items() if name == "autoenroll_ad_server_up"}
    assert list(up.values()) == [1] and next(iter(up)).startswith(f"{samba_ad.ip}:"), up
    cas = {dict(labels)["role"] for name, labels in seen if name == "autoenroll_ca_not_after_seconds"}
    assert cas == {"root", "issuing"}


def test_the_audit_trail_of_a_real_logon_verifies(server, make_user, samba_ad):
    """serve runs the sealer; an agent's logon ends up chained, signed and intact."""
    samba_ad.add_user("audit1", "Passw0rd!Audit1", mail="audit1@test.com")
    user = make_user("audit1")
    assert user.run("run").returncode == 0, user.log_text()[-2000:]
    for _ in range(30):
        if "another server" not in server.cli("audit", "seal"):
            break
        time.sleep(1)
    printed = server.cli("audit", "verify")
    assert printed.startswith("intact:") and " 0 records" not in printed, printed
    exported = server.cli("audit", "export").splitlines()
    assert any('"subject":"enrollment event' in line and "audit1@TEST.COM" in line for line in exported)
