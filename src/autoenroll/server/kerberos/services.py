"""Changing realms from a login.conf (the CLI's `realms import` and the Autoenrollment page's import)."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db import transaction

from autoenroll.server.tenants.models import Customer

from .loginconf import LoginConfError, LoginEntry
from .models import KerberosRealm


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
                report.append(f"  warning: {problem}: copy the keytab there before users log on")
    return report
