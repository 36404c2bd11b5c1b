from django.core.management.base import CommandError
from django.db import transaction

from autoenroll.server.directory.models import ADServer
from autoenroll.server.tenants.models import EmailDomain, Organization
from autoenroll.server.utils.commands import SubcommandCommand, get_customer


class Command(SubcommandCommand):
    help = "Add and list organizations; the printed id is the agent's `orgid`."
    actions = {"add": "add an organization", "list": "list organizations"}

    def add_add_arguments(self, p) -> None:
        p.add_argument("name")
        p.add_argument("--customer", required=True, help="customer uri")
        p.add_argument("--domain", action="append", default=[], help="email domain (repeatable)")
        p.add_argument("--ad-server", type=int, help="id of the AD server to bind (default: customer's default)")

    def add_list_arguments(self, p) -> None:
        p.add_argument("--customer", help="customer uri")

    @transaction.atomic
    def handle_add(self, name, customer, domain, ad_server, **_) -> None:
        cust = get_customer(customer)
        org = Organization(customer=cust, name=name)
        if ad_server is not None:
            org.ad_server = ADServer.objects.filter(customer=cust, pk=ad_server).first()
            if org.ad_server is None:
                raise CommandError(f"customer {customer} has no AD server {ad_server}")
        org.full_clean()
        org.save()
        for d in domain:
            try:
                org.domains.add(EmailDomain.objects.get(customer=cust, name=d.strip().lower()))
            except EmailDomain.DoesNotExist:
                raise CommandError(f"customer {customer} has no email domain {d!r} (add it first)") from None
        self.stdout.write(f"organization {org.name} added with id {org.pk}")

    def handle_list(self, customer, **_) -> None:
        orgs = Organization.objects.select_related("customer", "ad_server").prefetch_related("domains")
        if customer:
            orgs = orgs.filter(customer=get_customer(customer))
        self.table(
            [
                (o.pk, o.name, o.customer.uri, ",".join(d.name for d in o.domains.all()), o.ad_server or "(default)")
                for o in orgs
            ],
            ("ID", "NAME", "CUSTOMER", "DOMAINS", "AD SERVER"),
        )
