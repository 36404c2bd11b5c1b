from django.contrib.auth import get_user_model
from django.core.management.base import CommandError

from autoenroll.server.api.models import ApiToken
from autoenroll.server.utils.commands import SubcommandCommand


class Command(SubcommandCommand):
    help = "Create, list and delete REST API tokens (the value is printed once, at creation)."
    actions = {"create": "create a token for a user", "list": "list tokens", "delete": "delete a token"}

    def add_create_arguments(self, p) -> None:
        p.add_argument("--user", required=True)
        p.add_argument("--name", required=True, help="what the token is for")

    def add_delete_arguments(self, p) -> None:
        p.add_argument("prefix", help="the part after ae_ and before the next _")

    def handle_create(self, user, name, **_) -> None:
        account = get_user_model().objects.filter(username=user).first()
        if account is None:
            raise CommandError(f"no user {user!r}")
        _, value = ApiToken.issue(account, name)
        self.stdout.write(value)

    def handle_list(self, **_) -> None:
        self.table(
            [
                (t.prefix, t.user, t.name, f"{t.created:%Y-%m-%d}", t.last_used or "never")
                for t in ApiToken.objects.all()
            ],
            ("PREFIX", "USER", "NAME", "CREATED", "LAST USED"),
        )

    def handle_delete(self, prefix, **_) -> None:
        deleted, _ = ApiToken.objects.filter(prefix=prefix).delete()
        if not deleted:
            raise CommandError(f"no token with prefix {prefix!r}")
        self.stdout.write(f"token {prefix} deleted")
