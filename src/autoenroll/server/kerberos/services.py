"""Changing realms from a login.conf (the CLI's `realms import` and the Autoenrollment page's import)."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db import transaction

from autoenroll.server.tenants.models import Customer

from .loginconf import LoginConfError, LoginEntry
from .models import KerberosRealm


#: Entries a JAAS login.conf may hold for Java itself (com.sun.security.jgss.accept, ..., and "other").
def _java_entry(name: str) -> bool:
    return name == "other" or name.startswith("com.sun.security.")


def import_entries(entries: list[LoginEntry], owner: Customer | None = None) -> list[str]:
    """Create or update one realm per entry, all or nothing; new realms belong to `owner`.

    Returns one line per entry saying what happened; raises LoginConfError naming the bad entry's line.
    """
    if not entries:
        raise LoginConfError("no entries")
    report: list[str] = []
    with transaction.atomic():
        for entry in entries:
            domain = entry.name.strip().lower()
            if _java_entry(domain):  # Java's own, not a customer's domain
                report.append(f"entry {entry.name} skipped: Java's default login entry, not a domain")
                continue
            realm = KerberosRealm.objects.filter(domain=domain).first()
            if realm is None:
                realm, verb = KerberosRealm(domain=domain, customer=owner), "created"
            elif (realm.keytab_path, realm.service_principal) == (entry.keytab, entry.principal):
                report.append(f"realm {domain} unchanged")
                continue
            else:
                verb = "updated"
            realm.keytab_path, realm.service_principal = entry.keytab, entry.principal
            try:
                realm.full_clean()
            except ValidationError as exc:
                problems = "; ".join(f"{k}: {' '.join(v)}" for k, v in exc.message_dict.items())
                raise LoginConfError(f"entry {entry.name!r}: {problems}", entry.line) from None
            realm.save()
            report.append(f"realm {domain} {verb} ({entry.principal}, {entry.keytab})")
            for problem in realm.keytab_problems():
                report.append(
                    f"  warning: {problem}: copy the keytab there, or give the realm this server's path on the "
                    "Autoenrollment page, before users log on"
                )
    return report
