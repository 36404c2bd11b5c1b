"""Every enrollment request and its outcome: the server side of the guide's autoenroll.log."""

from __future__ import annotations

import uuid

from cryptography import x509
from django.db import models
from django.utils import timezone

from autoenroll.protocol import CATALOGUE
from autoenroll.server.certificates.models import Certificate
from autoenroll.server.directory.models import Person
from autoenroll.server.tenants.models import Customer, Organization


class EnrollmentEvent(models.Model):
    class Step(models.TextChoices):
        SYNC = "sync", "Sync"
        ENROLL = "enroll", "Enroll"
        STATUS = "status", "Status"
        ISSUE = "issue", "Issue (administrator)"
        REVOKE = "revoke", "Revoke"

    class Outcome(models.TextChoices):
        SUCCESS = "success", "Success"
        ERROR = "error", "Error"
        PENDING = "pending", "Pending"

    created = models.DateTimeField(default=timezone.now, db_index=True)
    step = models.CharField(max_length=16, choices=Step.choices)
    outcome = models.CharField(max_length=16, choices=Outcome.choices)
    error_code = models.PositiveSmallIntegerField(
        null=True, blank=True, choices=[(c, f"{c}: {e.message}") for c, e in CATALOGUE.items()]
    )
    message = models.CharField(max_length=500, blank=True)
    detail = models.TextField(blank=True, help_text="For administrators: why, in the server's words.")
    principal = models.CharField(max_length=320, blank=True, db_index=True)
    customer = models.ForeignKey(Customer, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    organization = models.ForeignKey(Organization, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    person = models.ForeignKey(Person, null=True, blank=True, on_delete=models.SET_NULL, related_name="events")
    certificate = models.ForeignKey(
        Certificate, null=True, blank=True, on_delete=models.SET_NULL, related_name="events"
    )
    remote_addr = models.GenericIPAddressField(null=True, blank=True)
    mac = models.CharField(
        max_length=64, blank=True, help_text="HMAC of the content, written by the server (audit trail)."
    )

    class Meta:
        ordering = ["-created", "-pk"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(outcome="error", error_code__isnull=False) | ~models.Q(outcome="error"),
                name="event_error_has_code",
            ),
        ]

    def __str__(self) -> str:
        code = f" {self.error_code}" if self.error_code else ""
        return f"{self.created:%Y-%m-%d %H:%M:%S} {self.principal} {self.step} {self.outcome}{code}"

    @property
    def potential_reasons(self) -> tuple[str, ...]:
        return CATALOGUE[self.error_code].potential_reasons if self.error_code else ()


class EnrollmentRequest(models.Model):
    """A CSR on its way to a certificate; the agent polls it by its random id while it is pending."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending approval"
        ISSUED = "issued", "Issued"
        FAILED = "failed", "Failed"
        REJECTED = "rejected", "Rejected"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    created = models.DateTimeField(auto_now_add=True, db_index=True)
    updated = models.DateTimeField(auto_now=True)
    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="enrollment_requests")
    person = models.ForeignKey(Person, on_delete=models.CASCADE, related_name="enrollment_requests")
    organization = models.ForeignKey(Organization, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    csr_pem = models.TextField()
    # What a request sent again is recognised by (the same key, renewing the same certificate), and what an
    # approval issues: a Windows renewal held for approval still renews its certificate once approved.
    public_key_sha256 = models.CharField(max_length=64, blank=True, db_index=True)
    replaces = models.ForeignKey(Certificate, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    # A foreign key, not one-to-one: the same key sent again is answered with the certificate it already has.
    certificate = models.ForeignKey(
        Certificate, null=True, blank=True, on_delete=models.SET_NULL, related_name="enrollment_requests"
    )
    error_code = models.PositiveSmallIntegerField(null=True, blank=True)
    decided_by = models.CharField(max_length=200, blank=True)
    # The Windows certificate template (MS-XCEP) the certificate must name, for requests made through CES.
    template_oid = models.CharField(max_length=200, blank=True)
    template_major_version = models.PositiveIntegerField(default=0)
    template_minor_version = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["-created"]
        constraints = [
            models.CheckConstraint(
                condition=~models.Q(status="issued") | models.Q(certificate__isnull=False),
                name="request_issued_has_certificate",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.person} {self.status} {self.created:%Y-%m-%d %H:%M}"

    @property
    def template(self) -> x509.MSCertificateTemplate | None:
        if not self.template_oid:
            return None
        return x509.MSCertificateTemplate(
            x509.ObjectIdentifier(self.template_oid), self.template_major_version, self.template_minor_version
        )
