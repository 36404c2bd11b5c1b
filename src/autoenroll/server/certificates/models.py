"""Certificate authorities and issued certificates.

Serials are stored as lower-case hexadecimal text: they are up to 159 bits, wider than any
database integer, and unique per issuing CA (RFC 5280 4.1.2.2).
"""

from __future__ import annotations

from django.db import models
from django.utils import timezone

from autoenroll.server.directory.models import Person


class RevocationReason(models.TextChoices):
    """RFC 5280 CRLReason values that this product uses."""

    UNSPECIFIED = "unspecified", "Unspecified"
    KEY_COMPROMISE = "key_compromise", "Key compromise"
    AFFILIATION_CHANGED = "affiliation_changed", "Affiliation changed"
    SUPERSEDED = "superseded", "Superseded"
    CESSATION_OF_OPERATION = "cessation_of_operation", "Cessation of operation"


class CertificateAuthority(models.Model):
    class Role(models.TextChoices):
        ROOT = "root", "Root CA"
        ISSUING = "issuing", "Issuing CA"

    name = models.SlugField(max_length=64, unique=True, help_text="Used in the CRL, OCSP and AIA URLs.")
    role = models.CharField(max_length=16, choices=Role.choices)
    parent = models.ForeignKey("self", null=True, blank=True, on_delete=models.PROTECT, related_name="children")
    subject = models.CharField(max_length=1000)
    serial = models.CharField(max_length=64)
    not_before = models.DateTimeField()
    not_after = models.DateTimeField()
    certificate_pem = models.TextField()
    key_backend = models.CharField(
        max_length=200,
        default="autoenroll.pki.backends.FileKeyBackend",
        help_text="Dotted path of the class that holds the private key (file, HSM, ...).",
    )
    key_path = models.CharField(max_length=1024, blank=True, help_text="Encrypted key file (file backend).")
    active = models.BooleanField(default=True, help_text="Issues new end-entity certificates.")
    crl_number = models.PositiveBigIntegerField(default=0, help_text="Number of the last CRL issued.")
    revocation_generation = models.PositiveBigIntegerField(
        default=0,
        help_text="Bumped in the transaction of every revocation: a CRL made from an older generation is stale.",
    )
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["role", "name"]
        verbose_name = "certificate authority"
        verbose_name_plural = "certificate authorities"
        constraints = [
            models.UniqueConstraint(
                fields=["role"], condition=models.Q(role="issuing", active=True), name="ca_one_active_issuing"
            ),
        ]

    def __str__(self) -> str:
        return self.name


class CertificateQuerySet(models.QuerySet):
    def valid(self, at=None):
        at = at or timezone.now()
        return self.filter(status=Certificate.Status.ISSUED, not_before__lte=at, not_after__gt=at)


class Certificate(models.Model):
    class Status(models.TextChoices):
        ISSUED = "issued", "Issued"
        REVOKED = "revoked", "Revoked"

    class Profile(models.TextChoices):
        SMIME = "smime", "S/MIME (mailbox-validated, strict)"
        TLS_SERVER = "tls_server", "TLS server"
        OCSP_RESPONDER = "ocsp_responder", "OCSP responder (delegated)"

    ca = models.ForeignKey(CertificateAuthority, on_delete=models.PROTECT, related_name="certificates")
    serial = models.CharField(max_length=64, help_text="Lower-case hexadecimal.")
    profile = models.CharField(max_length=16, choices=Profile.choices, default=Profile.SMIME)
    person = models.ForeignKey(Person, null=True, blank=True, on_delete=models.SET_NULL, related_name="certificates")
    subject = models.CharField(max_length=1000)
    issuer = models.CharField(max_length=1000)
    mail = models.EmailField(max_length=320, blank=True)
    not_before = models.DateTimeField()
    not_after = models.DateTimeField()
    fingerprint_sha256 = models.CharField(max_length=64, unique=True)
    public_key_sha256 = models.CharField(
        max_length=64, blank=True, db_index=True, help_text="SHA-256 of the certified SubjectPublicKeyInfo (DER)."
    )
    pem = models.TextField()
    csr_pem = models.TextField(blank=True, help_text="The request that produced it.")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.ISSUED)
    revoked_at = models.DateTimeField(null=True, blank=True)
    revocation_reason = models.CharField(max_length=32, choices=RevocationReason.choices, blank=True)
    revoked_by = models.CharField(max_length=200, blank=True, help_text="Who or what revoked it.")
    crl_entry = models.BinaryField(
        null=True, editable=False, help_text="Its CRL entry (DER), written with the revocation: a CRL joins them."
    )
    replaces = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="replaced_by")
    crl_partition = models.PositiveSmallIntegerField(
        null=True, blank=True, help_text="The partitioned CRL its distribution point names; none: the CA's full CRL."
    )
    installed_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text="When the agent reported it installed (the certificate it replaces is revoked then).",
    )
    created = models.DateTimeField(auto_now_add=True)

    objects = CertificateQuerySet.as_manager()

    class Meta:
        ordering = ["-not_before"]
        constraints = [
            models.UniqueConstraint(fields=["ca", "serial"], name="certificate_unique_serial_per_issuer"),
            models.CheckConstraint(
                condition=models.Q(status="issued", revoked_at__isnull=True, revocation_reason="")
                | models.Q(status="revoked", revoked_at__isnull=False) & ~models.Q(revocation_reason=""),
                name="certificate_revocation_consistent",
            ),
        ]
        indexes = [
            models.Index(fields=["mail"]),
            models.Index(fields=["not_after"]),
            models.Index(fields=["ca", "crl_partition", "status"], name="certificate_crl_partition"),
        ]

    def __str__(self) -> str:
        return f"{self.mail or self.subject} #{self.serial}"

    @property
    def state(self) -> str:
        """issued, revoked or expired: what an admin wants to see in one word."""
        if self.status == self.Status.REVOKED:
            return "revoked"
        if self.not_after <= timezone.now():
            return "expired"
        return "issued"


class RevocationList(models.Model):
    """A CRL as published: the signed DER and the facts it was made from.

    The CRL is a stored artefact, regenerated after each revocation and before nextUpdate; the
    latest row of a CA is what `/crl/<ca>.crl` serves. `generation` is the CA's
    `revocation_generation` it was made from, so a CRL that misses a revocation is detectable.
    """

    ca = models.ForeignKey(CertificateAuthority, on_delete=models.CASCADE, related_name="crls")
    partition = models.PositiveSmallIntegerField(null=True, blank=True, help_text="None: the CA's full CRL.")
    number = models.PositiveBigIntegerField()
    this_update = models.DateTimeField()
    next_update = models.DateTimeField()
    generation = models.PositiveBigIntegerField()
    entries = models.PositiveIntegerField()
    der = models.BinaryField()
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["ca", "-number"]
        verbose_name = "certificate revocation list"
        constraints = [models.UniqueConstraint(fields=["ca", "number"], name="crl_unique_number_per_ca")]

    def __str__(self) -> str:
        scope = "" if self.partition is None else f" partition {self.partition}"
        return f"{self.ca} CRL{scope} #{self.number}"


class CRLPartition(models.Model):
    """The revocation generation of one CRL partition: bumped in the transaction of every revocation of a
    certificate in it, so a revocation makes only its own partition's CRL stale (and the CA's full CRL,
    whose generation is the CA's)."""

    ca = models.ForeignKey(CertificateAuthority, on_delete=models.CASCADE, related_name="crl_partitions")
    index = models.PositiveSmallIntegerField()
    revocation_generation = models.PositiveBigIntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["ca", "index"], name="crl_partition_unique_per_ca")]

    def __str__(self) -> str:
        return f"{self.ca} CRL partition {self.index}"


class PresignedOCSPResponse(models.Model):
    """An OCSP response signed ahead for one certificate (SHA-1 CertID, no nonce), served without signing.

    `status` is the certificate status it states: the responder serves it only while the certificate row
    still says the same (read in the same statement), so a revocation is never hidden by an older answer;
    the revocation also deletes it, and the refresher (`publication.presign_ocsp`) signs the next one."""

    certificate = models.OneToOneField(
        Certificate, primary_key=True, on_delete=models.CASCADE, related_name="presigned_ocsp"
    )
    status = models.CharField(max_length=16, choices=Certificate.Status.choices)
    der = models.BinaryField()
    this_update = models.DateTimeField()
    next_update = models.DateTimeField(db_index=True)

    class Meta:
        verbose_name = "pre-signed OCSP response"

    def __str__(self) -> str:
        return f"OCSP {self.status} for {self.certificate_id} until {self.next_update:%Y-%m-%d %H:%M}"
