import os
import tempfile
from pathlib import Path

from django.core.management.base import CommandError

from autoenroll.server.kerberos import loginconf
from autoenroll.server.kerberos.models import KerberosRealm
from autoenroll.server.kerberos.services import import_entries
from autoenroll.server.utils.commands import SubcommandCommand, get_customer, read_text


class Command(SubcommandCommand):
    help = "Manage Kerberos realms (guide 2.2: Settings / Autoenrollment, the login.conf entries)."
    actions = {
        "add": "add a realm",
        "list": "list realms",
        "delete": "delete a realm",
        "import": "create/update realms from a CCM login.conf (all or nothing)",
        "export": "write the realms as a CCM login.conf",
    }

    def add_add_arguments(self, p) -> None:
        p.add_argument("--domain", required=True, help="Windows domain name, e.g. test.com")
        p.add_argument("--keytab", required=True, help="keytab file (absolute path)")
        p.add_argument("--principal", required=True, help="service principal, e.g. HTTP/ccm.test.com@TEST.COM")
        p.add_argument("--customer", help="customer uri whose users log on in this realm")

    def add_delete_arguments(self, p) -> None:
        p.add_argument("domain", help="Windows domain name of the realm to delete")

    def add_import_arguments(self, p) -> None:
        p.add_argument("file", help="login.conf to read ('-' for standard input)")
        p.add_argument("--customer", help="customer uri for realms this import creates (existing ones keep theirs)")

    def add_export_arguments(self, p) -> None:
        p.add_argument("file", nargs="?", help="file to write (default: standard output)")

    def handle_add(self, domain, keytab, principal, customer, **_) -> None:
        realm = KerberosRealm(
            domain=domain.strip().lower(),
            keytab_path=keytab,
            service_principal=principal,
            customer=get_customer(customer) if customer else None,
        )
        realm.full_clean()
        problems = realm.keytab_problems()
        if problems:
            raise CommandError("; ".join(problems) + " (see `autoenroll-server keytab check`)")
        realm.save()
        self.stdout.write(f"realm {realm.domain} added ({realm.service_principal})")

    def handle_list(self, **_) -> None:
        self.table(
            [(r.domain, r.keytab_path, r.service_principal, r.customer or "") for r in KerberosRealm.objects.all()],
            ("DOMAIN NAME", "KEYTAB FILE NAME", "SERVICE PRINCIPAL NAME", "CUSTOMER"),
        )

    def handle_delete(self, domain, **_) -> None:
        deleted, _ = KerberosRealm.objects.filter(domain=domain.strip().lower()).delete()
        if not deleted:
            raise CommandError(f"no realm with domain {domain!r}")
        self.stdout.write(f"realm {domain.strip().lower()} deleted")

    def handle_import(self, file, customer, **_) -> None:
        text = read_text(file)
        try:
            entries = loginconf.parse(text)
        except loginconf.LoginConfError as exc:
            raise CommandError(f"{file}: {exc}") from None
        try:
            report = import_entries(entries, get_customer(customer) if customer else None)
        except loginconf.LoginConfError as exc:
            raise CommandError(f"{file}: {exc} (nothing imported)") from None
        for line in report:
            self.stdout.write(line)
        self.stdout.write(f"{len(entries)} entries read from {file}")

    def handle_export(self, file, **_) -> None:
        text = loginconf.render(loginconf.entries_from_realms(KerberosRealm.objects.all()))
        if not file or file == "-":
            self.stdout.write(text, ending="")
            return
        path = Path(file)
        tmp = None
        try:  # write next to the target and rename: a crash never leaves half a login.conf
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(text)
            os.chmod(tmp, 0o644)  # paths and principals only: no secret in it
            os.replace(tmp, path)
        except OSError as exc:
            if tmp is not None:
                Path(tmp).unlink(missing_ok=True)
            raise CommandError(f"cannot write {file}: {exc.strerror}") from None
        self.stdout.write(f"{KerberosRealm.objects.count()} realms written to {file}", ending="\n")
