from autoenroll.server.tenants.models import EmailDomain
from autoenroll.server.utils.commands import SubcommandCommand, get_customer


class Command(SubcommandCommand):
    help = "Add and list a customer's email domains; only authorized domains get certificates."
    actions = {"add": "add an email domain", "list": "list email domains"}

    def add_add_arguments(self, p) -> None:
        p.add_argument("name")
        p.add_argument("--customer", required=True, help="customer uri")
        p.add_argument("--authorized", action="store_true", help="authorize the domain for certificates")

    def add_list_arguments(self, p) -> None:
        p.add_argument("--customer", help="customer uri")

    def handle_add(self, name, customer, authorized, **_) -> None:
        domain = EmailDomain(customer=get_customer(customer), name=name, authorized=authorized)
        domain.full_clean()
        domain.save()
        self.stdout.write(f"domain {domain.name} added ({'authorized' if authorized else 'not authorized'})")

    def handle_list(self, customer, **_) -> None:
        domains = EmailDomain.objects.select_related("customer")
        if customer:
            domains = domains.filter(customer=get_customer(customer))
        self.table(
            [(d.name, d.customer.uri, "yes" if d.authorized else "no") for d in domains],
            ("DOMAIN", "CUSTOMER", "AUTHORIZED"),
        )
