"""A certificate issued by the built-in CA for a user of the real test AD, checked by real tools."""

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import NameOID
from django.core.management import CommandError, call_command

from autoenroll import pki
from autoenroll.server.certificates.models import Certificate
from autoenroll.server.enrollment.models import EnrollmentEvent, EnrollmentRequest
from checks import lint_smime_mailbox_strict, run_openssl

pytestmark = pytest.mark.django_db


def make_csr(tmp_path, cn="user1"):
    key = pki.generate_private_key("ec-p256")
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
        .sign(key, hashes.SHA256())
    )
    path = tmp_path / "user.csr"
    path.write_bytes(csr.public_bytes(serialization.Encoding.PEM))
    return key, path


def test_certificate_for_an_ad_user_passes_pkilint_and_openssl_verify(tmp_path, ca, ca_files, organization):
    _, csr = make_csr(tmp_path)
    out = tmp_path / "user1.pem"
    call_command(
        "certificates", "issue", "--customer", "acme", "--principal", "user1@TEST.COM", "--csr", csr, "--out", out
    )
    cert = x509.load_pem_x509_certificate(out.read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.RFC822Name) == ["user1@test.com"]  # the mail AD holds
    assert lint_smime_mailbox_strict(cert) == []
    verify = run_openssl(
        "verify",
        "-CAfile",
        ca_files.root_cert_path,
        "-untrusted",
        ca_files.issuing_cert_path,
        "-purpose",
        "smimesign",
        out,
    )
    assert verify.returncode == 0, verify.stdout + verify.stderr
    row = Certificate.objects.get(serial=format(cert.serial_number, "x"))
    assert row.person.principal == "user1@TEST.COM" and row.mail == "user1@test.com"
    assert EnrollmentEvent.objects.filter(step="issue", outcome="success", certificate=row).exists()


def test_user_without_mail_in_ad_gets_no_certificate(tmp_path, ca, organization):
    _, csr = make_csr(tmp_path, cn="user3")
    with pytest.raises(CommandError, match="Error 16: No valid Email in AD.."):
        call_command("certificates", "issue", "--customer", "acme", "--principal", "user3@TEST.COM", "--csr", csr)
    assert not Certificate.objects.exists()
    assert EnrollmentEvent.objects.get().error_code == 16


def test_disabled_user_gets_no_certificate(tmp_path, ca, organization):
    _, csr = make_csr(tmp_path, cn="user4")
    with pytest.raises(CommandError, match="Error 17"):
        call_command("certificates", "issue", "--customer", "acme", "--principal", "user4@TEST.COM", "--csr", csr)
    assert not Certificate.objects.exists()


def test_wrong_ca_passphrase_is_a_clear_error(tmp_path, ca, organization, settings):
    from autoenroll.server.certificates import authority

    authority.forget_signers()
    settings.CONFIG = settings.CONFIG.model_copy(update={"ca_passphrase": pki_secret("wrong")})
    _, csr = make_csr(tmp_path)
    with pytest.raises(CommandError, match="wrong passphrase"):
        call_command("certificates", "issue", "--customer", "acme", "--principal", "user1@TEST.COM", "--csr", csr)
    assert not Certificate.objects.exists()


def pki_secret(value):
    from pydantic import SecretStr

    return SecretStr(value)


def issue(csr, *more):
    call_command("certificates", "issue", "--customer", "acme", "--principal", "user1@TEST.COM", "--csr", csr, *more)


def test_the_command_line_asks_as_an_agent_does(tmp_path, ca, organization):
    """`certificates issue` goes through the agent's logon: the same rules (a disabled customer is
    error 3), the same checks of the CSR (another person's name is error 19), the same retry (the same
    key gets the same certificate), and the person keeps the organization AD put them in."""
    _, other = make_csr(tmp_path, cn="user2")
    with pytest.raises(CommandError, match="Error 19"):
        issue(other)
    _, csr = make_csr(tmp_path)
    out1, out2 = tmp_path / "1.pem", tmp_path / "2.pem"
    issue(csr, "--out", out1)
    issue(csr, "--out", out2)
    assert out1.read_text() == out2.read_text() and Certificate.objects.count() == 1
    assert Certificate.objects.get().person.organization == organization
    organization.customer.enabled = False
    organization.customer.save()
    with pytest.raises(CommandError, match="Error 3: Customer disabled"):
        issue(make_csr(tmp_path)[1])
    assert Certificate.objects.count() == 1


def test_for_a_customer_that_requires_approval_the_command_line_approves(tmp_path, ca, organization):
    organization.customer.require_approval = True
    organization.customer.save()
    issue(make_csr(tmp_path)[1], "--out", tmp_path / "1.pem")
    request = EnrollmentRequest.objects.get()
    assert request.status == "issued" and request.decided_by.startswith("cli:")
    assert request.certificate.pem == (tmp_path / "1.pem").read_text()
