"""The directory sweep: people who left (disabled or deleted in AD) lose their certificates.

A disabled user cannot log on, so no enrollment request will ever tell the server; the sweep asks AD
about every person who still holds a valid certificate and revokes those certificates with reason
affiliationChanged. For customers that publish to AD it also puts each holder's userCertificate in step
with what was issued (`publication.reconcile`), and for a month after a person's last certificate ended:
a publication that failed or was lost at issuance or revocation is made here. Run it from a timer
(`autoenroll-server persons sweep`); with several servers on one database the timers of all of them may
fire, and one sweeps while the others skip their round.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import timedelta

from django.conf import settings
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone

from autoenroll.protocol import EnrollmentError
from autoenroll.server.certificates.models import Certificate, RevocationReason
from autoenroll.server.enrollment import lifecycle
from autoenroll.server.enrollment.events import record_error
from autoenroll.server.utils.exclusive import one_at_a_time

from . import publication
from .models import Person
from .sync import read_user

log = logging.getLogger("autoenroll.directory")


@dataclass
class SweepReport:
    checked: int = 0
    left: list[str] = field(default_factory=list)
    revoked: int = 0
    published: int = 0  # certificates added to AD's userCertificate
    unpublished: int = 0  # revoked or expired certificates removed from it
    unreachable: list[str] = field(default_factory=list)
    elsewhere: bool = False  # another server was sweeping: this one did nothing


def sweep(persons=None) -> SweepReport:
    """Check each person holding a valid certificate against AD; revoke when AD says they left.

    An AD server that cannot be reached decides nothing: its people keep their certificates and the
    report names the server."""
    with one_at_a_time(settings.CONFIG.data_dir, "sweep", wait=False) as mine:
        return _sweep(persons) if mine else SweepReport(elsewhere=True)


#: A person whose last certificate was revoked or expired this recently is still put in step with AD,
#: though they hold nothing left to check: their userCertificate may still show it.
ENDED_WITHIN = timedelta(days=30)


def _sweep(persons) -> SweepReport:
    report = SweepReport()
    everyone = persons if persons is not None else Person.objects.all()
    smime = Certificate.objects.filter(profile=Certificate.Profile.SMIME)
    holders = smime.valid().values("person")
    for person in everyone.filter(pk__in=holders).select_related("ad_server", "customer"):
        if person.ad_server is None:
            continue
        report.checked += 1
        try:
            user = read_user(person.ad_server, person.principal)
        except EnrollmentError as exc:
            if exc.code == 13:
                report.unreachable.append(str(person.ad_server))
                continue
            report.left.append(person.principal)
            Person.objects.filter(pk=person.pk).update(enabled=False)
            certificates = Certificate.objects.valid().filter(person=person)
            report.revoked += len(
                lifecycle.revoke(certificates, RevocationReason.AFFILIATION_CHANGED, by="directory sweep")
            )
            record_error("revoke", person.principal, exc, customer=person.customer, person=person)
            log.info("%s left AD (%s): certificates revoked", person.principal, exc.detail)
            continue
        _count(report, publication.reconcile(person, dn=user.dn))
    now = timezone.now()
    ended = smime.filter(Q(revoked_at__gte=now - ENDED_WITHIN) | Q(not_after__range=(now - ENDED_WITHIN, now)))
    holding = Exists(smime.valid().filter(person=OuterRef("pk")))  # (NOT IN would meet NULL persons)
    publishing = everyone.filter(~holding, customer__publish_to_ad=True, pk__in=ended.values("person"))
    for person in publishing.select_related("ad_server", "customer"):
        _count(report, publication.reconcile(person))
    report.unreachable = sorted(set(report.unreachable))
    return report


def _count(report: SweepReport, reconciled: publication.Reconciled | None) -> None:
    if reconciled is not None:
        report.published += reconciled.added
        report.unpublished += reconciled.removed
