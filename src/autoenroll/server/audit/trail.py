"""Writing, sealing and verifying the audit trail.

* Every enrollment event carries, from the moment it is written, an HMAC of its content keyed by the
  server's SECRET_KEY (`event_mac`, called by `enrollment.events`): no hot-path lock, a few microseconds.
* Every configuration change (customers, domains, organizations, AD servers, realms, CAs, administrators)
  is written as an audit record in the change's transaction (`watch_configuration`).
* The sealer (`seal`, run by `serve` every minute, one server at a time) copies new events into the
  trail, chains the records not chained yet (`hash` = SHA-256(previous hash + MAC)) and signs a checkpoint
  of the chain's end with the issuing CA's key.
* `verify` walks the chain and names the first record changed, deleted or inserted behind the server's
  back, and every enrollment event that no longer matches its copy.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings
from django.db import transaction
from django.db.models import Exists, OuterRef
from django.db.models.signals import m2m_changed, post_delete, post_save
from django.utils import timezone

from autoenroll import pki
from autoenroll.server.config import ServerConfig
from autoenroll.server.utils.exclusive import one_at_a_time

from .models import AuditCheckpoint, AuditRecord

GENESIS = "0" * 64
#: Events copied and records chained per sealing round.
BATCH = 5_000
#: Records written per transaction (see `seal`).
WRITE_CHUNK = 200
#: How long an event may wait for the sealer before `verify` says it is missing from the trail.
SEALING_GRACE = dt.timedelta(hours=1)


@cache
def _key(secret_key: str) -> bytes:
    return HKDF(hashes.SHA256(), 32, salt=None, info=b"autoenroll audit trail v1").derive(secret_key.encode())


def _mac(*parts: object) -> str:
    text = "\x1f".join("" if p is None else str(p) for p in parts)
    return hmac.new(_key(settings.SECRET_KEY), text.encode(), hashlib.sha256).hexdigest()


def event_mac(event) -> str:
    """The MAC an enrollment event is written with: what happened, to whom, when. Not its id (unknown yet), nor
    its links to the customer, person, organization and certificate rows: deleting one of those (a customer an
    admin removes) empties the link, which is no tampering; the sealed copy keeps them."""
    return _mac(
        "event", event.created.isoformat(), event.step, event.outcome, event.error_code, event.principal,
        event.remote_addr, event.message, event.detail,
    )  # fmt: skip


#: An event's links to other rows, emptied by the database when such a row is deleted (on_delete=SET_NULL).
_LINKS = ("customer_id", "organization_id", "person_id", "certificate_id")


def _record_mac(record: AuditRecord) -> str:
    return _mac("record", record.kind, record.created.isoformat(), record.subject, record.data)


def _chained(prev: str, mac: str) -> str:
    return hashlib.sha256((prev + mac).encode()).hexdigest()


def _canonical(data: dict) -> str:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)


# --- configuration changes -----------------------------------------------------------------------------------


def _audited_models() -> tuple:
    from django.contrib.auth import get_user_model

    from autoenroll.server.enrollment.configuration import WATCHED
    from autoenroll.server.tenants.models import CustomerAdmin

    return (*WATCHED, CustomerAdmin, get_user_model())  # the user: Super Admins, and who may sign in at all


def _fields(instance) -> dict:
    """The row's values, secrets left out (an encrypted field says only that it is set)."""
    from autoenroll.server.utils.fields import EncryptedTextField

    values = {}
    for f in instance._meta.concrete_fields:
        value = getattr(instance, f.attname)
        secret = isinstance(f, EncryptedTextField) or f.attname == "password"  # a user's password hash too
        values[f.attname] = ("(set)" if value else "") if secret else value
    return values


def _record(subject: str, data: dict) -> None:
    record = AuditRecord(created=timezone.now(), kind="config", subject=subject, data=_canonical(data))
    record.mac = _record_mac(record)
    record.save(force_insert=True)


def record_change(sender, instance, created: bool | None = None, update_fields=None, **kwargs) -> None:
    """Signal receiver: a configuration row was saved or deleted (in the change's transaction)."""
    if update_fields is not None and set(update_fields) <= {"last_login"}:  # a sign-in, not a change
        return
    action = "deleted" if created is None else ("created" if created else "changed")
    _record(f"{sender._meta.label} {instance.pk} {action}", _fields(instance))


def record_domains(sender, instance, action: str, reverse: bool, pk_set, **kwargs) -> None:
    """Signal receiver: which email domains an organization holds (a many-to-many table, which
    `record_change` does not see) decides who gets certificates in it."""
    if action not in ("post_add", "post_remove", "post_clear"):
        return
    if reverse:  # domain.organizations.add(...): the domain's side
        organizations = sorted(instance.organizations.values_list("pk", flat=True))
        _record(f"{instance._meta.label} {instance.pk} organizations changed", {"organizations": organizations})
    else:
        domains = sorted(instance.domains.values_list("name", flat=True))
        _record(f"{instance._meta.label} {instance.pk} domains changed", {"domains": domains})


def watch_configuration() -> None:
    from autoenroll.server.tenants.models import Organization

    for model in _audited_models():
        post_save.connect(record_change, sender=model, dispatch_uid=f"audit-save-{model._meta.label}")
        post_delete.connect(record_change, sender=model, dispatch_uid=f"audit-delete-{model._meta.label}")
    m2m_changed.connect(record_domains, sender=Organization.domains.through, dispatch_uid="audit-org-domains")


# --- sealing -------------------------------------------------------------------------------------------------


@dataclass
class SealReport:
    copied: int = 0
    chained: int = 0
    checkpoint: int | None = None
    elsewhere: bool = False


def _event_data(event) -> dict:
    return {
        "id": event.pk, "created": event.created.isoformat(), "step": event.step, "outcome": event.outcome,
        "error_code": event.error_code, "principal": event.principal, "customer_id": event.customer_id,
        "organization_id": event.organization_id, "person_id": event.person_id,
        "certificate_id": event.certificate_id, "remote_addr": event.remote_addr, "message": event.message,
        "detail": event.detail, "mac": event.mac,
    }  # fmt: skip


def seal(config: ServerConfig | None = None) -> SealReport:
    """Copy the new events, chain what is not chained, sign a checkpoint; one server at a time.

    The records are made and the checkpoint signed before anything is written, then written WRITE_CHUNK at
    a time, each chunk its own transaction: on SQLite every logon's commit waits while a write transaction
    is open, and a round after a logon storm reads, MACs and chains thousands of events. A round stopped
    between chunks, or before its checkpoint, leaves a chain that the next round goes on from and signs."""
    from autoenroll.server.certificates import authority
    from autoenroll.server.enrollment.models import EnrollmentEvent

    config = config or settings.CONFIG
    with one_at_a_time(config.data_dir, "audit", wait=False) as mine:
        if not mine:
            return SealReport(elsewhere=True)
        last = AuditRecord.objects.filter(position__isnull=False).order_by("-position").first()
        prev, position = (last.hash, last.position) if last else (GENESIS, 0)
        # Configuration changes written since the last seal (few): chained where they are.
        pending = list(AuditRecord.objects.filter(position__isnull=True).order_by("pk")[:BATCH])
        for record in pending:
            position += 1
            record.position, record.prev, record.hash = position, prev, _chained(prev, record.mac)
            prev = record.hash
        # New enrollment events (many): copied into the trail already chained.
        copied = AuditRecord.objects.filter(event_id=OuterRef("pk"))
        new = []
        for event in EnrollmentEvent.objects.filter(~Exists(copied)).order_by("pk")[:BATCH]:
            record = AuditRecord(
                created=event.created, kind="event", subject=f"enrollment event {event.pk}",
                data=_canonical(_event_data(event)), event_id=event.pk,
            )  # fmt: skip
            record.mac = _record_mac(record)
            position += 1
            record.position, record.prev, record.hash = position, prev, _chained(prev, record.mac)
            prev = record.hash
            new.append(record)
        report = SealReport(copied=len(new), chained=len(pending) + len(new))
        signed = AuditCheckpoint.objects.order_by("-position").values_list("position", flat=True).first()
        if position == (signed or 0):  # nothing new, and the chain's end is signed (a round may have stopped
            return report  # after its records and before its checkpoint: then it is signed now)
        ca = authority.issuing_ca()
        checkpoint = AuditCheckpoint(position=position, hash=prev, created=timezone.now(), ca=ca)
        checkpoint.signature = authority.backend_for(ca, config.ca_passphrase_bytes()).sign_data(
            checkpoint.signed_text()
        )
        for start in range(0, len(pending), WRITE_CHUNK):
            with transaction.atomic():
                for record in pending[start : start + WRITE_CHUNK]:
                    AuditRecord.objects.filter(pk=record.pk).update(
                        position=record.position, prev=record.prev, hash=record.hash
                    )
        for start in range(0, len(new), WRITE_CHUNK):
            AuditRecord.objects.bulk_create(new[start : start + WRITE_CHUNK])  # one transaction each
        checkpoint.save(force_insert=True)
        report.checkpoint = position
        return report


# --- verifying -----------------------------------------------------------------------------------------------


@dataclass
class VerifyReport:
    records: int = 0
    checkpoints: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def intact(self) -> bool:
        return not self.problems


def verify(now: dt.datetime | None = None) -> VerifyReport:
    """Walk the chain from its start; every problem, the first one first."""
    from autoenroll.server.enrollment.models import EnrollmentEvent

    now = now or timezone.now()
    report = VerifyReport()
    signed_at = set(AuditCheckpoint.objects.values_list("position", flat=True))
    hashes_at: dict[int, str] = {}  # the chain's hash where a checkpoint signed it
    prev, expected = GENESIS, 1
    copies: list[AuditRecord] = []  # event records, checked against the log a batch at a time
    for record in AuditRecord.objects.filter(position__isnull=False).order_by("position").iterator(2000):
        report.records += 1
        where = f"record #{record.position} ({record.subject})"
        if record.position != expected:
            report.problems.append(f"records #{expected} to #{record.position - 1} were deleted (before {where})")
        elif record.mac != _record_mac(record):
            report.problems.append(f"{where} was changed: its content does not match its MAC")
        elif record.prev != prev or record.hash != _chained(record.prev, record.mac):
            report.problems.append(f"{where} does not follow the record before it: inserted or rewritten")
        prev, expected = record.hash, record.position + 1
        if record.position in signed_at:
            hashes_at[record.position] = record.hash
        if record.kind == "event":
            copies.append(record)
            if len(copies) == 2000:
                report.problems.extend(_check_events(copies))
                copies = []
    report.problems.extend(_check_events(copies))
    for record in AuditRecord.objects.filter(position__isnull=True, created__lt=now - SEALING_GRACE):
        report.problems.append(f"record {record.pk} ({record.subject}) is in no chain: inserted behind the server")
    report.problems.extend(_check_checkpoints(hashes_at, max(signed_at, default=0), report))
    copied = AuditRecord.objects.filter(event_id=OuterRef("pk"))
    for event in EnrollmentEvent.objects.filter(~Exists(copied), created__lt=now - SEALING_GRACE).order_by("pk"):
        report.problems.append(f"enrollment event {event.pk} is not in the audit trail: inserted behind the server")
    return report


def _check_events(copies: list[AuditRecord]) -> Iterator[str]:
    """Each enrollment event still as it was copied into the trail, and written by the server."""
    from autoenroll.server.enrollment.models import EnrollmentEvent

    events = EnrollmentEvent.objects.in_bulk([record.event_id for record in copies])
    for record in copies:
        event = events.get(record.event_id)
        if event is None:
            yield f"enrollment event {record.event_id} was deleted (its copy is record #{record.position})"
        elif _canonical(_as_copied(_event_data(event), json.loads(record.data))) != record.data:
            yield f"enrollment event {record.event_id} was changed after it was recorded (record #{record.position})"
        elif json.loads(record.data)["mac"] != event_mac(event):
            yield f"enrollment event {record.event_id} was not written by the server: its MAC is wrong"


def _as_copied(current: dict, copy: dict) -> dict:
    """The event as it was copied, if only links to since deleted rows were emptied meanwhile."""
    for link in _LINKS:
        if current[link] is None and copy.get(link) is not None:
            current[link] = copy[link]
    return current


def _check_checkpoints(hashes_at: dict[int, str], upto: int, report: VerifyReport) -> Iterator[str]:
    """The checkpoints up to `upto`, the last one there when the walk began: a round sealed meanwhile signs
    records the walk did not see."""
    keys: dict[int, object] = {}
    for checkpoint in AuditCheckpoint.objects.filter(position__lte=upto).select_related("ca").order_by("position"):
        report.checkpoints += 1
        key = keys.setdefault(
            checkpoint.ca_id, x509.load_pem_x509_certificate(checkpoint.ca.certificate_pem.encode()).public_key()
        )
        try:
            pki.verify_data(key, bytes(checkpoint.signature), checkpoint.signed_text())
        except InvalidSignature:
            yield f"checkpoint at #{checkpoint.position} is not signed by {checkpoint.ca.name}: forged"
            continue
        if hashes_at.get(checkpoint.position) != checkpoint.hash:
            yield f"the chain up to #{checkpoint.position} is not the one signed at {checkpoint.created:%Y-%m-%d %H:%M}"


def export() -> Iterator[str]:
    """The trail as JSON lines, for a SIEM: each record in chain order, then the checkpoints."""
    for record in AuditRecord.objects.filter(position__isnull=False).order_by("position").iterator():
        yield _canonical({
            "type": "record", "position": record.position, "created": record.created.isoformat(),
            "kind": record.kind, "subject": record.subject, "data": json.loads(record.data), "mac": record.mac,
            "prev": record.prev, "hash": record.hash,
        })  # fmt: skip
    for checkpoint in AuditCheckpoint.objects.select_related("ca").order_by("position"):
        yield _canonical({
            "type": "checkpoint", "position": checkpoint.position, "hash": checkpoint.hash,
            "created": checkpoint.created.isoformat(), "ca": checkpoint.ca.name,
            "signature": base64.b64encode(bytes(checkpoint.signature)).decode(),
        })  # fmt: skip
