import argparse
import getpass
import re
import sys
from pathlib import Path

from django.core.management.base import CommandError
from django.db import transaction

from autoenroll import pki
from autoenroll.protocol import EnrollmentError
from autoenroll.server.certificates import authority, publication
from autoenroll.server.certificates.models import Certificate, RevocationReason
from autoenroll.server.directory.sync import sync_person
from autoenroll.server.enrollment import lifecycle
from autoenroll.server.enrollment.events import record_error
from autoenroll.server.enrollment.models import EnrollmentEvent
from autoenroll.server.tenants.models import EmailDomain
from autoenroll.server.utils.commands import SubcommandCommand, get_customer


class Command(SubcommandCommand):
    help = "Issue a certificate for an AD user from a CSR, list issued certificates, revoke them."
    actions = {
        "issue": "issue an S/MIME certificate for an AD user",
        "list": "list certificates",
        "revoke": "revoke certificates by serial (the CRL is regenerated at once, OCSP answers at once)",
    }

    def add_issue_arguments(self, p) -> None:
        p.add_argument("--customer", required=True, help="customer uri")
        p.add_argument("--principal", required=True, help="the user's Kerberos principal, e.g. user1@TEST.COM")
        p.add_argument("--csr", required=True, help="PKCS#10 request (PEM or DER); only its key is used")
        p.add_argument("--out", help="write the certificate here (PEM); default: standard output")

    def add_list_arguments(self, p) -> None:
        p.add_argument("--mail")

    def add_revoke_arguments(self, p) -> None:
        p.add_argument("serials", nargs="*", metavar="SERIAL", help="hexadecimal serial (colons and 0x allowed)")
        p.add_argument("--file", help="read more serials from this file, one per line ('-': standard input)")
        p.add_argument(
            "--reason",
            required=True,
            type=_reason,
            help=f"one of {', '.join(r.replace('_', '-') for r in RevocationReason.values)}",
        )
        p.add_argument("--ca", help="the issuing CA's name, when a serial is not unique")
        p.add_argument("--by", default="", help="who revokes (recorded; default: the CLI user)")

    def handle_issue(self, customer, principal, csr, out, **_) -> None:
        cust = get_customer(customer)
        server = cust.ad_servers.filter(is_default=True).first()
        step = EnrollmentEvent.Step.ISSUE
        try:
            csr_bytes = Path(csr).read_bytes()
        except OSError as exc:
            raise CommandError(f"cannot read {csr}: {exc.strerror}") from None
        try:
            if server is None:
                raise EnrollmentError(9, f"customer {cust} has no default AD server")
            person, user = sync_person(cust, server, principal)
            if not user.mail:
                raise EnrollmentError(16, f"{principal} has no mail in AD")
            domain = EmailDomain.objects.filter(customer=cust, name=user.mail.rpartition("@")[2].lower()).first()
            if domain is None:
                raise EnrollmentError(4, f"{user.mail}: domain is not one of customer {cust}'s")
            if not domain.authorized:
                raise EnrollmentError(5, f"{domain} is not authorized")
            try:
                public_key = pki.public_key_from_csr(csr_bytes)
            except pki.InvalidCSR as exc:
                raise EnrollmentError(15, str(exc)) from None
            with transaction.atomic():
                locked = lifecycle.lock(person, authority.key_sha256(public_key))
                cert = lifecycle.issue(
                    locked,
                    public_key,
                    csr_pem=csr_bytes.decode("ascii", "replace"),
                    step=step,
                    message=f"issued by cli:{getpass.getuser()}",
                ).certificate
        except EnrollmentError as exc:
            record_error(step, principal, exc, customer=cust)
            raise CommandError(str(exc)) from None
        if out:
            Path(out).write_text(cert.pem)
            self.stderr.write(f"certificate for {cert.mail} #{cert.serial} written to {out}")
        else:
            self.stdout.write(cert.pem, ending="")

    def handle_list(self, mail, **_) -> None:
        certs = Certificate.objects.select_related("ca")
        if mail:
            certs = certs.filter(mail__iexact=mail)
        self.table(
            [(c.serial, c.mail or c.subject, c.ca.name, f"{c.not_after:%Y-%m-%d}", c.state) for c in certs],
            ("SERIAL", "MAIL", "CA", "VALID UNTIL", "STATUS"),
        )

    def handle_revoke(self, serials, file, reason, ca, by, **_) -> None:
        wanted = [_serial(s) for s in serials]
        if file:
            try:
                text = sys.stdin.read() if file == "-" else Path(file).read_text()
            except OSError as exc:
                raise CommandError(f"cannot read {file}: {exc.strerror}") from None
            wanted += [_serial(line) for line in text.split() if line.strip()]
        if not wanted:
            raise CommandError("give at least one SERIAL or --file")
        certs = Certificate.objects.filter(serial__in=set(wanted))
        if ca:
            certs = certs.filter(ca__name=ca)
        found = list(certs.select_related("ca"))
        duplicates = {c.serial for c in found if sum(1 for d in found if d.serial == c.serial) > 1}
        if duplicates:
            raise CommandError(f"serial(s) {', '.join(sorted(duplicates))} exist under several CAs: add --ca")
        missing = set(wanted) - {c.serial for c in found}
        if missing:
            raise CommandError(f"no certificate with serial {', '.join(sorted(missing))}")
        already = [c.serial for c in found if c.status == Certificate.Status.REVOKED]
        for serial in already:
            self.stderr.write(f"{serial}: already revoked, left as it is")
        todo = [c for c in found if c.status == Certificate.Status.ISSUED]
        who = by or f"cli:{getpass.getuser()}"
        count = len(self._revoke(todo, reason, who))
        self.stdout.write(f"revoked {count} certificate(s) ({reason.replace('_', ' ')})")
        for ca_row in {c.ca for c in todo}:
            try:
                crl = publication.publish_crl(ca_row, force=False)
            except (authority.CAError, pki.PKIError) as exc:
                self.stderr.write(f"CRL {ca_row.name}: not regenerated now ({exc}); `serve` will")
                continue
            self.stdout.write(f"CRL {ca_row.name} #{crl.number}: {crl.entries} entries")

    def _revoke(self, todo, reason, who) -> list:
        todo = Certificate.objects.filter(pk__in=[c.pk for c in todo])  # read again with their persons
        if len(todo) < 200 or not self.stdout.isatty():
            return lifecycle.revoke(todo, reason, by=who)
        from rich.progress import Progress

        with Progress(transient=True) as bar:
            task = bar.add_task("revoking", total=len(todo))
            return lifecycle.revoke(todo, reason, by=who, progress=lambda n: bar.advance(task, n))


def _reason(value: str) -> str:
    """Accept key-compromise, key_compromise or keyCompromise."""
    normal = re.sub(r"(?<!^)([A-Z])", r"_\1", value).replace("-", "_").lower()
    if normal not in RevocationReason.values:
        raise argparse.ArgumentTypeError(f"unknown reason {value!r}")
    return normal


def _serial(value: str) -> str:
    try:
        return pki.parse_serial(value)
    except ValueError as exc:
        raise CommandError(str(exc)) from None
