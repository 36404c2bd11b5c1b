"""AD servers (guide figure 2.14) and persons synced from them.

A customer has exactly one default AD server: the one used when an organization is bound to none
(guide 2.3, "You must mark at least one AD Server as default").
"""

from __future__ import annotations

import ipaddress

from cryptography import x509
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator
from django.db import models, transaction

from autoenroll.server.tenants.models import ConfigurationQuerySet, Customer
from autoenroll.server.utils.fields import EncryptedTextField

from .ldap import LDAPSettings, in_networks

LDAP_PORT = 389
LDAPS_PORT = 636


def validate_pem_certificates(value: str) -> None:
    """The DC's CA as PEM certificates, or nothing: a typo here would only show at Verify, as a TLS error."""
    if not value.strip():
        return
    try:
        x509.load_pem_x509_certificates(value.encode())
    except ValueError:
        raise ValidationError("not PEM certificates (-----BEGIN CERTIFICATE----- ...)") from None


class ADServer(models.Model):
    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="ad_servers")
    domain = models.CharField(max_length=253, help_text="Windows domain, e.g. test.com.")
    address = models.CharField(max_length=253, help_text="IP address or DNS name of the domain controller.")
    port = models.PositiveIntegerField(
        default=0,
        validators=[MaxValueValidator(65535)],
        help_text="0 means 389, or 636 with SSL.",
    )
    use_ssl = models.BooleanField(default=True, help_text="LDAPS; otherwise StartTLS on the plain port.")
    allow_plain_bind = models.BooleanField(
        default=False, help_text="Send the bind password without TLS. Only for labs; AD refuses it."
    )
    tls_ca_pem = models.TextField(
        blank=True,
        validators=[validate_pem_certificates],
        help_text="CA certificate(s) of the DC's LDAPS certificate, pinned. Empty: system CAs.",
    )
    tls_server_name = models.CharField(
        max_length=253, blank=True, help_text="Name in the DC's certificate when the address differs."
    )
    users_base_dn = models.CharField(max_length=1000, help_text="e.g. CN=Users,DC=test,DC=com")
    login_dn = models.CharField(max_length=1000, help_text="e.g. CN=ccm,CN=Users,DC=test,DC=com")
    login_password = EncryptedTextField(help_text="Stored encrypted; never shown again.")
    is_default = models.BooleanField(default=False, verbose_name="Set as default")
    setup_by_operator = models.BooleanField(default=False, verbose_name="Setup by operator")

    objects = ConfigurationQuerySet.as_manager()

    class Meta:
        ordering = ["customer", "domain", "address"]
        verbose_name = "AD server"
        constraints = [
            models.UniqueConstraint(
                fields=["customer"], condition=models.Q(is_default=True), name="adserver_one_default_per_customer"
            ),
            models.UniqueConstraint(fields=["customer", "domain", "address"], name="adserver_unique_address"),
        ]

    def __str__(self) -> str:
        return f"{self.domain} ({self.address})" + (" (Default)" if self.is_default else "")

    def save(self, *args, **kwargs) -> None:
        """Keep exactly one default per customer: the first server is the default, a new default
        replaces the old one."""
        self.domain = self.domain.strip().lower()
        with transaction.atomic():
            others = ADServer.objects.select_for_update().filter(customer_id=self.customer_id).exclude(pk=self.pk)
            if self.is_default:
                others.filter(is_default=True).update(is_default=False)
            elif not others.filter(is_default=True).exists():
                self.is_default = True
            super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        with transaction.atomic():
            successor = None
            if self.is_default:
                successor = (
                    ADServer.objects.select_for_update()
                    .filter(customer_id=self.customer_id)
                    .exclude(pk=self.pk)
                    .order_by("pk")
                    .first()
                )
            result = super().delete(*args, **kwargs)
            if successor is not None:
                successor.is_default = True
                successor.save(update_fields=["is_default"])
            return result

    def clean(self) -> None:
        """An address outside the networks AD servers may be in is refused when saved, not only when used
        (a name is checked when the server resolves it)."""
        super().clean()
        try:
            ip = ipaddress.ip_address(self.address)
        except ValueError:
            return
        if not in_networks(ip, settings.CONFIG.ad_networks):
            raise ValidationError({"address": "This address is outside the networks AD servers may be in."})

    @property
    def effective_port(self) -> int:
        return self.port or (LDAPS_PORT if self.use_ssl else LDAP_PORT)

    def ldap_settings(self) -> LDAPSettings:
        return LDAPSettings(
            address=self.address,
            port=self.effective_port,
            use_ssl=self.use_ssl,
            users_base_dn=self.users_base_dn,
            login_dn=self.login_dn,
            password=self.login_password,
            allow_plain_bind=self.allow_plain_bind,
            ca_pem=self.tls_ca_pem,
            tls_server_name=self.tls_server_name,
            networks=tuple(settings.CONFIG.ad_networks),
        )


class Person(models.Model):
    """A user as AD last described them; the identity in every certificate comes from here."""

    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="persons")
    ad_server = models.ForeignKey(ADServer, null=True, on_delete=models.SET_NULL, related_name="persons")
    organization = models.ForeignKey(
        "tenants.Organization", null=True, on_delete=models.SET_NULL, related_name="persons"
    )
    principal = models.CharField(max_length=320, help_text="Kerberos principal, e.g. user1@TEST.COM.")
    sam_account_name = models.CharField(max_length=256, verbose_name="sAMAccountName")
    mail = models.EmailField(max_length=320, blank=True)
    cn = models.CharField(max_length=256, blank=True, verbose_name="CN")
    dn = models.CharField(max_length=1000, blank=True, verbose_name="DN")
    enabled = models.BooleanField(default=True)
    synced_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["customer", "principal"]
        constraints = [
            models.UniqueConstraint(fields=["customer", "principal"], name="person_unique_principal"),
        ]

    def __str__(self) -> str:
        return self.principal
