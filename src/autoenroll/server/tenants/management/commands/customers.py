from autoenroll.server.tenants.models import Customer
from autoenroll.server.utils.commands import SubcommandCommand, get_customer


class Command(SubcommandCommand):
    help = "Add, list, enable and disable customers (the agent's `customeruri`)."
    actions = {"add": "add a customer", "list": "list customers", "enable": "enable", "disable": "disable"}

    def add_add_arguments(self, p) -> None:
        p.add_argument("uri")
        p.add_argument("--name", help="display name (default: the uri)")
        p.add_argument("--publish-to-ad", action="store_true", help="publish certificates to userCertificate")

    def add_enable_arguments(self, p) -> None:
        p.add_argument("uri")

    add_disable_arguments = add_enable_arguments

    def handle_add(self, uri, name, publish_to_ad, **_) -> None:
        customer = Customer(uri=uri, name=name or uri, publish_to_ad=publish_to_ad)
        customer.full_clean()
        customer.save()
        self.stdout.write(f"customer {customer.uri} added")

    def handle_list(self, **_) -> None:
        self.table(
            [(c.uri, c.name, "yes" if c.enabled else "no") for c in Customer.objects.all()],
            ("URI", "NAME", "ENABLED"),
        )

    def _set_enabled(self, uri: str, enabled: bool) -> None:
        customer = get_customer(uri)
        customer.enabled = enabled
        customer.save(update_fields=["enabled"])
        self.stdout.write(f"customer {uri} {'enabled' if enabled else 'disabled'}")

    def handle_enable(self, uri, **_) -> None:
        self._set_enabled(uri, True)

    def handle_disable(self, uri, **_) -> None:
        self._set_enabled(uri, False)
