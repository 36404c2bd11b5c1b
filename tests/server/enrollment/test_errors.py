"""Every server error of the guide (1-30), each triggered for real: a real ticket from the Samba AD DC,
real SPNEGO, real LDAP; faults are made at the boundary (a dead LDAP port, a missing CA key file, a
database that refuses a write), never by patching the pipeline."""

import uuid

import pytest
from cryptography import x509
from django.db import connection

from autoenroll.server.certificates.models import Certificate
from autoenroll.server.directory.models import ADServer, Person
from autoenroll.server.enrollment.models import EnrollmentEvent
from autoenroll.server.tenants.models import Customer, EmailDomain, Organization
from autoenroll.testbed import samba
from enroll_helpers import assert_error, make_csr

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def ready(ca, realm, organization):
    """A customer wired to the real AD, with an organization holding test.com."""
    return organization


def synced(agent, **data):
    answer = agent.sync(customeruri="acme", **data)
    assert answer.status_code == 200, answer.content
    return answer.json()


def enrolled(agent, cn="user1", mail="user1@test.com"):
    synced(agent)
    _, csr = make_csr(cn)
    answer = agent.enroll(customeruri="acme", email=mail, csr=csr)
    assert answer.status_code == 200, answer.content
    return answer.json()


def no_certificate_issued():
    return not Certificate.objects.filter(profile="smime").exists()


def last_event_code():
    return EnrollmentEvent.objects.order_by("-pk").first().error_code


@pytest.fixture
def refuse_writes():
    """refuse_writes(table, operation): the database itself refuses a write (as with a full disk or a lost
    connection) until the test ends."""
    triggers = []

    def refuse(table: str, operation: str) -> None:
        name = f"refuse_{table}_{operation.lower()}"
        with connection.cursor() as cursor:
            if connection.vendor == "sqlite":
                cursor.execute(
                    f"CREATE TRIGGER {name} BEFORE {operation} ON {table} "
                    "BEGIN SELECT RAISE(ABORT, 'disk I/O error'); END"
                )
            else:
                cursor.execute(
                    "CREATE OR REPLACE FUNCTION refuse_write() RETURNS trigger AS $$ "
                    "BEGIN RAISE EXCEPTION 'disk I/O error'; END $$ LANGUAGE plpgsql"
                )
                cursor.execute(
                    f"CREATE TRIGGER {name} BEFORE {operation} ON {table} FOR EACH ROW EXECUTE FUNCTION refuse_write()"
                )
        triggers.append((name, table))

    yield refuse
    with connection.cursor() as cursor:
        for name, table in triggers:
            cursor.execute(f"DROP TRIGGER IF EXISTS {name}" + ("" if connection.vendor == "sqlite" else f" ON {table}"))


def test_error_1_no_customer_uri(user1, ready):
    assert_error(user1.sync(), 1, "No customer URI supplied..")
    assert last_event_code() == 1


def test_error_2_customer_invalid(user1, ready):
    assert_error(user1.sync(customeruri="no-such-customer"), 2, "Customer invalid..")


def test_error_3_customer_disabled(user1, ready):
    Customer.objects.filter(uri="acme").update(enabled=False)
    assert_error(user1.sync(customeruri="acme"), 3, "Customer disabled..")


def test_error_4_mail_domain_not_the_customers(agent_for, kerberos_env, ready):
    sam = f"u{uuid.uuid4().hex[:8]}"
    kerberos_env.add_user(sam, "Passw0rd!Xx1", mail=f"{sam}@elsewhere.org")
    assert_error(agent_for(sam).sync(customeruri="acme"), 4, "No matched domain..")


def test_error_5_domain_unauthorized(user1, ready):
    EmailDomain.objects.filter(name="test.com").update(authorized=False)
    assert_error(user1.sync(customeruri="acme"), 5, "Domain unauthorized..")
    assert no_certificate_issued()


def test_error_6_orgid_not_a_number(user1, ready):
    assert_error(user1.sync(customeruri="acme", orgid="sales"), 6, "Supplied orgid invalid..")


def test_error_7_no_organization(user1, ready):
    assert_error(user1.sync(customeruri="acme", orgid="987654"), 7, "No organization found..")


def test_error_8_organization_of_another_customer(user1, ready):
    other = Customer.objects.create(uri="other", name="Other")
    foreign = Organization.objects.create(customer=other, name="Theirs")
    assert_error(user1.sync(customeruri="acme", orgid=str(foreign.pk)), 8, "No matched organization..")


def test_error_8_deleted_organization(user1, ready):
    Organization.objects.filter(pk=ready.pk).update(deleted=True)
    assert_error(user1.sync(customeruri="acme", orgid=str(ready.pk)), 8, "No matched organization..")


def test_error_8_organization_without_the_mail_domain(user1, ready):
    bare = Organization.objects.create(customer=ready.customer, name="No domains", ad_server=ready.ad_server)
    assert_error(user1.sync(customeruri="acme", orgid=str(bare.pk)), 8, "No matched organization..")


def test_error_9_no_ad_server(user1, ca, realm, acme):
    assert_error(user1.sync(customeruri="acme"), 9, "Failed to find the AD Server..")


def test_error_10_windows_domain_mismatch(user1, ready):
    assert_error(user1.sync(customeruri="acme", domainname="corp.example"), 10, "Windows domain mismatch..")


def test_error_10_bound_ad_server_of_another_domain(user1, ready):
    ADServer.objects.filter(pk=ready.ad_server_id).update(domain="corp.example")
    assert_error(user1.sync(customeruri="acme", orgid=str(ready.pk)), 10, "Windows domain mismatch..")


def test_error_11_no_suitable_organization(user1, ca, realm, ad_server):
    assert_error(user1.sync(customeruri="acme"), 11, "No suitable organization..")


def test_error_12_no_ad_server_for_the_users_domain(user1, ready):
    ADServer.objects.filter(pk=ready.ad_server_id).update(domain="corp.example")
    assert_error(user1.sync(customeruri="acme"), 12, "No matched ADServer..")


def test_error_13_ad_unreachable(user1, ready):
    ADServer.objects.filter(pk=ready.ad_server_id).update(port=1)  # nothing listens there
    assert_error(user1.sync(customeruri="acme"), 13, "Failed to get adserver or attributes..")


def test_error_13_ad_refuses_the_login(user1, ready):
    server = ready.ad_server
    server.login_password = "not-the-password"
    server.save()
    assert_error(user1.sync(customeruri="acme"), 13, "Failed to get adserver or attributes..")


def test_error_14_person_cannot_be_stored(user1, ready, refuse_writes):
    refuse_writes("directory_person", "INSERT")
    assert_error(user1.sync(customeruri="acme"), 14, "Failed to sync person..")
    assert last_event_code() == 14


@pytest.mark.parametrize(
    "csr",
    [
        "-----BEGIN CERTIFICATE REQUEST-----\nnot base64 at all\n-----END CERTIFICATE REQUEST-----\n",
        "hello",
        "tampered",
        "ca",
        "server-auth",
        "dns-san",
    ],
)
def test_error_15_invalid_csr(user1, ready, csr):
    if csr == "tampered":
        _, pem = make_csr("user1")
        _, other = make_csr("user1")
        lines, others = pem.splitlines(), other.splitlines()
        csr = "\n".join(lines[:3] + others[3:])  # another key's signature
    elif csr == "ca":
        _, csr = make_csr("user1", extensions=[(x509.BasicConstraints(ca=True, path_length=None), True)])
    elif csr == "server-auth":
        eku = x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH])
        _, csr = make_csr("user1", extensions=[(eku, False)])
    elif csr == "dns-san":
        san = x509.SubjectAlternativeName([x509.RFC822Name("user1@test.com"), x509.DNSName("test.com")])
        _, csr = make_csr("user1", extensions=[(san, False)])
    synced(user1)
    assert_error(user1.enroll(customeruri="acme", email="user1@test.com", csr=csr), 15, "Invalid CSR..")
    assert no_certificate_issued()


def test_error_16_no_mail_in_ad_but_the_request_names_one(agent_for, ready):
    assert_error(agent_for("user3").sync(customeruri="acme", email="user3@test.com"), 16, "No valid Email in AD..")


def test_error_16_enroll_for_a_person_without_mail(agent_for, ready):
    user3 = agent_for("user3")
    assert user3.sync(customeruri="acme").json()["email"] == ""
    synced_event = EnrollmentEvent.objects.filter(step="sync", principal="user3@TEST.COM").latest("pk")
    assert synced_event.outcome == "success" and "no mail" in synced_event.message  # not a bare "success"
    _, csr = make_csr("user3")
    assert_error(user3.enroll(customeruri="acme", email="user3@test.com", csr=csr), 16, "No valid Email in AD..")
    assert no_certificate_issued()


def test_error_17_user_not_under_the_users_base_dn(user1, ready):
    ADServer.objects.filter(pk=ready.ad_server_id).update(users_base_dn="CN=Computers,DC=test,DC=com")
    assert_error(user1.sync(customeruri="acme"), 17, "No valid User Name in AD..")


def test_error_17_disabled_in_ad_after_the_ticket_was_issued(agent_for, kerberos_env, ready):
    sam = f"u{uuid.uuid4().hex[:8]}"
    kerberos_env.add_user(sam, "Passw0rd!Xx1", mail=f"{sam}@test.com")
    agent = agent_for(sam)
    agent.token()  # holds a service ticket now
    kerberos_env.disable_user(sam)
    assert_error(agent.sync(customeruri="acme"), 17, "No valid User Name in AD..")


def test_error_18_user1_asks_for_user2s_mail(user1, ready):
    assert_error(user1.sync(customeruri="acme", email="user2@test.com"), 18, "Email in AD mismatch..")
    synced(user1)
    _, csr = make_csr("user1")
    assert_error(user1.enroll(customeruri="acme", email="user2@test.com", csr=csr), 18, "Email in AD mismatch..")
    assert no_certificate_issued()


def test_error_18_csr_names_another_mail(user1, ready):
    synced(user1)
    _, csr = make_csr("user1", mail="user2@test.com")
    assert_error(user1.enroll(customeruri="acme", email="user1@test.com", csr=csr), 18, "Email in AD mismatch..")
    san = x509.SubjectAlternativeName([x509.RFC822Name("user1@test.com"), x509.RFC822Name("ceo@test.com")])
    _, csr = make_csr("user1", extensions=[(san, False)])
    assert_error(user1.enroll(customeruri="acme", email="user1@test.com", csr=csr), 18, "Email in AD mismatch..")
    assert no_certificate_issued()


def test_error_18_ldap_filter_injection_in_the_email(user1, ready):
    assert_error(user1.sync(customeruri="acme", email="*)(mail=*"), 18, "Email in AD mismatch..")
    synced(user1)
    _, csr = make_csr("user1")
    assert_error(user1.enroll(customeruri="acme", email="*)(mail=*", csr=csr), 18, "Email in AD mismatch..")
    assert no_certificate_issued()


def test_error_19_user1_asks_for_user2s_cn(user1, ready):
    synced(user1)
    _, csr = make_csr("User Two")
    assert_error(user1.enroll(customeruri="acme", email="user1@test.com", csr=csr), 19, "User Name in AD mismatch..")
    _, csr = make_csr("user1")
    answer = user1.enroll(customeruri="acme", email="user1@test.com", cn="User Two", csr=csr)
    assert_error(answer, 19, "User Name in AD mismatch..")
    assert no_certificate_issued()


def test_error_20_another_customers_uri(user1, ready):
    other = Customer.objects.create(uri="other", name="Other")
    EmailDomain.objects.create(customer=other, name="other.example", authorized=True)
    assert_error(user1.sync(customeruri="other"), 20, "Person mismatch..")
    assert no_certificate_issued()
    # recorded in the log of the caller's own customer (its realm's), not in the named one's: a user of one
    # customer neither writes into another's log nor reads there what it says of them
    event = EnrollmentEvent.objects.get(error_code=20)
    assert event.customer == ready.customer and "other" not in event.detail
    disabled = Customer.objects.create(uri="gone", name="Gone", enabled=False)
    assert_error(user1.sync(customeruri="gone"), 20, "Person mismatch..")  # not 3: whether it is enabled is theirs
    assert not EnrollmentEvent.objects.filter(customer__in=[other, disabled]).exists()


def test_error_20_enroll_under_another_customer_than_synced(user1, ready):
    Customer.objects.create(uri="other", name="Other")
    ready.realm = None
    from autoenroll.server.kerberos.models import KerberosRealm

    KerberosRealm.objects.update(customer=None)  # a realm shared by customers
    synced(user1)
    _, csr = make_csr("user1")
    assert_error(user1.enroll(customeruri="other", email="user1@test.com", csr=csr), 20, "Person mismatch..")


def test_error_21_invalid_status(user1, ready):
    issued = enrolled(user1)
    assert_error(
        user1.status(customeruri="acme", status="done", serial=issued["serial"]), 21, "Invalid status supplied.."
    )


def test_error_22_status_from_an_unknown_person(user1, ready):
    assert_error(
        user1.status(customeruri="acme", status="installed", serial="1f"), 22, "Unknown person for processStatus.."
    )


def test_error_23_status_cannot_be_processed(user1, ready, refuse_writes):
    first = enrolled(user1)
    second = enrolled(user1)
    refuse_writes("certificates_certificate", "UPDATE")
    answer = user1.status(
        customeruri="acme", status="installed", serial=second["serial"], replaced_serial=first["serial"]
    )
    assert_error(answer, 23, "Failed to process status..")
    assert Certificate.objects.get(serial=first["serial"]).status == "issued"  # nothing half done


@pytest.mark.parametrize("which", ["unknown", "not-hex", "same", "user2s"])
def test_error_24_invalid_serial(user1, agent_for, ready, which):
    issued = enrolled(user1)
    data = {"customeruri": "acme", "status": "installed", "serial": issued["serial"]}
    if which == "unknown":
        data["serial"] = "abcdef0123456789"
    elif which == "not-hex":
        data["serial"] = "xyz"
    elif which == "same":
        data["replaced_serial"] = issued["serial"]
    elif which == "user2s":
        user2 = agent_for("user2")
        theirs = enrolled(user2, cn="user2", mail="user2@test.com")
        data["replaced_serial"] = theirs["serial"]
    assert_error(user1.status(**data), 24, "Invalid serial number supplied..")
    assert not Certificate.objects.filter(status="revoked", revocation_reason="superseded").exists()


def test_a_replaced_certificate_this_server_never_issued_is_no_error(user1, ready):
    """After a restore from backup, an agent replaces a certificate the lost server issued after the backup:
    its new certificate is recorded as installed, nothing is revoked, and the log says why."""
    issued = enrolled(user1)
    data = {"customeruri": "acme", "status": "installed", "serial": issued["serial"], "replaced_serial": "abcdef0123"}
    answer = user1.status(**data)
    assert answer.status_code == 200 and answer.json() == {"status": "ok", "revoked_serial": None}, answer.content
    assert Certificate.objects.get(serial=issued["serial"]).installed_at is not None
    event = EnrollmentEvent.objects.filter(step="status").latest("pk")
    assert event.message == "replaced certificate abcdef0123 is unknown here: nothing to revoke"


def test_a_replaced_certificate_revoked_already_is_no_error(user1, ready):
    """The status answer was lost after the revocation committed: the agent's report comes again, and
    converges (it used to be error 24 at every logon from then on)."""
    old, new = enrolled(user1), enrolled(user1)
    data = {"customeruri": "acme", "status": "installed", "serial": new["serial"], "replaced_serial": old["serial"]}
    first = user1.status(**data)
    assert first.status_code == 200 and first.json()["revoked_serial"] == old["serial"]
    again = user1.status(**data)
    assert again.status_code == 200, again.content
    assert again.json() == {"status": "ok", "revoked_serial": None}
    assert Certificate.objects.get(serial=old["serial"]).revocation_reason == "superseded"


def test_error_25_ca_key_unavailable(user1, ready, settings, tmp_path):
    from autoenroll.server.certificates import authority

    authority.forget_signers()
    ready.customer.ad_servers.first()  # keep the fixture graph alive
    issuing = authority.issuing_ca()
    issuing.key_path = str(tmp_path / "moved-away.key")  # the key store is gone
    issuing.save()
    synced(user1)
    _, csr = make_csr("user1")
    assert_error(user1.enroll(customeruri="acme", email="user1@test.com", csr=csr), 25, "Failed to get cert..")
    assert no_certificate_issued()


def test_error_25_no_ca_passphrase(user1, ready, settings):
    """Found killing the server's configuration: a server started without the CA passphrase answered an
    HTML 500 and left the request pending; it is the guide's 25, and nothing is half made."""
    from autoenroll.server.certificates import authority

    authority.forget_signers()
    settings.CONFIG = settings.CONFIG.model_copy(update={"ca_passphrase": None, "ca_passphrase_file": None})
    _, csr = make_csr("user1")
    answer = user1.logon(customeruri="acme", csr=csr)
    assert answer.status_code == 503 and answer["Retry-After"] == "60"  # the admin will give the passphrase
    assert_error(answer, 25, "Failed to get cert..")
    assert no_certificate_issued()


def test_error_25_unknown_request(user1, ready):
    assert_error(user1.get(f"requests/{uuid.uuid4()}"), 25, "Failed to get cert..")


def test_error_26_no_email(user1, ready):
    synced(user1)
    _, csr = make_csr("user1")
    assert_error(user1.enroll(customeruri="acme", csr=csr), 26, "No email supplied..")


def test_error_27_a_computer_account_is_not_a_user(agent_for, kerberos_env, ready):
    sam = f"ws{uuid.uuid4().hex[:6]}$"
    kerberos_env.add_user(
        sam,
        "Passw0rd!Ws1",
        objectClass=["top", "person", "organizationalPerson", "user", "computer"],
        userAccountControl="4096",
    )
    assert_error(agent_for(sam).sync(customeruri="acme"), 27, "Invalid remote user..")


def test_error_28_enroll_without_sync(user1, ready):
    _, csr = make_csr("user1")
    assert_error(user1.enroll(customeruri="acme", email="user1@test.com", csr=csr), 28, "No synchronized person ..")


def test_error_29_no_request(user1, ready):
    synced(user1)
    assert_error(user1.enroll(customeruri="acme", email="user1@test.com"), 29, "No request supplied..")


def test_error_30_certificate_cannot_be_recorded(user1, ready, refuse_writes):
    synced(user1)
    refuse_writes("certificates_certificate", "INSERT")
    _, csr = make_csr("user1")
    assert_error(
        user1.enroll(customeruri="acme", email="user1@test.com", csr=csr), 30, "Failed to enroll certificate.."
    )
    assert no_certificate_issued()


def test_every_refusal_is_an_event_without_secrets(user1, ready):
    user1.sync(customeruri="acme", email="user2@test.com")
    event = EnrollmentEvent.objects.get()
    assert (event.step, event.outcome, event.error_code, event.principal) == ("sync", "error", 18, "user1@TEST.COM")
    assert event.customer.uri == "acme"
    assert samba.SERVICE_ACCOUNT_PASSWORD not in event.detail
    assert Person.objects.count() == 0
