"""The admin pages in a real browser (headless Chromium, Playwright sync API) against the live test server.

Every wait is bounded (default timeouts below); each page visited is saved as a screenshot under
test-artifacts/screenshots/, and its path printed.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest

from autoenroll.server.certificates.models import Certificate
from autoenroll.server.directory.models import ADServer
from autoenroll.server.kerberos.models import KerberosRealm
from autoenroll.server.tenants.models import Organization
from autoenroll.testbed import samba
from checks import ktutil_keytab
from databases import ON_POSTGRESQL

from .conftest import AD_PASSWORD, SCREENSHOTS_TAKEN, USER_PASSWORD, make_tenant, make_user

playwright_sync = pytest.importorskip("playwright.sync_api")
expect = playwright_sync.expect

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOTS = Path(__file__).resolve().parents[3] / "test-artifacts" / "screenshots"
TIMEOUT_MS = 15_000

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(not shutil.which(CHROMIUM), reason="Debian chromium is not installed"),
]
#: The marks of a browser test against a real `serve` of its own (with the test AD): run once, in the
#: SQLite phase of scripts/test.
ON_REAL_SERVE = [
    pytest.mark.samba,
    pytest.mark.skipif(not shutil.which(CHROMIUM), reason="Debian chromium is not installed"),
    pytest.mark.skipif(ON_POSTGRESQL, reason="runs against a real server with its own database, once (SQLite phase)"),
]


@pytest.fixture(scope="module")
def browser():
    # Playwright's sync API runs an event loop in this thread; the ORM calls of the test itself are still
    # synchronous, so Django's async-safety guard is lifted for this module only.
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with playwright_sync.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True, timeout=TIMEOUT_MS)
        yield browser
        browser.close()
    os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)


@pytest.fixture
def page(browser, live_server, settings):
    # The live server speaks plain HTTP; production cookies are Secure-only.
    settings.SESSION_COOKIE_SECURE = False
    settings.CSRF_COOKIE_SECURE = False
    context = browser.new_context(base_url=live_server.url, viewport={"width": 1280, "height": 900})
    context.set_default_timeout(TIMEOUT_MS)
    context.set_default_navigation_timeout(TIMEOUT_MS)
    page = context.new_page()
    yield page
    context.close()


def shot(page, name: str) -> Path:
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True, timeout=TIMEOUT_MS)
    SCREENSHOTS_TAKEN.append(path)  # listed at the end of the run (conftest.pytest_terminal_summary)
    return path


def sign_in(page, username: str) -> None:
    page.goto("/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(USER_PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Dashboard")).to_be_visible()


def test_sign_in(page, db):
    make_user("root-admin", superuser=True)
    page.goto("/")
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    shot(page, "01-sign-in")
    page.get_by_label("Username").fill("root-admin")
    page.get_by_label("Password").fill("wrong password")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_contain_text("Please enter a correct username and password")
    shot(page, "02-sign-in-failed")
    page.get_by_label("Password").fill(USER_PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Dashboard")).to_be_visible()
    expect(page.get_by_text("No certificate was issued in the last 30 days.")).to_be_visible()  # not a blank chart
    expect(page.get_by_role("list", name="Totals")).to_contain_text("0 Persons")
    shot(page, "03-dashboard")


def test_adding_a_realm(page, db, tmp_path):
    keytab = ktutil_keytab(tmp_path / "ccm.keytab", "HTTP/ccm.test.com@TEST.COM")
    make_user("root-admin", superuser=True)
    sign_in(page, "root-admin")
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Autoenrollment").click()
    expect(page.get_by_role("heading", name="Settings / Autoenrollment")).to_be_visible()
    page.get_by_role("link", name="Add", exact=True).click()
    page.get_by_label("Domain Name").fill("test.com")
    page.get_by_label("Keytab File Name").fill(str(keytab))
    page.get_by_label("Service Principal Name").fill("HTTP/ccm.test.com@TEST.COM")
    shot(page, "10-realm-add")
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_role("cell", name="HTTP/ccm.test.com@TEST.COM")).to_be_visible()
    shot(page, "11-realm-list")
    page.get_by_role("link", name="Check keytab").click()
    expect(page.get_by_role("status")).to_contain_text("holds a key for HTTP/ccm.test.com@TEST.COM")
    shot(page, "11a-realm-keytab-check")
    page.get_by_role("link", name="Back to Settings / Autoenrollment").click()
    assert KerberosRealm.objects.get(domain="test.com").keytab_path == str(keytab)
    page.get_by_role("link", name="View login.conf").click()
    expect(page.locator("pre")).to_contain_text('principal="HTTP/ccm.test.com@TEST.COM";')
    shot(page, "12-login-conf")
    page.goto("/settings/autoenrollment/import/")
    shot(page, "13-login-conf-import")


@pytest.fixture
def acme_admin(acme):
    return make_user("acme-admin", customer=acme)


def test_adding_an_ad_server(page, acme_admin):
    sign_in(page, "acme-admin")
    page.get_by_role("navigation", name="Main").get_by_role("link", name="AD Server").click()
    page.get_by_role("link", name="Add", exact=True).click()
    page.get_by_label(re.compile(r"^Domain\*?$")).fill("test.com")
    page.get_by_label("AD Server Address").fill("dc1.test.com")
    page.get_by_label("AD Server Port").fill("636")
    page.get_by_label("Set as Default").check()
    page.get_by_label("Users Base DN").fill("CN=Users,DC=test,DC=com")
    page.get_by_label("Login User DN").fill("CN=ccm,CN=Users,DC=test,DC=com")
    page.get_by_label("Login Password").fill(AD_PASSWORD)
    page.get_by_label("Use SSL").check()
    shot(page, "20-adserver-add")
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_role("cell", name="dc1.test.com")).to_be_visible()
    shot(page, "21-adserver-list")
    server = ADServer.objects.get(address="dc1.test.com")
    assert server.login_password == AD_PASSWORD and server.is_default
    page.get_by_role("link", name="Edit").first.click()
    expect(page.get_by_label("Login Password")).to_have_value("")
    assert AD_PASSWORD not in page.content()
    shot(page, "22-adserver-edit")


def test_csv_import_with_one_bad_row(page, acme_admin, tmp_path):
    csv = tmp_path / "servers.csv"
    csv.write_text(
        "Domain,AD Server Address,AD Server Port,Set as Default,Users Base DN,Login User DN,Login Password,Use SSL\n"
        'test.com,dc1.test.com,636,Yes,"CN=Users,DC=test,DC=com","CN=ccm,CN=Users,DC=test,DC=com",pw1,Yes\n'
        'test.com,dc2.test.com,port,No,"CN=Users,DC=test,DC=com","CN=ccm,CN=Users,DC=test,DC=com",pw2,Yes\n'
    )
    sign_in(page, "acme-admin")
    page.goto("/settings/adservers/")
    page.get_by_role("link", name="Import from CSV").click()
    shot(page, "30-csv-import")
    page.get_by_label("CSV file").set_input_files(str(csv))
    page.get_by_role("button", name="Preview").click()
    expect(page.get_by_text("AD Server Port: 'port' is not a number")).to_be_visible()
    expect(page.get_by_role("heading", name="Preview: 2 row(s) for customer acme, 1 invalid")).to_be_visible()
    shot(page, "31-csv-preview")
    page.get_by_role("button", name="Import").click()
    expect(page.get_by_role("alert").first).to_contain_text("nothing was imported")
    assert not ADServer.objects.exists()
    page.get_by_label("Skip the 1 invalid row(s)").check()
    page.get_by_role("button", name="Import").click()
    expect(page.get_by_role("status")).to_contain_text("1 AD server(s) imported, 1 row(s) skipped.")
    shot(page, "32-csv-imported")
    assert list(ADServer.objects.values_list("address", flat=True)) == ["dc1.test.com"]


def test_verify_against_the_real_dc(page, acme_admin, ad_server):
    sign_in(page, "acme-admin")
    page.goto("/settings/adservers/")
    page.get_by_role("button", name="Verify").click()
    expect(page.get_by_role("status")).to_contain_text("Verified")
    expect(page.get_by_text("Round-trip time")).to_be_visible()
    shot(page, "40-verify-ok")
    page.get_by_role("link", name="Edit this AD server").click()
    page.get_by_label("Login Password").fill("Not-The-Password-1")
    page.get_by_role("button", name="Save").click()
    page.get_by_role("button", name="Verify").click()
    expect(page.get_by_role("alert")).to_contain_text("Failed at bind")
    assert "Not-The-Password-1" not in page.content() and samba.SERVICE_ACCOUNT_PASSWORD not in page.content()
    shot(page, "41-verify-wrong-password")


def test_binding_an_organization(page, acme_admin, ad_server):
    org = Organization.objects.create(customer=ad_server.customer, name="Sales")
    sign_in(page, "acme-admin")
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Organizations").click()
    expect(page.get_by_role("cell", name="(customer default)")).to_be_visible()
    shot(page, "50-organizations")
    page.get_by_role("link", name="Sales").click()
    page.get_by_label("AD Server").select_option(str(ad_server.pk))
    page.get_by_label("test.com").check()
    shot(page, "51-organization-edit")
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_role("cell", name=str(ad_server))).to_be_visible()
    shot(page, "52-organization-bound")
    org.refresh_from_db()
    assert org.ad_server == ad_server and list(org.domains.values_list("name", flat=True)) == ["test.com"]
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Domains").click()
    shot(page, "53-domains")


def test_revoking_a_certificate(page, ca):
    tenant = make_tenant("alpha", "alpha.example")
    make_user("admin-a", customer=tenant.customer)
    sign_in(page, "admin-a")
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Certificates").click()
    page.get_by_label("Person or mail").fill("user1@alpha")
    page.get_by_role("button", name="Filter").click()
    shot(page, "60-certificates")
    page.get_by_role("link", name=tenant.certificate.serial).click()
    expect(page.get_by_role("heading", name="Chain")).to_be_visible()
    shot(page, "61-certificate-detail")
    page.get_by_role("link", name="Revoke").click()
    page.get_by_label("Reason").select_option("key_compromise")
    shot(page, "62-certificate-revoke")
    confirm = page.get_by_label("Yes, revoke this certificate")
    page.get_by_role("button", name="Revoke").click()  # not ticked: the browser refuses to send the form
    assert confirm.evaluate("e => !e.validity.valid")
    assert Certificate.objects.get(pk=tenant.certificate.pk).status == "issued"
    confirm.check()
    page.get_by_role("button", name="Revoke").click()
    expect(page.get_by_role("status")).to_contain_text("revoked")
    expect(page.locator("dd", has_text="by admin-a: Key compromise")).to_be_visible()
    shot(page, "63-certificate-revoked")
    cert = Certificate.objects.get(pk=tenant.certificate.pk)
    assert (cert.status, cert.revoked_by, cert.revocation_reason) == ("revoked", "admin-a", "key_compromise")


def test_the_other_pages(page, ca):
    tenant = make_tenant("alpha", "alpha.example")
    make_user("root-admin", superuser=True)
    sign_in(page, "root-admin")
    shot(page, "70-dashboard-super-admin")
    for name, url in [
        ("71-enrollment-log", "/log/"),
        ("72-requests", "/requests/"),
        ("73-request-approve", f"/requests/{tenant.request.pk}/approve/"),
        ("74-customers", "/customers/"),
        ("75-customer-edit", f"/customers/{tenant.customer.pk}/"),
        ("76-domains", "/settings/domains/"),
        ("77-persons", "/persons/"),
    ]:
        page.goto(url)
        expect(page.locator("h1")).to_be_visible()
        shot(page, name)
    page.goto("/log/")
    expect(page.get_by_text("email from autoenroll request does not match with email on AD server.")).to_be_visible()
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Persons").click()
    expect(page.get_by_role("link", name=tenant.certificate.serial)).to_be_visible()


def test_creating_a_customer_admin(page, ca):
    tenant = make_tenant("alpha", "alpha.example")
    make_tenant("beta", "beta.example")
    make_user("root-admin", superuser=True)
    sign_in(page, "root-admin")
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Administrators").click()
    expect(page.get_by_role("heading", name="Administrators")).to_be_visible()
    expect(page.get_by_role("cell", name="operator@beta.example")).to_be_visible()
    shot(page, "80-administrators")
    page.get_by_role("link", name="Add", exact=True).click()
    page.get_by_label("Username").fill("carol")
    page.get_by_label("Email address").fill("carol@alpha.example")
    page.get_by_label("Role").select_option("customer")
    page.get_by_label("Customer", exact=True).select_option(str(tenant.customer.pk))
    page.get_by_label(re.compile(r"^Password\*?$")).fill("carol")
    page.get_by_label("Password confirmation").fill("carol")
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_role("alert").first).to_contain_text("This password is too short.")
    expect(page.get_by_label(re.compile(r"^Password\*?$"))).to_have_value("")  # never sent back
    page.get_by_label(re.compile(r"^Password\*?$")).fill("Orbit-Lantern-Pebble-42")
    page.get_by_label("Password confirmation").fill("Orbit-Lantern-Pebble-42")
    shot(page, "81-administrator-add")
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_role("status")).to_contain_text("Administrator carol added.")
    expect(page.get_by_role("row", name="carol")).to_contain_text("Customer Admin")
    shot(page, "82-administrator-added")
    assert not page.content().count("Orbit-Lantern-Pebble-42")
    page.get_by_role("button", name="Sign out").click()
    page.get_by_label("Username").fill("carol")
    page.get_by_label("Password").fill("Orbit-Lantern-Pebble-42")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Dashboard")).to_be_visible()
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Administrators").click()
    expect(page.get_by_role("cell", name="operator@alpha.example")).to_be_visible()
    expect(page.get_by_text("operator@beta.example")).to_have_count(0)
    expect(page.get_by_text("root-admin", exact=True)).to_have_count(0)
    shot(page, "83-administrators-customer-admin")
