"""A certificate issued by the built-in CA for a user of the real test AD, checked by real tools."""

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import NameOID
from django.core.management import CommandError, call_command

from autoenroll import pki
from autoenroll.server.certificates.models import Certificate
from autoenroll.server.enrollment.models import EnrollmentEvent
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


def test_certificate_for_an_ad_user_passes_pkilint_and_openssl_verify(tmp_path, ca, ca_files, ad_server):
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


def test_user_without_mail_in_ad_gets_no_certificate(tmp_path, ca, ad_server):
    _, csr = make_csr(tmp_path, cn="user3")
    with pytest.raises(CommandError, match="Error 16: No valid Email in AD.."):
        call_command("certificates", "issue", "--customer", "acme", "--principal", "user3@TEST.COM", "--csr", csr)
    assert not Certificate.objects.exists()
    assert EnrollmentEvent.objects.get().error_code == 16


def test_disabled_user_gets_no_certificate(tmp_path, ca, ad_server):
    _, csr = make_csr(tmp_path, cn="user4")
    with pytest.raises(CommandError, match="Error 17"):
        call_command("certificates", "issue", "--customer", "acme", "--principal", "user4@TEST.COM", "--csr", csr)
    assert not Certificate.objects.exists()


def test_wrong_ca_passphrase_is_a_clear_error(tmp_path, ca, ad_server, settings):
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
