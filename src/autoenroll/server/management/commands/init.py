"""`autoenroll-server init`: everything a new installation needs, safe to run again."""

from pathlib import Path
from urllib.parse import urlsplit

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand
from django.db import connection

from autoenroll.server.certificates.models import CertificateAuthority
from autoenroll.server.startup import prepare_kerberos


class Command(BaseCommand):
    help = "Create or upgrade the database, create the CA and the server's TLS certificate when missing."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--key-type", help="CA key type for a new CA (default: AUTOENROLL_CA_KEY_TYPE)")
        parser.add_argument(
            "--pkcs11", nargs=2, metavar=("ROOT_URI", "ISSUING_URI"), help="a new CA's keys in an HSM (see `ca init`)"
        )

    def handle(self, *args, key_type, pkcs11, **options) -> None:
        config = settings.CONFIG
        config.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        config.data_dir.chmod(0o700)  # also when it existed (useradd --create-home): CA keys, database
        prepare_kerberos()  # the replay cache directory and krb5 file, owned by whoever runs init
        call_command("migrate", interactive=False, verbosity=0)
        database = Path(str(connection.settings_dict["NAME"]))
        if connection.vendor == "sqlite" and database.is_file():  # AD passwords (encrypted), every certificate
            database.chmod(0o600)
        self.stdout.write(f"database ready ({config.effective_database_url.split('@')[-1]})")
        if urlsplit(config.publication_url).hostname in ("localhost", "127.0.0.1", "::1"):
            self.stderr.write(
                f"warning: certificates will name CRL/OCSP URLs on {config.publication_url}, which only this "
                "machine can reach: set AUTOENROLL_PUBLICATION_URL to the server's public http:// address"
            )
        if CertificateAuthority.objects.exists():
            self.stdout.write("CA exists: kept")
        else:
            extra = (["--key-type", key_type] if key_type else []) + (["--pkcs11", *pkcs11] if pkcs11 else [])
            call_command("ca", "init", *extra, stdout=self.stdout)
        if config.tls_cert is None and not config.tls_cert_path.exists():
            call_command("ca", "tls", stdout=self.stdout)
        else:
            self.stdout.write(f"TLS certificate exists: {config.tls_cert_path}")
