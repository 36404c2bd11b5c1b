"""A web page on another site cannot enroll on a user's behalf (issue 14), tried with a real browser.

A page served from another origin, opened in Chromium that is allowed to send Kerberos to the server
(`--auth-server-allowlist`, as intranet browsers are), posts an HTML form (`enctype="text/plain"`, the
shape that smuggles a JSON body) and makes `fetch()` calls, with no-cors and with JSON, to the real
`autoenroll-server serve`. None yields a certificate; the form and the no-cors fetch are refused by
the enrollment boundary (recorded in the enrollment log: 29 for the content type, 27 for the origin),
and the JSON fetch never leaves the browser (the CORS preflight finds no permission).

This Debian Chromium never sends the Kerberos ticket itself (its net log shows
AUTH_HANDLER_CREATE_RESULT -339, ERR_UNSUPPORTED_AUTH_SCHEME, for "negotiate"), so the test shows the
boundary's refusals, which come before authentication is considered; tests/server/enrollment/
test_hostile.py sends the same shapes with real Kerberos tokens.
"""

from __future__ import annotations

import http.server
import json
import os
import threading

import pytest

from autoenroll.testbed.server import SERVER_HOST, start_server
from enroll_helpers import make_csr

from .test_browser import CHROMIUM, CHROMIUM_ARGS, ON_REAL_SERVE, TIMEOUT_MS

playwright_sync = pytest.importorskip("playwright.sync_api")

pytestmark = ON_REAL_SERVE


def _attack_page(target: str, csr: str) -> str:
    body = json.dumps({"customeruri": "acme", "csr": csr})
    name, _, value = body.partition(":")  # text/plain form encoding sends name=value: a JSON body again
    return f"""<!doctype html><html><body>
<form id="f" method="post" action="{target}/api/enroll/logon" enctype="text/plain" target="sink">
  <input type="hidden" name='{name}' value='{value.replace("'", "&#39;")}'>
</form>
<iframe name="sink"></iframe>
<script>
window.results = {{}};
async function attack() {{
  const body = {json.dumps(body)};
  try {{
    await fetch("{target}/api/enroll/logon", {{method: "POST", mode: "no-cors", credentials: "include",
      headers: {{"Content-Type": "text/plain"}}, body}});
    window.results.nocors = "sent";
  }} catch (e) {{ window.results.nocors = "failed: " + e; }}
  try {{
    const r = await fetch("{target}/api/enroll/logon", {{method: "POST", credentials: "include",
      headers: {{"Content-Type": "application/json"}}, body}});
    window.results.json = "answered " + r.status;
  }} catch (e) {{ window.results.json = "blocked: " + e; }}
  document.getElementById("f").submit();
  window.results.form = "submitted";
}}
</script></body></html>"""


@pytest.fixture(scope="module")
def live(samba_ad, tmp_path_factory):
    work = tmp_path_factory.mktemp("cross-site")
    with start_server(work, samba_ad, customer="acme", env={"HOME": str(work)}, workers=1) as server:
        yield server


@pytest.fixture
def attacker_site(live):
    """The other site: a plain HTTP server on another port serving the attack page."""
    _, csr = make_csr("user1", mail="user1@test.com")
    page = _attack_page(f"https://{SERVER_HOST}:{live.port}", csr).encode()

    class Page(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.end_headers()
            self.wfile.write(page)

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Page)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://attacker.example:{httpd.server_address[1]}/"
    httpd.shutdown()


def test_a_page_of_another_site_gets_no_certificate(live, attacker_site, samba_ad):
    args = [
        *CHROMIUM_ARGS,
        f"--auth-server-allowlist={SERVER_HOST}",
        f"--host-resolver-rules=MAP {SERVER_HOST} 127.0.0.1, MAP attacker.example 127.0.0.1",
        "--ignore-certificate-errors",  # the server's TLS is not what this test is about
    ]
    env = {**os.environ, "KRB5_CONFIG": str(samba_ad.krb5_conf), "KRB5CCNAME": samba_ad.kinit("user1")}
    before = _refusals(live)
    with playwright_sync.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=args, env=env, headless=True, timeout=TIMEOUT_MS)
        try:
            page = browser.new_page(ignore_https_errors=True)
            page.goto(attacker_site)
            page.evaluate("attack()")
            page.wait_for_timeout(2000)  # the form's post lands in the iframe
            results = page.evaluate("window.results")
        finally:
            browser.close()
    assert results["nocors"] == "sent" and results["form"] == "submitted", results
    assert results["json"].startswith("blocked"), results  # the preflight got no CORS permission
    issued = live.shell(
        "from autoenroll.server.certificates.models import Certificate; "
        "print(Certificate.objects.filter(profile='smime').count())"
    )
    assert issued == "0"
    refused = _refusals(live)[len(before) :]
    assert len(refused) == 2 and {code for code, _ in refused} <= {27, 29}, refused
    assert all(address == "127.0.0.1" for _, address in refused), refused


def _refusals(server) -> list[tuple[int, str]]:
    """(guide error, client address) of the refusals in the enrollment log, oldest first."""
    rows = server.shell(
        "import json; from autoenroll.server.enrollment.models import EnrollmentEvent as E; "
        "print(json.dumps(list(E.objects.filter(outcome='error', error_code__in=[27, 29])"
        ".order_by('pk').values_list('error_code', 'remote_addr'))))"
    )
    return [tuple(row) for row in json.loads(rows)]
