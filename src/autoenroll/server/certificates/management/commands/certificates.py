from pathlib import Path

from django.conf import settings
from django.core.management.base import CommandError

from autoenroll import pki
from autoenroll.protocol import EnrollmentError
from autoenroll.server.certificates import authority
from autoenroll.server.certificates.models import Certificate
from autoenroll.server.directory.sync import sync_person
from autoenroll.server.enrollment.events import record_error, record_success
from autoenroll.server.enrollment.models import EnrollmentEvent
from autoenroll.server.tenants.management.commands.customers import get_customer
from autoenroll.server.tenants.models import EmailDomain
from autoenroll.server.utils.commands import SubcommandCommand


class Command(SubcommandCommand):
    help = "Issue a certificate for an AD user from a CSR, and list issued certificates."
    actions = {"issue": "issue an S/MIME certificate for an AD user", "list": "list certificates"}

    def add_issue_arguments(self, p) -> None:
        p.add_argument("--customer", required=True, help="customer uri")
        p.add_argument("--principal", required=True, help="the user's Kerberos principal, e.g. user1@TEST.COM")
        p.add_argument("--csr", required=True, help="PKCS#10 request (PEM or DER); only its key is used")
        p.add_argument("--out", help="write the certificate here (PEM); default: standard output")

    def add_list_arguments(self, p) -> None:
        p.add_argument("--mail")

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
            try:
                cert = authority.issue_smime(
                    settings.CONFIG, public_key, user.mail, person=person, csr_pem=csr_bytes.decode("ascii", "replace")
                )
            except (authority.CAError, pki.PKIError) as exc:
                raise EnrollmentError(30, str(exc)) from None
        except EnrollmentError as exc:
            record_error(step, principal, exc, customer=cust)
            raise CommandError(str(exc)) from None
        record_success(step, principal, customer=cust, person=person, certificate=cert)
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
