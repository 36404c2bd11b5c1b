"""Customers, organizations and email domains.

A customer is what the agent names with `customeruri`; an organization is what it names with
`orgid`. Email domains tie a user's AD mail to the customer and to the organizations allowed to
issue for it.
"""

from __future__ import annotations

import secrets

from django.core.exceptions import ValidationError
from django.core.validators import RegexValidator
from django.db import models


class ConfigurationGeneration(models.Model):
    """One row: a number changed in the transaction of every configuration change, so that each server
    process (on any host) knows when the configuration it holds in memory is out of date
    (`tenants.generation`)."""

    value = models.BigIntegerField(default=0)

    def __str__(self) -> str:
        return f"configuration generation {self.value}"

    @classmethod
    def bump(cls) -> None:
        """A random number rather than a counter: a rolled-back transaction puts the old number back, and
        a counter would then hand out again a number that some process already loaded a configuration for."""
        value = secrets.randbits(62) + 1
        if not cls.objects.filter(pk=1).update(value=value):
            cls.objects.update_or_create(pk=1, defaults={"value": value})


class ConfigurationQuerySet(models.QuerySet):
    """Bulk writes of configuration rows send no signals: they change the generation themselves."""

    def update(self, **kwargs) -> int:
        count = super().update(**kwargs)
        ConfigurationGeneration.bump()
        return count

    def bulk_create(self, *args, **kwargs):
        rows = super().bulk_create(*args, **kwargs)
        ConfigurationGeneration.bump()
        return rows

    def bulk_update(self, *args, **kwargs) -> int:
        count = super().bulk_update(*args, **kwargs)
        ConfigurationGeneration.bump()
        return count


uri_validator = RegexValidator(
    r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}\Z", "Letters, digits, '.', '_' and '-' only (as in a URL path)."
)
domain_validator = RegexValidator(
    r"^(?=.{1,253}\Z)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}\Z", "A lower-case DNS domain name."
)


class Customer(models.Model):
    uri = models.CharField(
        max_length=64, unique=True, validators=[uri_validator], help_text="The agent's `customeruri`."
    )
    name = models.CharField(max_length=200)
    enabled = models.BooleanField(default=True)
    require_approval = models.BooleanField(
        default=False, help_text="Hold each request until an administrator approves it (the agent polls)."
    )
    publish_to_ad = models.BooleanField(
        default=False, help_text="Add issued certificates to the user's userCertificate in AD."
    )
    created = models.DateTimeField(auto_now_add=True)

    objects = ConfigurationQuerySet.as_manager()

    class Meta:
        ordering = ["uri"]

    def __str__(self) -> str:
        return self.uri


class EmailDomain(models.Model):
    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="domains")
    name = models.CharField(max_length=253, validators=[domain_validator])
    authorized = models.BooleanField(default=False, help_text="Only mail in an authorized domain gets certificates.")

    objects = ConfigurationQuerySet.as_manager()

    class Meta:
        ordering = ["name"]
        constraints = [
            # One customer per domain: otherwise a user's mail would not say which customer it is.
            models.UniqueConstraint(fields=["name"], name="email_domain_unique_name"),
        ]

    def __str__(self) -> str:
        return self.name

    def save(self, *args, **kwargs) -> None:
        self.name = self.normalized(self.name)
        super().save(*args, **kwargs)

    @staticmethod
    def normalized(name: str) -> str:
        """ "Example.COM." is example.com, whether a page, the API or the command line says it."""
        return name.strip().lower().rstrip(".") if isinstance(name, str) else name

    def clean_fields(self, exclude=None) -> None:
        self.name = self.normalized(self.name)
        super().clean_fields(exclude)


class Organization(models.Model):
    """An organization (department) of one customer; its numeric id is the agent's `orgid`."""

    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="organizations")
    name = models.CharField(max_length=200)
    domains = models.ManyToManyField(EmailDomain, blank=True, related_name="organizations")
    ad_server = models.ForeignKey(
        "directory.ADServer",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="organizations",
        help_text="Bound AD server; the customer's default AD server when empty.",
    )
    deleted = models.BooleanField(default=False, help_text="Kept for the audit trail, no longer used.")

    objects = ConfigurationQuerySet.as_manager()

    class Meta:
        ordering = ["customer", "name"]
        constraints = [
            models.UniqueConstraint(fields=["customer", "name"], name="organization_unique_name"),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.pk})"

    def clean(self) -> None:
        if self.ad_server_id and self.customer_id and self.ad_server.customer_id != self.customer_id:
            raise ValidationError({"ad_server": "The AD server belongs to another customer."})


def _same_customer_domains(sender, instance, action, pk_set, **kwargs) -> None:
    """An organization may only hold its own customer's domains."""
    if action != "pre_add" or not pk_set or not isinstance(instance, Organization):
        return
    foreign = EmailDomain.objects.filter(pk__in=pk_set).exclude(customer_id=instance.customer_id)
    if foreign.exists():
        raise ValidationError(f"Domains of another customer: {', '.join(d.name for d in foreign)}")


models.signals.m2m_changed.connect(_same_customer_domains, sender=Organization.domains.through)


class CustomerAdminQuerySet(models.QuerySet):
    def active(self) -> models.QuerySet:
        """Those who may act and be told: an administrator disabled on the Administrators page signs in to
        nothing (`utils.restrict`) and gets no customer's mail either."""
        return self.filter(user__is_active=True)


class CustomerAdmin(models.Model):
    """A Customer Admin: a user who administers one customer only. Super Admins are Django superusers."""

    user = models.OneToOneField("auth.User", on_delete=models.CASCADE, related_name="customer_admin")
    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="admins")

    objects = CustomerAdminQuerySet.as_manager()

    class Meta:
        verbose_name = "customer admin"

    def __str__(self) -> str:
        return f"{self.user} ({self.customer})"


def username_taken(username: str, *, other_than=None) -> bool:
    """Usernames are unique whatever their case ("Boss" and "boss" would be two logins an admin cannot
    tell apart): the page and the command line ask here."""
    from django.contrib.auth import get_user_model

    return get_user_model().objects.exclude(pk=other_than).filter(username__iexact=username).exists()


def set_admin_role(user, customer: Customer | None) -> None:
    """Make `user` (saved) a Super Admin (customer None) or the Customer Admin of `customer`: the one
    place that decides what each role is, for the admin pages and the command line."""
    user.is_superuser = user.is_staff = customer is None
    user.save(update_fields=["is_superuser", "is_staff"])
    if customer is None:
        CustomerAdmin.objects.filter(user=user).delete()
    else:
        CustomerAdmin.objects.update_or_create(user=user, defaults={"customer": customer})
