import pytest
from cryptography import x509
from django.core.management import CommandError, call_command
from pydantic import SecretStr

from autoenroll.server.certificates import authority
from autoenroll.server.certificates.models import Certificate, CertificateAuthority

pytestmark = pytest.mark.django_db


@pytest.fixture
def config(settings, tmp_path):
    """A data directory of this test's own: `ca init` writes key files."""
    settings.CONFIG = settings.CONFIG.model_copy(update={"data_dir": tmp_path / "data"})
    authority.forget_signers()
    return settings.CONFIG


def test_init_creates_database_ca_and_tls_certificate(config, capsys):
    config.data_dir.mkdir(mode=0o755)  # as useradd --create-home may leave it
    call_command("init", "--key-type", "ec-p256")
    assert config.data_dir.stat().st_mode & 0o777 == 0o700
    assert set(CertificateAuthority.objects.values_list("role", flat=True)) == {"root", "issuing"}
    tls = x509.load_pem_x509_certificate(config.tls_cert_path.read_bytes())
    assert tls.issuer == x509.load_pem_x509_certificate((config.ca_dir / "root-ca.pem").read_bytes()).subject
    assert config.tls_key_path.stat().st_mode & 0o777 == 0o600
    assert Certificate.objects.get().profile == "tls_server"  # every signed certificate is recorded


def test_ca_init_twice_never_overwrites(config):
    call_command("ca", "init", "--key-type", "rsa-3072")
    files = {p.name: p.read_bytes() for p in config.ca_dir.iterdir()}
    with pytest.raises(CommandError, match="already exists"):
        call_command("ca", "init")
    assert {p.name: p.read_bytes() for p in config.ca_dir.iterdir()} == files
    assert CertificateAuthority.objects.count() == 2


def test_ca_init_refuses_leftover_key_files(config):
    call_command("ca", "init")
    CertificateAuthority.objects.filter(role="issuing").delete()
    CertificateAuthority.objects.all().delete()
    with pytest.raises(CommandError, match="not overwriting"):
        call_command("ca", "init")


def test_keys_are_encrypted_and_private(config):
    call_command("ca", "init")
    for key in config.ca_dir.glob("*.key"):
        assert key.stat().st_mode & 0o777 == 0o600
        assert key.read_bytes().startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")


def test_wrong_passphrase_gives_a_clear_error(config, settings):
    call_command("ca", "init")
    authority.forget_signers()
    settings.CONFIG = config.model_copy(update={"ca_passphrase": SecretStr("not-the-passphrase")})
    with pytest.raises(CommandError, match="wrong passphrase"):
        call_command("ca", "tls")


def test_missing_passphrase_names_the_settings(config, settings):
    settings.CONFIG = config.model_copy(update={"ca_passphrase": None, "ca_passphrase_file": None})
    with pytest.raises(CommandError, match="AUTOENROLL_CA_PASSPHRASE"):
        call_command("ca", "init")
