import argparse
import getpass
import re
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from django.core.management.base import CommandError

from autoenroll import pki
from autoenroll.protocol import EnrollmentError
from autoenroll.server.certificates import authority, publication
from autoenroll.server.certificates.models import Certificate, RevocationReason
from autoenroll.server.enrollment import lifecycle, pipeline
from autoenroll.server.enrollment.models import EnrollmentEvent
from autoenroll.server.utils.commands import SubcommandCommand, get_customer, read_text

Step = EnrollmentEvent.Step


def _pem_csr(data: bytes) -> str:
    """The request as the agent sends it (PEM); a DER request is converted, anything else is sent as it
    is, for the pipeline to refuse with the agent's error."""
    if data.lstrip().startswith(b"-----BEGIN"):
        return data.decode("ascii", "replace")
    try:
        return x509.load_der_x509_csr(data).public_bytes(serialization.Encoding.PEM).decode()
    except ValueError:
        return data.decode("ascii", "replace")


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
        p.add_argument("--csr", required=True, help="PKCS#10 request (PEM or DER), checked as an agent's is")
        p.add_argument("--orgid", help="the organization (default: the one that holds the user's mail domain)")
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

    def handle_issue(self, customer, principal, csr, orgid, out, **_) -> None:
        """Through the agent's own logon (`pipeline.logon`): the same AD read, rules and checks of the CSR;
        for a customer that requires approval, the administrator running this gives it."""
        cust = get_customer(customer)
        try:
            csr_pem = _pem_csr(Path(csr).read_bytes())
        except OSError as exc:
            raise CommandError(f"cannot read {csr}: {exc.strerror}") from None
        by = f"cli:{getpass.getuser()}"
        data = {"customeruri": cust.uri, "csr": csr_pem, "orgid": orgid}
        try:
            answer = pipeline.logon(pipeline.Caller(principal), data, step=Step.ISSUE, message=f"issued by {by}")
            cert = answer.certificate or lifecycle.approve(answer.request.pk, by=by).certificate
        except EnrollmentError as exc:
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
            wanted += [_serial(line) for line in read_text(file).split() if line.strip()]
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
