from django.contrib.auth import get_user_model
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.core.management.base import CommandError
from django.db import transaction

from autoenroll.server.tenants.models import set_admin_role, username_taken
from autoenroll.server.utils.commands import SubcommandCommand, get_customer, read_password


class Command(SubcommandCommand):
    help = "Add and list administrators: Super Admins (everything) and Customer Admins (one customer)."
    actions = {"add": "add an administrator", "list": "list administrators"}

    def add_add_arguments(self, p) -> None:
        p.add_argument("username")
        role = p.add_mutually_exclusive_group(required=True)
        role.add_argument("--customer", help="make a Customer Admin of this customer uri")
        role.add_argument("--super", action="store_true", help="make a Super Admin")
        p.add_argument("--email", default="")
        p.add_argument("--password-file", help="file holding the password, or - for standard input")

    @transaction.atomic
    def handle_add(self, username, customer, super, email, password_file, **_) -> None:
        users = get_user_model()
        if username_taken(username):
            raise CommandError(f"user {username!r} exists (usernames are unique whatever their case)")
        password = read_password(password_file, prompt=f"Password for {username}: ")
        user = users(username=username, email=email)
        try:
            validate_password(password, user)
        except ValidationError as exc:
            raise CommandError(" ".join(exc.messages)) from None
        user.set_password(password)
        user.save()
        set_admin_role(user, get_customer(customer) if customer else None)
        self.stdout.write(f"{'Super Admin' if super else f'Customer Admin of {customer}'} {username} added")

    def handle_list(self, **_) -> None:
        rows = []
        for user in get_user_model().objects.select_related("customer_admin__customer").order_by("username"):
            admin = getattr(user, "customer_admin", None)
            if user.is_superuser or admin:
                role = "Super Admin" if user.is_superuser else f"Customer Admin ({admin.customer.uri})"
                rows.append((user.username, role, "yes" if user.is_active else "no"))
        self.table(rows, ("USER", "ROLE", "ACTIVE"))
