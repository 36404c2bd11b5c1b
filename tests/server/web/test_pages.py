"""Server-side behaviour of the admin pages, through Django's test client."""

from __future__ import annotations

import ipaddress
import logging
import re
from datetime import timedelta

import pytest
from cryptography import x509
from django.test import Client
from django.urls import URLResolver, get_resolver, reverse
from django.utils import timezone

from autoenroll.server import metrics
from autoenroll.server.audit import trail
from autoenroll.server.audit.models import AuditRecord
from autoenroll.server.certificates.models import Certificate
from autoenroll.server.directory import csvimport
from autoenroll.server.directory.models import ADServer
from autoenroll.server.enrollment.models import EnrollmentEvent, EnrollmentRequest
from autoenroll.server.kerberos import loginconf
from autoenroll.server.kerberos.models import KerberosRealm
from autoenroll.server.notices.models import ExpiryNotice
from autoenroll.server.tenants.models import Organization
from autoenroll.testbed import samba
from checks import ktutil_keytab

from .conftest import AD_PASSWORD, USER_PASSWORD, client_for, make_user

pytestmark = pytest.mark.django_db

CSV_HEADER = ",".join(csvimport.COLUMNS) + "\n"


def csrf_client(user=None) -> Client:
    client = Client(enforce_csrf_checks=True)
    if user is not None:
        client.force_login(user)
    return client


def token_of(response) -> str:
    match = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', response.content.decode())
    assert match, "the page has no CSRF token"
    return match.group(1)


# --- sign-in ------------------------------------------------------------------------------------------------------


def test_sign_in_with_csrf_token_reaches_the_dashboard(super_admin):
    client = csrf_client()
    page = client.get(reverse("web:login"))
    answer = client.post(
        reverse("web:login"),
        {"username": "root-admin", "password": USER_PASSWORD, "csrfmiddlewaretoken": token_of(page)},
    )
    assert answer.status_code == 302 and answer["Location"] == reverse("web:dashboard")
    assert client.get(reverse("web:dashboard")).status_code == 200


def test_sign_in_without_csrf_token_is_refused(super_admin):
    answer = csrf_client().post(reverse("web:login"), {"username": "root-admin", "password": USER_PASSWORD})
    assert answer.status_code == 403


def test_five_failed_sign_ins_lock_the_account_out(super_admin):
    client = Client()
    for _ in range(5):
        client.post(reverse("web:login"), {"username": "root-admin", "password": "wrong"})
    answer = client.post(reverse("web:login"), {"username": "root-admin", "password": USER_PASSWORD})
    assert answer.status_code in (403, 429)
    assert "_auth_user_id" not in client.session


def test_passwords_are_hashed_with_a_modern_hasher_in_production():
    from autoenroll.server import settings as production

    assert not hasattr(production, "PASSWORD_HASHERS")  # Django's default: PBKDF2 first, upgrades on sign-in


# --- CSRF on every form ---------------------------------------------------------------------------------------------


def web_urls(tenant, realm):
    from .test_isolation import url_for, web_patterns

    return [(name, url_for(name, kwargs, tenant, realm)) for name, kwargs in web_patterns()]


def test_every_form_has_a_csrf_token_and_every_post_without_it_is_refused(super_admin, tenant_a, other_realm):
    client = csrf_client(super_admin)
    forms_seen = 0
    for name, url in web_urls(tenant_a, other_realm):
        page = client.get(url)
        html = page.content.decode(errors="replace")
        for form in re.findall(r"<form[^>]*>.*?</form>", html, flags=re.S):
            if re.search(r'method="post"', form, flags=re.I):
                forms_seen += 1
                assert "csrfmiddlewaretoken" in form, f"{name}: a POST form without CSRF token"
        if name != "login":
            assert client.post(url, {}).status_code == 403, f"POST {url} without CSRF token"
    assert forms_seen > 20


# --- Settings / Autoenrollment ----------------------------------------------------------------------------------


def test_super_admin_adds_edits_and_deletes_a_realm(super_client, settings, tmp_path):
    spn = "HTTP/ccm.test.com@TEST.COM"
    first, second = ktutil_keytab(tmp_path / "ccm.keytab", spn), ktutil_keytab(tmp_path / "new.keytab", spn)
    answer = super_client.post(
        reverse("web:realm_add"), {"domain": "Test.COM", "keytab_path": str(first), "service_principal": spn}
    )
    assert answer.status_code == 302
    realm = KerberosRealm.objects.get(domain="test.com")
    assert "test.com" in super_client.get(reverse("web:realm_list")).content.decode()
    super_client.post(
        reverse("web:realm_edit", args=[realm.pk]),
        {"domain": "test.com", "keytab_path": str(second), "service_principal": spn},
    )
    realm.refresh_from_db()
    assert realm.keytab_path == str(second)
    assert super_client.post(reverse("web:realm_delete", args=[realm.pk])).status_code == 302
    assert not KerberosRealm.objects.exists()


@pytest.mark.parametrize(
    ("keytab", "problem"),
    [("missing", "no such file"), ("other-spn", "no key for HTTP/ccm.test.com@TEST.COM")],
)
def test_a_realm_whose_keytab_the_server_cannot_use_is_refused_with_the_reason(super_client, tmp_path, keytab, problem):
    """Saved, it would have answered every agent with error 37 and said why only in server.log."""
    path = tmp_path / "ccm.keytab"
    if keytab == "other-spn":
        ktutil_keytab(path, "HTTP/other.test.com@TEST.COM")
    answer = super_client.post(
        reverse("web:realm_add"),
        {"domain": "test.com", "keytab_path": str(path), "service_principal": "HTTP/ccm.test.com@TEST.COM"},
    )
    assert answer.status_code == 200 and problem in answer.content.decode()
    assert not KerberosRealm.objects.exists()


def test_a_bad_service_principal_is_refused_with_the_reason(super_client):
    answer = super_client.post(
        reverse("web:realm_add"), {"domain": "test.com", "keytab_path": "/k", "service_principal": "ccm"}
    )
    assert answer.status_code == 200 and "A service principal such as" in answer.content.decode()
    assert not KerberosRealm.objects.exists()


def test_login_conf_is_shown_and_downloaded_as_the_guide_writes_it(super_client, other_realm):
    expected = loginconf.render(
        [loginconf.LoginEntry("beta.example", "/etc/beta.keytab", "HTTP/ccm.beta.example@BETA.EXAMPLE")]
    )
    page = super_client.get(reverse("web:loginconf")).content.decode()
    assert "keyTab=&quot;/etc/beta.keytab&quot;" in page
    download = super_client.get(reverse("web:loginconf_download"))
    assert download.content.decode() == expected
    assert download["Content-Disposition"] == 'attachment; filename="login.conf"'


GUIDE_LOGIN_CONF = """de.com {
    com.sun.security.auth.module.Krb5LoginModule required
    storeKey=true useKeyTab=true refreshKrb5Config=true isInitiator=false
    keyTab="/home/lsc/keytab/fff.keytab"
    principal="HTTP/certmgr.de.com@DE.COM";
};
ny.com {
    com.sun.security.auth.module.Krb5LoginModule required
    keyTab="/home/lsc/keytab/abc.keytab"
    principal="HTTP/ccm.ny.com@NY.COM";
};
"""


def test_importing_the_guides_login_conf_creates_both_realms(super_client):
    answer = super_client.post(reverse("web:loginconf_import"), {"text": GUIDE_LOGIN_CONF})
    assert answer.status_code == 302
    assert sorted(KerberosRealm.objects.values_list("domain", "service_principal")) == [
        ("de.com", "HTTP/certmgr.de.com@DE.COM"),
        ("ny.com", "HTTP/ccm.ny.com@NY.COM"),
    ]


def test_a_login_conf_with_one_bad_entry_imports_nothing_and_names_the_line(super_client):
    bad = GUIDE_LOGIN_CONF.replace('principal="HTTP/ccm.ny.com@NY.COM"', 'principal="ccm"')
    answer = super_client.post(reverse("web:loginconf_import"), {"text": bad})
    assert answer.status_code == 200
    assert "line 7" in answer.content.decode() and "nothing imported" in answer.content.decode()
    assert not KerberosRealm.objects.exists()


def test_customer_admins_have_no_autoenrollment_or_customer_pages(client_a):
    for name in ("realm_list", "realm_add", "loginconf", "loginconf_download", "loginconf_import", "customer_list"):
        assert client_a.get(reverse(f"web:{name}")).status_code == 403, name
    assert "Autoenrollment" not in client_a.get(reverse("web:dashboard")).content.decode()


# --- Settings / AD Server ----------------------------------------------------------------------------------------


def ad_form(**overrides) -> dict:
    data = {
        "domain": "gamma.example",
        "address": "dc.gamma.example",
        "port": "636",
        "users_base_dn": "CN=Users,DC=gamma,DC=example",
        "login_dn": "CN=ccm,CN=Users,DC=gamma,DC=example",
        "login_password": AD_PASSWORD,
        "use_ssl": "on",
    }
    data.update(overrides)
    return data


def test_customer_admin_adds_an_ad_server_to_their_own_customer_whatever_is_posted(client_a, tenant_a, tenant_b):
    answer = client_a.post(reverse("web:adserver_add"), ad_form(customer=tenant_b.customer.pk, is_default="on"))
    assert answer.status_code == 302, answer.content.decode()
    server = ADServer.objects.get(domain="gamma.example")
    assert server.customer == tenant_a.customer and server.is_default and server.login_password == AD_PASSWORD
    assert ADServer.objects.filter(customer=tenant_a.customer, is_default=True).count() == 1


def test_the_ad_password_is_write_only_and_empty_keeps_it(client_a, tenant_a):
    server = tenant_a.ad_server
    page = client_a.get(reverse("web:adserver_edit", args=[server.pk])).content.decode()
    assert 'name="login_password"' in page and AD_PASSWORD not in page
    for label in ("Domain", "AD Server Address", "AD Server Port", "Set as Default", "Users Base DN"):
        assert f">{label}" in page, label
    for label in ("Login User DN", "Login Password", "Use SSL"):
        assert f">{label}" in page, label
    answer = client_a.post(
        reverse("web:adserver_edit", args=[server.pk]), ad_form(domain="alpha.example", login_password="")
    )
    assert answer.status_code == 302
    server.refresh_from_db()
    assert server.login_password == AD_PASSWORD and server.address == "dc.gamma.example"
    invalid = client_a.post(reverse("web:adserver_edit", args=[server.pk]), ad_form(port="70000"))
    assert invalid.status_code == 200 and AD_PASSWORD not in invalid.content.decode()


def test_a_new_ad_server_needs_a_password(client_a):
    answer = client_a.post(reverse("web:adserver_add"), ad_form(login_password=""))
    assert answer.status_code == 200 and not ADServer.objects.filter(domain="gamma.example").exists()


def test_ad_server_table_has_the_guides_columns(client_a, tenant_a):
    page = client_a.get(reverse("web:adserver_list")).content.decode()
    for header in ("Domain", "AD Server", "Port", "Use SSL", "Organization/Department", "Default", "Setup By Operator"):
        assert f'<th scope="col">{header}</th>' in page
    assert "alpha.example</a> (Default)" in page and "alpha sales" in page and "Verify" in page


# --- CSV import --------------------------------------------------------------------------------------------------

GOOD_ROW = 'one.example,dc1.one.example,636,Yes,"CN=Users,DC=one","CN=ccm,CN=Users,DC=one",{pw},Yes\n'
GOOD_ROW2 = 'two.example,dc1.two.example,,No,"CN=Users,DC=two","CN=ccm,CN=Users,DC=two",{pw},No\n'
BAD_ROW = 'three.example,dc1.three.example,notaport,maybe,"CN=Users,DC=three",,{pw},Yes\n'


def upload(client, text: str, **extra):
    from django.core.files.uploadedfile import SimpleUploadedFile

    return client.post(
        reverse("web:adserver_import"),
        {"file": SimpleUploadedFile("servers.csv", text.encode(), content_type="text/csv"), **extra},
    )


def test_csv_preview_names_each_bad_row_and_saves_nothing_until_confirmed(client_a, tenant_a):
    text = CSV_HEADER + GOOD_ROW.format(pw=AD_PASSWORD) + BAD_ROW.format(pw=AD_PASSWORD)
    preview = upload(client_a, text)
    page = preview.content.decode()
    assert preview.status_code == 200
    assert "AD Server Port: &#x27;notaport&#x27; is not a number" in page
    assert "Set as Default: &#x27;maybe&#x27; is not Yes or No" in page and "Login User DN: required" in page
    assert AD_PASSWORD not in page
    assert not ADServer.objects.filter(domain__in=["one.example", "three.example"]).exists()
    refused = client_a.post(reverse("web:adserver_import"), {"confirm": "1"})
    assert "nothing was imported" in refused.content.decode()
    assert not ADServer.objects.filter(domain="one.example").exists()
    done = client_a.post(reverse("web:adserver_import"), {"confirm": "1", "skip_invalid": "on"})
    assert done.status_code == 302
    server = ADServer.objects.get(domain="one.example")
    assert server.customer == tenant_a.customer and server.login_password == AD_PASSWORD and server.is_default
    assert not ADServer.objects.filter(domain="three.example").exists()


def test_a_valid_csv_imports_every_row_in_one_go(client_a, tenant_a):
    upload(client_a, CSV_HEADER + GOOD_ROW.format(pw="a") + GOOD_ROW2.format(pw="b"))
    assert client_a.post(reverse("web:adserver_import"), {"confirm": "1"}).status_code == 302
    two = ADServer.objects.get(domain="two.example")
    assert (two.port, two.use_ssl, two.is_default, two.login_password) == (0, False, False, "b")


def test_csv_duplicates_and_a_wrong_header_are_reported(client_a, tenant_a):
    dup = upload(client_a, CSV_HEADER + GOOD_ROW.format(pw="a") + GOOD_ROW.format(pw="a")).content.decode()
    assert "the same Domain and AD Server Address as line 2" in dup
    header = upload(client_a, "Domain,AD Server\nx,y\n").content.decode()
    assert "The header lacks the column(s): Users Base DN, Login User DN, Login Password" in header
    typo = upload(client_a, "Domain,Adress\nx,y\n").content.decode()
    assert "Unknown column &#x27;Adress&#x27;" in typo


def test_the_import_page_documents_the_format(client_a):
    page = client_a.get(reverse("web:adserver_import")).content.decode()
    assert "Set as Default" in page and "Login Password" in page and "skip the invalid rows" in page


def test_the_session_holds_the_pending_import_encrypted(client_a, tenant_a):
    upload(client_a, CSV_HEADER + GOOD_ROW.format(pw=AD_PASSWORD))
    from django.contrib.sessions.models import Session

    assert all(AD_PASSWORD not in s.get_decoded().__repr__() for s in Session.objects.all())


# --- Verify --------------------------------------------------------------------------------------------------------


@pytest.fixture
def acme_admin(acme):
    return client_for(make_user("acme-admin", customer=acme))


def test_verify_against_the_real_dc_reports_round_trip_and_clock_skew(acme_admin, ad_server, caplog):
    caplog.set_level(logging.DEBUG)
    page = acme_admin.post(reverse("web:adserver_verify", args=[ad_server.pk])).content.decode()
    assert "Verified" in page and "Round-trip time" in page and " ms" in page
    assert re.search(r"Clock skew against the DC</dt><dd>-?\d+\.\d s", page)
    assert samba.SERVICE_ACCOUNT_PASSWORD not in page and samba.SERVICE_ACCOUNT_PASSWORD not in caplog.text


def test_verify_with_a_wrong_password_says_the_bind_failed(acme_admin, ad_server, caplog):
    caplog.set_level(logging.DEBUG)
    acme_admin.post(reverse("web:adserver_edit", args=[ad_server.pk]), _edit_data(ad_server, "Wrong-Pass-123"))
    page = acme_admin.post(reverse("web:adserver_verify", args=[ad_server.pk])).content.decode()
    assert "Failed at bind" in page and "refused the Login User DN and Login Password" in page
    assert "Wrong-Pass-123" not in page and "Wrong-Pass-123" not in caplog.text


def test_verify_names_a_wrong_users_base_dn(acme_admin, ad_server):
    ADServer.objects.filter(pk=ad_server.pk).update(users_base_dn="OU=Nope,DC=test,DC=com")
    page = acme_admin.post(reverse("web:adserver_verify", args=[ad_server.pk])).content.decode()
    assert "Failed at base_dn" in page and "Users Base DN does not exist" in page


def test_verify_names_a_closed_port(client_a, tenant_a):
    page = client_a.post(reverse("web:adserver_verify", args=[tenant_a.ad_server.pk])).content.decode()
    assert "Failed at tcp" in page


def test_verify_names_an_address_outside_the_ad_networks(client_a, tenant_a, settings):
    settings.CONFIG = settings.CONFIG.model_copy(update={"ad_networks": [ipaddress.ip_network("192.0.2.0/24")]})
    page = client_a.post(reverse("web:adserver_verify", args=[tenant_a.ad_server.pk])).content.decode()
    assert "Failed at address" in page and "outside the networks this server may reach AD servers in" in page


def test_verify_is_a_post(client_a, tenant_a):
    assert client_a.get(reverse("web:adserver_verify", args=[tenant_a.ad_server.pk])).status_code == 405


def _edit_data(server: ADServer, password: str) -> dict:
    return {
        "domain": server.domain,
        "address": server.address,
        "port": server.port,
        "is_default": "on",
        "users_base_dn": server.users_base_dn,
        "login_dn": server.login_dn,
        "login_password": password,
        **({"use_ssl": "on"} if server.use_ssl else {}),
        "tls_ca_pem": server.tls_ca_pem,
        "tls_server_name": server.tls_server_name,
    }


# --- Organizations, domains ---------------------------------------------------------------------------------------


def test_binding_an_organization_to_an_ad_server(client_a, tenant_a):
    second = ADServer.objects.create(
        customer=tenant_a.customer,
        domain="alpha.example",
        address="dc2",
        login_password="x",
        users_base_dn="a",
        login_dn="b",
    )
    org = tenant_a.organization
    answer = client_a.post(
        reverse("web:organization_edit", args=[org.pk]),
        {"name": org.name, "ad_server": second.pk, "domains": [tenant_a.domain.pk]},
    )
    assert answer.status_code == 302
    org.refresh_from_db()
    assert org.ad_server == second
    page = client_a.get(reverse("web:organization_list")).content.decode()
    assert f"<td>{org.pk}</td>" in page and "alpha.example (dc2)" in page


def test_an_organization_cannot_take_another_customers_server_or_domain(client_a, tenant_a, tenant_b):
    org = tenant_a.organization
    answer = client_a.post(
        reverse("web:organization_edit", args=[org.pk]),
        {"name": org.name, "ad_server": tenant_b.ad_server.pk, "domains": [tenant_b.domain.pk]},
    )
    assert answer.status_code == 200 and "Select a valid choice" in answer.content.decode()
    org.refresh_from_db()
    assert org.ad_server == tenant_a.ad_server


def test_super_admin_cannot_mix_customers_in_an_organization(super_client, tenant_a, tenant_b):
    answer = super_client.post(
        reverse("web:organization_add"),
        {"customer": tenant_a.customer.pk, "name": "mixed", "ad_server": tenant_b.ad_server.pk},
    )
    assert answer.status_code == 200 and "another customer" in answer.content.decode()
    assert not Organization.objects.filter(name="mixed").exists()


def test_domains_show_whether_they_are_authorized(client_a, tenant_a):
    client_a.post(reverse("web:domain_add"), {"name": "Mail.Alpha.example", "authorized": ""})
    page = client_a.get(reverse("web:domain_list")).content.decode()
    assert "mail.alpha.example" in page and "<td>No</td>" in page
    orgs = client_a.get(reverse("web:organization_list")).content.decode()
    assert "alpha.example" in orgs


# --- Certificates ------------------------------------------------------------------------------------------------


def test_certificate_search_by_mail_serial_status_and_expiry(client_a, tenant_a):
    cert = tenant_a.certificate
    url = reverse("web:certificate_list")
    assert cert.serial in client_a.get(url, {"q": "user1@alpha"}).content.decode()
    assert cert.serial in client_a.get(url, {"q": "User One"}).content.decode()
    assert cert.serial in client_a.get(url, {"serial": cert.serial[:8].upper()}).content.decode()
    assert cert.serial not in client_a.get(url, {"status": "revoked"}).content.decode()
    assert cert.serial in client_a.get(url, {"status": "issued"}).content.decode()
    assert cert.serial not in client_a.get(url, {"expires_within": "2"}).content.decode()
    assert cert.serial in client_a.get(url, {"expires_within": "3650"}).content.decode()


def test_certificate_detail_downloads_pem_der_and_chain(client_a, tenant_a, ca):
    cert = tenant_a.certificate
    page = client_a.get(reverse("web:certificate_detail", args=[cert.pk])).content.decode()
    assert cert.fingerprint_sha256 in page and ca[0].subject in page and ca[1].subject in page
    pem = client_a.get(reverse("web:certificate_pem", args=[cert.pk])).content
    der = client_a.get(reverse("web:certificate_der", args=[cert.pk])).content
    assert x509.load_pem_x509_certificate(pem) == x509.load_der_x509_certificate(der)
    chain = x509.load_pem_x509_certificates(client_a.get(reverse("web:certificate_chain", args=[cert.pk])).content)
    assert [c.subject.rfc4514_string() for c in chain[1:]] == [ca[1].subject, ca[0].subject]


def test_revoking_needs_a_confirmation_and_records_who_and_when(client_a, tenant_a):
    cert = tenant_a.certificate
    url = reverse("web:certificate_revoke", args=[cert.pk])
    unconfirmed = client_a.post(url, {"reason": "key_compromise"})
    assert unconfirmed.status_code == 200 and Certificate.objects.get(pk=cert.pk).status == "issued"
    assert client_a.post(url, {"reason": "key_compromise", "confirm": "on"}).status_code == 302
    cert.refresh_from_db()
    assert (cert.status, cert.revocation_reason, cert.revoked_by) == ("revoked", "key_compromise", "admin-a")
    assert cert.revoked_at is not None
    assert EnrollmentEvent.objects.filter(step="revoke", certificate=cert, message__contains="admin-a").exists()
    again = client_a.post(url, {"reason": "superseded", "confirm": "on"}, follow=True).content.decode()
    assert "already revoked" in again
    cert.refresh_from_db()
    assert cert.revocation_reason == "key_compromise"


# --- Enrollment log, requests, dashboard --------------------------------------------------------------------------


def test_the_log_shows_the_guides_potential_reason_and_filters_by_code_and_user(client_a, tenant_a):
    EnrollmentEvent.objects.create(
        step="sync",
        outcome="error",
        error_code=5,
        message="Domain unauthorized..",
        detail="mail domain example.org is not a domain of customer alpha",
        principal="other@ALPHA.EXAMPLE",
        customer=tenant_a.customer,
    )
    url = reverse("web:event_list")
    page = client_a.get(url).content.decode()
    assert "email from autoenroll request does not match with email on AD server." in page
    assert "mail domain example.org is not a domain of customer alpha" in page  # the server's own reason
    assert re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", page)  # times to the second
    by_code = client_a.get(url, {"code": "5"}).content.decode()
    assert "The domain is unauthorized for this customer." in by_code and "user1@ALPHA.EXAMPLE" not in by_code
    by_user = client_a.get(url, {"user": "user1@"}).content.decode()
    assert "user1@ALPHA.EXAMPLE" in by_user and "other@ALPHA.EXAMPLE" not in by_user


def test_rejecting_a_request_records_an_event(client_a, tenant_a):
    req = tenant_a.request
    assert "user1@ALPHA.EXAMPLE" in client_a.get(reverse("web:request_list")).content.decode()
    assert client_a.post(reverse("web:request_reject", args=[req.pk])).status_code == 302
    req.refresh_from_db()
    assert (req.status, req.decided_by) == ("rejected", "admin-a")
    event = EnrollmentEvent.objects.filter(person=req.person, error_code=25).latest("pk")
    assert "rejected by admin-a" in event.detail
    assert client_a.post(reverse("web:request_approve", args=[req.pk]), follow=True).status_code == 200
    assert EnrollmentRequest.objects.get(pk=req.pk).status == "rejected"


def test_approving_a_request_issues_the_certificate(client_a, tenant_a):
    req = tenant_a.request
    page = client_a.get(reverse("web:request_approve", args=[req.pk])).content.decode()
    assert "Approve the request of user1@ALPHA.EXAMPLE?" in page
    assert client_a.post(reverse("web:request_approve", args=[req.pk])).status_code == 302
    req.refresh_from_db()
    assert req.status == "issued" and req.certificate.mail == "user1@alpha.example" and req.decided_by == "admin-a"


def test_dashboard_draws_the_charts_as_inline_svg_and_says_when_one_is_empty(client_a, tenant_a, tenant_b):
    page = client_a.get(reverse("web:dashboard")).content.decode()
    assert page.count("<svg") == 2 and "<script" not in page  # issued today, and the errors
    assert "No valid certificate expires within 30 days." in page  # instead of an empty chart
    assert "≤ 30 days" in page and "18: Email in AD mismatch.." in page
    assert "1 request(s) wait for approval" in page


def test_each_chart_bar_links_to_the_list_it_counts(client_a, tenant_a, tenant_b):
    page = client_a.get(reverse("web:dashboard")).content.decode()
    today = timezone.localdate()
    issued = f"{reverse('web:certificate_list')}?issued_on={today:%Y-%m-%d}"
    assert f'<a href="{issued}"><rect class="bar"' in page
    listed = client_a.get(issued).content.decode()
    assert tenant_a.certificate.serial in listed and tenant_b.certificate.serial not in listed
    errors = f"{reverse('web:event_list')}?code=18&amp;outcome=error"
    assert f'<a href="{errors}">' in page
    assert "Email in AD mismatch" in client_a.get(errors.replace("&amp;", "&")).content.decode()
    expiring = f"{reverse('web:certificate_list')}?status=issued&amp;expires_within=30"
    assert f'<a href="{expiring}">≤ 30 days</a>' in page  # an empty chart is text; its table still links


def test_dashboard_totals_count_this_customers_rows_and_link_to_the_lists(client_a, tenant_a, tenant_b):
    page = client_a.get(reverse("web:dashboard")).content.decode()
    totals = re.findall(r'<li><a href="([^"]+)"><strong>(\d+)</strong> ([^<]+)</a></li>', page)
    assert [(label, int(n)) for _, n, label in totals] == [
        ("Persons", 1),  # tenant B's person is not counted
        ("Valid certificates", 1),
        ("Expiring within 30 days", 0),
        ("Not renewed, expiring", 0),
        ("Revoked", 0),
        ("Errors today", 1),
    ]
    assert totals[1][0] == reverse("web:certificate_list") + "?status=issued"
    assert totals[3][0] == reverse("web:expiring_list")
    assert client_a.get(totals[5][0].replace("&amp;", "&")).status_code == 200


# --- the AD password never appears -------------------------------------------------------------------------------


def test_the_ad_password_appears_in_no_page_and_no_log(super_admin, tenant_a, tenant_b, other_realm, caplog):
    caplog.set_level(logging.DEBUG)
    clients = [client_for(super_admin), client_for(make_user("a2", customer=tenant_a.customer))]
    for client in clients:
        for name, url in web_urls(tenant_a, other_realm):
            for method in ("get", "post"):
                content = getattr(client, method)(url).content.decode(errors="replace")
                assert AD_PASSWORD not in content, f"{method} {name}"
        client.post(reverse("web:adserver_edit", args=[tenant_a.ad_server.pk]), ad_form(port="bad"))
        upload(client, CSV_HEADER + BAD_ROW.format(pw=AD_PASSWORD), customer=tenant_a.customer.pk)
    assert AD_PASSWORD not in caplog.text
    assert not any(AD_PASSWORD in str(r.__dict__) for r in caplog.records)


def test_the_web_urls_are_all_named():
    web = next(e for e in get_resolver().url_patterns if isinstance(e, URLResolver) and e.namespace == "web")
    assert all(p.name for p in web.url_patterns)


# --- Persons -------------------------------------------------------------------------------------------------------


def test_the_persons_page_lists_each_users_mail_current_certificate_and_count(client_a, tenant_a, tenant_b, settings):
    page = client_a.get(reverse("web:person_list")).content.decode()
    person, cert = tenant_a.person, tenant_a.certificate
    assert person.principal in page and person.mail in page
    assert reverse("web:certificate_detail", args=[cert.pk]) in page and cert.serial in page
    assert tenant_b.person.mail not in page  # another customer's users stay invisible
    settings.CONFIG = settings.CONFIG.model_copy(update={"max_valid_certificates": 0})
    assert "1 (more than 0)" in client_a.get(reverse("web:person_list")).content.decode()  # the warning
    only_disabled = client_a.get(reverse("web:person_list"), {"enabled": "no"}).content.decode()
    assert person.principal not in only_disabled


def test_the_expiring_page_lists_what_is_not_renewed_of_this_customer_only(client_a, tenant_a, tenant_b):
    soon = timezone.now() + timedelta(days=10)
    Certificate.objects.filter(pk__in=[tenant_a.certificate.pk, tenant_b.certificate.pk]).update(not_after=soon)
    page = client_a.get(reverse("web:expiring_list")).content.decode()
    assert tenant_a.certificate.serial in page and "no SMTP server configured" in page
    assert tenant_b.certificate.serial not in page  # another customer's
    assert 'aria-current="page">Expiring<' in page
    ExpiryNotice.objects.create(certificate=tenant_a.certificate, days=15, recipient="x@alpha.example",
                                sent_at=timezone.now())  # fmt: skip
    assert "15-day notice" in client_a.get(reverse("web:expiring_list")).content.decode()
    dashboard = client_a.get(reverse("web:dashboard")).content.decode()
    assert re.search(r"<strong>1</strong> Not renewed, expiring", dashboard)


def test_the_dashboard_says_whether_each_ad_server_answered(client_a, tenant_a, tenant_b):
    server = tenant_a.ad_server
    metrics.AD_SERVER_UP.clear()  # as a server that just started (other tests asked this address)
    page = client_a.get(reverse("web:dashboard")).content.decode()
    assert f"{server.address}:{server.effective_port}" in page and "not asked since the server started" in page
    assert reverse("web:adserver_edit", args=[tenant_b.ad_server.pk]) not in page  # another customer's
    metrics.AD_SERVER_UP.labels(f"{server.address}:{server.effective_port}").set(0)
    assert "not answering" in client_a.get(reverse("web:dashboard")).content.decode()
    metrics.AD_SERVER_UP.labels(f"{server.address}:{server.effective_port}").set(1)
    assert ">answering<" in client_a.get(reverse("web:dashboard")).content.decode()


def test_the_audit_page_shows_the_trail_and_verifies_it(super_client, client_a, tenant_a):
    trail.seal()
    page = super_client.get(reverse("web:audit_list")).content.decode()
    assert "enrollment event" in page and "tenants.Customer" in page
    assert "Intact" in super_client.get(reverse("web:audit_list"), {"verify": "1"}).content.decode()
    AuditRecord.objects.filter(position=1).delete()
    tampered = super_client.get(reverse("web:audit_list"), {"verify": "1"}).content.decode()
    assert "Tampered with" in tampered and "records #1 to #1 were deleted" in tampered
    assert client_a.get(reverse("web:audit_list")).status_code == 403  # it spans customers


def test_the_realm_page_checks_a_keytab_as_keytab_check_does(super_client, tmp_path, client_a):
    """Test button of the Autoenrollment page: a keytab that went missing after the realm was saved."""
    spn = "HTTP/ccm.test.com@TEST.COM"
    keytab = ktutil_keytab(tmp_path / "ccm.keytab", spn)
    realm = KerberosRealm.objects.create(domain="test.com", keytab_path=str(keytab), service_principal=spn)
    url = reverse("web:realm_check", args=[realm.pk])
    assert url in super_client.get(reverse("web:realm_list")).content.decode()
    good = super_client.get(url).content.decode()
    assert "Usable:" in good and "aes256-cts" in good.lower()
    keytab.unlink()
    bad = super_client.get(url).content.decode()
    assert "Not usable:" in bad and "no such file" in bad
    assert client_a.get(url).status_code in (403, 404)  # a Customer Admin does not see realms


def test_an_add_form_sent_twice_at_once_is_answered_not_a_server_error(super_client, tenant_a, monkeypatch):
    """A double click: both submissions pass the form's uniqueness check before either is saved. The
    second is answered with the form and a message (it was a 500 with an IntegrityError)."""
    from django.db.models import Model

    from autoenroll.server.tenants.models import EmailDomain

    EmailDomain.objects.create(customer=tenant_a.customer, name="dup.example", authorized=True)
    monkeypatch.setattr(Model, "validate_unique", lambda self, exclude=None: None)  # as if checked a moment ago
    monkeypatch.setattr(Model, "validate_constraints", lambda self, exclude=None: None)
    url = reverse("web:domain_add")
    answer = super_client.post(url, {"customer": tenant_a.customer.pk, "name": "dup.example", "authorized": "on"})
    assert answer.status_code == 200
    assert "a moment ago" in answer.content.decode()
    assert EmailDomain.objects.filter(name="dup.example").count() == 1


@pytest.mark.parametrize("field", ["domains", "ad_server", "customer"])
def test_a_choice_beyond_the_databases_integers_is_an_invalid_choice(super_client, tenant_a, field):
    """Found by the hostile pages' Hypothesis run: SQLite's driver raised OverflowError (a 500) for an id of
    2**64 in a multiple choice; every choice field of the pages answers "Select a valid choice" instead."""
    form = {"customer": tenant_a.customer.pk, "name": "Huge", field: str(2**64)}
    answer = super_client.post(reverse("web:organization_add"), form)
    assert answer.status_code == 200
    assert "Select a valid choice" in answer.content.decode()


def test_only_a_super_admin_authorizes_a_domain(client_a, super_client, tenant_a):
    """Authorized, a domain's mailboxes get certificates for whatever the customer's AD says: the CA's
    operator decides, not the customer (who could claim a domain nobody holds yet)."""
    from autoenroll.server.tenants.models import EmailDomain

    client_a.post(reverse("web:domain_add"), {"name": "claimed.example", "authorized": "on"})
    domain = EmailDomain.objects.get(name="claimed.example")
    assert domain.customer == tenant_a.customer and domain.authorized is False
    form = {"customer": tenant_a.customer.pk, "name": "claimed.example", "authorized": "on"}
    assert super_client.post(reverse("web:domain_edit", args=[domain.pk]), form).status_code == 302
    domain.refresh_from_db()
    assert domain.authorized is True
    client_a.post(reverse("web:domain_edit", args=[domain.pk]), {"name": "claimed.example"})  # unticked
    domain.refresh_from_db()
    assert domain.authorized is True
    client_a.post(reverse("web:domain_edit", args=[domain.pk]), {"name": "gmail.com", "authorized": "on"})
    domain.refresh_from_db()
    assert (domain.name, domain.authorized) == ("claimed.example", True)  # no rename of an authorized domain
