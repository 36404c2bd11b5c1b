"""The one place that decides which customer's data a user may see (NetBox's RestrictedQuerySet idea).

Super Admins (superusers) see everything; a Customer Admin sees the rows of their own customer and
nothing else; anybody else sees nothing. Views and API routes never filter by customer by hand:
they call `restrict(queryset, user)`.
"""

from __future__ import annotations

from django.apps import apps
from django.db.models import Model, Q, QuerySet

# model label -> path from the model to its customer; None: Super Admin only.
CUSTOMER_PATHS: dict[str, str | None] = {
    "tenants.customer": "pk",
    "tenants.emaildomain": "customer",
    "tenants.organization": "customer",
    "tenants.customeradmin": "customer",
    # administrator accounts: a Customer Admin's own customer's admins (Super Admins have no customer)
    "auth.user": "customer_admin__customer",
    "directory.adserver": "customer",
    "directory.person": "customer",
    "certificates.certificate": "person__customer",
    "certificates.certificateauthority": None,
    "kerberos.kerberosrealm": None,
    "enrollment.enrollmentevent": "customer",
    "enrollment.enrollmentrequest": "customer",
    "audit.auditrecord": None,
}


def customer_of(user):
    """The customer a Customer Admin administers, or None (Super Admins and other users)."""
    admin = getattr(user, "customer_admin", None) if user.is_authenticated else None
    return admin.customer if admin is not None else None


def is_super_admin(user) -> bool:
    return bool(user.is_authenticated and user.is_active and user.is_superuser)


def restrict(queryset: QuerySet, user) -> QuerySet:
    """`queryset` cut down to what `user` may see."""
    if is_super_admin(user):
        return queryset
    customer = customer_of(user) if user.is_active else None
    path = CUSTOMER_PATHS.get(queryset.model._meta.label_lower, None)
    if customer is None or path is None:
        return queryset.none()
    return queryset.filter(**{path: customer.pk if path == "pk" else customer})


def restricted(model: type[Model] | str, user) -> QuerySet:
    if isinstance(model, str):
        model = apps.get_model(model)
    return restrict(model._default_manager.all(), user)


def may_add(model: type[Model] | str, user) -> bool:
    """Whether `user` may create rows of `model`: Super Admins anything, a Customer Admin only rows that
    belong to a customer (their own, which the form fixes); customers and Super-Admin-only rows never."""
    if isinstance(model, str):
        model = apps.get_model(model)
    if is_super_admin(user):
        return True
    path = CUSTOMER_PATHS.get(model._meta.label_lower)
    return path not in (None, "pk") and customer_of(user) is not None and user.is_active


def may_authorize_domains(user) -> bool:
    """Whether `user` may authorize an email domain (or take the authorization back). Authorized, a
    customer's AD names mailboxes in it and gets certificates for them: a Customer Admin who could
    authorize a domain nobody holds yet (another company's, a mail provider's) would have the CA sign
    whatever their AD says. The operator of the CA, a Super Admin, decides."""
    return is_super_admin(user)


def restrict_administrators(queryset: QuerySet, user) -> QuerySet:
    """The administrator accounts (users) in `queryset` that `user` may manage: a Super Admin every Super Admin
    and Customer Admin; a Customer Admin the Customer Admins of their own customer, never a Super Admin (not
    even one that also has a customer); other users (not administrators) are in nobody's list."""
    queryset = restrict(queryset.filter(Q(is_superuser=True) | Q(customer_admin__isnull=False)), user)
    return queryset if is_super_admin(user) else queryset.filter(is_superuser=False)
