"""One row per entry of the guide's login.conf: a Windows domain, its keytab and service principal."""

from __future__ import annotations

from django.core.validators import RegexValidator
from django.db import models

from autoenroll.server.tenants.models import ConfigurationQuerySet, Customer

principal_validator = RegexValidator(
    r"^[^/@\s\x00-\x1f\x7f]+/[^/@\s\x00-\x1f\x7f]+@[^/@\s\x00-\x1f\x7f]+\Z",
    "A service principal such as HTTP/ccm.test.com@TEST.COM.",
)

#: A Windows domain's DNS name (a single-label one too): what login.conf carries as an entry name.
windows_domain_validator = RegexValidator(
    r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*\Z",
    "A Windows domain name such as test.com: letters, digits, '-', '_' and dots.",
)
#: A path a keytab can have, and a line of login.conf can hold.
path_validator = RegexValidator(r"^[^\x00-\x1f\x7f]+\Z", "A file path, without line breaks or control characters.")


class KerberosRealm(models.Model):
    domain = models.CharField(
        max_length=253,
        unique=True,
        validators=[windows_domain_validator],
        verbose_name="Domain Name",
        help_text="Windows domain, e.g. test.com.",
    )
    keytab_path = models.CharField(
        max_length=1024,
        validators=[path_validator],
        verbose_name="Keytab File Name",
        help_text="Absolute path, readable by the server only.",
    )
    service_principal = models.CharField(
        max_length=512,
        validators=[principal_validator],
        verbose_name="Service Principal Name",
        help_text="As given to ktpass, e.g. HTTP/ccm.test.com@TEST.COM.",
    )
    customer = models.ForeignKey(
        Customer,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="kerberos_realms",
        help_text="Customer whose users log on in this realm (for clients that do not name one).",
    )

    objects = ConfigurationQuerySet.as_manager()

    class Meta:
        ordering = ["domain"]
        verbose_name = "Kerberos realm"

    def __str__(self) -> str:
        return self.domain

    def save(self, *args, **kwargs) -> None:
        self.domain = self.domain.strip().lower()
        super().save(*args, **kwargs)

    def keytab_problems(self) -> list[str]:
        """Why the server could not accept tickets with this keytab (missing, unreadable, no key for the
        service principal), as `keytab check` says it. The page, the API and `realms add` refuse to save
        a realm with a problem; a login.conf import reports them (its paths are often the old server's)."""
        from .keytab import check_keytab

        if not (isinstance(self.keytab_path, str) and self.keytab_path and isinstance(self.service_principal, str)):
            return []  # nothing to check yet: the field's own validation says what is missing
        return check_keytab(self.keytab_path, self.service_principal).errors

    @property
    def realm(self) -> str:
        """The Kerberos realm name, e.g. TEST.COM: the part of the principal after '@'."""
        return self.service_principal.rpartition("@")[2]


class SeenAuthenticator(models.Model):
    """A Kerberos authenticator this cluster has accepted, until it could no longer pass the clock-skew
    check: MIT's replay cache is a file on each host, so behind a load balancer a token replayed to another
    server would pass it. Used on PostgreSQL, the database several servers share."""

    digest = models.CharField(max_length=64, primary_key=True, help_text="SHA-256 of the Negotiate token.")
    expires = models.DateTimeField(db_index=True)

    def __str__(self) -> str:
        return self.digest
