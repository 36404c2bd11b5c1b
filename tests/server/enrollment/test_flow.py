"""The happy path and renewal, end to end with real Kerberos, LDAP and CA."""

import pytest
from cryptography import x509

from autoenroll.server.certificates.models import Certificate
from autoenroll.server.enrollment import pipeline
from autoenroll.server.enrollment.models import EnrollmentEvent, EnrollmentRequest
from checks import lint_smime_mailbox_strict, run_openssl
from enroll_helpers import caller, make_csr, run_concurrently

pytestmark = pytest.mark.django_db


@pytest.fixture
def enrollment_ready(ca, realm, organization):
    return organization


def enroll_user1(user1, **extra):
    sync = user1.sync(customeruri="acme", domainname="test.com")
    assert sync.status_code == 200, sync.content
    _, csr = make_csr("user1")
    return user1.enroll(customeruri="acme", email=sync.json()["email"], csr=csr, **extra)


def test_user1_syncs_enrolls_and_gets_a_certificate_for_the_mail_ad_holds(user1, enrollment_ready, ca_files, tmp_path):
    sync = user1.sync(customeruri="acme", domainname="test.com")
    assert sync.json() == {
        "principal": "user1@TEST.COM",
        "email": "user1@test.com",
        "cn": "User One",
        "orgid": str(enrollment_ready.pk),
        "customeruri": "acme",
    }
    _, csr = make_csr("user1")
    answer = user1.enroll(customeruri="acme", email="user1@test.com", csr=csr)
    assert answer.status_code == 200, answer.content
    body = answer.json()
    assert body["status"] == "issued"
    cert = x509.load_pem_x509_certificate(body["certificate"].encode())
    assert cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
        x509.RFC822Name
    ) == ["user1@test.com"]
    assert lint_smime_mailbox_strict(cert) == []
    (tmp_path / "leaf.pem").write_text(body["certificate"])
    (tmp_path / "chain.pem").write_text(body["chain"])
    verify = run_openssl(
        "verify", "-CAfile", ca_files.root_cert_path, "-untrusted", tmp_path / "chain.pem", tmp_path / "leaf.pem"
    )
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert body["serial"] == format(cert.serial_number, "x")
    assert user1.status(customeruri="acme", status="installed", serial=body["serial"]).json() == {
        "status": "ok",
        "revoked_serial": None,
    }
    steps = list(EnrollmentEvent.objects.order_by("pk").values_list("step", "outcome"))
    assert steps == [("sync", "success"), ("enroll", "success"), ("status", "success")]


def test_renewal_revokes_the_replaced_certificate_as_superseded_after_installed(user1, enrollment_ready):
    first = enroll_user1(user1).json()
    second = enroll_user1(user1).json()
    old = Certificate.objects.get(serial=first["serial"])
    assert old.status == "issued"  # not before the agent says the new one is installed
    answer = user1.status(
        customeruri="acme", status="installed", serial=second["serial"], replaced_serial=first["serial"]
    )
    assert answer.json() == {"status": "ok", "revoked_serial": first["serial"]}
    old.refresh_from_db()
    assert old.status == "revoked" and old.revocation_reason == "superseded" and old.revoked_at
    assert Certificate.objects.get(serial=second["serial"]).replaces == old


def test_request_held_for_approval_is_collected_by_polling(user1, enrollment_ready):
    from autoenroll.server.enrollment import lifecycle

    enrollment_ready.customer.require_approval = True
    enrollment_ready.customer.save()
    pending = enroll_user1(user1).json()
    assert pending["status"] == "pending" and pending["certificate"] is None
    assert user1.get(f"requests/{pending['request_id']}").json()["status"] == "pending"
    lifecycle.approve(pending["request_id"], by="admin")
    collected = user1.get(f"requests/{pending['request_id']}").json()
    assert collected["status"] == "issued" and "BEGIN CERTIFICATE" in collected["certificate"]


def test_another_user_cannot_collect_my_request(user1, agent_for, enrollment_ready):
    enrollment_ready.customer.require_approval = True
    enrollment_ready.customer.save()
    pending = enroll_user1(user1).json()
    answer = agent_for("user2").get(f"requests/{pending['request_id']}")
    assert answer.json()["error"]["code"] == 25


def test_the_answer_carries_a_mutual_authentication_token(user1, enrollment_ready):
    answer = user1.sync(customeruri="acme")
    assert answer["WWW-Authenticate"].startswith("Negotiate ")


def test_without_a_ticket_the_answer_is_401_negotiate(client, enrollment_ready):
    answer = client.post("/api/enroll/sync", data={}, content_type="application/json", secure=True)
    assert answer.status_code == 401
    assert answer["WWW-Authenticate"] == "Negotiate"
    assert answer.content.decode() == "This request requires HTTP authentication ()."
    assert not EnrollmentEvent.objects.exists()  # the first leg of Negotiate is no refusal


def test_a_refused_kerberos_token_is_in_the_enrollment_log_with_the_reason(user1, enrollment_ready):
    """The admin sees why an agent got error 37 (here a replay) without reading server.log."""
    token = user1.token()
    headers = {"HTTP_AUTHORIZATION": f"Negotiate {token}", "secure": True, "content_type": "application/json"}
    assert user1.client.post("/api/enroll/sync", data={"customeruri": "acme"}, **headers).status_code == 200
    assert user1.client.post("/api/enroll/sync", data={"customeruri": "acme"}, **headers).status_code == 401
    event = EnrollmentEvent.objects.filter(outcome="error").get()
    assert event.error_code == 37 and event.detail.startswith("Kerberos refused (replay)")


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("approval", [False, True], ids=["issued", "held for approval"])
def test_twenty_concurrent_enrolls_of_one_csr_make_one_request_and_at_most_one_certificate(
    enrollment_ready, kerberos_env, approval
):
    """The older agents' enroll (and MS-WSTEP's, which goes through it) sent again while the first is still
    answered: one request, every answer naming it, and one certificate or none until an admin approves."""
    enrollment_ready.customer.require_approval = approval
    enrollment_ready.customer.save()
    pipeline.sync(caller(), {"customeruri": "acme"})
    data = {"customeruri": "acme", "email": "user1@test.com", "csr": make_csr("user1")[1]}
    answers, errors = run_concurrently(20, lambda _: pipeline.enroll(caller(), dict(data)))
    assert not errors and len(answers) == 20
    assert len({a.pk for a in answers}) == 1 and EnrollmentRequest.objects.count() == 1
    assert Certificate.objects.filter(profile="smime").count() == (0 if approval else 1)
    assert EnrollmentRequest.objects.get().status == ("pending" if approval else "issued")
