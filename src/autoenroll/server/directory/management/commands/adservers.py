import sys
from pathlib import Path

from django.core.management.base import CommandError
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

from autoenroll.server.directory import csvimport
from autoenroll.server.directory.models import ADServer
from autoenroll.server.utils.commands import SubcommandCommand, get_customer, read_password, read_text


class Command(SubcommandCommand):
    help = "Add and list AD servers (guide 2.3: Settings / AD Server)."
    actions = {"add": "add an AD server", "list": "list AD servers", "import": "import AD servers from CSV"}

    def add_add_arguments(self, p) -> None:
        p.add_argument("--customer", required=True, help="customer uri")
        p.add_argument("--domain", required=True, help="Windows domain, e.g. test.com")
        p.add_argument("--address", required=True, help="AD server address (IP or DNS name)")
        p.add_argument("--port", type=int, default=0, help="0 = 389, or 636 with SSL")
        p.add_argument("--no-ssl", action="store_true", help="StartTLS on the plain port instead of LDAPS")
        p.add_argument("--users-base-dn", required=True)
        p.add_argument("--login-dn", required=True)
        p.add_argument("--password-file", help="file holding the login password, or - for standard input")
        p.add_argument("--ca-file", help="PEM file with the CA of the DC's LDAPS certificate (pinned)")
        p.add_argument("--tls-server-name", default="", help="name in the DC's certificate")
        p.add_argument("--default", action="store_true", help="set as the customer's default AD server")

    def add_import_arguments(self, p) -> None:
        p.add_argument("file", help="CSV with the columns of the AD Server page (guide figure 2.14)")
        p.add_argument("--customer", required=True, help="customer uri")
        p.add_argument("--skip-invalid", action="store_true", help="import the valid rows, skip the others")

    def handle_import(self, file, customer, skip_invalid, **_) -> None:
        try:
            rows = csvimport.parse(csvimport.decode(Path(file).read_bytes()), get_customer(customer))
        except OSError as exc:
            raise CommandError(f"cannot read {file}: {exc.strerror}") from None
        except csvimport.CSVError as exc:
            raise CommandError(f"{file}: {exc}") from None
        for row in rows:
            if not row.valid:
                self.stderr.write(f"{file}: line {row.line}: {'; '.join(row.errors)}")
        valid = sum(1 for r in rows if r.valid)
        with Progress(
            TextColumn("importing"), BarColumn(), MofNCompleteColumn(), transient=True, disable=not sys.stdout.isatty()
        ) as bar:
            task = bar.add_task("import", total=valid)
            try:
                saved = csvimport.save(rows, skip_invalid, progress=lambda n: bar.advance(task, n))
            except csvimport.CSVError as exc:
                raise CommandError(str(exc)) from None
        self.stdout.write(f"{saved} AD servers imported, {len(rows) - valid} invalid rows skipped")

    def add_list_arguments(self, p) -> None:
        p.add_argument("--customer", help="customer uri")

    def handle_add(
        self,
        customer,
        domain,
        address,
        port,
        no_ssl,
        users_base_dn,
        login_dn,
        password_file,
        ca_file,
        tls_server_name,
        default,
        **_,
    ) -> None:
        ca_pem = read_text(ca_file) if ca_file else ""
        server = ADServer(
            customer=get_customer(customer),
            domain=domain,
            address=address,
            port=port,
            use_ssl=not no_ssl,
            users_base_dn=users_base_dn,
            login_dn=login_dn,
            login_password=read_password(password_file),
            tls_ca_pem=ca_pem,
            tls_server_name=tls_server_name,
            is_default=default,
        )
        server.full_clean()
        server.save()
        self.stdout.write(f"AD server {server} added with id {server.pk}")

    def handle_list(self, customer, **_) -> None:
        servers = ADServer.objects.select_related("customer")
        if customer:
            servers = servers.filter(customer=get_customer(customer))
        self.table(
            [
                (
                    s.pk,
                    s.customer.uri,
                    s.domain + (" (Default)" if s.is_default else ""),
                    s.address,
                    s.port,
                    "yes" if s.use_ssl else "no",
                    s.users_base_dn,
                )
                for s in servers
            ],
            ("ID", "CUSTOMER", "DOMAIN", "AD SERVER", "PORT", "USE SSL", "USERS BASE DN"),
        )
