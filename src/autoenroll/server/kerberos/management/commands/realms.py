from autoenroll.server.kerberos.models import KerberosRealm
from autoenroll.server.tenants.management.commands.customers import get_customer
from autoenroll.server.utils.commands import SubcommandCommand


class Command(SubcommandCommand):
    help = "Add and list Kerberos realms (guide 2.2: Settings / Autoenrollment, the login.conf entries)."
    actions = {"add": "add a realm", "list": "list realms"}

    def add_add_arguments(self, p) -> None:
        p.add_argument("--domain", required=True, help="Windows domain name, e.g. test.com")
        p.add_argument("--keytab", required=True, help="keytab file (absolute path)")
        p.add_argument("--principal", required=True, help="service principal, e.g. HTTP/ccm.test.com@TEST.COM")
        p.add_argument("--customer", help="customer uri whose users log on in this realm")

    def handle_add(self, domain, keytab, principal, customer, **_) -> None:
        realm = KerberosRealm(
            domain=domain.strip().lower(),
            keytab_path=keytab,
            service_principal=principal,
            customer=get_customer(customer) if customer else None,
        )
        realm.full_clean()
        realm.save()
        self.stdout.write(f"realm {realm.domain} added ({realm.service_principal})")

    def handle_list(self, **_) -> None:
        self.table(
            [(r.domain, r.keytab_path, r.service_principal, r.customer or "") for r in KerberosRealm.objects.all()],
            ("DOMAIN NAME", "KEYTAB FILE NAME", "SERVICE PRINCIPAL NAME", "CUSTOMER"),
        )
