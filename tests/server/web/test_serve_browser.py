"""The admin pages in Chromium against the real `autoenroll-server serve` (Granian, WhiteNoise), as an admin
meets them after the README's commands: not Django's test server, which serves static files by itself and
hid once that `serve` answered 404 for every stylesheet."""

from __future__ import annotations

import pytest

from autoenroll.testbed.server import SERVER_HOST, start_server

from .test_browser import CHROMIUM, CHROMIUM_ARGS, ON_REAL_SERVE, TIMEOUT_MS, shot

playwright_sync = pytest.importorskip("playwright.sync_api")

pytestmark = ON_REAL_SERVE

PASSWORD = "Admin-Passw0rd-For-Serve"
#: Every list page of the navigation, under serve, and its heading.
PAGES = [
    ("/", "Dashboard"),
    ("/certificates/", "Certificates"),
    ("/certificates/expiring/", "Expiring certificates"),
    ("/persons/", "Persons"),
    ("/log/", "Enrollment log"),
    ("/requests/", "Enrollment requests"),
    ("/settings/autoenrollment/", "Autoenrollment"),
    ("/settings/adservers/", "AD Server"),
    ("/settings/organizations/", "Organizations"),
    ("/settings/domains/", "Domains"),
    ("/customers/", "Customers"),
    ("/administrators/", "Administrators"),
    ("/audit/", "Audit trail"),
]
NAV_DISPLAY = """getComputedStyle(document.querySelector('nav[aria-label="Main"] > ul')).display"""


@pytest.fixture(scope="module")
def live(samba_ad, tmp_path_factory):
    work = tmp_path_factory.mktemp("serve-browser")
    with start_server(work, samba_ad, customer="acme", env={"HOME": str(work)}, workers=1) as server:
        server.cli("admins", "add", "root", "--super", "--password-file", "-", input_text=PASSWORD + "\n")
        yield server


def test_an_admin_signs_in_and_every_page_is_styled(live):
    """Every page of the navigation, each screenshot in test-artifacts; any answer >= 400 (a stylesheet, a
    script, an image) fails the test."""
    args = [*CHROMIUM_ARGS, f"--host-resolver-rules=MAP {SERVER_HOST} 127.0.0.1"]
    base = f"https://{SERVER_HOST}:{live.port}"
    with playwright_sync.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=args, headless=True, timeout=TIMEOUT_MS)
        try:
            context = browser.new_context(ignore_https_errors=True)  # the test bed's root is not the browser's
            context.set_default_timeout(TIMEOUT_MS)
            page = context.new_page()
            failed = []
            page.on("response", lambda r: failed.append(r.url) if r.status >= 400 else None)
            page.goto(f"{base}/login/")
            page.fill("#id_username", "root")
            page.fill("#id_password", PASSWORD)
            page.click("button[type=submit]")
            page.wait_for_url(f"{base}/")
            for number, (path, heading) in enumerate(PAGES):
                page.goto(base + path)
                assert heading.lower() in page.inner_text("h1").lower(), (path, page.inner_text("h1"))
                # The stylesheet applied: the navigation is laid out by style.css, not the browser's defaults.
                display = page.evaluate(NAV_DISPLAY)
                assert display == "flex", (path, display)
                name = path.strip("/").replace("settings/", "").replace("/", "-") or "dashboard"
                shot(page, f"9{number:02d}-serve-{name}")
            assert not failed, failed
        finally:
            browser.close()
