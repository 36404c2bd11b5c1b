from autoenroll.server.directory.models import Person
from autoenroll.server.directory.sweep import sweep
from autoenroll.server.utils.commands import SubcommandCommand, get_customer


class Command(SubcommandCommand):
    help = "Persons synced from AD: list them; sweep revokes the certificates of those who left AD."
    actions = {
        "list": "list persons",
        "sweep": "revoke certificates of users disabled or deleted in AD; put AD's userCertificate in step",
    }

    def add_list_arguments(self, p) -> None:
        p.add_argument("--customer", help="customer uri")

    add_sweep_arguments = add_list_arguments

    def _persons(self, customer):
        persons = Person.objects.select_related("customer")
        return persons.filter(customer=get_customer(customer)) if customer else persons

    def handle_list(self, customer, **_) -> None:
        self.table(
            [(p.principal, p.customer.uri, p.mail, p.cn, "yes" if p.enabled else "no", p.synced_at)
             for p in self._persons(customer)],
            ("PRINCIPAL", "CUSTOMER", "MAIL", "CN", "ENABLED", "SYNCED"),
        )  # fmt: skip

    def handle_sweep(self, customer, **_) -> None:
        report = sweep(self._persons(customer))
        if report.elsewhere:
            self.stdout.write("another server is sweeping now: nothing done here")
            return
        for principal in report.left:
            self.stdout.write(f"{principal}: left AD, certificates revoked (affiliationChanged)")
        for server in report.unreachable:
            self.stderr.write(f"AD server {server} unreachable: its users were not checked")
        self.stdout.write(
            f"{report.checked} persons checked, {len(report.left)} left, {report.revoked} revoked, "
            f"{report.published} published to AD, {report.unpublished} removed from AD"
        )
