"""`init --pkcs11`: the CA keys are generated in an HSM (a real SoftHSM2 token) and everything the server
signs goes through it: the TLS certificate at init, the S/MIME certificates of the enrollment flow."""

import pytest
from cryptography import x509
from django.core.management import call_command
from pydantic import SecretStr

from autoenroll import pki
from autoenroll.server.certificates import authority
from checks import lint_smime_mailbox_strict, run_openssl
from hsm_token import PIN, softhsm_token, uri

pytestmark = pytest.mark.django_db


@pytest.fixture
def token_config(settings, tmp_path):
    with softhsm_token(tmp_path / "hsm"):
        settings.CONFIG = settings.CONFIG.model_copy(
            update={"data_dir": tmp_path / "data", "ca_passphrase": SecretStr(PIN)}
        )
        authority.forget_signers()
        yield settings.CONFIG
        authority.forget_signers()


def test_everything_the_server_signs_goes_through_the_token(token_config, tmp_path):
    call_command("init", "--pkcs11", uri("root"), uri("smime"))
    root, issuing = authority.root_ca(), authority.issuing_ca()
    assert {root.key_backend, issuing.key_backend} == {authority.PKCS11_BACKEND}
    assert not list(token_config.data_dir.rglob("*-ca.key"))  # no key file anywhere
    tls = x509.load_pem_x509_certificate(token_config.tls_cert_path.read_bytes())
    assert tls.issuer.rfc4514_string() == root.subject
    cert = authority.issue_smime(token_config, pki.generate_private_key("ec-p256").public_key(), "user1@test.com")
    assert lint_smime_mailbox_strict(x509.load_pem_x509_certificate(cert.pem.encode())) == []
    for name, pem in (("root", root.certificate_pem), ("issuing", issuing.certificate_pem), ("leaf", cert.pem)):
        (tmp_path / f"{name}.pem").write_text(pem)
    verify = run_openssl("verify", "-CAfile", tmp_path / "root.pem", "-untrusted", tmp_path / "issuing.pem",
                         tmp_path / "leaf.pem")  # fmt: skip
    assert verify.returncode == 0, verify.stdout + verify.stderr


def test_a_wrong_pin_is_a_clear_error(token_config, settings):
    from django.core.management import CommandError

    call_command("ca", "init", "--pkcs11", uri("root"), uri("smime"))
    authority.forget_signers()
    pki.clear_token_cache()
    settings.CONFIG = token_config.model_copy(update={"ca_passphrase": SecretStr("000000")})
    with pytest.raises(CommandError, match="PIN"):
        call_command("ca", "tls")
