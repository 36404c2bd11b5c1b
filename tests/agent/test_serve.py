"""What an admin's browser gets from the real `autoenroll-server serve` (as the README starts it), not from
Django's test server: the sign-in page and its stylesheet, over HTTPS."""

from __future__ import annotations

import http.client
import os
import re
import signal
import socket
import ssl
import time
import urllib.parse
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

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


def test_the_api_documentation_needs_no_network_beyond_the_server(server):
    """/api/docs loads Swagger UI from the server itself: on an admin network without the internet a CDN's
    copy would leave the page blank."""
    status, _, page = get(server, "/api/docs")
    assert status == 200 and b"cdn." not in page
    for asset in re.findall(rb'(?:href|src)="(/static/ninja/[^"]+)"', page):
        assert get(server, asset.decode())[0] == 200, asset
    assert b"/static/ninja/swagger-ui-bundle.js" in page


def test_two_servers_on_one_host_stop_independently(samba_ad, tmp_path):
    """Two data directories, two `serve` on one host: stopping one leaves the other serving."""
    from autoenroll.testbed.server import start_server

    with start_server(tmp_path / "a", samba_ad, customer="acme", env={"HOME": str(tmp_path)}) as a:
        with start_server(tmp_path / "b", samba_ad, customer="acme", env={"HOME": str(tmp_path)}) as b:
            assert get(b, "/static/web/style.css")[0] == 200
        assert get(a, "/static/web/style.css")[0] == 200


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3])
def test_tls_1_2_and_1_3_are_served(server, version):
    """Windows 10's Schannel (the MS-XCEP/WSTEP client) has no TLS 1.3; HTTP/1.1 only, for Negotiate."""
    context = ssl.create_default_context(cafile=str(server.root_ca))
    context.minimum_version = context.maximum_version = version
    context.set_alpn_protocols(["h2", "http/1.1"])
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as raw:
        with context.wrap_socket(raw, server_hostname=SERVER_HOST) as tls:
            assert tls.version() == {ssl.TLSVersion.TLSv1_2: "TLSv1.2", ssl.TLSVersion.TLSv1_3: "TLSv1.3"}[version]
            assert tls.selected_alpn_protocol() in (None, "http/1.1")


def test_each_request_is_in_the_access_log(server):
    marker = f"/static/web/access-log-{time.monotonic_ns()}.css"
    assert get(server, marker)[0] == 404
    for _ in range(50):
        lines = [line for line in server.log_file.read_text(errors="replace").splitlines() if "access-log-" in line]
        if any(marker in line for line in lines):
            break
        time.sleep(0.1)
    line = next(line for line in lines if marker in line)
    assert line.startswith("127.0.0.1 ") and f'"GET {marker} HTTP/1.1" 404 ' in line


def test_the_watchers_lines_in_the_server_log_carry_the_time(server):
    """What the CRL, OCSP-ahead and audit watchers did is in the log as every other line there: when, how
    grave, from where (they wrote bare lines to standard output)."""
    stamp = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} INFO autoenroll\.watch: "
    wanted = [
        stamp + r"every 30 s: CRL refresh, signing OCSP responses ahead$",
        stamp + r"every 60 s: sealing the audit trail$",
        stamp + r"\d+ events copied, \d+ records chained, checkpoint at #\d+$",
    ]
    for _ in range(300):  # the watchers start beside the listeners
        lines = server.log_file.read_text(errors="replace").splitlines()
        if all(any(re.match(w, line) for line in lines) for w in wanted):
            break
        time.sleep(0.1)
    for w in wanted:
        assert any(re.match(w, line) for line in lines), (w, [line for line in lines if "watch" in line])


def test_prometheus_scrapes_the_metrics_of_every_worker(server, make_user, samba_ad):
    """/metrics (issue 16) from the real `serve` (two workers, multiprocess files): an agent's
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


def test_a_body_too_large_is_refused_before_it_is_read(server):
    """3 MB announced to the enrollment API of the real server: 413 and the guide's error 29 at once."""
    context = ssl.create_default_context(cafile=str(server.root_ca))
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as raw:
        with context.wrap_socket(raw, server_hostname=SERVER_HOST) as tls:
            tls.sendall(
                b"POST /api/enroll/logon HTTP/1.1\r\nHost: " + SERVER_HOST.encode() + b"\r\n"
                b"Content-Type: application/json\r\nContent-Length: 3000000\r\n\r\n{"
            )  # the rest of the body is never sent: the answer must not wait for it
            answer = b""
            while not answer.rstrip().endswith(b"}") and (chunk := tls.recv(65536)):  # head and body may part
                answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413"), head
    assert b'"code": 29' in body or b'"code":29' in body, body
    assert get(server, "/static/web/style.css")[0] == 200


def _dribbling(connect, request: bytes, answered, count: int = 40) -> None:
    """Many more clients than a listener has threads (the test bed: 2 workers x 4) each declare a body and
    send it a byte every half second: `answered()` must still be true at once, three times."""
    import threading

    done = threading.Event()

    def dribble() -> None:
        with connect() as conn:
            conn.sendall(request)
            for _ in range(40):  # at most 20 s
                if done.wait(0.5):
                    return
                conn.sendall(b" ")

    clients = [threading.Thread(target=dribble, daemon=True) for _ in range(count)]
    for client in clients:
        client.start()
    try:
        time.sleep(2)
        for _ in range(3):
            started = time.monotonic()
            assert answered()
            assert time.monotonic() - started < 5
    finally:
        done.set()
        for client in clients:
            client.join(timeout=10)


def test_clients_that_send_their_body_slowly_hold_no_thread(server):
    """The HTTPS site. (Under Granian's WSGI interface each such client held a thread while its body came,
    and these stopped the server.)"""
    context = ssl.create_default_context(cafile=str(server.root_ca))

    def connect():
        raw = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        return context.wrap_socket(raw, server_hostname=SERVER_HOST)

    request = (
        b"POST /api/enroll/logon/status HTTP/1.1\r\nHost: " + SERVER_HOST.encode() + b"\r\n"
        b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n"
    )
    _dribbling(connect, request, lambda: get(server, "/healthz")[0] == 200)


def test_ocsp_clients_that_send_their_body_slowly_hold_no_thread(server):
    """The plain-HTTP publication listener: OCSP requests come as POST bodies, from any relying party."""

    def connect():
        return socket.create_connection(("127.0.0.1", server.publication_port), timeout=10)

    def ca_certificate_served() -> bool:
        conn = http.client.HTTPConnection("127.0.0.1", server.publication_port, timeout=30)
        try:
            conn.request("GET", "/ca/autoenroll-smime.crt")
            response = conn.getresponse()
            return response.status == 200 and response.read().startswith(b"0")
        finally:
            conn.close()

    request = (
        b"POST /ocsp/autoenroll-smime HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Content-Type: application/ocsp-request\r\nContent-Length: 100\r\n\r\n"
    )
    _dribbling(connect, request, ca_certificate_served)


def test_a_body_not_received_in_time_is_answered_408(samba_ad, tmp_path):
    from autoenroll.testbed.server import start_server

    env = {"HOME": str(tmp_path), "AUTOENROLL_REQUEST_BODY_SECONDS": "2"}
    with start_server(tmp_path / "s", samba_ad, customer="acme", env=env) as server:
        context = ssl.create_default_context(cafile=str(server.root_ca))
        with socket.create_connection(("127.0.0.1", server.port), timeout=15) as raw:
            with context.wrap_socket(raw, server_hostname=SERVER_HOST) as tls:
                started = time.monotonic()
                tls.sendall(
                    b"POST /api/enroll/logon HTTP/1.1\r\nHost: " + SERVER_HOST.encode() + b"\r\n"
                    b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{"
                )
                answer = tls.recv(65536)
        assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
        assert 1.5 < time.monotonic() - started < 10


def test_a_header_with_an_underscore_is_not_read_as_one_with_a_hyphen(server):
    """`Sec_Fetch_Site: cross-site` would have read as Sec-Fetch-Site (403); dropped, the call goes on to
    authentication (401)."""
    context = ssl.create_default_context(cafile=str(server.root_ca))
    conn = http.client.HTTPSConnection(SERVER_HOST, server.port, context=context, timeout=30)
    conn._create_connection = lambda addr, timeout=None, source_address=None: socket.create_connection(
        ("127.0.0.1", server.port), timeout=timeout
    )
    try:
        headers = {"Content-Type": "application/json", "Sec_Fetch_Site": "cross-site"}
        conn.request("POST", "/api/enroll/logon", body=b"{}", headers=headers)
        response = conn.getresponse()
        response.read()
    finally:
        conn.close()
    assert response.status == 401


def _workers(server) -> set[int]:
    """PIDs of the HTTPS server's worker processes (Granian names them after `serve`)."""
    children = Path(f"/proc/{server.process.pid}/task/{server.process.pid}/children").read_text().split()
    return {int(pid) for pid in children if _cmdline(int(pid)).startswith("autoenroll-server worker-")}


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
    except OSError:
        return ""


def test_a_worker_that_dies_is_replaced(samba_ad, tmp_path):
    """Granian respawns a worker that dies, except within 5.5 s of its start (a crash loop: `serve` exits
    non-zero, for systemd's Restart=on-failure)."""
    from autoenroll.testbed.server import start_server

    with start_server(tmp_path / "s", samba_ad, customer="acme", env={"HOME": str(tmp_path)}) as server:
        workers = _workers(server)
        assert len(workers) == 2, workers
        time.sleep(6)  # past the crash-loop window
        victim = min(workers)
        os.kill(victim, signal.SIGKILL)
        deadline = time.monotonic() + 45  # Granian notices within seconds; a loaded CI machine took over 20
        while time.monotonic() < deadline and (len(_workers(server)) < 2 or victim in _workers(server)):
            time.sleep(0.2)
        assert len(_workers(server)) == 2 and victim not in _workers(server)
        assert all(get(server, "/login/?next=/")[0] == 200 for _ in range(4))
        assert "Unexpected exit from worker" in server.log_file.read_text(errors="replace")


def test_http_variables_of_the_environment_are_not_request_headers(samba_ad, tmp_path):
    """Granian starts each request's WSGI environ from the process environment: an `HTTP_ORIGIN` there
    would have made every enrollment call look cross-site (403). `serve` drops such variables first."""
    from autoenroll.testbed.server import start_server

    env = {"HOME": str(tmp_path), "HTTP_ORIGIN": "https://evil.example"}
    with start_server(tmp_path / "s", samba_ad, customer="acme", env=env) as server:
        context = ssl.create_default_context(cafile=str(server.root_ca))
        conn = http.client.HTTPSConnection(SERVER_HOST, server.port, context=context, timeout=30)
        conn._create_connection = lambda addr, timeout=None, source_address=None: socket.create_connection(
            ("127.0.0.1", server.port), timeout=timeout
        )
        try:
            conn.request("POST", "/api/enroll/logon", body=b"{}", headers={"Content-Type": "application/json"})
            response = conn.getresponse()
            response.read()
        finally:
            conn.close()
        assert response.status == 401 and response.getheader("WWW-Authenticate") == "Negotiate"


_TOKEN = st.text(
    st.sampled_from("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"), min_size=1
)
_VALUE = st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF, blacklist_characters="\x7f"), max_size=80)
_PATHS = [
    "/", "/healthz", "/metrics", "/login/", "/static/web/style.css", "/certificates/", "/api/enroll/logon",
    "/api/enroll/logon/status", "/api/enroll/sync", "/api/enroll/enroll", "/api/enroll/requests/x", "/api/customers",
    "/api/certificates", "/api/docs", "/ocsp/autoenroll-smime/", "/crl/autoenroll-smime.crl",
    "/ADPolicyProvider_CEP_Kerberos/service.svc/CEP",
]  # fmt: skip


@st.composite
def _raw_requests(draw) -> bytes:
    method = draw(st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD", "TRACE", "FOO"]))
    path = draw(st.sampled_from(_PATHS)) + draw(
        st.one_of(
            st.just(""),
            st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E, blacklist_characters="#"), max_size=40),
            st.binary(max_size=30).map(lambda b: urllib.parse.quote(b, safe="/")),
        )
    )
    headers = draw(
        st.lists(
            st.one_of(
                st.tuples(_TOKEN, _VALUE),
                st.tuples(
                    st.sampled_from(["Content-Type", "Authorization", "Cookie", "Origin", "Sec-Fetch-Site", "Accept"]),
                    st.one_of(_VALUE, st.sampled_from(["application/json", "Negotiate YIIB", "Negotiate", "null"])),
                ),
            ),
            max_size=5,
        )
    )
    body = draw(st.one_of(st.binary(max_size=300), st.sampled_from([b"{}", b"[]", b'{"csr": 1}', b"null"])))
    head = f"{method} {path} HTTP/1.1\r\nHost: {SERVER_HOST}\r\n" + "".join(f"{n}: {v}\r\n" for n, v in headers)
    length = f"Content-Length: {len(body)}\r\n" if body or method in ("POST", "PUT", "PATCH") else ""
    return (head + length + "Connection: close\r\n\r\n").encode("latin-1") + body


@settings(
    max_examples=int(os.environ.get("AUTOENROLL_HYPOTHESIS_EXAMPLES", "200")) // 2,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(request=_raw_requests())
def test_no_request_gets_a_server_error_from_the_real_serve(server, request):
    """Whatever method, path, headers and body arrive over TLS, the answer is not a 5xx (HTTP's own refusals,
    400/404/405/413, are fine), through Granian, the RSGI adapter and Django as `serve` runs them."""
    context = ssl.create_default_context(cafile=str(server.root_ca))
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as raw:
        with context.wrap_socket(raw, server_hostname=SERVER_HOST) as tls:
            tls.sendall(request)
            answer = b""
            while len(answer) < 12 and (chunk := tls.recv(65536)):
                answer += chunk
    status = int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/1.1 ") else 0
    assert 100 <= status < 500, (request[:300], answer[:300])
