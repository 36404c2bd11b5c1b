"""Table definitions of the list pages: which columns, in the guide's words, and how a cell reads.

Cells are built in Python (escaped by `format_html`) so one generic template renders every list.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.middleware.csrf import get_token
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.timezone import localtime

from autoenroll.server.utils.restrict import is_super_admin


@dataclass
class Column:
    label: str
    value: Callable[[Any], Any]
    super_admin_only: bool = False  # e.g. the Customer column: a Customer Admin has one customer
    with_table: bool = False  # value(obj, table): for cells that need the request (CSRF token of a button)


def yes_no(flag: bool) -> str:
    return "Yes" if flag else "No"


def when(value) -> str:
    """To the second: a user's logon is sync, enroll and status within a second or two."""
    return f"{localtime(value):%Y-%m-%d %H:%M:%S}" if value else ""


def link(url_name: str, obj, text=None):
    return format_html('<a href="{}">{}</a>', reverse(f"web:{url_name}", args=[obj.pk]), text or obj)


def buttons(*items: tuple[str, str, Any]):
    """Row actions as links: (label, url name, object)."""
    return format_html_join(
        " ",
        '<a class="button small" href="{}">{}</a>',
        ((reverse(f"web:{u}", args=[o.pk]), label) for label, u, o in items),
    )


class Table:
    columns: list[Column] = []

    def __init__(self, objects, request) -> None:
        self.objects = objects
        self.request = request
        self.visible = [c for c in self.columns if not c.super_admin_only or is_super_admin(request.user)]

    @property
    def headers(self) -> list[str]:
        return [c.label for c in self.visible]

    @property
    def rows(self) -> list[list[Any]]:
        return [[c.value(obj, self) if c.with_table else c.value(obj) for c in self.visible] for obj in self.objects]


CUSTOMER = Column("Customer", lambda o: o.customer, super_admin_only=True)


class RealmTable(Table):
    """Figure 2.11: the login.conf entries."""

    columns = [
        Column("Domain Name", lambda r: link("realm_edit", r, r.domain)),
        Column("Keytab File Name", lambda r: r.keytab_path),
        Column("Service Principal Name", lambda r: r.service_principal),
        Column("Customer", lambda r: r.customer or ""),
        Column(
            "",
            lambda r: buttons(
                ("Check keytab", "realm_check", r), ("Edit", "realm_edit", r), ("Delete", "realm_delete", r)
            ),
        ),
    ]


class ADServerTable(Table):
    """Figure 2.13, with a Verify button per server (a POST form, see the template tag below)."""

    columns = [
        CUSTOMER,
        Column(
            "Domain",
            lambda s: format_html("{}{}", link("adserver_edit", s, s.domain), " (Default)" if s.is_default else ""),
        ),
        Column("AD Server", lambda s: s.address),
        Column("Port", lambda s: s.port),
        Column("Use SSL", lambda s: yes_no(s.use_ssl)),
        Column("Organization/Department", lambda s: ", ".join(o.name for o in s.organizations.all() if not o.deleted)),
        Column("Default", lambda s: yes_no(s.is_default)),
        Column("Setup By Operator", lambda s: yes_no(s.setup_by_operator)),
        Column(
            "",
            lambda s, table: format_html(
                '{} <form method="post" action="{}" class="inline">'
                '<input type="hidden" name="csrfmiddlewaretoken" value="{}">'
                '<button type="submit" class="small">Verify</button></form>',
                buttons(("Edit", "adserver_edit", s), ("Delete", "adserver_delete", s)),
                reverse("web:adserver_verify", args=[s.pk]),
                get_token(table.request),
            ),
            with_table=True,
        ),
    ]


def _domains(org) -> str:
    return format_html_join(
        ", ",
        "{}{}",
        ((d.name, "" if d.authorized else " (unauthorized)") for d in org.domains.all()),
    )


class OrganizationTable(Table):
    """Figure 2.15: organizations with their id (the agent's orgid), domains and bound AD server."""

    columns = [
        CUSTOMER,
        Column("Id (orgid)", lambda o: o.pk),
        Column("Organization", lambda o: link("organization_edit", o, o.name)),
        Column("Email domains", _domains),
        Column("AD Server", lambda o: o.ad_server or "(customer default)"),
        Column("Deleted", lambda o: yes_no(o.deleted)),
        Column("", lambda o: buttons(("Edit", "organization_edit", o), ("Delete", "organization_delete", o))),
    ]


class DomainTable(Table):
    columns = [
        CUSTOMER,
        Column("Domain", lambda d: link("domain_edit", d, d.name)),
        Column("Authorized", lambda d: yes_no(d.authorized)),
        Column("Organizations", lambda d: ", ".join(o.name for o in d.organizations.all())),
        Column("", lambda d: buttons(("Edit", "domain_edit", d), ("Delete", "domain_delete", d))),
    ]


class CustomerTable(Table):
    columns = [
        Column("Customer URI", lambda c: link("customer_edit", c, c.uri)),
        Column("Name", lambda c: c.name),
        Column("Enabled", lambda c: yes_no(c.enabled)),
        Column("Require approval", lambda c: yes_no(c.require_approval)),
        Column("Publish to AD", lambda c: yes_no(c.publish_to_ad)),
        Column("", lambda c: buttons(("Edit", "customer_edit", c), ("Delete", "customer_delete", c))),
    ]


def _administrator_actions(user, table):
    items = [("Edit", "administrator_edit", user), ("Password", "administrator_password", user)]
    if user.pk != table.request.user.pk:  # nobody disables or deletes themselves
        items.append(
            ("Disable", "administrator_disable", user) if user.is_active else ("Enable", "administrator_enable", user)
        )
        items.append(("Delete", "administrator_delete", user))
    return buttons(*items)


class AdministratorTable(Table):
    """Super Admins and Customer Admins, as `autoenroll-server admins list` shows them."""

    columns = [
        Column("Username", lambda u: link("administrator_edit", u, u.get_username())),
        Column("Email", lambda u: u.email),
        Column("Role", lambda u: "Super Admin" if u.is_superuser else "Customer Admin"),
        Column("Customer", lambda u: "" if u.is_superuser else u.customer_admin.customer, super_admin_only=True),
        Column("Active", lambda u: yes_no(u.is_active)),
        Column("Last sign-in", lambda u: when(u.last_login)),
        Column("", _administrator_actions, with_table=True),
    ]


class CertificateTable(Table):
    columns = [
        Column("Serial", lambda c: link("certificate_detail", c, c.serial)),
        Column("Mail", lambda c: c.mail),
        Column("Person", lambda c: c.person or ""),
        Column("Customer", lambda c: c.person.customer if c.person else "", super_admin_only=True),
        Column("Status", lambda c: format_html('<span class="state {}">{}</span>', c.state, c.state)),
        Column("Not after", lambda c: when(c.not_after)),
        Column("Profile", lambda c: c.get_profile_display()),
    ]


def _notified(certificate) -> str:
    if certificate.notified_days is None:
        return "not yet" if settings.CONFIG.smtp_host else "no SMTP server configured"
    return f"{certificate.notified_days}-day notice, {when(certificate.notified_at)}"


class ExpiringTable(Table):
    """What the expiry notices are about: the holder, the days left, the last logon, the notice sent."""

    columns = [
        Column("Serial", lambda c: link("certificate_detail", c, c.serial)),
        Column("Mail", lambda c: c.mail),
        Column("Customer", lambda c: c.person.customer if c.person else "", super_admin_only=True),
        Column("Not after", lambda c: when(c.not_after)),
        Column("Days left", lambda c: str(max(0, (c.not_after - timezone.now()).days))),
        Column("Last logon (sync)", lambda c: when(c.person.synced_at) if c.person else ""),
        Column("Holder notified", _notified),
    ]


class AuditTable(Table):
    """The trail as `audit export` writes it: chained records with their position, the rest waiting."""

    columns = [
        Column("Position", lambda r: str(r.position) if r.position else "not sealed yet"),
        Column("Time", lambda r: when(r.created)),
        Column("Kind", lambda r: r.kind),
        Column("Subject", lambda r: r.subject),
        Column("Hash", lambda r: format_html("<code>{}…</code>", r.hash[:16]) if r.hash else ""),
    ]


def _current(person) -> str:
    if not person.current_id:
        return ""
    url = reverse("web:certificate_detail", args=[person.current_id])
    return format_html('<a href="{}">{}</a>', url, person.current_serial)


def _held(person) -> str:
    """The count, with a warning past the bound (a runaway client, or a bound raised by hand)."""
    if person.valid_count > settings.CONFIG.max_valid_certificates:
        return format_html('<span class="state error">{} (more than {})</span>', person.valid_count,
                           settings.CONFIG.max_valid_certificates)  # fmt: skip
    return str(person.valid_count)


class PersonTable(Table):
    """The users synced from AD (what `persons list` prints), with what each holds."""

    columns = [
        Column("Principal", lambda p: p.principal),
        Column("Mail", lambda p: p.mail or format_html('<span class="state error">{}</span>', "none in AD")),
        Column("CN", lambda p: p.cn),
        CUSTOMER,
        Column("AD server", lambda p: p.ad_server or ""),
        Column("Enabled in AD", lambda p: yes_no(p.enabled)),
        Column("Current certificate", _current),
        Column("Valid certificates", _held),
        Column("Last logon (sync)", lambda p: when(p.synced_at)),
    ]


def _reasons(event) -> str:
    return format_html_join("", "<div>{}</div>", ((r,) for r in event.potential_reasons))


class EventTable(Table):
    """The server side of the guide's autoenroll.log (8.1.1), with its "potential reason" beside each error."""

    columns = [
        Column("Time", lambda e: when(e.created)),
        Column("User", lambda e: e.principal),
        Column("Customer", lambda e: e.customer or "", super_admin_only=True),
        Column("Step", lambda e: e.get_step_display()),
        Column(
            "Outcome", lambda e: format_html('<span class="state {}">{}</span>', e.outcome, e.get_outcome_display())
        ),
        Column("Error", lambda e: e.error_code or ""),
        Column("Message", lambda e: e.message),
        Column("Why (the server's words)", lambda e: e.detail),
        Column("Potential reason", _reasons),
    ]


class RequestTable(Table):
    columns = [
        Column("Requested", lambda r: when(r.created)),
        Column("User", lambda r: r.person.principal),
        Column("Mail", lambda r: r.person.mail),
        Column("Customer", lambda r: r.customer, super_admin_only=True),
        Column("Organization", lambda r: r.organization.name if r.organization else ""),
        Column("Status", lambda r: r.get_status_display()),
        Column("Decided by", lambda r: r.decided_by),
        Column(
            "",
            lambda r: (
                buttons(("Approve", "request_approve", r), ("Reject", "request_reject", r))
                if r.status == r.Status.PENDING
                else ""
            ),
        ),
    ]
