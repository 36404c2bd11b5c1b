from pathlib import Path

from django.core.management.base import CommandError

from autoenroll.server.kerberos.keytab import check_keytab, setup_commands
from autoenroll.server.utils.commands import SubcommandCommand


class Command(SubcommandCommand):
    help = "Check a keytab, or print the commands that create one (the successor of the guide's keytab.bat)."
    actions = {
        "check": "list a keytab's principals, kvno and enctypes; warn about weak keys and loose permissions",
        "commands": "print the setspn/ktpass (Windows) and samba-tool (Samba) commands for a keytab",
    }

    def add_check_arguments(self, p) -> None:
        p.add_argument("file", help="keytab file")
        p.add_argument("--principal", help="fail unless the keytab holds it, e.g. HTTP/ccm.test.com@TEST.COM")

    def add_commands_arguments(self, p) -> None:
        p.add_argument("--host", required=True, help="the server's DNS name as clients use it, e.g. ccm.test.com")
        p.add_argument("--realm", required=True, help="Kerberos realm, e.g. TEST.COM")
        p.add_argument("--account", required=True, help="the server's AD service account, e.g. ccm")
        p.add_argument("--out", default="ccm.keytab", help="keytab file to write (default ccm.keytab)")

    def handle_check(self, file, principal, **_) -> None:
        report = check_keytab(Path(file), principal)
        rows = []
        for name, keys in report.principals().items():
            for kvno in sorted({k.kvno for k in keys}):
                of_kvno = [k for k in keys if k.kvno == kvno]
                rows.append((name, kvno, ", ".join(k.enctype_name for k in of_kvno), of_kvno[0].timestamp.isoformat()))
        if rows:
            self.table(rows, ("PRINCIPAL", "KVNO", "ENCTYPES", "TIMESTAMP"))
        for warning in report.warnings:
            self.stderr.write(f"warning: {warning}")
        if report.errors:
            raise CommandError("; ".join(report.errors))

    def handle_commands(self, host, realm, account, out, **_) -> None:
        self.stdout.write(setup_commands(host, realm, account, out), ending="")
