"""The one-call protocol: `logon` (sync + checks + issuance in one authenticated request) and
`logon/status` (the installation report, authorised by the logon answer's status token).

Real tickets from the Samba DC, real LDAPS, the real views through Django's test client."""

from __future__ import annotations

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import NameOID
from django.db import connection
from django.test.utils import CaptureQueriesContext

from autoenroll.server.certificates import authority, publication
from autoenroll.server.certificates.models import Certificate
from autoenroll.server.directory.models import Person
from autoenroll.server.enrollment import pipeline
from autoenroll.server.enrollment.models import EnrollmentEvent, EnrollmentRequest
from enroll_helpers import assert_error, caller, make_csr, run_concurrently

pytestmark = pytest.mark.django_db

#: SQL statements of a renewal logon through the real view (the budget of issue 11 is 4): the
#: configuration generation, the person locked with what decides the issuance, the certificate, its
#: audit event. PostgreSQL needs the lock and the facts in two statements (see lifecycle.locked_person),
#: and records the Kerberos authenticator in the replay cache the servers of a cluster share.
#: Transaction control (BEGIN on SQLite) is not counted.
LOGON_STATEMENTS = {"sqlite": 4, "postgresql": 6}
STATUS_REPORT_STATEMENTS = 8  # both databases


@pytest.fixture
def ready(ca, realm, organization):
    return organization


def logged_on(agent, csr: str | None = None, **data) -> dict:
    if csr is None:
        _, csr = make_csr("user1")
    answer = agent.logon(customeruri="acme", csr=csr, **data)
    assert answer.status_code == 200, answer.content
    return answer.json()


def test_one_call_returns_the_certificate_for_the_ad_mail_and_a_status_token(user1, ready):
    answer = logged_on(user1)
    assert (answer["principal"], answer["email"], answer["cn"]) == ("user1@TEST.COM", "user1@test.com", "User One")
    assert answer["status"] == "issued" and answer["status_token"] and answer["request_id"] is None
    cert = x509.load_pem_x509_certificate(answer["certificate"].encode())
    assert cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
        x509.RFC822Name
    ) == ["user1@test.com"]
    assert len(x509.load_pem_x509_certificates(answer["chain"].encode())) == 2
    person = Person.objects.get(principal="user1@TEST.COM")
    assert person.mail == "user1@test.com" and person.synced_at is not None
    events = list(EnrollmentEvent.objects.values_list("step", "outcome", "certificate__serial"))
    assert events == [("enroll", "success", answer["serial"])]  # one audit row per logon, with its certificate


def test_installation_report_with_the_token_supersedes_the_old_certificate_once(user1, ready):
    first = logged_on(user1)
    assert user1.logon_status(status_token=first["status_token"], status="installed").json()["revoked_serial"] is None
    second = logged_on(user1)
    report = {"status_token": second["status_token"], "status": "installed", "replaced_serial": first["serial"]}
    answer = user1.logon_status(**report)
    assert answer.status_code == 200 and answer.json() == {"status": "ok", "revoked_serial": first["serial"]}
    old, new = Certificate.objects.get(serial=first["serial"]), Certificate.objects.get(serial=second["serial"])
    assert (old.status, old.revocation_reason) == ("revoked", "superseded")
    assert new.replaces == old and new.installed_at is not None
    again = user1.logon_status(**report)  # the answer was lost: the report comes again and converges
    assert again.status_code == 200 and again.json() == {"status": "ok", "revoked_serial": None}


def test_a_renewal_after_an_issuing_ca_rotation_supersedes_the_old_cas_certificate(user1, ready, settings, tmp_path):
    """Guide 3.1: the renewal revokes the old certificate, also when a new issuing CA signed the new one (the
    report was refused with error 24: the replaced certificate had to be of the same CA)."""
    first = logged_on(user1)
    user1.logon_status(status_token=first["status_token"], status="installed")
    (tmp_path / "ca").mkdir()
    new_ca = authority.rotate_issuing_ca(settings.CONFIG.model_copy(update={"data_dir": tmp_path}))  # its key there
    second = logged_on(user1)
    assert Certificate.objects.get(serial=second["serial"]).ca == new_ca
    report = {"status_token": second["status_token"], "status": "installed", "replaced_serial": first["serial"]}
    answer = user1.logon_status(**report)
    assert answer.status_code == 200 and answer.json() == {"status": "ok", "revoked_serial": first["serial"]}
    old = Certificate.objects.get(serial=first["serial"])
    assert (old.status, old.revocation_reason) == ("revoked", "superseded") and old.ca != new_ca
    crl = x509.load_der_x509_crl(bytes(publication.current_crl(old.ca).der))  # the old CA's CRL lists it
    assert crl.get_revoked_certificate_by_serial_number(int(first["serial"], 16)) is not None


def test_a_forged_or_foreign_status_token_is_refused(user1, ready):
    issued = logged_on(user1)
    forged = issued["status_token"][:-2] + ("AA" if not issued["status_token"].endswith("AA") else "BB")
    assert user1.logon_status(status_token=forged, status="installed").status_code == 401
    other = logged_on(user1)
    answer = user1.logon_status(status_token=issued["status_token"], status="installed", serial=other["serial"])
    assert_error(answer, 24, "Invalid serial number supplied..")
    assert Certificate.objects.get(serial=other["serial"]).installed_at is None


def test_the_same_key_gets_the_same_certificate_back(user1, ready):
    _, csr = make_csr("user1")
    first, second = logged_on(user1, csr), logged_on(user1, csr)
    assert first["serial"] == second["serial"] and first["certificate"] == second["certificate"]
    assert Certificate.objects.filter(profile="smime").count() == 1


def test_a_key_revoked_for_compromise_is_never_certified_again_but_a_superseded_one_is(user1, ready):
    """An agent sends the key of a request whose answer it never got; if an admin revoked that
    certificate for key compromise meanwhile, the key is refused (the agent then makes a new one)."""
    from autoenroll.server.certificates.models import RevocationReason
    from autoenroll.server.enrollment import lifecycle

    _, csr = make_csr("user1")
    first = Certificate.objects.get(serial=logged_on(user1, csr)["serial"])
    lifecycle.revoke([first], RevocationReason.SUPERSEDED, by="test")
    renewed = logged_on(user1, csr)  # Windows may renew with the same key: that stays possible
    assert renewed["serial"] != first.serial
    lifecycle.revoke(Certificate.objects.filter(serial=renewed["serial"]), RevocationReason.KEY_COMPROMISE, by="test")
    assert_error(user1.logon(customeruri="acme", csr=csr), 15, "Invalid CSR..")
    assert Certificate.objects.filter(profile="smime").count() == 2


def test_a_key_certified_for_someone_else_is_refused(user1, agent_for, ready):
    key, csr = make_csr("user1")
    logged_on(user1, csr)
    theirs = (  # user2 presents user1's public key (a request signed with it: possession proven)
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "user2")]))
        .sign(key, hashes.SHA256())
        .public_bytes(serialization.Encoding.PEM)
        .decode()
    )
    answer = agent_for("user2").logon(customeruri="acme", csr=theirs)
    assert_error(answer, 15, "Invalid CSR..")
    assert not Certificate.objects.filter(mail="user2@test.com").exists()


def test_a_person_holds_at_most_the_configured_number_of_valid_certificates(user1, ready):
    serials = [logged_on(user1)["serial"] for _ in range(4)]
    valid = set(Certificate.objects.valid().filter(profile="smime").values_list("serial", flat=True))
    assert valid == set(serials[-2:])  # the current one and the one it replaces (default 2)
    oldest = Certificate.objects.get(serial=serials[0])
    assert (oldest.status, oldest.revocation_reason) == ("revoked", "superseded")


def test_require_approval_answers_pending_and_the_poll_collects_it(user1, ready):
    from autoenroll.server.enrollment import lifecycle

    ready.customer.require_approval = True
    ready.customer.save()
    answer = logged_on(user1)
    assert answer["status"] == "pending" and answer["retry_after"] > 0 and answer["certificate"] is None
    lifecycle.approve(answer["request_id"], by="admin")
    polled = user1.get(f"requests/{answer['request_id']}").json()
    assert polled["status"] == "issued" and polled["status_token"]


def test_a_pending_logon_sent_again_converges(user1, ready):
    """The agent gave up waiting (error 34) and logs on again with the same key: its pending request
    comes back, not a second one; once approved, the same key gets the approved certificate."""
    from autoenroll.server.enrollment import lifecycle
    from autoenroll.server.enrollment.models import EnrollmentRequest

    ready.customer.require_approval = True
    ready.customer.save()
    _, csr = make_csr("user1")
    first, again = logged_on(user1, csr), logged_on(user1, csr)
    assert again["status"] == "pending" and again["request_id"] == first["request_id"]
    assert EnrollmentRequest.objects.count() == 1
    approved = lifecycle.approve(first["request_id"], by="admin").certificate
    after = logged_on(user1, csr)
    assert (after["status"], after["serial"]) == ("issued", approved.serial)
    assert EnrollmentRequest.objects.count() == 1 and Certificate.objects.filter(profile="smime").count() == 1
    assert logged_on(user1)["status"] == "pending"  # a new key still waits for an administrator


def test_a_disabled_customers_installation_report_is_refused_on_both_paths(user1, ready):
    """The report with the logon's token and the authenticated one decide alike (error 3): neither
    revokes the replaced certificate of a customer an administrator disabled."""
    first, second = logged_on(user1), logged_on(user1)
    ready.customer.enabled = False
    ready.customer.save()
    report = {"status": "installed", "serial": second["serial"], "replaced_serial": first["serial"]}
    assert_error(user1.logon_status(status_token=second["status_token"], **report), 3, "Customer disabled..")
    assert_error(user1.status(customeruri="acme", **report), 3, "Customer disabled..")
    assert Certificate.objects.get(serial=first["serial"]).status == "issued"


def test_refusals_carry_the_guides_numbers(user1, ready):
    assert_error(user1.logon(csr=make_csr("user1")[1]), 1, "No customer URI supplied..")
    assert_error(user1.logon(customeruri="acme"), 29, "No request supplied..")
    assert_error(user1.logon(customeruri="acme", csr="garbage"), 15, "Invalid CSR..")
    assert_error(user1.logon(customeruri="acme", csr=make_csr("user2")[1]), 19, "User Name in AD mismatch..")
    answer = user1.logon(customeruri="acme", email="user2@test.com", csr=make_csr("user1")[1])
    assert_error(answer, 18, "Email in AD mismatch..")
    for orgid in ("²", "١", "9" * 5000):  # digits to Python's isdigit, not orgids: 6, never a 500
        answer = user1.logon(customeruri="acme", orgid=orgid, csr=make_csr("user1")[1])
        assert_error(answer, 6, "Supplied orgid invalid..")
    assert not Certificate.objects.exists()
    assert set(EnrollmentEvent.objects.values_list("error_code", flat=True)) == {1, 29, 15, 19, 18, 6}


def test_a_renewal_logon_costs_at_most_four_sql_statements(user1, ready):
    logged_on(user1)  # the person exists and holds a certificate: the logon of every later renewal
    _, csr = make_csr("user1")
    token = user1.token()
    with CaptureQueriesContext(connection) as queries:
        answer = user1.client.post(
            "/api/enroll/logon",
            data={"customeruri": "acme", "csr": csr},
            content_type="application/json",
            HTTP_AUTHORIZATION=f"Negotiate {token}",
            secure=True,
        )
    assert answer.status_code == 200, answer.content
    control = ("BEGIN", "SAVEPOINT", "RELEASE")
    statements = [q["sql"] for q in queries.captured_queries if not q["sql"].upper().startswith(control)]
    assert len(statements) <= LOGON_STATEMENTS[connection.vendor], "\n".join(statements)


def test_a_renewals_status_report_costs_at_most_eight_sql_statements(user1, ready):
    """The generation, the person, the two certificates; the installation, the revocation, the CA's revocation
    generation, the dropped OCSP answer signed ahead, the two events in one insert."""
    first = logged_on(user1)
    second = logged_on(user1)
    report = {"status_token": second["status_token"], "status": "installed", "replaced_serial": first["serial"]}
    with CaptureQueriesContext(connection) as queries:
        answer = user1.logon_status(**report)
    assert answer.status_code == 200 and answer.json()["revoked_serial"] == first["serial"], answer.content
    control = ("BEGIN", "SAVEPOINT", "RELEASE")
    statements = [q["sql"] for q in queries.captured_queries if not q["sql"].upper().startswith(control)]
    assert len(statements) <= STATUS_REPORT_STATEMENTS, "\n".join(statements)


@pytest.mark.django_db(transaction=True)
def test_twenty_concurrent_logons_with_one_key_issue_one_certificate(ready, kerberos_env):
    _, csr = make_csr("user1")
    answers, errors = run_concurrently(20, lambda _: pipeline.logon(caller(), {"customeruri": "acme", "csr": csr}))
    assert not errors
    assert len({a.certificate.serial for a in answers}) == 1
    assert Certificate.objects.filter(profile="smime").count() == 1


@pytest.mark.django_db(transaction=True)
def test_twenty_concurrent_logons_with_new_keys_are_serialised_and_bounded(ready, kerberos_env):
    csrs = [make_csr("user1")[1] for _ in range(20)]
    answers, errors = run_concurrently(20, lambda i: pipeline.logon(caller(), {"customeruri": "acme", "csr": csrs[i]}))
    assert not errors and len(answers) == 20
    valid = Certificate.objects.valid().filter(profile="smime")
    assert valid.count() == 2  # never more than the bound, whatever the interleaving
    assert Certificate.objects.filter(profile="smime").count() == 20
    assert not EnrollmentRequest.objects.exists()  # no half-made request left behind


@pytest.mark.django_db(transaction=True)
def test_twenty_concurrent_installation_reports_of_one_renewal_revoke_the_replaced_once(ready, kerberos_env):
    """An agent whose report timed out sends it again while the first is still being answered: every one is a
    success, and the replaced certificate is revoked once, by one of them, with one event."""
    first = pipeline.logon(caller(), {"customeruri": "acme", "csr": make_csr("user1")[1]}).certificate
    second = pipeline.logon(caller(), {"customeruri": "acme", "csr": make_csr("user1")[1]}).certificate
    token = pipeline.status_token(second.person, second)
    report = {"status": "installed", "replaced_serial": first.serial}
    answers, errors = run_concurrently(20, lambda _: pipeline.report_with_token(token, dict(report)))
    assert not errors and len(answers) == 20
    assert [a.serial for a in answers if a is not None] == [first.serial]
    first.refresh_from_db()
    assert (first.status, first.revocation_reason) == ("revoked", "superseded")
    assert EnrollmentEvent.objects.filter(step="revoke", certificate=first).count() == 1
