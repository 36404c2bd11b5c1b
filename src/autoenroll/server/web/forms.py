"""Forms of the admin pages, with the guide's field labels (figures 2.12, 2.14, 2.15)."""

from __future__ import annotations

from datetime import timedelta

from django import forms
from django.contrib.auth import get_user_model
from django.contrib.auth.forms import SetPasswordForm, SetPasswordMixin
from django.db import transaction
from django.db.models import Q, QuerySet
from django.utils import timezone

from autoenroll.pki import parse_serial
from autoenroll.protocol import CATALOGUE
from autoenroll.server.certificates import search
from autoenroll.server.certificates.models import RevocationReason
from autoenroll.server.directory.models import ADServer
from autoenroll.server.enrollment.models import EnrollmentEvent, EnrollmentRequest
from autoenroll.server.kerberos.models import KerberosRealm
from autoenroll.server.tenants.models import Customer, EmailDomain, Organization, set_admin_role, username_taken
from autoenroll.server.utils.restrict import customer_of, is_super_admin, may_authorize_domains, restrict


class ChoicesChecked:
    """Form mixin: a choice given as a number beyond the database's integers (2**63 and more) is an invalid
    choice, not a server error: SQLite's driver raises OverflowError before the query that looks it up."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        for field in self.fields.values():
            if isinstance(field, forms.ModelChoiceField):  # also ModelMultipleChoiceField
                field.clean = _checked(field)


def _checked(field: forms.ModelChoiceField):
    clean = field.clean

    def checked(value):
        try:
            return clean(value)
        except OverflowError:
            message = field.error_messages["invalid_choice"]
            raise forms.ValidationError(message, code="invalid_choice", params={"value": value}) from None

    return checked


class RestrictedModelForm(ChoicesChecked, forms.ModelForm):
    """A ModelForm whose every choice (customer, AD server, domains) comes through `restrict()`.

    A Customer Admin's `customer` field is fixed to their own customer (disabled: the posted value is ignored),
    so no view assigns or checks the customer itself.
    """

    def __init__(self, *args, user, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.user = user
        for field in self.fields.values():
            if isinstance(field, forms.ModelChoiceField):  # also ModelMultipleChoiceField
                field.queryset = restrict(field.queryset, user)
        if "customer" in self.fields and not is_super_admin(user):
            field = self.fields["customer"]
            field.disabled = True
            field.initial = customer_of(user)
            if self.instance.pk is None:
                self.instance.customer = customer_of(user)


class RealmForm(ChoicesChecked, forms.ModelForm):
    """Figure 2.12: Add/Edit Autoenrollment properties (Super Admin only)."""

    class Meta:
        model = KerberosRealm
        fields = ["domain", "keytab_path", "service_principal", "customer"]

    def _post_clean(self):
        super()._post_clean()
        if not self.has_error("keytab_path") and not self.has_error("service_principal"):
            for problem in self.instance.keytab_problems():
                self.add_error("keytab_path", problem)


class LoginConfImportForm(ChoicesChecked, forms.Form):
    text = forms.CharField(
        label="login.conf",
        required=False,
        widget=forms.Textarea(attrs={"rows": 14, "cols": 80, "spellcheck": "false"}),
        help_text="Paste a CCM login.conf, or choose the file below.",
    )
    file = forms.FileField(label="login.conf file", required=False)
    customer = forms.ModelChoiceField(
        Customer.objects.all(), required=False, help_text="Customer of the realms this import creates."
    )

    def clean(self):
        data = super().clean()
        upload = data.get("file")
        if upload:
            try:
                data["text"] = upload.read(1_000_000).decode("utf-8")
            except UnicodeDecodeError:
                raise forms.ValidationError("The file is not UTF-8 text.") from None
        if not (data.get("text") or "").strip():
            raise forms.ValidationError("Give the login.conf text or a file.")
        return data


class ADServerForm(RestrictedModelForm):
    """Figure 2.14. The password is write-only: never rendered, and left empty it keeps the stored one."""

    login_password = forms.CharField(
        label="Login Password",
        required=False,
        strip=False,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text="Stored encrypted, never shown. Leave empty to keep the current password.",
    )

    class Meta:
        model = ADServer
        fields = [
            "customer",
            "domain",
            "address",
            "port",
            "is_default",
            "users_base_dn",
            "login_dn",
            "login_password",
            "use_ssl",
            "tls_ca_pem",
            "tls_server_name",
            "allow_plain_bind",
        ]
        labels = {
            "domain": "Domain",
            "address": "AD Server Address",
            "port": "AD Server Port",
            "is_default": "Set as Default",
            "users_base_dn": "Users Base DN",
            "login_dn": "Login User DN",
            "use_ssl": "Use SSL",
            "tls_ca_pem": "CA certificate (PEM)",
            "tls_server_name": "TLS server name",
        }
        widgets = {"tls_ca_pem": forms.Textarea(attrs={"rows": 4, "cols": 64})}

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if self.instance.pk is None:
            self.fields["login_password"].required = True
            self.fields["login_password"].help_text = "Stored encrypted, never shown again."

    def _get_validation_exclusions(self):
        # save() moves the default to this server; the one-default constraint would refuse it beforehand
        return super()._get_validation_exclusions() | {"is_default"}

    def clean_login_password(self) -> str:
        value = self.cleaned_data.get("login_password") or ""
        return value or (self.instance.login_password if self.instance.pk else "")


class OrganizationForm(RestrictedModelForm):
    """Figure 2.15: an organization, its email domains and the AD server it is bound to."""

    class Meta:
        model = Organization
        fields = ["customer", "name", "domains", "ad_server", "deleted"]
        labels = {"ad_server": "AD Server", "domains": "Email domains"}
        widgets = {"domains": forms.CheckboxSelectMultiple}

    def clean(self):
        data = super().clean()
        customer = data.get("customer")
        foreign = [d.name for d in data.get("domains") or () if customer and d.customer_id != customer.pk]
        if foreign:
            self.add_error("domains", f"Domains of another customer: {', '.join(foreign)}")
        return data


class DomainForm(RestrictedModelForm):
    class Meta:
        model = EmailDomain
        fields = ["customer", "name", "authorized"]
        labels = {"name": "Domain"}

    def __init__(self, *args, user, **kwargs) -> None:
        super().__init__(*args, user=user, **kwargs)
        if not may_authorize_domains(user):
            self.fields["authorized"].disabled = True  # the posted value is ignored
            self.fields["authorized"].help_text = "A Super Admin authorizes domains."
            if self.instance.authorized:  # renamed, it would be another domain, authorized by nobody
                self.fields["name"].disabled = True


class CustomerForm(forms.ModelForm):
    class Meta:
        model = Customer
        fields = ["uri", "name", "enabled", "require_approval", "publish_to_ad"]
        labels = {"uri": "Customer URI"}


# --- Administrators (the rules of `autoenroll-server admins add`) ------------------------------------------------

SUPER_ADMIN, CUSTOMER_ADMIN = "super", "customer"


def role_of(user) -> str:
    return SUPER_ADMIN if user.is_superuser else CUSTOMER_ADMIN


class AdministratorForm(RestrictedModelForm):
    """An administrator account: a Super Admin (superuser) or the Customer Admin of one customer.

    A Customer Admin's role and customer are fixed (disabled fields ignore what is posted): they manage the
    Customer Admins of their own customer only and never make a Super Admin. Nobody changes their own role."""

    role = forms.ChoiceField(choices=[(CUSTOMER_ADMIN, "Customer Admin"), (SUPER_ADMIN, "Super Admin")])
    customer = forms.ModelChoiceField(
        Customer.objects.all(), required=False, help_text="The one customer a Customer Admin administers."
    )

    class Meta:
        model = get_user_model()
        fields = ["username", "email"]

    def __init__(self, *args, user, **kwargs) -> None:
        super().__init__(*args, user=user, **kwargs)
        role, customer = self.fields["role"], self.fields["customer"]
        if self.instance.pk is not None:
            admin = getattr(self.instance, "customer_admin", None)
            self.initial.update(role=role_of(self.instance), customer=admin.customer_id if admin else None)
        if not is_super_admin(user):
            role.choices = [(CUSTOMER_ADMIN, "Customer Admin")]
            role.initial = CUSTOMER_ADMIN
            role.disabled = True  # customer: disabled by RestrictedModelForm
        if self.instance.pk is not None and self.instance.pk == user.pk:
            role.disabled = customer.disabled = True
            role.help_text = "Nobody changes their own role."

    def clean_username(self) -> str:
        username = self.cleaned_data["username"]
        if username and username_taken(username, other_than=self.instance.pk):
            raise forms.ValidationError("A user with that username already exists.", code="unique")
        return username

    def clean(self):
        data = super().clean()
        if data.get("role") == SUPER_ADMIN and not is_super_admin(self.user):  # disabled: cannot happen
            raise forms.ValidationError("Only a Super Admin makes Super Admins.")
        if data.get("role") == CUSTOMER_ADMIN and not data.get("customer"):
            self.add_error("customer", "A Customer Admin needs a customer.")
        return data

    @transaction.atomic
    def save(self, commit: bool = True):
        user = super().save(commit=False)
        self.set_password(user)
        user.save()
        set_admin_role(user, None if self.cleaned_data["role"] == SUPER_ADMIN else self.cleaned_data["customer"])
        return user

    def set_password(self, user) -> None:
        """Hook of the add form."""


class AdministratorAddForm(SetPasswordMixin, AdministratorForm):
    """A new administrator with a password that passes Django's password validators (never shown again)."""

    password1, password2 = SetPasswordMixin.create_password_fields()

    class Meta(AdministratorForm.Meta):
        fields = ["username", "email", "role", "customer", "password1", "password2"]

    def clean(self):
        self.validate_passwords()
        return super().clean()

    def _post_clean(self):
        super()._post_clean()
        self.validate_password_for_user(self.instance)  # the instance holds the username and email by now

    def set_password(self, user) -> None:
        user.set_password(self.cleaned_data["password1"])


class AdministratorPasswordForm(SetPasswordForm):
    """A new password for an administrator (Django's form: both fields, checked by the password validators)."""


# --- filters ---------------------------------------------------------------------------------------------------


class CertificateFilterForm(forms.Form):
    q = forms.CharField(label="Person or mail", required=False)
    serial = forms.CharField(required=False, help_text="Hexadecimal, whole or in part; 0x and colons allowed.")
    status = forms.ChoiceField(required=False, choices=[("", "any"), *((s, s.capitalize()) for s in search.STATES)])
    expires_within = forms.IntegerField(label="Expires within (days)", required=False, min_value=0, max_value=3650)
    issued_on = forms.DateField(label="Issued on", required=False, widget=forms.DateInput(attrs={"type": "date"}))

    def clean_serial(self) -> str:
        text = self.cleaned_data["serial"]
        try:
            return parse_serial(text) if text else ""
        except ValueError as exc:
            raise forms.ValidationError(str(exc)) from None

    def filter(self, qs: QuerySet) -> QuerySet:
        data, now = self.cleaned_data, timezone.now()
        if data["q"]:
            q = data["q"].strip()
            qs = qs.filter(
                Q(mail__icontains=q)
                | Q(person__principal__icontains=q)
                | Q(person__cn__icontains=q)
                | Q(subject__icontains=q)
            )
        if data["serial"]:
            qs = search.filter_by_serial(qs, data["serial"], partial=True)
        if data["status"]:
            qs = search.filter_by_state(qs, data["status"], now=now)
        if data["expires_within"] is not None:
            qs = qs.filter(not_after__gt=now, not_after__lte=now + timedelta(days=data["expires_within"]))
        if data["issued_on"] is not None:
            qs = qs.filter(created__date=data["issued_on"])
        return qs.select_related("person__customer")


class EventFilterForm(forms.Form):
    code = forms.TypedChoiceField(
        label="Error number",
        required=False,
        coerce=int,
        empty_value=None,
        choices=[("", "any")] + [(c, f"{c}: {e.message}") for c, e in CATALOGUE.items()],
    )
    user = forms.CharField(required=False)
    outcome = forms.ChoiceField(required=False, choices=[("", "any"), *EnrollmentEvent.Outcome.choices])

    def filter(self, qs: QuerySet) -> QuerySet:
        data = self.cleaned_data
        if data["code"] is not None:
            qs = qs.filter(error_code=data["code"])
        if data["user"]:
            qs = qs.filter(principal__icontains=data["user"].strip())
        if data["outcome"]:
            qs = qs.filter(outcome=data["outcome"])
        return qs.select_related("customer")


class PersonFilterForm(forms.Form):
    user = forms.CharField(required=False, help_text="part of the principal or the mail")
    enabled = forms.ChoiceField(required=False, choices=[("", "any"), ("yes", "enabled"), ("no", "disabled in AD")])

    def filter(self, qs: QuerySet) -> QuerySet:
        data = self.cleaned_data
        if data["user"]:
            text = data["user"].strip()
            qs = qs.filter(Q(principal__icontains=text) | Q(mail__icontains=text))
        if data["enabled"]:
            qs = qs.filter(enabled=data["enabled"] == "yes")
        return qs


class RequestFilterForm(forms.Form):
    status = forms.ChoiceField(
        required=False, choices=[("", "any"), *EnrollmentRequest.Status.choices], initial="pending"
    )

    def filter(self, qs: QuerySet) -> QuerySet:
        if self.cleaned_data["status"]:
            qs = qs.filter(status=self.cleaned_data["status"])
        return qs.select_related("person", "customer", "organization")


class RevokeForm(forms.Form):
    reason = forms.ChoiceField(choices=RevocationReason.choices, initial=RevocationReason.UNSPECIFIED)
    confirm = forms.BooleanField(label="Yes, revoke this certificate. This cannot be undone.", required=True)


class ADServerImportForm(ChoicesChecked, forms.Form):
    file = forms.FileField(label="CSV file")
    customer = forms.ModelChoiceField(Customer.objects.all(), help_text="Customer the AD servers belong to.")

    def __init__(self, *args, user, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["customer"].queryset = restrict(Customer.objects.all(), user)
        if not is_super_admin(user):
            self.fields["customer"].disabled = True
            self.fields["customer"].initial = customer_of(user)
