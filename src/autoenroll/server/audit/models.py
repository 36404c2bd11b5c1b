"""The trail: records in the order they were chained, and signed checkpoints of the chain."""

from __future__ import annotations

from django.db import models

from autoenroll.server.certificates.models import CertificateAuthority


class AuditRecord(models.Model):
    """One entry: an enrollment event (copied with its MAC) or a configuration change.

    `mac` is an HMAC, keyed by the server's SECRET_KEY, of kind, time, subject and data: a row written
    behind the server's back cannot carry a valid one. The sealer gives each record its `position` and
    chains it: `hash` = SHA-256(`prev` + `mac`), `prev` the hash of the record before; a record changed,
    deleted or inserted later breaks the chain from there on, and `audit verify` names it."""

    created = models.DateTimeField(db_index=True)
    kind = models.CharField(max_length=16)
    subject = models.CharField(max_length=300)
    data = models.TextField(help_text="Canonical JSON.")
    mac = models.CharField(max_length=64)
    event_id = models.BigIntegerField(null=True, unique=True, help_text="The enrollment event copied here.")
    position = models.BigIntegerField(null=True, unique=True, help_text="In the chain; empty until sealed.")
    prev = models.CharField(max_length=64, blank=True)
    hash = models.CharField(max_length=64, blank=True)

    class Meta:
        ordering = ["position", "pk"]

    def __str__(self) -> str:
        return f"#{self.position} {self.kind} {self.subject}"


class AuditCheckpoint(models.Model):
    """The chain's hash at a position, signed with a CA key (which needs the passphrase): rewriting the
    chain with the SECRET_KEY alone still breaks every checkpoint after the rewrite."""

    position = models.BigIntegerField()
    hash = models.CharField(max_length=64)
    created = models.DateTimeField()
    ca = models.ForeignKey(CertificateAuthority, on_delete=models.PROTECT, related_name="+")
    signature = models.BinaryField()

    class Meta:
        ordering = ["position"]

    def __str__(self) -> str:
        return f"checkpoint at #{self.position}"

    def signed_text(self) -> bytes:
        return f"autoenroll audit checkpoint|{self.position}|{self.hash}|{self.created.isoformat()}".encode()
