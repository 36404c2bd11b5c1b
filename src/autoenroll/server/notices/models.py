"""What was mailed: each notice once, whatever the number of servers or runs."""

from __future__ import annotations

from django.db import models

from autoenroll.server.certificates.models import Certificate
from autoenroll.server.tenants.models import Customer


class ExpiryNotice(models.Model):
    """The notice `days` before notAfter to a certificate's holder. The row is claimed before the mail goes
    (one per certificate and threshold, so two servers never both send it) and removed if the mail fails,
    so the next run tries again; `sent_at` is set once the SMTP server took it."""

    certificate = models.ForeignKey(Certificate, on_delete=models.CASCADE, related_name="expiry_notices")
    days = models.PositiveSmallIntegerField(help_text="The threshold: days before notAfter.")
    recipient = models.EmailField(max_length=320)
    sent_at = models.DateTimeField(null=True, blank=True)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created"]
        constraints = [
            models.UniqueConstraint(fields=["certificate", "days"], name="expiry_notice_once_per_threshold"),
        ]

    def __str__(self) -> str:
        return f"{self.days}-day notice for {self.certificate}"


class ExpiryDigest(models.Model):
    """The daily list of certificates about to lapse, mailed to a customer's admins once a day."""

    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="expiry_digests")
    day = models.DateField()
    recipients = models.TextField()
    certificates = models.PositiveIntegerField()
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-day"]
        constraints = [models.UniqueConstraint(fields=["customer", "day"], name="expiry_digest_once_a_day")]

    def __str__(self) -> str:
        return f"digest for {self.customer} on {self.day}"
