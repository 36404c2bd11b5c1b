from django.conf import settings
from django.core.management.base import CommandError

from autoenroll import pki
from autoenroll.server.certificates import authority
from autoenroll.server.certificates.models import CertificateAuthority
from autoenroll.server.config import ConfigError
from autoenroll.server.utils.commands import SubcommandCommand


class Command(SubcommandCommand):
    help = "The built-in certificate authority: create it, list it, issue the server's TLS certificate."
    actions = {
        "init": "create the root and the S/MIME issuing CA (never replaces an existing one)",
        "list": "list the CAs",
        "tls": "issue a new TLS certificate for this server, signed by the root",
        "rotate": "key rotation: a new S/MIME issuing CA signed by the root, active at once in every server",
        "activate": "make an existing issuing CA the one that issues (every server, from its next request)",
    }

    def add_init_arguments(self, p) -> None:
        p.add_argument("--key-type", choices=pki.CA_KEY_TYPES, help="default: AUTOENROLL_CA_KEY_TYPE")
        p.add_argument("--name", help="CA name (default: AUTOENROLL_CA_NAME)")
        p.add_argument(
            "--pkcs11",
            nargs=2,
            metavar=("ROOT_URI", "ISSUING_URI"),
            help="generate both keys in an HSM, e.g. pkcs11:token=ca;object=root pkcs11:token=ca;object=smime "
            "(the PIN is AUTOENROLL_CA_PASSPHRASE[_FILE]; the module AUTOENROLL_PKCS11_MODULE)",
        )

    def add_rotate_arguments(self, p) -> None:
        p.add_argument("--name", help="the new CA's name, as in its CRL URL (default: <name>-smime-<n>)")

    def add_activate_arguments(self, p) -> None:
        p.add_argument("name", help="the issuing CA's name (see `ca list`)")

    def add_tls_arguments(self, p) -> None:
        p.add_argument("--name", action="append", default=[], help="extra DNS name or IP (repeatable)")

    def handle(self, *args, **options):
        try:
            return super().handle(*args, **options)
        except (authority.CAError, ConfigError, pki.PKIError) as exc:
            raise CommandError(str(exc)) from None

    def handle_init(self, key_type, name, pkcs11, **_) -> None:
        root, issuing = authority.create_hierarchy(
            settings.CONFIG, key_type=key_type, name=name, token_uris=tuple(pkcs11) if pkcs11 else None
        )
        self.stdout.write(f"root CA    {root.subject}  (valid until {root.not_after:%Y-%m-%d})")
        self.stdout.write(f"issuing CA {issuing.subject}  (valid until {issuing.not_after:%Y-%m-%d})")
        where = f"in the HSM ({issuing.key_path})" if pkcs11 else f"encrypted in {settings.CONFIG.ca_dir}"
        self.stdout.write(f"keys {where}")

    def handle_list(self, **_) -> None:
        self.table(
            [
                (ca.name, ca.get_role_display(), ca.subject, f"{ca.not_after:%Y-%m-%d}", "yes" if ca.active else "")
                for ca in CertificateAuthority.objects.all()
            ],
            ("NAME", "ROLE", "SUBJECT", "VALID UNTIL", "ISSUES"),
        )

    def handle_tls(self, name, **_) -> None:
        cert = authority.issue_tls_certificate(settings.CONFIG, extra_names=name)
        self.stdout.write(f"TLS certificate {cert.subject} #{cert.serial} written to {settings.CONFIG.tls_cert_path}")
        self.stdout.write("a running `serve` presents it after a restart (systemctl restart autoenroll)")

    def handle_rotate(self, name, **_) -> None:
        ca = authority.rotate_issuing_ca(settings.CONFIG, name)
        self.stdout.write(f"issuing CA {ca.name}: {ca.subject} (valid until {ca.not_after:%Y-%m-%d}), active")

    def handle_activate(self, name, **_) -> None:
        ca = CertificateAuthority.objects.filter(name=name).first()
        if ca is None:
            raise CommandError(f"no CA named {name!r}")
        authority.activate(ca)
        self.stdout.write(f"issuing CA {ca.name} active")
